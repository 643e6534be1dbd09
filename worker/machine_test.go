package worker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// The lifecycle's transitions, without NATS or goroutines: every event in
// every phase, and the view and error variations that change the outcome.

var testMachine = machine{
	retry:       backoff{first: 10 * time.Second, max: 80 * time.Second},
	maxFailures: 3,
	linger:      5 * time.Second,
	fed:         map[string]bool{schemas.SourceAttendant: true},
}

// resumeMachine resumes SIP subscriptions from holder to holder.
var resumeMachine = func() machine {
	m := testMachine
	m.resumable = map[string]bool{schemas.SourceSIP: true}
	return m
}()

// at is the lifecycle a test starts from in each phase.
func at(p phase) lifecycle {
	switch p {
	case phaseIdle, phaseElsewhere:
		return lifecycle{phase: p}
	case phaseQueued:
		return lifecycle{phase: p, source: schemas.SourceSIP}
	case phaseSubscribing, phaseResuming:
		return lifecycle{phase: p, source: schemas.SourceSIP, attempt: 1}
	case phaseBackoff:
		return lifecycle{phase: p, source: schemas.SourceSIP, claimRev: 5, failures: 1, timer: backoffTimer}
	case phaseFailed:
		return lifecycle{phase: p, source: schemas.SourceSIP, claimRev: 5, failures: 3}
	default: // active, stopping
		return lifecycle{phase: p, source: schemas.SourceSIP, claimRev: 5}
	}
}

// mineView is an agent some UCC wants, this worker's share, served by SIP.
func mineView() view { return view{wanted: true, route: schemas.SourceSIP, owns: true} }

type row struct {
	name  string
	from  phase
	life  func(*lifecycle) // changes to at(from)
	view  func(*view)      // changes to mineView()
	event event
	want  phase
	effs  []effectKind
	check func(t *testing.T, l lifecycle, effs []effect)
	// resume runs the row on resumeMachine.
	resume bool
}

var (
	unwanted   = func(v *view) { v.wanted = false }
	notMine    = func(v *view) { v.owns = false }
	heldByLive = func(v *view) { v.claimHeld, v.holderAlive = true, true }
	lingering  = func(l *lifecycle) { l.timer = lingerTimer }
	terminated = event{kind: evLost, err: sources.ErrTerminated}
	succeeded  = event{kind: evAttemptDone, attempt: 1, source: schemas.SourceSIP, claimRev: 7}
	resumed    = event{kind: evResumed, attempt: 1, source: schemas.SourceSIP, claimRev: 7}
	resumeErr  = event{kind: evResumeFailed, attempt: 1, claimRev: 7, err: errors.New("481 Call/Transaction Does Not Exist")}
	failedOnce = event{kind: evAttemptDone, attempt: 1, source: schemas.SourceSIP, claimRev: 7, err: errors.New("408 timeout")}
)

func allPhases() []phase {
	var ps []phase
	for p := phaseIdle; p <= phaseResuming; p++ {
		ps = append(ps, p)
	}
	return ps
}

// same lists the rows of phases where an event changes nothing.
func same(e event, phases ...phase) []row {
	var rows []row
	for _, p := range phases {
		rows = append(rows, row{from: p, event: e, want: p})
	}
	return rows
}

func except(out ...phase) []phase {
	return slices.DeleteFunc(allPhases(), func(p phase) bool { return slices.Contains(out, p) })
}

