package worker

import (
	"context"
	"errors"
	"time"
	"unique"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

type phase int

const (
	phaseIdle        phase = iota // no upstream subscription
	phaseQueued                   // waiting for the throttle
	phaseSubscribing              // claim and subscribe under way
	phaseActive
	phaseBackoff // waiting to retry after a failure
	phaseFailed  // gave up until a UCC subscribes again
	phaseStopping
	phaseElsewhere // another live worker holds the claim
)

// agent is one agent this worker knows interest in; all fields are guarded by
// Worker.mu.
type agent struct {
	sources.Agent
	pstn     bool
	uccs     []uccInterest // few per agent: a slice costs less than a map
	source   string        // the source of the upstream subscription
	phase    phase
	failures int
	reason   string
	claimRev uint64
	timer    clockwork.Timer // back-off or linger
	// lost records a Lost that came while an attempt was under way.
	lost    bool
	lostErr error
	// attempt numbers subscribe attempts, so a late result of an old one
	// is not taken for the current one.
	attempt int
	// upn is the Teams UPN the upstream subscription was made with.
	upn string
}

// uccInterest is one UCC's interest, kept small: a service holds millions.
// UCC keys and Teams UPNs are interned; a lease lives in Worker.leases.
type uccInterest struct {
	ucc      unique.Handle[string]
	teamsUPN unique.Handle[string] // zero when the UCC gave none
	pstn     bool
	leased   bool
}

// leaseKey names one leased interest.
type leaseKey struct {
	agent string
	ucc   unique.Handle[string]
}

var noUPN unique.Handle[string]

func (u uccInterest) upn() string {
	if u.teamsUPN == noUPN {
		return ""
	}
	return u.teamsUPN.Value()
}

// find returns the index of a UCC's interest, or -1.
func (a *agent) find(ucc unique.Handle[string]) int {
	for i := range a.uccs {
		if a.uccs[i].ucc == ucc {
			return i
		}
	}
	return -1
}

func (a *agent) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

func (a *agent) wanted() bool { return len(a.uccs) > 0 }

// state is what a reply says of the agent's upstream subscription.
func (a *agent) state() schemas.State {
	switch a.phase {
	case phaseActive:
		return schemas.StateActive
	case phaseBackoff:
		return schemas.StateRetrying
	case phaseFailed:
		return schemas.StateFailed
	default:
		return schemas.StatePending
	}
}

// routeOf picks the agent's source from what its UCCs told: any UCC that
// gives a Teams UPN, or says the number is a phone (user=phone), decides.
func (w *Worker) routeOf(a *agent) string {
	return w.cfg.Routes.Route(schemas.AgentURI{URI: a.URI, PSTN: a.pstn}, a.TeamsUPN)
}

func (w *Worker) fed(source string) (sources.Fed, bool) {
	f, ok := w.sources[source].(sources.Fed)
	return f, ok
}

// reconcile moves an agent toward what its interest asks for; every change to
// an agent ends here. An agent is this worker's to subscribe when it is its
// share of the live workers and the worker is not fenced; a fed source's
// agents need no holder. The caller holds w.mu.
func (w *Worker) reconcile(a *agent) {
	route := w.routeOf(a)
	if _, ok := w.sources[route]; !ok {
		route = schemas.SourceNone
	}
	wanted := a.wanted() && route != schemas.SourceNone
	_, fed := w.fed(route)
	mine := fed || (w.owns(a.Key) && !w.fenced)
	switch a.phase {
	case phaseIdle:
		switch {
		case wanted && mine:
			w.start(a, route)
		case wanted:
			a.phase = phaseElsewhere
		case !a.wanted():
			delete(w.agents, a.Key)
		}
	case phaseQueued:
		switch {
		case a.claimRev != 0 && (!wanted || !mine || route != a.source):
			w.stop(a)
		case !wanted || !mine:
			// The dispatcher skips keys whose agent is no longer queued.
			a.phase = phaseIdle
			w.reconcile(a)
		default:
			a.source = route
		}
	case phaseActive:
		switch {
		case route != a.source || !mine || (a.source == schemas.SourceGraph && a.upn != a.TeamsUPN):
			// Moved source or owner, or a UCC corrected the Teams UPN.
			w.stop(a)
		case !wanted && a.timer == nil:
			w.linger(a)
		case wanted && a.timer != nil:
			a.timer.Stop()
			a.timer = nil
		}
	case phaseBackoff, phaseFailed:
		if !wanted || route != a.source || !mine {
			w.stop(a)
		}
	case phaseElsewhere:
		if !a.wanted() {
			delete(w.agents, a.Key)
		}
	}
}

// start begins the upstream subscription: at once for a fed source, which has
// nothing upstream, else through the throttle.
func (w *Worker) start(a *agent, route string) {
	a.source = route
	if f, ok := w.fed(route); ok {
		a.phase = phaseActive
		if !w.owns(a.Key) {
			return // the owner reports what the source knows at first
		}
		agentCopy := a.Agent
		w.goEffect("subscribe "+route, func(ctx context.Context) {
			if err := f.Subscribe(ctx, agentCopy); err != nil {
				w.log.Warn().Err(err).Str("uri", agentCopy.URI).Str("source", route).Msg("fed source subscribe failed")
			}
		})
		return
	}
	w.enqueue(a, false)
}

func (w *Worker) enqueue(a *agent, restore bool) {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.phase = phaseQueued
	w.queue.push(a.Key, restore)
	select {
	case w.queued <- struct{}{}:
	default:
	}
}

func (w *Worker) linger(a *agent) {
	key := a.Key
	a.timer = w.after(w.cfg.Linger, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if a := w.agents[key]; a != nil && a.phase == phaseActive && !a.wanted() {
			a.timer = nil
			w.stop(a)
		}
	})
}

