package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/worker"
)

func startSIP(t *testing.T, cfg worker.Config) (*provtest.Env, *scripted) {
	t.Helper()
	var src *scripted
	env := provtest.Start(t, cfg, func(w *worker.Worker, clock clockwork.Clock) {
		src = newScripted(clock)
		w.AddSource(schemas.SourceSIP, src)
	})
	return env, src
}

// waitForTimers blocks until the fake clock has n timers and sleepers, so
// that advancing it fires what the test means to fire.
func waitForTimers(t *testing.T, env *provtest.Env, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("the worker never had %d timers", n)
	}
}

func claimOf(t *testing.T, env *provtest.Env, uri string) (schemas.Claim, bool) {
	t.Helper()
	u, _ := schemas.ParseURI(uri)
	c, _, found, err := env.Stores.Claims.Get(env.Ctx(), u.Key())
	if err != nil {
		t.Fatal(err)
	}
	return c, found
}

// Timers the fake clock always has: the worker's heartbeat and its fence.
const baseTimers = 2

func TestOneUpstreamSubscriptionPerAgentForManyUCCs(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	for _, ucc := range []string{"ucc_app01", "ucc_app02", "ucc_app03"} {
		rep := env.Subscribe(ucc, "sip:User1@Domain.com", "sip:user2@domain.com")
		if got := rep.Agents[0]; got.URI != "sip:user1@domain.com" || got.Source != schemas.SourceSIP || got.Error != nil {
			t.Fatalf("reply entry = %+v", got)
		}
	}
	env.AdvanceUntil("both agents active", func() bool {
		return env.State("sip:user1@domain.com") == schemas.StateActive && env.State("sip:user2@domain.com") == schemas.StateActive
	})
	// The worker counts interests as its watch delivers them, which may trail
	// the agents' subscriptions.
	var st schemas.Status
	provtest.Eventually(t, "six interests counted", func() bool {
		var err error
		st, err = env.Client.Status(env.Ctx())
		return err == nil && st.Interests == 6
	})
	if st.Agents != 2 || st.Sources["sip"].States[schemas.StateActive] != 2 {
		t.Fatalf("status = %d agents, sip states %v; want 2, 2 active", st.Agents, st.Sources["sip"].States)
	}
	if n := src.count(); n != 2 {
		t.Fatalf("%d upstream subscriptions for 2 agents of 3 UCCs; want 2", n)
	}
	provtest.Eventually(t, "claim of worker-a, sip, active", func() bool {
		c, found := claimOf(t, env, "sip:user1@domain.com")
		return found && c.Worker == "worker-a" && c.Source == "sip" && c.State == schemas.StateActive
	})
}

func TestThrottleDrainsABurstInOrderAtTheConfiguredRate(t *testing.T) {
	cfg := provtest.Config()
	cfg.SubscriptionsPerSecond = 10
	env, src := startSIP(t, cfg)
	start := env.Clock.Now()
	var uris []string
	for i := 0; i < 25; i++ {
		uris = append(uris, fmt.Sprintf("sip:agent%02d@domain.com", i))
	}
	rep := env.Subscribe("ucc_app01", uris...)
	for _, r := range rep.Agents {
		if r.State != schemas.StatePending {
			t.Fatalf("%s answered %s; want pending while queued", r.URI, r.State)
		}
	}
	for k := 1; k < len(uris); k++ {
		provtest.Eventually(t, fmt.Sprintf("subscription %d", k), func() bool { return src.count() == k })
		waitForTimers(t, env, baseTimers+1) // the throttle waits for its next slot
		env.Clock.Advance(100 * time.Millisecond)
	}
	provtest.Eventually(t, "the whole burst", func() bool { return src.count() == len(uris) })
	for i, a := range src.attemptList() {
		if a.uri != uris[i] {
			t.Fatalf("subscription %d is %s; want %s (queue order)", i, a.uri, uris[i])
		}
		if want := start.Add(time.Duration(i) * 100 * time.Millisecond); !a.at.Equal(want) {
			t.Fatalf("subscription %d at +%s; want +%s (10 per second)", i, a.at.Sub(start), want.Sub(start))
		}
	}
}