func rows() []row {
	q, i, sub, act, bo, fl, st, el, res := phaseQueued, phaseIdle, phaseSubscribing, phaseActive, phaseBackoff, phaseFailed, phaseStopping, phaseElsewhere, phaseResuming
	added, removed := event{kind: evInterestAdded}, event{kind: evInterestRemoved}
	rs := []row{
		// A UCC subscribes.
		{from: i, event: added, want: q, effs: []effectKind{effQueue}},
		{name: "not its share", from: i, view: notMine, event: added, want: el},
		{name: "no source", from: i, view: func(v *view) { v.route = schemas.SourceNone }, event: added, want: i},
		{name: "fed, owner", from: i, view: func(v *view) { v.route = schemas.SourceAttendant }, event: added, want: act, effs: []effectKind{effFedSubscribe}},
		{name: "fed, not owner", from: i, view: func(v *view) { v.route, v.owns = schemas.SourceAttendant, false }, event: added, want: act},
		{from: q, event: added, want: q},
		{from: sub, event: added, want: sub},
		{from: act, event: added, want: act},
		{name: "ends a linger", from: act, life: lingering, event: added, want: act, effs: []effectKind{effStopTimer}},
		{from: bo, event: added, want: bo},
		{from: fl, event: added, want: q, effs: []effectKind{effQueue}, check: failures(0)},
		{from: st, event: added, want: st},
		{from: el, event: added, want: el},
		// A UCC leaves (the last one, in these rows).
		{from: i, view: unwanted, event: removed, want: i, effs: []effectKind{effForget}},
		{from: q, view: unwanted, event: removed, want: i, effs: []effectKind{effForget}},
		{name: "claim held", from: q, life: func(l *lifecycle) { l.claimRev = 5 }, view: unwanted, event: removed, want: st, effs: []effectKind{effEnd}},
		{from: sub, view: unwanted, event: removed, want: sub},
		{from: act, view: unwanted, event: removed, want: act, effs: []effectKind{effArmLinger}, check: timer(lingerTimer)},
		{name: "another UCC stays", from: act, event: removed, want: act},
		{from: bo, view: unwanted, event: removed, want: st, effs: []effectKind{effStopTimer, effEnd}},
		{from: fl, view: unwanted, event: removed, want: st, effs: []effectKind{effEnd}},
		{from: st, view: unwanted, event: removed, want: st},
		{from: el, view: unwanted, event: removed, want: el, effs: []effectKind{effForget}},
		// The throttle's turn.
		{from: q, event: event{kind: evSlot}, want: sub, effs: []effectKind{effAttempt}, check: func(t *testing.T, l lifecycle, effs []effect) {
			if l.attempt != 1 || effs[0].attempt != 1 || effs[0].source != schemas.SourceSIP {
				t.Errorf("attempt %d, effect %+v; want attempt 1 with sip", l.attempt, effs[0])
			}
		}},
		// The attempt finds the claim taken, or let go meanwhile.
		{from: sub, view: heldByLive, event: event{kind: evClaimRefused, attempt: 1}, want: el},
		{name: "let go meanwhile", from: sub, event: event{kind: evClaimRefused, attempt: 1}, want: q, effs: []effectKind{effQueue}},
		{name: "an older attempt", from: sub, view: heldByLive, event: event{kind: evClaimRefused, attempt: 0}, want: sub},
		// The attempt ends.
		{name: "succeeded", from: sub, event: succeeded, want: act, effs: []effectKind{effLogSubscribed, effWriteClaim}, check: claimRev(7)},
		{name: "failed", from: sub, event: failedOnce, want: bo, effs: []effectKind{effArmBackoff, effLogFailed, effWriteClaim}, check: delay(10 * time.Second)},
		{name: "failed a third time", from: sub, life: func(l *lifecycle) { l.failures = 2 }, event: failedOnce, want: fl, effs: []effectKind{effLogGaveUp, effWriteClaim}},
		{name: "retry-after longer than the back-off", from: sub, event: event{kind: evAttemptDone, attempt: 1, err: &sources.RetryAfterError{After: time.Minute, Err: errors.New("503")}},
			want: bo, effs: []effectKind{effArmBackoff, effLogFailed}, check: delay(time.Minute)},
		{name: "retry-after shorter than the back-off", from: sub, event: event{kind: evAttemptDone, attempt: 1, err: &sources.RetryAfterError{After: time.Second, Err: errors.New("503")}},
			want: bo, effs: []effectKind{effArmBackoff, effLogFailed}, check: delay(10 * time.Second)},
		{name: "permanent", from: sub, event: event{kind: evAttemptDone, attempt: 1, err: &sources.PermanentError{Err: errors.New("no such user")}},
			want: fl, effs: []effectKind{effLogGaveUp}, check: failures(1)},
		{name: "source down does not count", from: sub, life: func(l *lifecycle) { l.failures = 2 }, event: event{kind: evAttemptDone, attempt: 1, err: fmt.Errorf("no endpoint: %w", sources.ErrSourceDown)},
			want: bo, effs: []effectKind{effArmBackoff, effLogFailed}, check: failures(2)},
		{name: "lost during the attempt", from: sub, life: func(l *lifecycle) { l.lost, l.lostErr = true, sources.ErrTerminated }, event: succeeded,
			want: q, effs: []effectKind{effLogSubscribed, effWriteClaim, effLogResubscribe, effQueue}},
		{name: "succeeded, unwanted meanwhile", from: sub, view: unwanted, event: succeeded, want: act, effs: []effectKind{effLogSubscribed, effWriteClaim, effArmLinger}},
		{name: "succeeded, not its share any more", from: sub, view: notMine, event: succeeded, want: st, effs: []effectKind{effLogSubscribed, effEnd}},
		{name: "failed, not its share any more", from: sub, view: notMine, event: failedOnce, want: st, effs: []effectKind{effArmBackoff, effLogFailed, effStopTimer, effEnd}},
		{name: "an older attempt succeeded", from: sub, event: event{kind: evAttemptDone, attempt: 0, source: schemas.SourceSIP, claimRev: 3}, want: sub, effs: []effectKind{effEndOrphan}},
		// The source ends the subscription by itself.
		{from: sub, event: terminated, want: sub, check: func(t *testing.T, l lifecycle, _ []effect) {
			if !l.lost || !errors.Is(l.lostErr, sources.ErrTerminated) {
				t.Errorf("lost %v %v; want it kept for the attempt's result", l.lost, l.lostErr)
			}
		}},
		{from: act, event: terminated, want: q, effs: []effectKind{effLogResubscribe, effQueue}},
		{name: "cuts the back-off short", from: bo, event: terminated, want: q, effs: []effectKind{effLogResubscribe, effStopTimer, effQueue}},
		{name: "a failure", from: act, event: event{kind: evLost, err: errors.New("endpoint rejected")}, want: bo, effs: []effectKind{effArmBackoff, effLogFailed, effWriteClaim}},
		// Timers.
		{from: act, life: lingering, view: unwanted, event: event{kind: evLingerOver}, want: st, effs: []effectKind{effEnd}},
		{name: "wanted again", from: act, life: lingering, event: event{kind: evLingerOver}, want: act},
		{from: bo, event: event{kind: evBackoffOver}, want: q, effs: []effectKind{effLogRetry, effQueue}},
		// Ending the subscription finished.
		{from: st, event: event{kind: evEnded, released: true}, want: q, effs: []effectKind{effQueue}, check: claimRev(0)},
		{name: "claim not released", from: st, view: unwanted, event: event{kind: evEnded}, want: i, effs: []effectKind{effForget}, check: claimRev(0)},
		{name: "claim not released, read again", from: st, event: event{kind: evEnded}, want: q, effs: []effectKind{effQueue}, check: claimRev(0)},
		{name: "claim not released, not its share", from: st, view: notMine, event: event{kind: evEnded}, want: el, effs: []effectKind{effReleaseStale}},
		{name: "claim not released, fenced", from: st, view: func(v *view) { v.fenced = true }, event: event{kind: evEnded}, want: el},
		// Claim writes.
		{from: act, event: event{kind: evClaimWritten, claimRev: 5, newRev: 6}, want: act, check: claimRev(6)},
		{name: "over an older revision", from: act, event: event{kind: evClaimWritten, claimRev: 4, newRev: 6}, want: act, check: claimRev(5)},
		// The live workers were read again.
		{from: i, event: event{kind: evOwnersChanged}, want: q, effs: []effectKind{effQueue}},
		{from: act, view: notMine, event: event{kind: evOwnersChanged, changed: true}, want: st, effs: []effectKind{effEnd}},
		{name: "unchanged owners", from: act, view: notMine, event: event{kind: evOwnersChanged}, want: act},
		{from: q, view: notMine, event: event{kind: evOwnersChanged, changed: true}, want: el},
		{from: bo, view: notMine, event: event{kind: evOwnersChanged, changed: true}, want: st, effs: []effectKind{effStopTimer, effEnd}},
		{from: fl, view: notMine, event: event{kind: evOwnersChanged, changed: true}, want: st, effs: []effectKind{effEnd}},
		{name: "holder alive", from: el, view: func(v *view) { v.owns = false; heldByLive(v) }, event: event{kind: evOwnersChanged, changed: true}, want: el},
		{name: "holder dead", from: el, view: func(v *view) { v.claimHeld = true }, event: event{kind: evOwnersChanged}, want: q, effs: []effectKind{effQueue}},
		// The holder hands it over; the attempt finds out whether it did yet.
		{name: "holder alive, now its share", from: el, view: heldByLive, event: event{kind: evOwnersChanged, changed: true}, want: q, effs: []effectKind{effQueue}},
		{name: "holder alive, owners unchanged", from: el, view: heldByLive, event: event{kind: evOwnersChanged}, want: el},
		{name: "claim names this worker", from: el, view: func(v *view) { v.claimHeld, v.claimMine, v.holderAlive = true, true, true }, event: event{kind: evOwnersChanged}, want: el, effs: []effectKind{effReleaseStale}},
		{from: el, view: func(v *view) { v.owns = false; heldByLive(v) }, event: event{kind: evUnfenced}, want: el},
		{from: i, event: event{kind: evUnfenced}, want: q, effs: []effectKind{effQueue}},
		// The holder let its claim go.
		{from: el, event: event{kind: evClaimReleased}, want: q, effs: []effectKind{effQueue}},
		{name: "not its share", from: el, view: notMine, event: event{kind: evClaimReleased}, want: el, effs: []effectKind{effReadLive}},
		{from: el, life: func(l *lifecycle) { l.claimRev = 5 }, event: event{kind: evStaleReleased}, want: el, check: claimRev(0)},
		// Fencing ends what is held upstream, keeping no claim, and nothing
		// starts again before that ended.
		{from: q, event: event{kind: evFenced}, want: st, effs: []effectKind{effUnsubscribe}},
		{from: sub, event: event{kind: evFenced}, want: st, check: awaiting(true)},
		{from: act, event: event{kind: evFenced}, want: st, effs: []effectKind{effUnsubscribe}, check: claimRev(0)},
		{name: "fed", from: act, life: func(l *lifecycle) { l.source, l.claimRev = schemas.SourceAttendant, 0 }, event: event{kind: evFenced}, want: act},
		{from: bo, event: event{kind: evFenced}, want: st, effs: []effectKind{effStopTimer, effUnsubscribe}},
		{from: fl, event: event{kind: evFenced}, want: st, effs: []effectKind{effUnsubscribe}},
		{name: "end under way", from: st, event: event{kind: evFenced}, want: st, check: claimRev(5)},
		{name: "fenced, unsubscribed", from: st, view: func(v *view) { v.fenced = true }, event: event{kind: evEnded}, want: el},
		// The attempt a fence interrupted ends what it made; only then may
		// the agent be taken again.
		{name: "interrupted attempt succeeded", from: st, life: interrupted, event: succeeded, want: st, effs: []effectKind{effEnd}, check: func(t *testing.T, l lifecycle, effs []effect) {
			if l.awaiting || effs[0].claimRev != 7 || effs[0].source != schemas.SourceSIP {
				t.Errorf("awaiting %v, effect %+v; want the attempt's subscription and claim 7 ended", l.awaiting, effs[0])
			}
		}},
		{name: "interrupted attempt failed", from: st, life: interrupted, event: failedOnce, want: q, effs: []effectKind{effQueue}, check: awaiting(false)},
		{name: "interrupted attempt failed, still fenced", from: st, life: interrupted, view: func(v *view) { v.fenced = true }, event: failedOnce, want: el},
		{name: "interrupted attempt refused", from: st, life: interrupted, view: heldByLive, event: event{kind: evClaimRefused, attempt: 1}, want: q, effs: []effectKind{effQueue}},
		{name: "interrupted resume succeeded", resume: true, from: st, life: interrupted, event: resumed, want: st, effs: []effectKind{effEnd}, check: keeps(true)},
		{name: "interrupted resume failed", from: st, life: interrupted, event: resumeErr, want: q, effs: []effectKind{effQueue}},
		{name: "an attempt before the interrupted one", from: st, life: interrupted, event: event{kind: evAttemptDone, attempt: 0, source: schemas.SourceSIP, claimRev: 3}, want: st, effs: []effectKind{effEndOrphan}, check: awaiting(true)},
		{name: "interrupted attempt, stop", from: st, life: interrupted, event: event{kind: evStop}, want: st, check: awaiting(true)},
		{name: "fenced, a UCC subscribes", from: i, view: func(v *view) { v.fenced = true }, event: added, want: el},
		// Stop ends what is held.
		{from: act, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}},
		{name: "fed", from: act, life: func(l *lifecycle) { l.source, l.claimRev = schemas.SourceAttendant, 0 }, event: event{kind: evStop}, want: act},
		{from: bo, event: event{kind: evStop}, want: st, effs: []effectKind{effStopTimer, effEnd}},
		{from: fl, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}},
		{name: "end still under way", from: st, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}},
		{name: "claimed, queued again", from: q, life: func(l *lifecycle) { l.claimRev = 5 }, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}},
		{name: "ends, keeps nothing", from: act, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}, check: keeps(false)},

		// Resume: taking an agent continues the subscription an earlier
		// holder left, outside the throttle.
		{name: "resumes", resume: true, from: i, event: added, want: res, effs: []effectKind{effResume}, check: func(t *testing.T, l lifecycle, effs []effect) {
			if l.attempt != 1 || effs[0].attempt != 1 || effs[0].source != schemas.SourceSIP {
				t.Errorf("attempt %d, effect %+v; want attempt 1 with sip", l.attempt, effs[0])
			}
		}},
		{name: "fed, owner", resume: true, from: i, view: func(v *view) { v.route = schemas.SourceAttendant }, event: added, want: act, effs: []effectKind{effFedSubscribe}},
		{name: "holder dead", resume: true, from: el, view: func(v *view) { v.claimHeld = true }, event: event{kind: evOwnersChanged}, want: res, effs: []effectKind{effResume}},
		{name: "handed over to it", resume: true, from: el, event: event{kind: evClaimReleased}, want: res, effs: []effectKind{effResume}},
		{name: "its own handover ended", resume: true, from: st, event: event{kind: evEnded, released: true}, want: res, effs: []effectKind{effResume}},
		{from: res, event: added, want: res},
		{from: res, view: unwanted, event: removed, want: res},
		{from: res, view: heldByLive, event: event{kind: evClaimRefused, attempt: 1}, want: el},
		{name: "let go meanwhile", from: res, event: event{kind: evClaimRefused, attempt: 1}, want: q, effs: []effectKind{effQueue}},
		{name: "an older attempt", from: res, view: heldByLive, event: event{kind: evClaimRefused, attempt: 0}, want: res},
		{from: res, event: resumed, want: act, effs: []effectKind{effLogResumed, effWriteClaim}, check: claimRev(7)},
		{name: "lost during the resume", from: res, life: func(l *lifecycle) { l.lost, l.lostErr = true, sources.ErrTerminated }, event: resumed,
			want: q, effs: []effectKind{effLogResumed, effWriteClaim, effLogResubscribe, effQueue}},
		{name: "resumed, not its share any more", resume: true, from: res, view: notMine, event: resumed, want: st, effs: []effectKind{effLogResumed, effEnd}, check: keeps(true)},
		{name: "an older resume", resume: true, from: res, event: event{kind: evResumed, attempt: 0, source: schemas.SourceSIP, claimRev: 3}, want: res, effs: []effectKind{effEndOrphan}, check: keeps(true)},
		{name: "an older resume, unwanted", resume: true, from: res, view: unwanted, event: event{kind: evResumed, attempt: 0, source: schemas.SourceSIP, claimRev: 3}, want: res, effs: []effectKind{effEndOrphan}, check: keeps(false)},
		{name: "subscribes anew through the throttle", from: res, event: resumeErr, want: q, effs: []effectKind{effLogResumeFailed, effQueue}, check: func(t *testing.T, l lifecycle, effs []effect) {
			if l.claimRev != 7 || !effs[1].restore {
				t.Errorf("claim %d, restore %v; want the claim kept and the agent ahead of first subscriptions", l.claimRev, effs[1].restore)
			}
		}},
		{name: "failed, not its share any more", from: res, view: notMine, event: resumeErr, want: st, effs: []effectKind{effLogResumeFailed, effQueue, effEnd}},
		{name: "an older resume failed", from: res, event: event{kind: evResumeFailed, attempt: 0, err: errors.New("481")}, want: res},
		{name: "lost during the resume, failed", from: res, life: func(l *lifecycle) { l.lost = true }, event: resumeErr, want: q, effs: []effectKind{effLogResumeFailed, effQueue}},
		{from: res, event: terminated, want: res, check: func(t *testing.T, l lifecycle, _ []effect) {
			if !l.lost {
				t.Error("lost not kept for the resume's result")
			}
		}},
		{from: res, event: event{kind: evFenced}, want: st, check: awaiting(true)},
		// Letting go keeps a wanted subscription upstream for the next holder.
		{name: "handover keeps", resume: true, from: act, view: notMine, event: event{kind: evOwnersChanged, changed: true}, want: st, effs: []effectKind{effEnd}, check: keeps(true)},
		{name: "stop keeps", resume: true, from: act, event: event{kind: evStop}, want: st, effs: []effectKind{effEnd}, check: keeps(true)},
		{name: "fence keeps", resume: true, from: act, event: event{kind: evFenced}, want: st, effs: []effectKind{effUnsubscribe}, check: keeps(true)},
		{name: "unwanted ends", resume: true, from: act, life: lingering, view: unwanted, event: event{kind: evLingerOver}, want: st, effs: []effectKind{effEnd}, check: keeps(false)},
		{name: "moved source ends", resume: true, from: act, view: func(v *view) { v.route = schemas.SourceAttendant }, event: event{kind: evInterestAdded}, want: st, effs: []effectKind{effEnd}, check: keeps(false)},
		{name: "lost, subscribes anew", resume: true, from: act, event: terminated, want: q, effs: []effectKind{effLogResubscribe, effQueue}},
	}
	// A resume's success that nobody waits for is let go (kept upstream
	// only by a resumable source, for a wanted agent).
	for _, p := range except(res) {
		rs = append(rs, row{from: p, event: resumed, want: p, effs: []effectKind{effEndOrphan}, check: keeps(false)})
	}
	// Lease expiry deletes the interest whatever the phase.
	for _, p := range allPhases() {
		rs = append(rs, row{from: p, event: event{kind: evLeaseExpired, lease: lease{ucc: "dWNj", rev: 9}}, want: p, effs: []effectKind{effDeleteInterest}})
	}
	// Events that mean nothing in a phase leave it as it is.
	rs = append(rs, same(event{kind: evSlot}, except(q)...)...)
	rs = append(rs, same(event{kind: evClaimRefused, attempt: 1}, except(sub, res)...)...)
	rs = append(rs, same(resumeErr, except(res)...)...)
	rs = append(rs, same(failedOnce, except(sub)...)...)
	rs = append(rs, same(terminated, i, q, fl, st, el)...)
	rs = append(rs, same(event{kind: evEnded, released: true}, except(st)...)...)
	rs = append(rs, same(event{kind: evClaimWritten, claimRev: 99, newRev: 100}, except(act)...)...)
	rs = append(rs, same(event{kind: evLingerOver}, except(act)...)...)
	rs = append(rs, same(event{kind: evBackoffOver}, except(bo)...)...)
	rs = append(rs, same(event{kind: evOwnersChanged}, q, sub, act, bo, fl, st, res)...)
	rs = append(rs, same(event{kind: evUnfenced}, q, sub, act, bo, fl, st, res)...)
	rs = append(rs, same(event{kind: evClaimReleased}, except(el)...)...)
	rs = append(rs, same(event{kind: evStaleReleased}, except(el)...)...)
	rs = append(rs, same(event{kind: evFenced}, i, el)...)
	rs = append(rs, same(event{kind: evStop}, i, q, sub, el, res)...)
	return rs
}

