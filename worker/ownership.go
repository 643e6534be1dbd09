package worker

import (
	"context"
	"hash/fnv"
	"slices"

	"golang.org/x/time/rate"

	"github.com/contactcenter/presence-provider/schemas"
)

// owner is the live worker whose share an agent is: rendezvous hashing, so
// a worker that joins or leaves moves only the agents it gains or loses.
func owner(key string, live []string) string {
	var best string
	var bestScore uint64
	for _, id := range live {
		h := fnv.New64a()
		_, _ = h.Write([]byte(id))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if score := h.Sum64(); best == "" || score > bestScore {
			best, bestScore = id, score
		}
	}
	return best
}

// owns reports whether the agent is this worker's share; the caller holds w.mu.
func (w *Worker) owns(key string) bool { return owner(key, w.live) == w.cfg.ID }

// heartbeat renews this worker's lease a third of a lease apart, on a
// schedule nothing else moves, and follows the live workers. A timer of its
// own fences the worker when no beat succeeded for two thirds of a lease,
// whatever the beats are stuck on.
func (w *Worker) heartbeat(ctx context.Context) {
	w.mu.Lock()
	w.armFence()
	w.mu.Unlock()
	next := w.clock.Now().Add(w.cfg.WorkerLease / 3)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.liveChanged:
			w.refreshLive(ctx, false)
			continue
		case <-w.clock.After(next.Sub(w.clock.Now())):
		}
		next = w.clock.Now().Add(w.cfg.WorkerLease / 3)
		beat, cancel := context.WithTimeout(ctx, w.cfg.WorkerLease/3)
		err := w.beat(beat)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.log.Warn().Err(err).Msg("worker heartbeat failed")
			w.mu.Lock()
			w.beatErr = err
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		w.lastBeat, w.beatErr = w.clock.Now(), nil
		w.armFence()
		unfence := w.fenced
		w.fenced = false
		w.mu.Unlock()
		if unfence {
			w.log.Info().Msg("NATS reachable again; taking agents back")
		}
		w.refreshLive(ctx, unfence)
	}
}

// armFence (re)starts the fence timer from the last beat; the caller holds w.mu.
func (w *Worker) armFence() {
	if w.fence != nil {
		w.fence.Stop()
	}
	w.fence = w.after(w.cfg.WorkerLease*2/3-w.clock.Since(w.lastBeat), w.fenceIfLate)
}

// fenceIfLate ends every upstream subscription once two thirds of the lease
// passed without a beat: before the lease runs out and another worker may
// take the agents, this one holds nothing.
func (w *Worker) fenceIfLate() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fenced || w.closing || w.clock.Since(w.lastBeat) < w.cfg.WorkerLease*2/3 {
		return
	}
	w.fenced = true
	ended := 0
	for _, a := range w.agents {
		for _, eff := range w.step(a, event{kind: evFenced}) {
			if eff.kind == effUnsubscribe {
				ended++
			}
			w.carryOut(a, eff)
		}
	}
	w.log.Error().Dur("since_last_beat", w.clock.Since(w.lastBeat)).Int("ended", ended).AnErr("why", w.beatErr).
		Msg("cannot reach NATS: fenced, every upstream subscription ended before the lease runs out")
}