// stop ends the upstream subscription and gives the claim up, then lets
// reconcile decide again (a changed route subscribes anew).
func (w *Worker) stop(a *agent) {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.phase = phaseStopping
	agentCopy, source, rev := a.Agent, a.source, a.claimRev
	w.goEffect("unsubscribe", func(ctx context.Context) {
		// Ending an upstream subscription must finish even while the worker
		// stops: an unfinished one overlaps with the next holder.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
		defer cancel()
		released := w.endUpstream(ctx, agentCopy, source, rev)
		w.mu.Lock()
		defer w.mu.Unlock()
		if a := w.agents[agentCopy.Key]; a != nil && a.phase == phaseStopping {
			a.phase, a.failures = phaseIdle, 0
			if released {
				a.claimRev = 0
			}
			w.reconcile(a)
		}
	})
}

// endTimeout bounds ending one upstream subscription and releasing its claim.
const endTimeout = 15 * time.Second

// endUpstream unsubscribes before it releases the claim: the next holder must
// never overlap with this one upstream. It reports whether the claim is gone.
func (w *Worker) endUpstream(ctx context.Context, a sources.Agent, source string, claimRev uint64) bool {
	if s, ok := w.sources[source]; ok {
		if err := s.Unsubscribe(ctx, a); err != nil {
			w.log.Warn().Err(err).Str("uri", a.URI).Str("source", source).Msg("upstream unsubscribe failed")
		} else if _, fed := s.(sources.Fed); !fed {
			w.log.Info().Str("uri", a.URI).Str("source", source).Msg("upstream unsubscribed")
		}
	}
	if claimRev == 0 {
		return true
	}
	if err := w.release(ctx, a.Key, claimRev); err != nil {
		w.log.Warn().Err(err).Str("uri", a.URI).Msg("could not release claim")
		return false
	}
	return true
}

// release gives up a claim this worker holds. A claim write whose answer was
// lost (a cancelled request), or one still on its way, leaves the revision
// unknown: on a mismatch the claim is read again and deleted if it is still
// this worker's.
func (w *Worker) release(ctx context.Context, key string, rev uint64) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = w.stores.Claims.Delete(ctx, key, rev); err == nil {
			return nil
		}
		c, current, found, getErr := w.stores.Claims.Get(ctx, key)
		switch {
		case getErr != nil:
			return errors.Join(err, getErr)
		case !found || c.Worker != w.cfg.ID:
			return nil
		}
		rev = current
	}
	return err
}

