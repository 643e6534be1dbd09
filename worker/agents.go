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

// agent is one agent this worker knows interest in; all fields are guarded by
// Worker.mu.
type agent struct {
	sources.Agent
	pstn bool
	uccs []uccInterest // few per agent: a slice costs less than a map
	life lifecycle
	// timer runs the lifecycle's timer; timerRun tells a firing of the
	// current one from a late firing of one stopped since.
	timer    clockwork.Timer
	timerRun int
	// claimWriting is set while a claim write is under way; nextClaim is
	// the newest state to write after it, at the revision it leaves: two
	// writes at one revision would fail the second.
	claimWriting bool
	nextClaim    *effect
	// retryAt is when the running back-off ends; failedAt when the last
	// attempt failed: for explain.
	retryAt, failedAt time.Time
	// route is the source routeOf chose, empty until it is asked or after
	// the route hints changed: matching the sources' rules (the attendant
	// patterns) for every agent on every scrape or status cost most of it.
	route string
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
	a.timerRun++
}

func (a *agent) wanted() bool { return len(a.uccs) > 0 }

// sourceOf is the source that serves an agent a source reported on; the
// caller holds w.mu.
func (w *Worker) sourceOf(a sources.Agent) sources.Source {
	if known := w.agents[a.Key]; known != nil {
		return w.sources[w.routeOf(known)]
	}
	u, err := schemas.ParseURI(a.URI)
	if err != nil {
		return nil
	}
	return w.sources[w.route(u, a.TeamsUPN)]
}

// routeOf picks the agent's source from what its UCCs told: any UCC that
// gives a Teams UPN, or says the number is a phone (user=phone), decides.
func (w *Worker) routeOf(a *agent) string {
	if a.route == "" {
		a.route = w.route(schemas.AgentURI{URI: a.URI, PSTN: a.pstn}, a.TeamsUPN)
	}
	return a.route
}

// route names the first enabled source, in the registry's order, that
// serves the agent, or schemas.SourceNone.
func (w *Worker) route(uri schemas.AgentURI, teamsUPN string) string {
	for _, spec := range sources.Registry() {
		if s, on := w.sources[spec.Name]; on && s.Serves(uri, teamsUPN) {
			return spec.Name
		}
	}
	return schemas.SourceNone
}

func (w *Worker) fed(source string) (sources.Fed, bool) {
	f, ok := w.sources[source].(sources.Fed)
	return f, ok
}

// view is what the machine needs to know of the agent beside its
// lifecycle; the caller holds w.mu.
func (w *Worker) view(a *agent) view {
	claim, held := w.claims[a.Key]
	return view{wanted: a.wanted(), route: w.routeOf(a), owns: w.owns(a.Key), fenced: w.lease.Fenced(), upn: a.TeamsUPN,
		claimHeld: held, claimMine: held && claim.Worker == w.cfg.ID, holderAlive: held && w.members.Alive[claim.Worker]}
}

// step runs one event through the agent's state machine and returns the
// effects to carry out; the caller holds w.mu.
func (w *Worker) step(a *agent, e event) []effect {
	life, effects := w.machine.next(a.life, w.view(a), e)
	if life.phase != a.life.phase {
		w.rows.mark(a.Key)
	}
	a.life = life
	return effects
}

// handle runs one event through the agent's state machine and carries its
// effects out, in order; the caller holds w.mu.
func (w *Worker) handle(a *agent, e event) {
	for _, eff := range w.step(a, e) {
		w.carryOut(a, eff)
	}
}

// handleKey is handle for the agent of a key, if this worker still knows it.
func (w *Worker) handleKey(key string, e event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a := w.agents[key]; a != nil {
		w.handle(a, e)
	}
}

