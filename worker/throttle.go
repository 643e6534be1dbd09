package worker

import "context"

// dispatch starts queued subscriptions no faster than the throttle allows,
// in queue order.
func (w *Worker) dispatch(ctx context.Context) {
	for {
		key, ok := w.nextQueued()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-w.queued:
				continue
			}
		}
		now := w.clock.Now()
		if wait := w.limiter.ReserveN(now, 1).DelayFrom(now); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.clock.After(wait):
			}
		}
		w.handleKey(key, event{kind: evSlot})
	}
}

// nextQueued pops the first key whose agent still waits.
func (w *Worker) nextQueued() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		key, ok := w.queue.pop()
		if !ok {
			return "", false
		}
		if a := w.agents[key]; a != nil && a.life.phase == phaseQueued {
			return key, true
		}
	}
}
