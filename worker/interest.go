package worker

import (
	"context"
	"encoding/base64"
	"strings"
	"time"
	"unique"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

func (w *Worker) interestChanged(ch schemas.Change[schemas.Interest]) {
	agentKey, uccKey, ok := strings.Cut(ch.Key, ".")
	if !ok {
		w.log.Warn().Str("key", ch.Key).Msg("presence_interest key is not <agent>.<ucc>; ignored")
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.rows.mark(agentKey)
	if ch.Deleted {
		w.dropInterest(agentKey, uccKey)
	} else {
		w.addInterest(agentKey, uccKey, ch.Value, ch.Revision)
	}
}

// addInterest records one UCC's interest; the caller holds w.mu.
func (w *Worker) addInterest(agentKey, uccKey string, in schemas.Interest, rev uint64) {
	a := w.agents[agentKey]
	if a == nil {
		// The key is cut from a message subject: a copy lets the message go.
		agentKey = strings.Clone(agentKey)
		a = &agent{Agent: sources.Agent{URI: in.URI, Key: agentKey}}
		w.agents[agentKey] = a
	}
	u := uccInterest{ucc: unique.Make(uccKey), pstn: in.PSTN, leased: in.LeaseS > 0}
	if in.TeamsUPN != "" {
		u.teamsUPN = unique.Make(in.TeamsUPN)
	}
	if i := a.find(u.ucc); i < 0 {
		a.uccs = append(a.uccs, u)
	} else {
		a.uccs[i] = u
	}
	lk := leaseKey{agent: a.Key, ucc: u.ucc}
	if old, ok := w.leases[lk]; ok {
		old.Stop()
		delete(w.leases, lk)
	}
	if u.leased {
		if t := w.expireLease(in.At.Add(seconds(in.LeaseS)), a.Key, uccKey, rev); t != nil {
			w.leases[lk] = t
		}
	}
	w.mergeRouteHints(a)
	w.handle(a, event{kind: evInterestAdded})
}

func (w *Worker) dropInterest(agentKey, uccKey string) {
	a := w.agents[agentKey]
	if a == nil {
		return
	}
	ucc := unique.Make(uccKey)
	i := a.find(ucc)
	if i < 0 {
		return
	}
	lk := leaseKey{agent: a.Key, ucc: ucc}
	if lease, ok := w.leases[lk]; ok {
		lease.Stop()
		delete(w.leases, lk)
	}
	last := len(a.uccs) - 1
	a.uccs[i] = a.uccs[last]
	a.uccs[last] = uccInterest{}
	a.uccs = a.uccs[:last]
	w.mergeRouteHints(a)
	w.handle(a, event{kind: evInterestRemoved})
}

// mergeRouteHints takes the Teams UPN and the phone flag from any UCC that
// gave them, so that the route does not depend on which UCC came first.
func (w *Worker) mergeRouteHints(a *agent) {
	a.TeamsUPN, a.pstn, a.route = "", false, ""
	for _, u := range a.uccs {
		if a.TeamsUPN == "" {
			a.TeamsUPN = u.upn()
		}
		a.pstn = a.pstn || u.pstn
	}
}

// expireLease ends an interest whose UCC did not subscribe again in time.
func (w *Worker) expireLease(due time.Time, agentKey, uccKey string, rev uint64) clockwork.Timer {
	return w.after(due.Sub(w.clock.Now()), func() {
		w.handleKey(agentKey, event{kind: evLeaseExpired, lease: lease{ucc: uccKey, rev: rev}})
	})
}

// deleteInterest deletes an expired interest. The delete names the
// revision, so a renewal that raced it survives; a delete that failed is
// tried again. The caller holds w.mu.
func (w *Worker) deleteInterest(agentKey string, l lease) {
	w.goEffect("lease expiry", func(ctx context.Context) {
		deleted, err := w.stores.Interest.Delete(ctx, agentKey, l.ucc, l.rev)
		switch {
		case err != nil:
			w.log.Warn().Err(err).Str("ucc", uccName(l.ucc)).Str("key", agentKey).Msg("interest lease expiry failed; trying again")
			w.mu.Lock()
			defer w.mu.Unlock()
			// Not kept in w.leases: a renewal meanwhile owns that slot, and
			// this retry's delete names the old revision, so it cannot
			// harm the renewal.
			w.expireLease(w.clock.Now().Add(leaseRetry), agentKey, l.ucc, l.rev)
		case deleted:
			w.log.Info().Str("ucc", uccName(l.ucc)).Str("key", agentKey).Msg("interest lease expired")
		}
	})
}

// leaseRetry spaces the attempts to end an expired lease.
const leaseRetry = 5 * time.Second

// uccName turns a UCC key back into the UCC's id, for logs.
func uccName(uccKey string) string {
	name, err := base64.RawURLEncoding.DecodeString(uccKey)
	if err != nil {
		return uccKey
	}
	return string(name)
}

func (w *Worker) claimChanged(ch schemas.Change[schemas.Claim]) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.rows.mark(ch.Key)
	if !ch.Deleted {
		w.claims[ch.Key] = ch.Value
		return
	}
	delete(w.claims, ch.Key)
	if a := w.agents[ch.Key]; a != nil {
		w.handle(a, event{kind: evClaimReleased})
	}
}