// expectAttemptAfter advances the clock to just before the next attempt is
// due, checks none came early, then to the moment it is due.
func expectAttemptAfter(t *testing.T, env *provtest.Env, src *scripted, timers int, delay time.Duration) {
	t.Helper()
	before := src.count()
	waitForTimers(t, env, timers)
	env.Clock.Advance(delay - time.Millisecond)
	if src.count() != before {
		t.Fatalf("attempt %d came before its back-off of %s", before+1, delay)
	}
	env.Clock.Advance(time.Millisecond)
	provtest.Eventually(t, fmt.Sprintf("attempt %d after %s", before+1, delay), func() bool { return src.count() == before+1 })
}

func TestFailuresBackOffExponentiallyUpToTheCap(t *testing.T) {
	cfg := provtest.Config()
	cfg.MaxFailures = 0 // never give up
	env, src := startSIP(t, cfg)
	const uri = "sip:flaky@domain.com"
	refused := errors.New("503 service unavailable")
	src.script(uri, refused, refused, refused, refused, refused, refused)
	env.Subscribe("ucc_app01", uri)
	provtest.Eventually(t, "first attempt", func() bool { return src.count() == 1 })
	for _, delay := range []time.Duration{10, 20, 40, 80, 80, 80} {
		provtest.Eventually(t, "retrying", func() bool { return env.State(uri) == schemas.StateRetrying })
		expectAttemptAfter(t, env, src, baseTimers+1, delay*time.Second)
	}
	provtest.Eventually(t, "active after the 7th attempt", func() bool { return env.State(uri) == schemas.StateActive })
	if !strings.Contains(env.Logs.String(), `"retry_in":80000`) {
		t.Fatalf("no failure log line with the capped delay:\n%s", env.Logs.String())
	}
}

func TestGivesUpAtTheFailureLimitUntilAUCCSubscribesAgain(t *testing.T) {
	env, src := startSIP(t, provtest.Config()) // MaxFailures 3
	const uri = "sip:gone@domain.com"
	src.setAlways(errors.New("404 not found"))
	env.Subscribe("ucc_app01", uri)
	provtest.Eventually(t, "first attempt", func() bool { return src.count() == 1 })
	expectAttemptAfter(t, env, src, baseTimers+1, 10*time.Second)
	expectAttemptAfter(t, env, src, baseTimers+1, 20*time.Second)
	provtest.Eventually(t, "failed", func() bool { return env.State(uri) == schemas.StateFailed })
	// Far past the longest back-off (80 s), within a heartbeat (20 min): a
	// 24 h jump would also fence the worker, whose beat cannot keep up.
	env.Clock.Advance(10 * time.Minute)
	if n := src.count(); n != 3 {
		t.Fatalf("%d attempts after giving up; want 3", n)
	}
	// The claim is written by an effect after the state a get answers.
	provtest.Eventually(t, "claim failed with 3 failures and the reason", func() bool {
		c, _ := claimOf(t, env, uri)
		return c.State == schemas.StateFailed && c.Failures == 3 && strings.Contains(c.Reason, "404")
	})
	if !strings.Contains(env.Logs.String(), "gave up") {
		t.Fatal("no give-up log line")
	}

	src.setAlways(nil)
	rep := env.Subscribe("ucc_app01", uri)
	if rep.Agents[0].State != schemas.StatePending {
		t.Fatalf("subscribing a failed agent again answers %s; want pending", rep.Agents[0].State)
	}
	provtest.Eventually(t, "active after a UCC subscribed again", func() bool { return env.State(uri) == schemas.StateActive })
}

func TestRetryAfterAndPermanentFailures(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	src.script("sip:busy@domain.com", &sources.RetryAfterError{After: 45 * time.Second, Err: errors.New("503")})
	src.script("sip:unknown@domain.com", &sources.PermanentError{Err: errors.New("no such user")})
	env.Subscribe("ucc_app01", "sip:busy@domain.com")
	provtest.Eventually(t, "first attempt", func() bool { return src.count() == 1 })
	expectAttemptAfter(t, env, src, baseTimers+1, 45*time.Second) // the server's 45 s beats the first 10 s

	env.Subscribe("ucc_app01", "sip:unknown@domain.com")
	env.AdvanceUntil("failed at once", func() bool { return env.State("sip:unknown@domain.com") == schemas.StateFailed })
	if n := src.count(); n != 3 {
		t.Fatalf("%d attempts; want 3 (a permanent failure is not retried)", n)
	}
}

