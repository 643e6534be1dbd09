package worker

import (
	"errors"
	"slices"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// This file is the agent lifecycle as one state machine. A transition is
// pure: machine.next takes the agent's lifecycle, what the worker sees of the
// agent now (a view) and one event, and returns the new lifecycle and the
// effects the Worker must carry out, in order. Nothing else writes a phase.

type phase int

const (
	phaseIdle        phase = iota // no upstream subscription
	phaseQueued                   // waiting for the throttle
	phaseSubscribing              // claim and subscribe under way
	phaseActive
	phaseBackoff   // waiting to retry after a failure
	phaseFailed    // gave up until a UCC subscribes again
	phaseStopping  // ending the upstream subscription, then releasing the claim
	phaseElsewhere // another live worker holds the claim
	phaseResuming  // claim and resume (continue the subscription an earlier holder left) under way
)

var phaseNames = [...]string{"idle", "queued", "subscribing", "active", "backoff", "failed", "stopping", "elsewhere", "resuming"}

func (p phase) String() string { return phaseNames[p] }

// timerKind is the one agent timer that may run.
type timerKind int

const (
	noTimer timerKind = iota
	backoffTimer
	lingerTimer
)

// lifecycle is where one agent's upstream subscription stands.
type lifecycle struct {
	phase    phase
	source   string // the source of the upstream subscription
	failures int    // consecutive failed attempts
	reason   string // the last failure
	claimRev uint64 // the revision of this worker's claim; 0: none held
	attempt  int    // numbers attempts, so a late result of an old one is ignored
	upn      string // the Teams UPN the subscription was made with
	timer    timerKind
	// lost records a Lost that came while an attempt was under way; the
	// attempt's result applies it after.
	lost    bool
	lostErr error
	// awaiting is set while stopping waits for the attempt a fence
	// interrupted: its result ends what it made. No new attempt starts
	// before, for a source keeps one subscription per agent, and ending the
	// old one later would end the new.
	awaiting bool
}

// state is what a reply says of the upstream subscription.
func (l lifecycle) state() schemas.State {
	switch l.phase {
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

// view is what the worker knows of an agent beside its lifecycle, taken
// when the event is handled.
type view struct {
	wanted bool   // some UCC is interested
	route  string // the enabled source that serves the agent, or schemas.SourceNone
	owns   bool   // the agent is this worker's share of the live workers
	fenced bool   // this worker cannot reach NATS
	upn    string // the Teams UPN its UCCs gave
	// The claim as watched: held by some worker, by this one, by a live one.
	claimHeld, claimMine, holderAlive bool
}

type eventKind int

const (
	evInterestAdded   eventKind = iota // a UCC subscribed, maybe again: that retries a failed agent
	evInterestRemoved                  // a UCC unsubscribed, or its lease ended
	evLeaseExpired                     // a UCC's lease ran out: its interest is deleted
	evLingerOver
	evBackoffOver
	evSlot          // the throttle's turn came
	evClaimRefused  // the attempt found the claim held by a live worker, or gone meanwhile
	evAttemptDone   // the attempt ended: err nil succeeded; a RetryAfterError or PermanentError say more
	evLost          // the source ended the upstream subscription without being asked
	evEnded         // the upstream subscription ended and the claim was released, or not
	evClaimWritten  // the claim was rewritten at a new revision
	evOwnersChanged // the live workers were read again
	evClaimReleased // the holder deleted the claim
	evStaleReleased // a claim naming this worker, that it did not hold, was deleted
	evFenced        // membership.FenceAfter passed without a beat
	evUnfenced      // NATS answers again
	evStop          // the worker stops: end what is held
	evResumed       // the resume continued the upstream subscription
	evResumeFailed  // the resume found nothing to continue, or failed: subscribe anew
	eventKinds      // the number of kinds, for the tests
)

var eventNames = [...]string{"interest added", "interest removed", "lease expired", "linger over", "backoff over",
	"throttle slot", "claim refused", "attempt done", "lost", "ended", "claim written", "owners changed",
	"claim released", "stale claim released", "fenced", "unfenced", "stop", "resumed", "resume failed"}

func (k eventKind) String() string { return eventNames[k] }

// event is one thing that happened to an agent; the fields used depend on
// the kind.
type event struct {
	kind     eventKind
	attempt  int    // evClaimRefused, evAttemptDone, evResumed, evResumeFailed: which attempt
	source   string // evAttemptDone, evResumed: the source the attempt subscribed with
	claimRev uint64 // evAttemptDone, evResumed, evResumeFailed: the claim it holds; evClaimWritten: the revision written over
	newRev   uint64 // evClaimWritten
	err      error  // evAttemptDone, evLost, evResumeFailed
	released bool   // evEnded: the claim is gone
	changed  bool   // evOwnersChanged: the live workers are not those of before
	lease    lease  // evLeaseExpired
}

// lease names one UCC's leased interest at the revision that set it.
type lease struct {
	ucc string
	rev uint64
}

type effectKind int

const (
	effQueue        effectKind = iota // wait for the throttle; restore goes ahead of first subscriptions
	effAttempt                        // claim (unless held), then subscribe; reports evClaimRefused or evAttemptDone
	effResume                         // at the resume rate, claim (unless held), then resume; reports evClaimRefused, evResumed or evResumeFailed
	effEnd                            // unsubscribe (or detach: keep), then release the claim; reports evEnded
	effEndOrphan                      // end (or detach: keep) what an attempt nobody waits for made, and its claim
	effUnsubscribe                    // end (or detach: keep) the upstream subscription only: the claim cannot be reached; reports evEnded
	effFedSubscribe                   // tell a fed source that it serves the agent
	effArmBackoff
	effArmLinger
	effStopTimer
	effWriteClaim   // record how the subscription stands in the claim
	effReleaseStale // delete a claim that names this worker but is not held
	effReadLive     // read the live workers again: the holder that let go may be leaving
	effDeleteInterest
	effForget // nobody is interested and nothing is held: forget the agent
	effLogSubscribed
	effLogResumed
	effLogResumeFailed
	effLogFailed
	effLogGaveUp
	effLogRetry
	effLogResubscribe
)

// effect is one thing the Worker carries out for a transition.
type effect struct {
	kind     effectKind
	source   string
	claimRev uint64
	attempt  int
	delay    time.Duration // effArmBackoff, effArmLinger, effLogFailed
	restore  bool          // effQueue
	// keep (effEnd, effEndOrphan, effUnsubscribe) lets the upstream
	// subscription live on for the agent's next holder to resume.
	keep  bool
	err   error      // the logs' reason
	claim claimState // effWriteClaim
	lease lease      // effDeleteInterest
}

// claimState is what a claim tells of the subscription.
type claimState struct {
	state    schemas.State
	failures int
	reason   string
}

// machine holds the rules of every transition: the worker's configuration.
type machine struct {
	retry       backoff
	maxFailures int
	linger      time.Duration
	fed         map[string]bool // the sources fed by inputs: no claim, no throttle
	// resumable are the sources whose subscriptions a next holder resumes:
	// taking an agent resumes first, and letting it go keeps it upstream.
	resumable map[string]bool
}

// next is the transition function.
func (m machine) next(l lifecycle, v view, e event) (lifecycle, []effect) {
	t := transition{m: m, l: l, v: v}
	t.on(e)
	return t.l, t.effects
}

// transition gathers the effects of one event as its rules run.
type transition struct {
	m       machine
	l       lifecycle
	v       view
	effects []effect
}

func (t *transition) emit(e effect) { t.effects = append(t.effects, e) }

func (t *transition) on(e event) {
	l := &t.l
	switch e.kind {
	case evInterestAdded:
		if l.phase == phaseFailed {
			l.failures = 0
			t.queue(false)
		}
		t.reconcile()
	case evInterestRemoved:
		t.reconcile()
	case evStaleReleased:
		if l.phase == phaseElsewhere {
			l.claimRev = 0
		}
	case evLeaseExpired:
		t.emit(effect{kind: effDeleteInterest, lease: e.lease})
	case evLingerOver:
		if l.timer != lingerTimer {
			return
		}
		l.timer = noTimer
		if l.phase == phaseActive && !t.v.wanted {
			t.stop()
		}
	case evBackoffOver:
		if l.timer != backoffTimer {
			return
		}
		l.timer = noTimer
		if l.phase == phaseBackoff {
			t.emit(effect{kind: effLogRetry, source: l.source})
			t.queue(true)
		}
	case evSlot:
		if l.phase != phaseQueued {
			return
		}
		l.phase = phaseSubscribing
		l.attempt++
		l.upn = t.v.upn
		l.lost, l.lostErr = false, nil
		t.emit(effect{kind: effAttempt, source: l.source, claimRev: l.claimRev, attempt: l.attempt})
	case evClaimRefused:
		if t.interrupted(e) {
			return
		}
		if !l.attempting() || e.attempt != l.attempt {
			return
		}
		l.phase = phaseIdle
		if t.v.claimHeld {
			l.phase = phaseElsewhere
		}
		t.reconcile()
	case evAttemptDone, evResumed:
		t.attemptDone(e)
	case evResumeFailed:
		if t.interrupted(e) {
			return
		}
		if l.phase != phaseResuming || e.attempt != l.attempt {
			return
		}
		if l.claimRev == 0 {
			l.claimRev = e.claimRev
		}
		// Whatever was lost meanwhile, a new subscription follows.
		l.lost, l.lostErr = false, nil
		t.emit(effect{kind: effLogResumeFailed, source: l.source, err: e.err})
		t.queue(true)
		t.reconcile()
	case evLost:
		t.lose(e.err)
	case evEnded:
		if l.phase != phaseStopping {
			return
		}
		// A claim not released is read again by the next attempt, which
		// takes it over: its revision may have moved, or the delete may
		// have landed unanswered.
		l.phase, l.failures, l.claimRev = phaseIdle, 0, 0
		t.reconcile()
		if !e.released && l.phase == phaseElsewhere && !t.v.fenced {
			// Not this worker's any more, and the claim still names it:
			// the new owner cannot take the agent until it goes.
			t.emit(effect{kind: effReleaseStale})
		}
	case evClaimWritten:
		if l.claimRev == e.claimRev {
			l.claimRev = e.newRev
		}
	case evOwnersChanged:
		t.ownersChanged(e.changed)
	case evUnfenced:
		// Every agent was let go at the fence: take this worker's share back.
		t.ownersChanged(true)
	case evClaimReleased:
		if l.phase != phaseElsewhere {
			return
		}
		l.phase = phaseIdle
		t.reconcile()
		if l.phase == phaseElsewhere {
			// Nobody holds it, yet it is not this worker's: the owner may
			// be leaving, which a fresh read of the live workers shows.
			t.emit(effect{kind: effReadLive})
		}
	case evFenced:
		t.fence()
	case evStop:
		if l.claimRev != 0 || (l.phase == phaseActive && !t.m.fed[l.source]) {
			t.stopTimer()
			l.phase = phaseStopping
			t.emit(effect{kind: effEnd, source: l.source, claimRev: l.claimRev, keep: t.keep(l.source)})
		}
	}
}

// attempting reports whether an attempt (subscribe or resume) is under way.
func (l lifecycle) attempting() bool { return l.phase == phaseSubscribing || l.phase == phaseResuming }

// keep says whether an upstream subscription this worker lets go lives on
// for the agent's next holder: a resumable source's that some UCC still
// wants from it. One nobody wants is ended.
func (t *transition) keep(source string) bool {
	return t.m.resumable[source] && t.v.wanted && t.v.route == source
}

// reconcile moves the agent toward what its interest asks for. An agent is
// this worker's to subscribe when it is its share and the worker is not
// fenced; a fed source's agents need no holder.
func (t *transition) reconcile() {
	l, v := &t.l, t.v
	wanted := v.wanted && v.route != schemas.SourceNone
	fed := t.m.fed[v.route]
	mine := fed || (v.owns && !v.fenced)
	switch l.phase {
	case phaseIdle:
		switch {
		case wanted && mine:
			t.start(fed)
		case wanted:
			l.phase = phaseElsewhere
		case !v.wanted:
			t.emit(effect{kind: effForget})
		}
	case phaseQueued:
		switch {
		case l.claimRev != 0 && (!wanted || !mine || v.route != l.source):
			t.stop()
		case !wanted || !mine:
			l.phase = phaseIdle
			t.reconcile()
		default:
			l.source = v.route
		}
	case phaseActive:
		switch {
		case v.route != l.source || !mine || (l.source == schemas.SourceGraph && l.upn != v.upn):
			// Moved source or owner, or a UCC corrected the Teams UPN.
			t.stop()
		case !wanted && l.timer == noTimer:
			l.timer = lingerTimer
			t.emit(effect{kind: effArmLinger, delay: t.m.linger})
		case wanted && l.timer == lingerTimer:
			t.stopTimer()
		}
	case phaseBackoff, phaseFailed:
		if !wanted || v.route != l.source || !mine {
			t.stop()
		}
	case phaseElsewhere:
		if !v.wanted {
			t.emit(effect{kind: effForget})
		}
	}
}

// start begins the upstream subscription: at once for a fed source, which
// has nothing upstream (its owner reports what it knows first); by resuming
// the one an earlier holder left, for a resumable source; else through the
// throttle.
func (t *transition) start(fed bool) {
	l := &t.l
	l.source = t.v.route
	if !fed && t.m.resumable[l.source] {
		t.stopTimer()
		l.phase = phaseResuming
		l.attempt++
		l.upn = t.v.upn
		l.lost, l.lostErr = false, nil
		t.emit(effect{kind: effResume, source: l.source, claimRev: l.claimRev, attempt: l.attempt})
		return
	}
	if !fed {
		t.queue(false)
		return
	}
	l.phase = phaseActive
	if t.v.owns {
		t.emit(effect{kind: effFedSubscribe, source: l.source})
	}
}

func (t *transition) queue(restore bool) {
	t.stopTimer()
	t.l.phase = phaseQueued
	t.emit(effect{kind: effQueue, restore: restore})
}

func (t *transition) stopTimer() {
	if t.l.timer != noTimer {
		t.l.timer = noTimer
		t.emit(effect{kind: effStopTimer})
	}
}

// stop ends the upstream subscription and gives the claim up; evEnded then
// decides again (a changed route subscribes anew).
func (t *transition) stop() {
	// A claim about to be released need not be written first: the write
	// would race the release.
	t.effects = slices.DeleteFunc(t.effects, func(e effect) bool { return e.kind == effWriteClaim })
	t.stopTimer()
	t.l.phase = phaseStopping
	t.emit(effect{kind: effEnd, source: t.l.source, claimRev: t.l.claimRev, keep: t.keep(t.l.source)})
}

// attemptDone applies the result of a subscribe (evAttemptDone) or the
// success of a resume (evResumed).
func (t *transition) attemptDone(e event) {
	l := &t.l
	if t.interrupted(e) {
		return
	}
	want := phaseSubscribing
	if e.kind == evResumed {
		want = phaseResuming
	}
	if l.phase != want || e.attempt != l.attempt {
		// Nobody waits for this attempt any more (a fence, a handover or a
		// stop took over): what it made upstream must not outlive it here.
		if e.err == nil {
			t.emit(effect{kind: effEndOrphan, source: e.source, claimRev: e.claimRev, keep: t.keep(e.source)})
		}
		return
	}
	if l.claimRev == 0 {
		l.claimRev = e.claimRev
	}
	if e.err != nil {
		l.lost = false
		t.fail(e.err)
		return
	}
	l.phase, l.failures, l.reason = phaseActive, 0, ""
	if e.kind == evResumed {
		t.emit(effect{kind: effLogResumed, source: l.source})
	} else {
		t.emit(effect{kind: effLogSubscribed, source: l.source})
	}
	t.writeClaim()
	if l.lost {
		l.lost = false
		t.lose(l.lostErr)
		return
	}
	t.reconcile()
}

// fail counts a failed attempt: back off, or give up at the per-URI limit.
// A source that is down itself (no endpoint, no account) is no fault of the
// agent's: it backs off without counting toward giving up.
func (t *transition) fail(err error) {
	l := &t.l
	counted := !errors.Is(err, sources.ErrSourceDown)
	if counted {
		l.failures++
	}
	l.reason = err.Error()
	var permanent *sources.PermanentError
	if errors.As(err, &permanent) || (counted && t.m.maxFailures > 0 && l.failures >= t.m.maxFailures) {
		l.phase = phaseFailed
		t.emit(effect{kind: effLogGaveUp, source: l.source, err: err})
		t.writeClaim()
		t.reconcile()
		return
	}
	delay := t.m.retry.delay(max(l.failures, 1))
	var retryAfter *sources.RetryAfterError
	if errors.As(err, &retryAfter) && retryAfter.After > delay {
		delay = retryAfter.After
	}
	t.stopTimer()
	l.phase, l.timer = phaseBackoff, backoffTimer
	t.emit(effect{kind: effArmBackoff, delay: delay})
	t.emit(effect{kind: effLogFailed, source: l.source, delay: delay, err: err})
	t.writeClaim()
	t.reconcile()
}

// lose handles an upstream subscription that ended by itself. Terminated
// (or nil) asks for a new subscription at once, which also cuts a back-off
// short, as when a source's endpoint came back.
func (t *transition) lose(err error) {
	l := &t.l
	again := err == nil || errors.Is(err, sources.ErrTerminated)
	switch {
	case l.attempting():
		l.lost, l.lostErr = true, err
	case again && (l.phase == phaseActive || l.phase == phaseBackoff):
		t.emit(effect{kind: effLogResubscribe, source: l.source, err: err})
		t.queue(true)
	case l.phase == phaseActive:
		t.fail(err)
	}
}

func (t *transition) writeClaim() {
	if t.l.claimRev == 0 {
		return
	}
	t.emit(effect{kind: effWriteClaim, source: t.l.source, claimRev: t.l.claimRev,
		claim: claimState{state: t.l.state(), failures: t.l.failures, reason: t.l.reason}})
}

// ownersChanged looks at the agent again after the live workers were read:
// a claim of this worker's that it does not hold (a release that failed) is
// let go; an agent elsewhere whose holder is gone (a dead worker never
// deletes its claims) or that became this worker's share is taken; one held
// here that is no longer its share is handed over.
func (t *transition) ownersChanged(changed bool) {
	l, v := &t.l, t.v
	if l.phase == phaseElsewhere {
		if v.claimMine {
			t.emit(effect{kind: effReleaseStale})
			return
		}
		if !v.claimHeld || !v.holderAlive || (changed && v.owns) {
			l.phase = phaseIdle
		}
	}
	if changed || l.phase == phaseIdle {
		t.reconcile()
	}
}

// fence ends the upstream subscription without releasing the claim: before
// the lease runs out and another worker may take the agent, this one holds
// nothing. The claim may be another worker's by the time NATS answers again.
// The agent stays stopping until what it let go is gone (evEnded) or, for
// an attempt under way, until the attempt's result ends what it made.
func (t *transition) fence() {
	l := &t.l
	if t.m.fed[l.source] || l.phase == phaseIdle || l.phase == phaseElsewhere || l.phase == phaseStopping {
		return
	}
	t.stopTimer()
	if l.attempting() {
		l.phase, l.claimRev, l.awaiting = phaseStopping, 0, true
		return
	}
	t.emit(effect{kind: effUnsubscribe, source: l.source, keep: t.keep(l.source)})
	l.phase, l.claimRev = phaseStopping, 0
}

// interrupted applies the result of the attempt a fence interrupted, and
// reports whether e was that result. What the attempt made upstream is
// ended; an attempt that made nothing leaves the claim it may have taken
// for the next attempt to take over, or for this worker to let go as stale.
func (t *transition) interrupted(e event) bool {
	l := &t.l
	if !l.awaiting || e.attempt != l.attempt {
		return false
	}
	l.awaiting = false
	if e.err == nil && (e.kind == evAttemptDone || e.kind == evResumed) {
		t.emit(effect{kind: effEnd, source: e.source, claimRev: e.claimRev, keep: t.keep(e.source)})
		return true
	}
	l.phase = phaseIdle
	t.reconcile()
	return true
}
