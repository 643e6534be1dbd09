package worker

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/contactcenter/presence-provider/worker/membership"
)

// owns reports whether the agent is this worker's share; the caller holds w.mu.
func (w *Worker) owns(key string) bool { return w.members.Owner(key) == w.cfg.ID }

// leaseEvents is the worker as its lease's membership.Handler.
type leaseEvents Worker

// Members shares the throttle among the live workers when they changed and
// moves agents to their owners; at a hand-over it gives them up.
func (e *leaseEvents) Members(m membership.Members) {
	w := (*Worker)(e)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.members = m
	switch m.Kind {
	case membership.Leaving:
		return
	case membership.HandOver:
		for _, a := range w.agents {
			w.handle(a, event{kind: evOwnersChanged, changed: true})
		}
		return
	}
	if m.Changed && len(m.Live) > 0 {
		w.limiter.SetLimitAt(w.clock.Now(), w.share())
		w.log.Info().Strs("workers", m.Live).Float64("throttle_per_second", float64(w.share())).Msg("live workers changed")
	}
	ev := event{kind: evOwnersChanged, changed: m.Changed}
	if m.Kind == membership.Unfenced {
		ev = event{kind: evUnfenced}
	}
	for _, a := range w.agents {
		w.handle(a, ev)
	}
}

// Fenced ends every upstream subscription: before the lease runs out and
// another worker may take the agents, this one holds nothing.
func (e *leaseEvents) Fenced(sinceBeat time.Duration, why error) {
	w := (*Worker)(e)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	ended := 0
	for _, a := range w.agents {
		for _, eff := range w.step(a, event{kind: evFenced}) {
			if eff.kind == effUnsubscribe {
				ended++
			}
			w.carryOut(a, eff)
		}
	}
	w.log.Error().Dur("since_last_beat", sinceBeat).Int("ended", ended).AnErr("why", why).
		Msg("cannot reach NATS: fenced, every upstream subscription ended before the lease runs out")
}

// share is this worker's part of the service-wide throttle.
func (w *Worker) share() rate.Limit {
	return rate.Limit(float64(w.cfg.SubscriptionsPerSecond) / float64(len(w.members.Live)))
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
			if err = w.claimer.Release(ctx, key, rev, unchanged); err == nil {
				w.handleKey(key, event{kind: evStaleReleased})
			}
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Str("key", key).Msg("could not release a stale claim")
		}
	})
}

// handOver starts Stop: this worker beats as leaving, so that the others
// take its agents, and ends each upstream subscription before it releases
// the claim, while its heartbeat still runs and its lease holds.
func (w *Worker) handOver(ctx context.Context) {
	w.mu.Lock()
	w.endBase = ctx
	w.mu.Unlock()
	w.lease.HandOver(ctx)
	if w.waitQuiet(ctx) {
		w.log.Info().Msg("agents handed over")
	}
}

// servedBy reports whether this worker answers the inputs of an agent: its
// owner, or while leaving, its owner before (until the inputs stop); the
// caller holds w.mu.
func (w *Worker) servedBy(key string) bool {
	if w.leaving {
		return w.members.ServedBy(key) == w.cfg.ID
	}
	return w.owns(key)
}