// subscribe is one attempt, started by the dispatcher: claim, then subscribe.
func (w *Worker) subscribe(ctx context.Context, a sources.Agent, source string, claimRev uint64, attempt int) {
	w.mu.Lock()
	if cur := w.agents[a.Key]; cur != nil {
		cur.lost, cur.lostErr = false, nil
	}
	w.mu.Unlock()
	rev, mine, err := w.claim(ctx, a, source, claimRev)
	if err == nil && !mine {
		w.mu.Lock()
		defer w.mu.Unlock()
		if cur := w.agents[a.Key]; cur != nil && cur.phase == phaseSubscribing {
			if _, held := w.claims[a.Key]; held {
				cur.phase = phaseElsewhere
			} else {
				// The holder let go after claim() looked: try again.
				cur.phase = phaseIdle
			}
			w.reconcile(cur)
		}
		return
	}
	if err == nil {
		attempt, cancel := context.WithTimeout(ctx, w.cfg.SubscribeTimeout)
		err = w.callSubscribe(attempt, w.sources[source], a)
		cancel()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.agents[a.Key]
	if cur == nil || cur.phase != phaseSubscribing || cur.attempt != attempt {
		// Nobody waits for this attempt any more (a fence or a shutdown took
		// over): what it made upstream must not outlive it.
		if err == nil && !w.closing {
			w.goEffect("end orphaned attempt", func(ctx context.Context) {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
				defer cancel()
				w.endUpstream(ctx, a, source, rev)
			})
		}
		return
	}
	if cur.claimRev == 0 {
		// A claim write that finished meanwhile has the newer revision.
		cur.claimRev = rev
	}
	if err != nil {
		cur.lost = false
		w.fail(cur, err)
		return
	}
	cur.phase, cur.failures, cur.reason = phaseActive, 0, ""
	w.log.Info().Str("uri", a.URI).Str("source", source).Msg("upstream subscribed")
	w.writeClaim(cur)
	if cur.lost {
		cur.lost = false
		w.lose(cur, cur.lostErr)
		return
	}
	w.reconcile(cur)
}

// callSubscribe turns a panicking source into a failed attempt.
func (w *Worker) callSubscribe(ctx context.Context, s sources.Source, a sources.Agent) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Interface("panic", r).Str("uri", a.URI).Stack().Msg("recovered from panic in source subscribe")
			err = errors.New("source panicked")
		}
	}()
	return s.Subscribe(ctx, a)
}

// claim takes the agent's claim with compare-and-set. A claim this worker
// already holds is kept; one left by a worker that is no longer alive is
// taken over. mine is false when a live worker holds it.
func (w *Worker) claim(ctx context.Context, a sources.Agent, source string, rev uint64) (uint64, bool, error) {
	if rev != 0 {
		return rev, true, nil
	}
	c := schemas.Claim{Worker: w.cfg.ID, Source: source, Since: w.clock.Now().UTC(), State: schemas.StatePending}
	for attempt := 0; attempt < 3; attempt++ {
		rev, created, err := w.stores.Claims.Create(ctx, a.Key, c)
		if err != nil || created {
			return rev, created, err
		}
		held, heldRev, found, err := w.stores.Claims.Get(ctx, a.Key)
		if err != nil {
			return 0, false, err
		}
		if !found {
			continue
		}
		alive := held.Worker != w.cfg.ID
		if alive {
			if alive, err = w.stores.Workers.Alive(ctx, held.Worker); err != nil {
				return 0, false, err
			}
		}
		if alive {
			return 0, false, nil
		}
		// Ours from an earlier run, or a dead worker's: take it over.
		if rev, ok, err := w.stores.Claims.Update(ctx, a.Key, c, heldRev); err != nil || ok {
			if ok {
				w.log.Info().Str("uri", a.URI).Str("from", held.Worker).Msg("took over claim")
			}
			return rev, ok, err
		}
	}
	return 0, false, nil
}