// interrupted is a stopping lifecycle that waits for attempt 1, which a
// fence interrupted.
func interrupted(l *lifecycle) { l.claimRev, l.attempt, l.awaiting = 0, 1, true }

func awaiting(want bool) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, l lifecycle, _ []effect) {
		if l.awaiting != want {
			t.Errorf("awaiting = %v; want %v", l.awaiting, want)
		}
	}
}

// keeps checks whether what the effects let go stays upstream.
func keeps(want bool) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, _ lifecycle, effs []effect) {
		for _, e := range effs {
			switch e.kind {
			case effEnd, effEndOrphan, effUnsubscribe:
				if e.keep != want {
					t.Errorf("effect %d keeps %v; want %v", e.kind, e.keep, want)
				}
			}
		}
	}
}

func failures(n int) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, l lifecycle, _ []effect) {
		if l.failures != n {
			t.Errorf("failures = %d; want %d", l.failures, n)
		}
	}
}

func claimRev(rev uint64) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, l lifecycle, _ []effect) {
		if l.claimRev != rev {
			t.Errorf("claim revision = %d; want %d", l.claimRev, rev)
		}
	}
}

func timer(k timerKind) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, l lifecycle, _ []effect) {
		if l.timer != k {
			t.Errorf("timer = %d; want %d", l.timer, k)
		}
	}
}

