package worker

import (
	"context"
	"strings"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

func (w *Worker) watchInterests(changes <-chan schemas.Change[schemas.Interest]) {
	for ch := range changes {
		agentKey, uccKey, ok := strings.Cut(ch.Key, ".")
		if !ok {
			w.log.Warn().Str("key", ch.Key).Msg("presence_interest key is not <agent>.<ucc>; ignored")
			continue
		}
		w.mu.Lock()
		if ch.Deleted {
			w.dropInterest(agentKey, uccKey)
		} else {
			w.addInterest(agentKey, uccKey, ch.Value, ch.Revision)
		}
		w.mu.Unlock()
	}
}

// addInterest records one UCC's interest; the caller holds w.mu.
func (w *Worker) addInterest(agentKey, uccKey string, in schemas.Interest, rev uint64) {
	a := w.agents[agentKey]
	if a == nil {
		a = &agent{Agent: sources.Agent{URI: in.URI, Key: agentKey}, uccs: map[string]*uccInterest{}}
		w.agents[agentKey] = a
	}
	u := a.uccs[uccKey]
	if u == nil {
		u = &uccInterest{}
		a.uccs[uccKey] = u
	} else if u.lease != nil {
		u.lease.Stop()
		u.lease = nil
	}
	u.Interest, u.revision = in, rev
	if in.LeaseS > 0 {
		w.expireLease(u, agentKey, uccKey)
	}
	w.mergeRouteHints(a)
	if a.phase == phaseFailed {
		// A UCC subscribing again is the one thing that retries a failed agent.
		a.failures = 0
		w.enqueue(a, false)
	}
	w.reconcile(a)
}

func (w *Worker) dropInterest(agentKey, uccKey string) {
	a := w.agents[agentKey]
	if a == nil {
		return
	}
	if u := a.uccs[uccKey]; u != nil && u.lease != nil {
		u.lease.Stop()
	}
	delete(a.uccs, uccKey)
	w.mergeRouteHints(a)
	w.reconcile(a)
}

// mergeRouteHints takes the Teams UPN and the phone flag from any UCC that
// gave them, so that the route does not depend on which UCC came first.
func (w *Worker) mergeRouteHints(a *agent) {
	a.TeamsUPN, a.pstn = "", false
	for _, u := range a.uccs {
		if a.TeamsUPN == "" {
			a.TeamsUPN = u.TeamsUPN
		}
		a.pstn = a.pstn || u.PSTN
	}
}

// expireLease ends an interest whose UCC did not subscribe again in time. The
// delete names the revision, so a renewal that raced it survives.
func (w *Worker) expireLease(u *uccInterest, agentKey, uccKey string) {
	due := u.At.Add(seconds(u.LeaseS))
	rev, ucc := u.revision, u.UCC
	u.lease = w.after(due.Sub(w.clock.Now()), func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.goEffect("lease expiry", func(ctx context.Context) {
			if err := w.stores.Interest.Delete(ctx, agentKey, uccKey, rev); err != nil {
				w.log.Debug().Err(err).Str("ucc", ucc).Msg("lease expiry lost to a renewal")
				return
			}
			w.log.Info().Str("ucc", ucc).Str("key", agentKey).Msg("interest lease expired")
		})
	})
}

func (w *Worker) watchClaims(changes <-chan schemas.Change[schemas.Claim]) {
	for ch := range changes {
		w.mu.Lock()
		if ch.Deleted {
			delete(w.claims, ch.Key)
			if a := w.agents[ch.Key]; a != nil && a.phase == phaseElsewhere {
				// The holder let go: this worker may take the agent.
				a.phase = phaseIdle
				w.reconcile(a)
			}
		} else {
			w.claims[ch.Key] = ch.Value
		}
		w.mu.Unlock()
	}
}