// refreshLive reads the live workers; when they changed it shares the
// throttle among them and moves agents to their owners.
func (w *Worker) refreshLive(ctx context.Context, unfenced bool) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.WorkerLease/3)
	defer cancel()
	workers, err := w.stores.Workers.List(ctx)
	if err != nil {
		if ctx.Err() == nil || !w.stopping() {
			w.log.Warn().Err(err).Msg("could not list live workers")
		}
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// A leaving worker still holds its claims (it is alive) but owns no
	// agent: it is out of the list ownership follows.
	var live []string
	if !w.leaving {
		live = append(live, w.cfg.ID)
	}
	alive := map[string]bool{w.cfg.ID: true}
	for _, info := range workers {
		alive[info.ID] = true
		if info.ID != w.cfg.ID && !info.Leaving {
			live = append(live, info.ID)
		}
	}
	slices.Sort(live)
	changed := !slices.Equal(live, w.live)
	w.live, w.alive = live, alive
	if !w.leaving {
		w.servedLive = live
		if changed {
			w.servedGen++
			select {
			case w.servedChanged <- struct{}{}:
			default:
			}
		}
	}
	if changed && len(live) > 0 {
		w.limiter.SetLimitAt(w.clock.Now(), w.share())
		w.log.Info().Strs("workers", live).Float64("throttle_per_second", float64(w.share())).Msg("live workers changed")
	}
	e := event{kind: evOwnersChanged, changed: changed}
	if unfenced {
		e = event{kind: evUnfenced}
	}
	for _, a := range w.agents {
		w.handle(a, e)
	}
}

// stopping reports whether Stop began.
func (w *Worker) stopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leaving
}

// share is this worker's part of the service-wide throttle.
func (w *Worker) share() rate.Limit {
	return rate.Limit(float64(w.cfg.SubscriptionsPerSecond) / float64(len(w.live)))
}

// releaseStale deletes a claim that names this worker for an agent it does
// not hold, unless the agent moved on meanwhile (a second release, the
// deletion seen and the agent taken again, would delete the new claim);
// the caller holds w.mu.
func (w *Worker) releaseStale(a *agent) {
	key, unchanged := a.Key, w.unchanged(a)
	w.goEffect("release stale claim", func(ctx context.Context) {
		c, rev, found, err := w.stores.Claims.Get(ctx, key)
		if err == nil && found && c.Worker == w.cfg.ID && unchanged() {
			if err = w.release(ctx, key, rev, unchanged); err == nil {
				w.handleKey(key, event{kind: evStaleReleased})
			}
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Str("key", key).Msg("could not release a stale claim")
		}
	})
}

// watchWorkers reads the live workers again whenever another one beats for
// the first time, starts leaving or is gone, so that agents move at once
// rather than at the next heartbeat. Renewals of a known state are skipped:
// every worker beats a third of a lease apart.
func (w *Worker) watchWorkers(changes <-chan schemas.Change[schemas.WorkerInfo]) {
	known := map[string]bool{} // id → leaving, for the workers seen alive
	for ch := range changes {
		if ch.Loaded || ch.Key == w.cfg.ID {
			continue
		}
		leaving, seen := known[ch.Key]
		switch {
		case ch.Deleted:
			delete(known, ch.Key)
		case seen && leaving == ch.Value.Leaving:
			continue
		default:
			known[ch.Key] = ch.Value.Leaving
		}
		select {
		case w.liveChanged <- struct{}{}:
		default:
		}
	}
}

// handOver starts Stop: this worker beats as leaving, so that the others
// take its agents, and ends each upstream subscription before it releases
// the claim, while its heartbeat still runs and its lease holds.
func (w *Worker) handOver(ctx context.Context) {
	w.mu.Lock()
	w.leaving = true
	w.endBase = ctx
	w.live = slices.DeleteFunc(slices.Clone(w.live), func(id string) bool { return id == w.cfg.ID })
	w.mu.Unlock()
	beat, cancel := context.WithTimeout(ctx, w.cfg.WorkerLease/3)
	if err := w.beat(beat); err != nil {
		w.log.Warn().Err(err).Msg("could not announce leaving")
	}
	cancel()
	w.mu.Lock()
	for _, a := range w.agents {
		w.handle(a, event{kind: evOwnersChanged, changed: true})
	}
	w.mu.Unlock()
	if w.waitQuiet(ctx) {
		w.log.Info().Msg("agents handed over")
	}
}

// servedBy reports whether this worker answers the inputs of an agent: its
// owner, or while leaving, its owner before (until the inputs stop); the
// caller holds w.mu.
func (w *Worker) servedBy(key string) bool {
	if w.leaving {
		return owner(key, w.servedLive) == w.cfg.ID
	}
	return w.owns(key)
}
