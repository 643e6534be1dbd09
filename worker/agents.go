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

// routeOf picks the agent's source from what its UCCs told: any UCC that
// gives a Teams UPN, or says the number is a phone (user=phone), decides.
func (w *Worker) routeOf(a *agent) string {
	return w.route(schemas.AgentURI{URI: a.URI, PSTN: a.pstn}, a.TeamsUPN)
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
	return view{wanted: a.wanted(), route: w.routeOf(a), owns: w.owns(a.Key), fenced: w.fenced, upn: a.TeamsUPN,
		claimHeld: held, claimMine: held && claim.Worker == w.cfg.ID, holderAlive: held && w.alive[claim.Worker]}
}

// step runs one event through the agent's state machine and returns the
// effects to carry out; the caller holds w.mu.
func (w *Worker) step(a *agent, e event) []effect {
	life, effects := w.machine.next(a.life, w.view(a), e)
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
			w.subscribe(w.attempts, sa, eff.source, eff.claimRev, eff.attempt)
		})
	case effEnd:
		base := w.endBase
		w.goEffect("unsubscribe", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			released := w.endUpstream(end, sa, eff.source, eff.claimRev)
			w.handleKey(key, event{kind: evEnded, released: released})
		})
	case effEndOrphan:
		base := w.endBase
		w.goEffect("end orphaned attempt", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			w.endUpstream(end, sa, eff.source, eff.claimRev)
		})
	case effUnsubscribe:
		src, base := w.sources[eff.source], w.endBase
		w.goEffect("fence", func(context.Context) {
			end, cancel := context.WithTimeout(base, endTimeout)
			defer cancel()
			if err := src.Unsubscribe(end, sa); err != nil {
				log.Warn().Err(err).Msg("fence: upstream unsubscribe failed")
			}
		})
	case effFedSubscribe:
		f, _ := w.fed(eff.source)
		w.goEffect("subscribe "+eff.source, func(ctx context.Context) {
			if err := f.Subscribe(ctx, sa); err != nil {
				log.Warn().Err(err).Msg("fed source subscribe failed")
			}
		})
	case effArmBackoff:
		w.arm(a, eff.delay, evBackoffOver)
	case effArmLinger:
		w.arm(a, eff.delay, evLingerOver)
	case effStopTimer:
		a.stopTimer()
	case effWriteClaim:
		w.writeClaim(key, eff)
	case effReleaseStale:
		w.releaseStale(key)
	case effReadLive:
		select {
		case w.liveChanged <- struct{}{}:
		default:
		}
	case effDeleteInterest:
		w.deleteInterest(key, eff.lease)
	case effForget:
		a.stopTimer()
		delete(w.agents, key)
	case effLogSubscribed:
		log.Info().Msg("upstream subscribed")
	case effLogFailed:
		if w.leaving && errors.Is(eff.err, context.Canceled) {
			log.Debug().Msg("upstream subscribe cancelled by the shutdown")
			return
		}
		log.Warn().Err(eff.err).Int("failures", a.life.failures).Dur("retry_in", eff.delay).Msg("upstream subscribe failed")
	case effLogGaveUp:
		log.Error().Err(eff.err).Int("failures", a.life.failures).Msg("upstream subscribe gave up; retried when a UCC subscribes again")
	case effLogRetry:
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
	rev, mine, err := w.claim(ctx, a, source, claimRev)
	if err == nil && !mine {
		w.handleKey(a.Key, event{kind: evClaimRefused, attempt: attempt})
		return
	}
	if err == nil {
		attemptCtx, cancel := context.WithTimeout(ctx, w.cfg.SubscribeTimeout)
		err = w.callSubscribe(attemptCtx, w.sources[source], a)
		cancel()
	}
	done := event{kind: evAttemptDone, attempt: attempt, source: source, claimRev: rev, err: err}
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

// writeClaim records how the subscription stands in the claim, for replies
// from other workers and for operators. The caller holds w.mu.
func (w *Worker) writeClaim(key string, eff effect) {
	c := schemas.Claim{Worker: w.cfg.ID, Source: eff.source, Since: w.clock.Now().UTC(),
		State: eff.claim.state, Failures: eff.claim.failures, Reason: eff.claim.reason}
	w.goEffect("write claim", func(ctx context.Context) {
		newRev, ok, err := w.stores.Claims.Update(ctx, key, c, eff.claimRev)
		if err != nil || !ok {
			if !errors.Is(err, context.Canceled) {
				w.log.Warn().Err(err).Str("key", key).Msg("could not update claim")
			}
			return
		}
		w.handleKey(key, event{kind: evClaimWritten, claimRev: eff.claimRev, newRev: newRev})
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
	if _, _, err := w.writePresence(w.ctx, a, &p, 0); err != nil {
		w.log.Error().Err(err).Str("uri", a.URI).Msg("could not store presence")
	}
}

// Lost handles an upstream subscription that ended without being asked to.
// Terminated (or nil) asks for a new subscription at once: it also cuts a
// back-off short, as when a source's endpoint came back.
func (w *Worker) Lost(sa sources.Agent, err error) {
	w.handleKey(sa.Key, event{kind: evLost, err: err})
}

var _ sources.Sink = (*Worker)(nil)