// fail counts a failed attempt: back off, or give up at the per-URI limit.
// The caller holds w.mu.
func (w *Worker) fail(a *agent, err error) {
	// A source that is down itself (no endpoint, no account) is no fault of
	// the agent's: it backs off but does not count toward giving up.
	counted := !errors.Is(err, sources.ErrSourceDown)
	if counted {
		a.failures++
	}
	a.reason = err.Error()
	var permanent *sources.PermanentError
	if errors.As(err, &permanent) || (counted && w.cfg.MaxFailures > 0 && a.failures >= w.cfg.MaxFailures) {
		a.phase = phaseFailed
		w.log.Error().Err(err).Str("uri", a.URI).Str("source", a.source).Int("failures", a.failures).
			Msg("upstream subscribe gave up; retried when a UCC subscribes again")
		w.writeClaim(a)
		w.reconcile(a)
		return
	}
	delay := w.retry.delay(max(a.failures, 1))
	var retryAfter *sources.RetryAfterError
	if errors.As(err, &retryAfter) && retryAfter.After > delay {
		delay = retryAfter.After
	}
	a.phase = phaseBackoff
	key := a.Key
	a.timer = w.after(delay, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if a := w.agents[key]; a != nil && a.phase == phaseBackoff {
			a.timer = nil
			w.log.Info().Str("uri", a.URI).Int("failures", a.failures).Msg("upstream subscribe retry")
			w.enqueue(a, true)
		}
	})
	w.log.Warn().Err(err).Str("uri", a.URI).Str("source", a.source).Int("failures", a.failures).
		Dur("retry_in", delay).Msg("upstream subscribe failed")
	w.writeClaim(a)
	w.reconcile(a)
}

// writeClaim records how the subscription stands in the claim, for replies
// from other workers and for operators. The caller holds w.mu.
func (w *Worker) writeClaim(a *agent) {
	if a.claimRev == 0 {
		return
	}
	c := schemas.Claim{Worker: w.cfg.ID, Source: a.source, Since: w.clock.Now().UTC(),
		State: a.state(), Failures: a.failures, Reason: a.reason}
	key, rev := a.Key, a.claimRev
	w.goEffect("write claim", func(ctx context.Context) {
		newRev, ok, err := w.stores.Claims.Update(ctx, key, c, rev)
		if err != nil || !ok {
			w.log.Warn().Err(err).Str("key", key).Msg("could not update claim")
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if a := w.agents[key]; a != nil && a.claimRev == rev {
			a.claimRev = newRev
		}
	})
}

// Observe writes what a source saw; it is the sources.Sink side of the
// worker. Only the agent's owner writes: a fed source runs on every worker
// (each sees a PSTN call end at its safety limit), and a holder that is
// handing an agent over has nothing more to say about it.
func (w *Worker) Observe(a sources.Agent, p schemas.Presence) {
	w.mu.Lock()
	mine := w.servedBy(a.Key)
	w.mu.Unlock()
	if !mine {
		return
	}
	if _, _, err := w.writePresence(w.ctx, a, p); err != nil {
		w.log.Error().Err(err).Str("uri", a.URI).Msg("could not store presence")
	}
}

// Lost handles an upstream subscription that ended without being asked to.
// Terminated (or nil) asks for a new subscription at once: it also cuts a
// back-off short, as when a source's endpoint came back.
func (w *Worker) Lost(sa sources.Agent, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a := w.agents[sa.Key]; a != nil {
		w.lose(a, err)
	}
}

// lose is Lost with w.mu held.
func (w *Worker) lose(a *agent, err error) {
	again := err == nil || errors.Is(err, sources.ErrTerminated)
	switch {
	case a.phase == phaseSubscribing:
		// The attempt has not reported yet; its result applies this after.
		a.lost, a.lostErr = true, err
	case again && (a.phase == phaseActive || a.phase == phaseBackoff):
		w.log.Info().Str("uri", a.URI).Str("source", a.source).AnErr("reason", err).Msg("upstream subscription ended; subscribing again")
		w.enqueue(a, true)
	case a.phase == phaseActive:
		w.fail(a, err)
	}
}

var _ sources.Sink = (*Worker)(nil)