func TestSubscriptionEndedUpstreamIsRestoredAtOnce(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	const uri = "sip:user1@domain.com"
	env.Subscribe("ucc_app01", uri)
	provtest.Eventually(t, "active", func() bool { return env.State(uri) == schemas.StateActive })
	u, _ := schemas.ParseURI(uri)
	env.Clock.Advance(time.Second) // the throttle has a slot free
	env.Worker.Lost(sources.Agent{URI: u.URI, Key: u.Key()}, sources.ErrTerminated)
	provtest.Eventually(t, "subscribed again without any wait", func() bool { return src.count() == 2 })
	provtest.Eventually(t, "active again", func() bool { return env.State(uri) == schemas.StateActive })
	if ended := src.endedList(); len(ended) != 0 {
		t.Fatalf("unsubscribed %v; a restore must not unsubscribe", ended)
	}
}

func TestLastUCCLeavingEndsTheUpstreamSubscriptionAfterALinger(t *testing.T) {
	env, src := startSIP(t, provtest.Config()) // linger 5 s
	const uri = "sip:user1@domain.com"
	env.Subscribe("ucc_app01", uri)
	env.Subscribe("ucc_app02", uri)
	provtest.Eventually(t, "active", func() bool { return env.State(uri) == schemas.StateActive })

	unsubscribe := func(ucc string) {
		if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: ucc, URIs: []string{uri}}); err != nil {
			t.Fatal(err)
		}
	}
	unsubscribe("ucc_app01")
	unsubscribe("ucc_app02")
	waitForTimers(t, env, baseTimers+1) // the linger
	env.Clock.Advance(4 * time.Second)
	env.Subscribe("ucc_app03", uri) // back within the linger: nothing upstream changes
	provtest.Eventually(t, "interest of ucc_app03", func() bool {
		st, _ := env.Client.Status(env.Ctx())
		return st.Interests == 1
	})
	env.Clock.Advance(10 * time.Second)
	if len(src.endedList()) != 0 || src.count() != 1 {
		t.Fatalf("a UCC back within the linger cost an unsubscribe or a subscribe: ended %v, %d attempts", src.endedList(), src.count())
	}

	unsubscribe("ucc_app03")
	waitForTimers(t, env, baseTimers+1)
	env.Clock.Advance(5*time.Second - time.Millisecond)
	if len(src.endedList()) != 0 {
		t.Fatal("unsubscribed before the linger ran out")
	}
	env.Clock.Advance(time.Millisecond)
	provtest.Eventually(t, "upstream unsubscribed", func() bool { return len(src.endedList()) == 1 })
	provtest.Eventually(t, "claim released", func() bool { _, found := claimOf(t, env, uri); return !found })
}