// carryOut does one effect; the caller holds w.mu. Work that waits on NATS
// or a source runs as an effect goroutine, and what it learns comes back as
// the next event.
func (w *Worker) carryOut(a *agent, eff effect) {
	key, sa := a.Key, a.Agent
	log := w.log.With().Str("uri", a.URI).Str("source", eff.source).Logger()
	switch eff.kind {
	case effQueue:
		w.queue.push(key, eff.restore)
		select {
		case w.queued <- struct{}{}:
		default:
		}
	case effAttempt:
		w.goEffect("subscribe", func(context.Context) {
			w.subscribe(w.attempts, sa, eff.source, eff.claimRev, eff.attempt, false)
		})
	case effResume:
		w.goEffect("resume", func(context.Context) {
			w.subscribe(w.attempts, sa, eff.source, eff.claimRev, eff.attempt, true)
		})
	case effEnd:
		base, unchanged := w.endBase, w.unchanged(a)
		w.goEffect("unsubscribe", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			released := w.endUpstream(end, sa, eff.source, eff.claimRev, eff.keep, unchanged)
			w.handleKey(key, event{kind: evEnded, released: released})
		})
	case effEndOrphan:
		base := w.endBase
		w.goEffect("end orphaned attempt", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			// Its own claim only: whatever this worker wrote since is not
			// the orphan's to delete.
			w.endUpstream(end, sa, eff.source, eff.claimRev, eff.keep, never)
		})
	case effUnsubscribe:
		base := w.endBase
		w.goEffect("fence", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			if err := w.letGo(end, sa, eff.source, eff.keep); err != nil {
				log.Warn().Err(err).Msg("fence: upstream unsubscribe failed")
			}
			w.handleKey(key, event{kind: evEnded})
		})
	case effFedSubscribe:
		f, _ := w.fed(eff.source)
		w.goEffect("subscribe "+eff.source, func(ctx context.Context) {
			if err := f.Subscribe(ctx, sa); err != nil {
				log.Warn().Err(err).Msg("fed source subscribe failed")
			}
		})
	case effArmBackoff:
		a.retryAt = w.clock.Now().Add(eff.delay)
		w.arm(a, eff.delay, evBackoffOver)
	case effArmLinger:
		w.arm(a, eff.delay, evLingerOver)
	case effStopTimer:
		a.stopTimer()
	case effWriteClaim:
		w.writeClaim(a, eff)
	case effReleaseStale:
		w.releaseStale(a)
	case effReadLive:
		w.lease.Poke()
	case effDeleteInterest:
		w.deleteInterest(key, eff.lease)
	case effForget:
		a.stopTimer()
		delete(w.agents, key)
	case effLogSubscribed:
		w.obs.Subscribe(eff.source, SubscribeOK)
		log.Info().Msg("upstream subscribed")
	case effLogResumed:
		w.obs.Subscribe(eff.source, SubscribeResumed)
		log.Info().Msg("upstream subscription resumed")
	case effLogResumeFailed:
		if errors.Is(eff.err, sources.ErrNothingToResume) {
			log.Debug().Err(eff.err).Msg("nothing to resume; subscribing")
			return
		}
		log.Info().Err(eff.err).Msg("upstream resume failed; subscribing anew")
	case effLogFailed:
		a.failedAt = w.clock.Now()
		if w.leaving && errors.Is(eff.err, context.Canceled) {
			log.Debug().Msg("upstream subscribe cancelled by the shutdown")
			return
		}
		w.obs.Subscribe(eff.source, SubscribeFailed)
		log.Warn().Err(eff.err).Int("failures", a.life.failures).Dur("retry_in", eff.delay).Msg("upstream subscribe failed")
	case effLogGaveUp:
		a.failedAt = w.clock.Now()
		w.obs.Subscribe(eff.source, SubscribeGaveUp)
		log.Error().Err(eff.err).Int("failures", a.life.failures).Msg("upstream subscribe gave up; retried when a UCC subscribes again")
	case effLogRetry:
		w.obs.Subscribe(eff.source, SubscribeRetry)
		log.Info().Int("failures", a.life.failures).Msg("upstream subscribe retry")
	case effLogResubscribe:
		log.Info().AnErr("reason", eff.err).Msg("upstream subscription ended; subscribing again")
	}
}

// arm starts the agent's timer, which sends e when it fires.
func (w *Worker) arm(a *agent, d time.Duration, e eventKind) {
	a.stopTimer()
	key, run := a.Key, a.timerRun
	a.timer = w.after(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if a := w.agents[key]; a != nil && a.timerRun == run {
			a.timer = nil
			w.handle(a, event{kind: e})
		}
	})
}

// endTimeout bounds ending one upstream subscription and releasing its claim.
const endTimeout = 15 * time.Second