func delay(d time.Duration) func(*testing.T, lifecycle, []effect) {
	return func(t *testing.T, _ lifecycle, effs []effect) {
		for _, e := range effs {
			if e.kind == effArmBackoff && e.delay != d {
				t.Errorf("back-off %s; want %s", e.delay, d)
			}
		}
	}
}

func TestLifecycleTransitions(t *testing.T) {
	for _, r := range rows() {
		name := fmt.Sprintf("%s/%s", r.from, r.event.kind)
		if r.resume {
			name += "/resume on"
		}
		if r.name != "" {
			name += "/" + r.name
		}
		t.Run(name, func(t *testing.T) {
			l, v := at(r.from), mineView()
			if r.life != nil {
				r.life(&l)
			}
			if r.view != nil {
				r.view(&v)
			}
			m := testMachine
			if r.resume {
				m = resumeMachine
			}
			got, effs := m.next(l, v, r.event)
			if got.phase != r.want {
				t.Errorf("phase %s; want %s", got.phase, r.want)
			}
			var kinds []effectKind
			for _, e := range effs {
				kinds = append(kinds, e.kind)
			}
			if !slices.Equal(kinds, r.effs) {
				t.Errorf("effects %v; want %v", kinds, r.effs)
			}
			if got.timer != noTimer && got.phase != phaseActive && got.phase != phaseBackoff {
				t.Errorf("a %s timer left running in phase %s", []string{"", "back-off", "linger"}[got.timer], got.phase)
			}
			if r.check != nil {
				r.check(t, got, effs)
			}
		})
	}
}