func TestLeaseEndsInterestUnlessRenewed(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	const uri = "sip:user1@domain.com"
	lease := func() {
		_, err := env.Client.Subscribe(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", LeaseS: 30,
			Agents: []schemas.AgentRef{{URI: uri}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	interests := func() int {
		st, err := env.Client.Status(env.Ctx())
		if err != nil {
			t.Fatal(err)
		}
		return st.Interests
	}
	lease()
	provtest.Eventually(t, "active", func() bool { return env.State(uri) == schemas.StateActive })
	waitForTimers(t, env, baseTimers+1) // the lease
	env.Clock.Advance(20 * time.Second)
	lease() // renewed: due at 50 s now
	provtest.Eventually(t, "renewal applied", func() bool {
		waitForTimers(t, env, baseTimers+1)
		return true
	})
	env.Clock.Advance(15 * time.Second)
	if interests() != 1 {
		t.Fatal("a renewed lease expired at its first due time")
	}
	env.Clock.Advance(15 * time.Second)
	provtest.Eventually(t, "lease expired", func() bool { return interests() == 0 })
	waitForTimers(t, env, baseTimers+1) // the linger
	env.Clock.Advance(5 * time.Second)
	provtest.Eventually(t, "upstream unsubscribed", func() bool { return len(src.endedList()) == 1 })
}

func TestSyncReplacesTheUCCsAgents(t *testing.T) {
	env, _ := startSIP(t, provtest.Config())
	env.Subscribe("ucc_app01", "sip:a@d.com", "sip:b@d.com", "sip:c@d.com")
	env.Subscribe("ucc_app02", "sip:b@d.com")
	rep, err := env.Client.Sync(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01",
		Agents: []schemas.AgentRef{{URI: "sip:a@d.com"}, {URI: "sip:d@d.com"}, {URI: "mailto:x@d.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agents[2].Error == nil || rep.Agents[2].Error.Code != schemas.CodeInvalidURI || rep.Agents[1].Error != nil {
		t.Fatalf("sync reply = %+v", rep.Agents)
	}
	held, err := env.Stores.Interest.AgentsOf(env.Ctx(), schemas.Key("ucc_app01"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range held {
		got[k] = true
	}
	a, _ := schemas.ParseURI("sip:a@d.com")
	d, _ := schemas.ParseURI("sip:d@d.com")
	if len(got) != 2 || !got[a.Key()] || !got[d.Key()] {
		t.Fatalf("ucc_app01 holds %d agents after sync; want exactly a and d", len(got))
	}
	provtest.Eventually(t, "4 agents, 3 interests", func() bool {
		st, _ := env.Client.Status(env.Ctx())
		return st.Interests == 3 && st.Agents == 3 // a, d for ucc_app01; b for ucc_app02
	})
}

func TestPanickingSourceIsAFailureNotACrash(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	src.panics = true
	env.Subscribe("ucc_app01", "sip:user1@domain.com")
	provtest.Eventually(t, "retrying", func() bool { return env.State("sip:user1@domain.com") == schemas.StateRetrying })
	if !strings.Contains(env.Logs.String(), "recovered from panic") {
		t.Fatal("the panic was not logged")
	}
	env.Subscribe("ucc_app01", "sip:user2@domain.com") // the worker still serves
}

func TestClaimsKeepOneHolderPerAgent(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	ctx := env.Ctx()
	live, dead := "sip:live@domain.com", "sip:dead@domain.com"
	lu, _ := schemas.ParseURI(live)
	du, _ := schemas.ParseURI(dead)
	// worker-b is alive but leaving: it owns no agent, so worker-a is the
	// owner of both, yet must leave the one worker-b still holds.
	if err := env.Stores.Workers.Beat(ctx, schemas.WorkerInfo{ID: "worker-b", Leaving: true}); err != nil {
		t.Fatal(err)
	}
	rev, _, err := env.Stores.Claims.Create(ctx, lu.Key(), schemas.Claim{Worker: "worker-b", Source: "sip", State: schemas.StateActive})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Stores.Claims.Create(ctx, du.Key(), schemas.Claim{Worker: "worker-gone", Source: "sip", State: schemas.StateActive}); err != nil {
		t.Fatal(err)
	}
	env.Subscribe("ucc_app01", live, dead)
	// The dead worker's claim says active too: only the holder tells. The
	// agent worker-b holds answers its claim's state once the dispatcher
	// found the claim.
	env.AdvanceUntil("the dead worker's agent taken over, the live one left", func() bool {
		c, found := claimOf(t, env, dead)
		return found && c.Worker == "worker-a" && c.State == schemas.StateActive && env.State(live) == schemas.StateActive
	})
	for _, a := range src.attemptList() {
		if a.uri == live {
			t.Fatal("subscribed an agent a live worker holds")
		}
	}
	if err := env.Stores.Claims.Delete(ctx, lu.Key(), rev); err != nil {
		t.Fatal(err)
	}
	env.AdvanceUntil("released agent taken", func() bool {
		c, found := claimOf(t, env, live)
		return found && c.Worker == "worker-a" && c.State == schemas.StateActive
	})
}

func TestStopEndsUpstreamSubscriptionsBeforeReleasingClaims(t *testing.T) {
	env, src := startSIP(t, provtest.Config())
	uris := []string{"sip:a@d.com", "sip:b@d.com"}
	env.Subscribe("ucc_app01", uris...)
	env.AdvanceUntil("both active", func() bool {
		return env.State(uris[0]) == schemas.StateActive && env.State(uris[1]) == schemas.StateActive
	})
	var claimedWhileUnsubscribing atomic.Int32
	src.whenEnded(func(a sources.Agent) {
		if _, _, found, _ := env.Stores.Claims.Get(context.Background(), a.Key); found {
			claimedWhileUnsubscribing.Add(1)
		}
	})
	env.Stop()
	if ended := src.endedList(); len(ended) != 2 || claimedWhileUnsubscribing.Load() != 2 {
		t.Fatalf("stop ended %v with the claim still held %d times; want both, claims released after", ended, claimedWhileUnsubscribing.Load())
	}
	for _, uri := range uris {
		if _, found := claimOf(t, env, uri); found {
			t.Fatalf("claim of %s survived a clean stop", uri)
		}
	}
	held, err := env.Stores.Interest.AgentsOf(env.Ctx(), schemas.Key("ucc_app01"))
	if err != nil || len(held) != 2 {
		t.Fatalf("interests after stop: %v, %v; want both kept for the next start", held, err)
	}
	alive, err := env.Stores.Workers.Alive(env.Ctx(), "worker-a")
	if err != nil || alive {
		t.Fatalf("worker-a alive after stop: %v, %v", alive, err)
	}
}

func TestAgentOfADeadHolderIsTakenOver(t *testing.T) {
	cfg := provtest.Config()
	cfg.WorkerLease = 30 * time.Second
	env, src := startSIP(t, cfg)
	ctx := env.Ctx()
	const uri = "sip:orphan@domain.com"
	u, _ := schemas.ParseURI(uri)
	if err := env.Stores.Workers.Beat(ctx, schemas.WorkerInfo{ID: "worker-b"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Stores.Claims.Create(ctx, u.Key(), schemas.Claim{Worker: "worker-b", Source: "sip", State: schemas.StateActive}); err != nil {
		t.Fatal(err)
	}
	env.Subscribe("ucc_app01", uri)
	provtest.Eventually(t, "held elsewhere", func() bool {
		st, _ := env.Client.Status(env.Ctx())
		return st.Agents == 1 && src.count() == 0
	})
	// worker-b dies without releasing anything: its liveness entry is gone,
	// its claim stays.
	if err := env.Stores.Workers.Leave(ctx, "worker-b"); err != nil {
		t.Fatal(err)
	}
	env.AdvanceUntil("taken over at a heartbeat", func() bool {
		c, found := claimOf(t, env, uri)
		return found && c.Worker == "worker-a" && c.State == schemas.StateActive && src.count() == 1
	})
}

// unanswered fails the first writes of presence, as a state stream that is
// electing a leader does.
type unanswered struct {
	worker.StateStore
	mu    sync.Mutex
	fails int
}

func (u *unanswered) Swap(ctx context.Context, ev schemas.Event, revision uint64) (uint64, bool, error) {
	u.mu.Lock()
	fail := u.fails > 0
	u.fails--
	u.mu.Unlock()
	if fail {
		return 0, false, errors.New("nats: no response from stream")
	}
	return u.StateStore.Swap(ctx, ev, revision)
}

// A presence the source saw while NATS could not store it is stored once
// NATS answers again, the newest one, in order; nothing is lost.
func TestObservationsNATSDidNotStoreAreStoredLater(t *testing.T) {
	failing := &unanswered{fails: 3}
	env := provtest.StartFaulty(t, provtest.Server(t), provtest.Config(),
		clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)),
		func(s worker.Stores) worker.Stores { failing.StateStore = s.State; s.State = failing; return s },
		func(w *worker.Worker, clock clockwork.Clock) { w.AddSource(schemas.SourceSIP, newScripted(clock)) })
	const uri = "sip:agent@domain.com"
	agent := sources.Agent{URI: uri, Key: keyOf(uri)}
	evs := env.Collect(agent.Key)
	busy := schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500, Source: schemas.SourceSIP}
	away := schemas.Presence{Availability: schemas.Away, AvailabilityValue: 15500, Source: schemas.SourceSIP}
	env.Worker.Observe(agent, busy)
	env.Worker.Observe(agent, away) // while busy waits: stored after it, or instead of it
	env.AdvanceUntil("the newest presence stored", func() bool {
		got := evs.List()
		return len(got) > 0 && got[len(got)-1].Presence.Availability == schemas.Away
	})
	for _, ev := range evs.List() {
		if ev.Presence.Availability != schemas.Busy && ev.Presence.Availability != schemas.Away {
			t.Fatalf("event %+v; want Busy then Away, or Away alone", ev)
		}
	}
	// The line follows the write, which published the event first.
	provtest.Eventually(t, "a log line saying the presence was stored after a retry", func() bool {
		return strings.Contains(env.Logs.String(), "presence stored after a retry")
	})
}