// endUpstream unsubscribes (or detaches: keep) before it releases the
// claim: the next holder must never overlap with this one upstream. It
// reports whether the claim is gone; unchanged is Claims.Release's.
func (w *Worker) endUpstream(ctx context.Context, a sources.Agent, source string, claimRev uint64, keep bool, unchanged func() bool) bool {
	if s, ok := w.sources[source]; ok {
		_, fed := s.(sources.Fed)
		switch err := w.letGo(ctx, a, source, keep); {
		case err != nil:
			w.log.Warn().Err(err).Str("uri", a.URI).Str("source", source).Msg("upstream unsubscribe failed")
		case keep:
			w.log.Debug().Str("uri", a.URI).Str("source", source).Msg("upstream subscription kept for the next holder")
		case !fed:
			w.log.Info().Str("uri", a.URI).Str("source", source).Msg("upstream unsubscribed")
		}
	}
	if claimRev == 0 {
		return true
	}
	if err := w.claimer.Release(ctx, a.Key, claimRev, unchanged); err != nil {
		w.log.Warn().Err(err).Str("uri", a.URI).Msg("could not release claim")
		return false
	}
	return true
}

// letGo ends the agent's upstream subscription, or with keep detaches it:
// it lives on upstream for the next holder to resume, and this worker
// sends nothing more in it.
func (w *Worker) letGo(ctx context.Context, a sources.Agent, source string, keep bool) error {
	s := w.sources[source]
	if r, ok := s.(sources.Resumer); ok && keep {
		return r.Detach(ctx, a)
	}
	return s.Unsubscribe(ctx, a)
}

// release gives up a claim this worker holds at rev, unless unchanged says
// the agent moved on (membership.Claims.Release).
func (w *Worker) release(ctx context.Context, key string, rev uint64, unchanged func() bool) error {
	return w.claimer.Release(ctx, key, rev, unchanged)
}

// unchanged returns whether the agent's lifecycle is still in the phase it
// is in now, with no attempt begun since; the caller holds w.mu. A
// forgotten agent has no attempt either.
func (w *Worker) unchanged(a *agent) func() bool {
	key, p, n := a.Key, a.life.phase, a.life.attempt
	return func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		cur := w.agents[key]
		return cur == nil || (cur == a && cur.life.phase == p && cur.life.attempt == n)
	}
}

// always and never are Claims.Release's unchanged for the claims Stop releases
// once no effect runs, and for an orphan, whose claim is its own revision.
func always() bool { return true }
func never() bool  { return false }

// subscribe is one attempt: claim, then subscribe (started by the
// dispatcher) or resume (at the resume rate). A subscription is continued
// only under the agent's claim.
func (w *Worker) subscribe(ctx context.Context, a sources.Agent, source string, claimRev uint64, attempt int, resume bool) {
	var err error
	if resume {
		// Resumes create nothing at the server: their own rate, not the
		// throttle's, only spreads them out.
		err = w.resumeLimiter.Wait(ctx)
	}
	var rev uint64
	if err == nil {
		var mine bool
		rev, mine, err = w.claim(ctx, a, source, claimRev)
		if err == nil && !mine {
			w.handleKey(a.Key, event{kind: evClaimRefused, attempt: attempt})
			return
		}
	}
	if err == nil {
		attemptCtx, cancel := context.WithTimeout(ctx, w.cfg.SubscribeTimeout)
		err = w.callSubscribe(attemptCtx, w.sources[source], a, resume)
		cancel()
	}
	done := event{kind: evAttemptDone, attempt: attempt, source: source, claimRev: rev, err: err}
	if resume {
		done.kind = evResumed
		if err != nil {
			done.kind = evResumeFailed
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.agents[a.Key]
	if cur == nil {
		// Forgotten meanwhile: an agent that waits for nothing, so the
		// machine ends what the attempt made.
		cur = &agent{Agent: a}
	}
	w.handle(cur, done)
}

// callSubscribe subscribes, or resumes, and turns a panicking source into
// a failed attempt.
func (w *Worker) callSubscribe(ctx context.Context, s sources.Source, a sources.Agent, resume bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Interface("panic", r).Str("uri", a.URI).Stack().Msg("recovered from panic in source subscribe")
			err = errors.New("source panicked")
		}
	}()
	if resume {
		return s.(sources.Resumer).Resume(ctx, a)
	}
	return s.Subscribe(ctx, a)
}