// Every phase meets every event in the table at least once.
func TestLifecycleTableCoversEveryPair(t *testing.T) {
	seen := map[[2]int]bool{}
	for _, r := range rows() {
		seen[[2]int{int(r.from), int(r.event.kind)}] = true
	}
	for _, p := range allPhases() {
		for k := eventKind(0); k < eventKinds; k++ {
			if !seen[[2]int{int(p), int(k)}] {
				t.Errorf("no row for %s in phase %s", k, p)
			}
		}
	}
}

// Back-off delays double up to the cap, from the first retry on.
func TestBackoffDoublesUpToTheCap(t *testing.T) {
	l := at(phaseSubscribing)
	var delays []time.Duration
	m := testMachine
	m.maxFailures = 0
	for range 6 {
		var effs []effect
		l, effs = m.next(l, mineView(), event{kind: evAttemptDone, attempt: l.attempt, err: errors.New("408")})
		for _, e := range effs {
			if e.kind == effArmBackoff {
				delays = append(delays, e.delay)
			}
		}
		l, _ = m.next(l, mineView(), event{kind: evBackoffOver})
		l, _ = m.next(l, mineView(), event{kind: evSlot})
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 80 * time.Second, 80 * time.Second}
	if !slices.Equal(delays, want) {
		t.Fatalf("delays %v; want %v", delays, want)
	}
}
