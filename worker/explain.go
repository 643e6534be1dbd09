package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

const (
	// peerTimeout bounds asking the holder of an agent's claim: an
	// operator waits for the answer, and a holder that is gone never gives one.
	peerTimeout = 2 * time.Second
	// historyTimeout bounds reading the agent's last changes.
	historyTimeout = 5 * time.Second
)

// Explain tells an operator what the service holds for one agent and why
// (docs/contract.md, Explain): its route and the rule that chose it, the
// UCCs' interests, the claim, the upstream subscription as its holder has
// it (asked on presence.worker.<id>.upstream when another worker holds
// it), the presence and its last changes. An agent nobody subscribes is
// explained too; only a URI that cannot be read is refused.
func (w *Worker) Explain(ctx context.Context, req schemas.ExplainRequest) (schemas.Explanation, error) {
	u, err := schemas.ParseURI(req.URI)
	if err != nil {
		return schemas.Explanation{}, badRequest("%v", err)
	}
	key := u.Key()
	ex := schemas.Explanation{URI: u.URI, Key: key, Subject: schemas.EventSubject(key), Worker: w.cfg.ID,
		Interests: []schemas.Interest{}, Changes: []schemas.HistoryEntry{}}
	var notes []string

	w.mu.Lock()
	a := w.agents[key]
	upn := ""
	if a != nil {
		u.PSTN = u.PSTN || a.pstn
		upn = a.TeamsUPN
	}
	ex.Route = w.routeRule(u, upn)
	if c, held := w.claims[key]; held {
		ex.Claim = &c
	}
	owner := w.members.Owner(key)
	w.mu.Unlock()
	if ev, ok := w.presence.get(key); ok {
		p := ev.Presence
		ex.Presence, ex.Seq = &p, ev.Seq
	}

	if ex.Interests, err = w.stores.Interest.Of(ctx, key); err != nil {
		return schemas.Explanation{}, fmt.Errorf("read the interests of %s: %w", u.URI, err)
	}
	if len(ex.Interests) == 0 {
		notes = append(notes, "no UCC subscribes the agent")
	}

	_, fed := w.fed(ex.Route.Source)
	answered := false // the holder told what it holds
	switch {
	case fed:
		notes = append(notes, fmt.Sprintf("fed by inputs on %s%s.%s, which worker %s (the agent's owner) applies: no upstream subscription",
			strings.TrimSuffix(schemas.InputWildcard, ">"), ex.Route.Source, key, owner))
	case ex.Claim == nil:
		if len(ex.Interests) > 0 && ex.Route.Source != schemas.SourceNone {
			notes = append(notes, fmt.Sprintf("no claim: worker %s (the agent's owner) has not taken it yet", owner))
		}
	case ex.Claim.Worker == w.cfg.ID:
		ex.Upstream, answered = w.Upstream(key), true
	case w.stores.Peers == nil:
		notes = append(notes, fmt.Sprintf("the upstream subscription is held by worker %s, which this worker cannot ask", ex.Claim.Worker))
	default:
		ask, cancel := context.WithTimeout(ctx, peerTimeout)
		ex.Upstream, err = w.stores.Peers.Upstream(ask, ex.Claim.Worker, key)
		cancel()
		answered = err == nil
		if err != nil {
			notes = append(notes, fmt.Sprintf("owner %s did not answer: %v; the claim above is what it last wrote", ex.Claim.Worker, err))
		}
	}
	if answered && ex.Upstream == nil {
		notes = append(notes, fmt.Sprintf("worker %s holds the claim but no subscription: it is being made or ended", ex.Claim.Worker))
	}
	if ex.Presence == nil {
		notes = append(notes, "no presence known yet")
	}

	if w.stores.History == nil {
		notes = append(notes, "no history: the changes are not kept")
	} else {
		read, cancel := context.WithTimeout(ctx, historyTimeout)
		changes, err := w.stores.History.Last(read, u.URI, schemas.ExplainChanges)
		cancel()
		switch {
		case err != nil:
			notes = append(notes, "the changes could not be read: "+err.Error())
		case changes != nil:
			ex.Changes = changes
		}
	}
	ex.Notes = notes
	return ex, nil
}

// routeRule names the agent's source, as route does, and the rule that chose
// it in words; the caller holds w.mu.
func (w *Worker) routeRule(u schemas.AgentURI, teamsUPN string) schemas.Route {
	var on []string
	for _, spec := range sources.Registry() {
		s, enabled := w.sources[spec.Name]
		if !enabled {
			continue
		}
		on = append(on, spec.Name)
		if !s.Serves(u, teamsUPN) {
			continue
		}
		rule := spec.Name + " serves it"
		if e, ok := s.(sources.Explainer); ok {
			rule = spec.Name + ": " + e.Why(u, teamsUPN)
		}
		return schemas.Route{Source: spec.Name, Rule: rule}
	}
	rule := "no source is enabled"
	if len(on) > 0 {
		rule = "none of the enabled sources (" + strings.Join(on, ", ") + ") serves it"
	}
	return schemas.Route{Source: schemas.SourceNone, Rule: rule}
}

// Upstream describes the agent's upstream subscription this worker holds,
// with what its source keeps of it; nil when it holds none.
func (w *Worker) Upstream(key string) *schemas.Upstream {
	w.mu.Lock()
	a := w.agents[key]
	if a == nil || slices.Contains([]phase{phaseIdle, phaseElsewhere}, a.life.phase) {
		w.mu.Unlock()
		return nil
	}
	source := a.life.source
	if source == "" {
		source = w.routeOf(a)
	}
	up := &schemas.Upstream{Worker: w.cfg.ID, Source: source, State: a.life.state(), Failures: a.life.failures,
		LastError: a.life.reason}
	if a.life.phase == phaseBackoff && !a.retryAt.IsZero() {
		at := a.retryAt.UTC()
		up.NextRetry = &at
	}
	if a.life.reason != "" && !a.failedAt.IsZero() {
		at := a.failedAt.UTC()
		up.LastErrorAt = &at
	}
	sa := a.Agent
	s := w.sources[source]
	w.mu.Unlock()
	if d, ok := s.(sources.Describer); ok {
		d.Describe(sa, up)
	}
	return up
}