// claim takes the agent's claim with compare-and-set. A claim this worker
// already holds is kept; one left by a worker that is no longer alive is
// taken over. mine is false when a live worker holds it.
func (w *Worker) claim(ctx context.Context, a sources.Agent, source string, rev uint64) (uint64, bool, error) {
	if rev != 0 {
		return rev, true, nil
	}
	c := schemas.Claim{Source: source, Since: w.clock.Now().UTC(), State: schemas.StatePending}
	rev, from, err := w.claimer.Take(ctx, a.Key, c)
	if err == nil && rev != 0 && from != "" {
		w.log.Info().Str("uri", a.URI).Str("from", from).Msg("took over claim")
	}
	return rev, rev != 0, err
}

// writeClaim records how the subscription stands in the claim, for replies
// from other workers and for operators, one write at a time per agent. The
// caller holds w.mu.
func (w *Worker) writeClaim(a *agent, eff effect) {
	if a.claimWriting {
		a.nextClaim = &eff
		return
	}
	a.claimWriting = true
	key := a.Key
	c := schemas.Claim{Worker: w.cfg.ID, Source: eff.source, Since: w.clock.Now().UTC(),
		State: eff.claim.state, Failures: eff.claim.failures, Reason: eff.claim.reason}
	w.goEffect("write claim", func(ctx context.Context) {
		newRev, ok, err := w.stores.Claims.Update(ctx, key, c, eff.claimRev)
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			w.log.Warn().Err(err).Str("key", key).Msg("could not update claim")
		case err == nil && !ok:
			// Released or taken meanwhile: the claim has moved on.
			w.log.Debug().Str("key", key).Msg("claim changed before its update")
		}
		if w.agents[key] != a {
			return
		}
		a.claimWriting = false
		if err == nil && ok {
			w.handle(a, event{kind: evClaimWritten, claimRev: eff.claimRev, newRev: newRev})
		}
		next := a.nextClaim
		a.nextClaim = nil
		if next != nil && a.life.claimRev != 0 {
			next.claimRev = a.life.claimRev
			w.writeClaim(a, *next)
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
	waiting := w.unstored[a.Key] != nil
	if mine && waiting {
		// An older observation waits to be stored: this one goes after it.
		w.unstored[a.Key].presence = p
	}
	w.mu.Unlock()
	if !mine || waiting {
		return
	}
	if _, _, err := w.store(w.ctx, a, p); err != nil {
		w.log.Warn().Err(err).Str("uri", a.URI).Msg("could not store presence; trying again")
		w.mu.Lock()
		defer w.mu.Unlock()
		w.unstored[a.Key] = &observation{agent: a, presence: p}
		w.storeLater(a.Key, firstStoreRetry)
	}
}

// observation is a presence a source saw that is not stored yet.
type observation struct {
	agent    sources.Agent
	presence schemas.Presence
}

// Retries of an observation NATS did not store (a stream electing a leader,
// a reconnect): the newest one of the agent is stored, not lost.
const (
	firstStoreRetry = 250 * time.Millisecond
	maxStoreRetry   = 5 * time.Second
)

// storeLater tries again to store the agent's newest unstored observation;
// the caller holds w.mu.
func (w *Worker) storeLater(key string, delay time.Duration) {
	w.after(delay, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		obs := w.unstored[key]
		if obs == nil || !w.servedBy(key) {
			// Another worker serves the agent now: its source reports anew.
			delete(w.unstored, key)
			return
		}
		agent, p := obs.agent, obs.presence
		w.goEffect("store presence", func(ctx context.Context) {
			_, _, err := w.store(ctx, agent, p)
			w.mu.Lock()
			defer w.mu.Unlock()
			switch {
			case err != nil:
				w.storeLater(key, min(max(2*delay, firstStoreRetry), maxStoreRetry))
			case w.unstored[key] == obs && obs.presence == p:
				delete(w.unstored, key)
				w.log.Info().Str("uri", agent.URI).Msg("presence stored after a retry")
			default:
				// A newer observation came meanwhile: store it too.
				w.storeLater(key, 0)
			}
		})
	})
}

// Lost handles an upstream subscription that ended without being asked to.
// Terminated (or nil) asks for a new subscription at once: it also cuts a
// back-off short, as when a source's endpoint came back.
func (w *Worker) Lost(sa sources.Agent, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.agents[sa.Key]
	if a == nil {
		return
	}
	// Only a subscription that was up is lost: a source also calls back
	// agents that wait for it to come back.
	if a.life.phase == phaseActive || a.life.attempting() {
		w.obs.Lost(a.life.source, lostReason(err))
	}
	w.handle(a, event{kind: evLost, err: err})
}

var _ sources.Sink = (*Worker)(nil)
