package sip_test

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/sfbtest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// mssipProvider runs a provider speaking mssip over mutual TLS to a test
// front-end pool whose certificate names serverName.
func mssipProvider(t *testing.T, tune func(*sip.Config)) (*provtest.Env, *sip.Source, *sfbtest.Pool) {
	t.Helper()
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, serverName)
	cert, key := ca.Issue("trustedapp", "127.0.0.1")
	cfg := sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(t, ca.File, cert, key), Application: appEndpoint(pool.Addr())}
	if tune != nil {
		tune(&cfg)
	}
	env, src := provider(t, cfg, func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	return env, src, pool
}

// Agents handed over together travel in one batched SUBSCRIBE; each gets
// its first state from the 200 OK, later changes by BENOTIFY; an agent the
// pool does not know fails alone, with the pool's reason.
func TestBatchedSubscriptionAgainstPool(t *testing.T) {
	env, src, pool := mssipProvider(t, nil)
	var agents []string
	for i := 1; i <= 5; i++ {
		a := fmt.Sprintf("sip:agent%d@example.com", i)
		agents = append(agents, a)
		pool.SetState(a, sfbtest.State{Availability: 3500 + 3000*(i%2), Device: "computer"})
	}
	const ghost = "sip:ghost@example.com"
	evs := env.Collect(schemas.Key(agents[0]))
	env.Subscribe("ucc_app01", append(agents, ghost)...)
	for i, a := range agents {
		provtest.Eventually(t, a+" active with its first state", func() bool {
			ev, found, err := env.Stores.State.Load(env.Ctx(), schemas.Key(a))
			return env.State(a) == schemas.StateActive && err == nil && found && ev.Presence.AvailabilityValue == 3500+3000*((i+1)%2)
		})
	}
	provtest.Eventually(t, "the ghost failed alone", func() bool {
		c := claimOf(t, env, ghost)
		return c.State == schemas.StateRetrying && c.Failures == 1 && strings.Contains(c.Reason, `"noresource"`)
	})
	batches := pool.Batches()
	if len(batches) != 1 {
		t.Fatalf("%d batches at the pool; want 1: %+v", len(batches), batches)
	}
	for _, a := range agents {
		if c := claimOf(t, env, a); c.Failures != 0 {
			t.Fatalf("%s failed with its neighbour: %+v", a, c)
		}
	}

	pool.SetState(agents[0], sfbtest.State{Availability: 6500, Activity: "on-the-phone", Device: "deskphone"})
	provtest.Eventually(t, "the BENOTIFY's change", func() bool {
		for _, ev := range evs.List() {
			if ev.Presence.Activity == "on-the-phone" && ev.Presence.Availability == schemas.Busy && ev.Presence.Device == "Deskphone" {
				return true
			}
		}
		return false
	})
	var u schemas.Upstream
	src.Describe(sources.Agent{URI: agents[0], Key: schemas.Key(agents[0])}, &u)
	if u.SIP == nil || u.SIP.CallID != batches[0].CallID {
		t.Fatalf("upstream %+v; want the batch's Call-ID %s", u.SIP, batches[0].CallID)
	}
}

// Agents handed over one after another join the open batch with a
// SUBSCRIBE in its dialog, until the batch is full.
func TestBatchesFillUpToTheirSize(t *testing.T) {
	env, src, pool := mssipProvider(t, func(c *sip.Config) { c.BatchSize = 3 })
	var agents []string
	for i := 1; i <= 7; i++ {
		a := fmt.Sprintf("sip:agent%d@example.com", i)
		agents = append(agents, a)
		pool.SetState(a, sfbtest.State{Availability: 15500})
		env.Subscribe("ucc_app01", a)
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
	}
	batches := pool.Batches()
	if len(batches) != 3 {
		t.Fatalf("%d batches for 7 agents of at most 3; want 3: %+v", len(batches), batches)
	}
	sizes := map[int]int{}
	for _, b := range batches {
		sizes[len(b.Agents)]++
	}
	if sizes[3] != 2 || sizes[1] != 1 {
		t.Fatalf("batch sizes %v; want 3, 3 and 1", sizes)
	}
	h := src.Health()
	if h.Stats["dialogs"] != 3 || h.Stats["batched_agents"] != 7 || h.Stats["application_dialogs"] != 3 {
		t.Fatalf("health stats %v; want 3 dialogs holding 7 agents", h.Stats)
	}
	if eps := src.Endpoints(); len(eps) != 1 || eps[0].Dialogs != 3 {
		t.Fatalf("endpoints %+v; want the application endpoint with 3 dialogs", eps)
	}
}

// A 400 for a whole batch is one bad URI's doing: halves find it, it fails
// alone, and its neighbours are subscribed.
func TestBadURIFailsAloneInItsBatch(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	agents := []string{"sip:agent1@example.com", "sip:agent2@example.com", "sip:bad@example.com", "sip:agent3@example.com", "sip:agent4@example.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	pool.Reject("sip:bad@example.com")
	env.Subscribe("ucc_app01", agents...)
	provtest.Eventually(t, "the bad URI failed with the 400", func() bool {
		c := claimOf(t, env, "sip:bad@example.com")
		return c.State == schemas.StateRetrying && c.Failures == 1 && strings.Contains(c.Reason, "400")
	})
	for _, a := range agents {
		if a == "sip:bad@example.com" {
			continue
		}
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
		if c := claimOf(t, env, a); c.Failures != 0 {
			t.Fatalf("%s failed with the bad URI: %+v", a, c)
		}
	}
	if b := pool.Batches(); len(b) != 1 || len(b[0].Agents) != 4 {
		t.Fatalf("batches %+v; want one of the 4 good agents", b)
	}
}

// A 503 with Retry-After pauses the pool: the agents of the refused batch
// and those that come during the pause try again after it, and nothing is
// sent to the pool meanwhile.
func TestUnavailablePoolIsPaused(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	pool.Unavailable(1, time.Hour)
	env.Subscribe("ucc_app01", "sip:agent1@example.com")
	provtest.Eventually(t, "the refused agent waits an hour", func() bool {
		c := claimOf(t, env, "sip:agent1@example.com")
		return c.State == schemas.StateRetrying && strings.Contains(c.Reason, "503") && strings.Contains(c.Reason, "retry after 1h0m0s")
	})
	asked := len(pool.Answers())
	env.Subscribe("ucc_app01", "sip:agent2@example.com")
	provtest.Eventually(t, "the next agent held back by the pause", func() bool {
		c := claimOf(t, env, "sip:agent2@example.com")
		return c.State == schemas.StateRetrying && strings.Contains(c.Reason, "paused")
	})
	if n := len(pool.Answers()); n != asked {
		t.Fatalf("the pool was asked %d more times during its pause", n-asked)
	}
}

// A resubscribe without poolFqdn subscribes the agent alone (a single
// category SUBSCRIBE to the agent, [MS-PRES] 3.4.5.1.3), with poolFqdn
// at that pool over the same trusted transport, in the same attempt: no
// failure counts. A resubscribe in a BENOTIFY moves the agent the same way.
func TestResubscribeRoutesTheAgent(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	// The second pool's certificate comes from the same CA, under the name
	// the provider checks.
	pool2 := sfbtest.Start(t, pool.CA(), serverName)
	const alone, moved, stays, later = "sip:alone@example.com", "sip:moved@example.com", "sip:stays@example.com", "sip:later@example.com"
	for _, a := range []string{stays, later} {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	pool.SetState(alone, sfbtest.State{Availability: 12500})
	pool2.SetState(moved, sfbtest.State{Availability: 6500})
	pool2.SetState(later, sfbtest.State{Availability: 9500})
	pool.Resubscribe(alone, "")
	pool.Resubscribe(moved, pool2.Addr())
	env.Subscribe("ucc_app01", alone, moved, stays, later)
	for _, a := range []string{alone, moved, stays, later} {
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
	}
	for _, a := range []string{alone, moved, stays, later} {
		if c := claimOf(t, env, a); c.Failures != 0 {
			t.Fatalf("%s: a redirect counted as a failure: %+v", a, c)
		}
	}
	if got := agentsAt(pool); got != "[alone] [later stays]" {
		t.Fatalf("first pool's batches %s", got)
	}
	for _, b := range pool.Batches() {
		if b.Single != (len(b.Agents) == 1 && b.Agents[0] == alone) {
			t.Fatalf("batch %+v: only the agent sent alone has a single category subscription", b)
		}
	}
	provtest.Eventually(t, "alone's first state from its own 200", func() bool {
		ev, found, err := env.Stores.State.Load(env.Ctx(), schemas.Key(alone))
		return err == nil && found && ev.Presence.Availability == schemas.BeRightBack
	})
	if got := agentsAt(pool2); got != "[moved]" {
		t.Fatalf("second pool's batches %s", got)
	}

	pool.Resubscribe(later, pool2.Addr())
	pool.SetState(later, sfbtest.State{Availability: 3500})
	provtest.Eventually(t, "later moved by its BENOTIFY", func() bool { return agentsAt(pool2) == "[later moved]" && env.State(later) == schemas.StateActive })
	if c := claimOf(t, env, later); c.Failures != 0 {
		t.Fatalf("a BENOTIFY's redirect counted as a failure: %+v", c)
	}
}

// agentsAt lists each batch's agents by user part, sorted, batches sorted.
func agentsAt(p *sfbtest.Pool) string {
	var out []string
	for _, b := range p.Batches() {
		var users []string
		for _, a := range b.Agents {
			users = append(users, strings.TrimSuffix(strings.TrimPrefix(a, "sip:"), "@example.com"))
		}
		sort.Strings(users)
		out = append(out, "["+strings.Join(users, " ")+"]")
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A batch is refreshed before the pool's expiry; when the pool no longer
// holds it (a restart: 481), its agents are subscribed again at once, in a
// new batch, without a failure counted.
func TestBatchRefreshAndPoolRestart(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	pool.SetMaxExpires(2 * time.Second)
	agents := []string{"sip:agent1@example.com", "sip:agent2@example.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	env.Subscribe("ucc_app01", agents...)
	for _, a := range agents {
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
	}
	first := pool.Batches()[0].CallID
	provtest.Eventually(t, "a refresh in the batch's dialog", func() bool {
		for _, a := range pool.Answers() {
			if a.CallID == first && a.Status == 200 && len(a.Agents) == 0 {
				return true
			}
		}
		return false
	})
	pool.Restart()
	provtest.Eventually(t, "the agents batched anew after the 481", func() bool {
		b := pool.Batches()
		return len(b) == 1 && b[0].CallID != first && len(b[0].Agents) == 2
	})
	for _, a := range agents {
		provtest.Eventually(t, a+" active again", func() bool { return env.State(a) == schemas.StateActive })
		if c := claimOf(t, env, a); c.Failures != 0 {
			t.Fatalf("%s: the pool's restart counted as a failure: %+v", a, c)
		}
	}
}

// Updates that come as NOTIFY are answered 200 and applied as BENOTIFYs are.
func TestBatchNotifyIsAnswered(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	const a = "sip:agent1@example.com"
	pool.SetState(a, sfbtest.State{Availability: 3500})
	evs := env.Collect(schemas.Key(a))
	env.Subscribe("ucc_app01", a)
	provtest.Eventually(t, "active", func() bool { return env.State(a) == schemas.StateActive })
	pool.UseNotify()
	pool.SetState(a, sfbtest.State{Availability: 18500})
	if got := pool.Notified(); len(got) != 1 || got[0] != 200 {
		t.Fatalf("NOTIFY answers %v; want one 200", got)
	}
	waitEvent(t, evs, 2, schemas.Offline)
}

// An agent let go leaves its batch at the pool before the worker releases
// it: the batch is rebuilt without it, the others keep their state (no new
// event, no failure), and the last agent out ends the batch.
func TestUnsubscribedAgentLeavesItsBatch(t *testing.T) {
	env, src, pool := mssipProvider(t, nil)
	agents := []string{"sip:agent1@example.com", "sip:agent2@example.com", "sip:agent3@example.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	evs := env.Collect(schemas.Key(agents[1]))
	env.Subscribe("ucc_app01", agents...)
	for _, a := range agents {
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
	}
	first := pool.Batches()[0].CallID
	unsubscribe := func(uris ...string) {
		t.Helper()
		if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: uris}); err != nil {
			t.Fatal(err)
		}
	}
	unsubscribe(agents[0])
	provtest.Eventually(t, "the batch rebuilt without agent1", func() bool {
		return agentsAt(pool) == "[agent2 agent3]" && pool.Batches()[0].CallID != first
	})
	for _, a := range agents[1:] {
		if c := claimOf(t, env, a); c.Failures != 0 || env.State(a) != schemas.StateActive {
			t.Fatalf("%s after its neighbour left: %+v", a, c)
		}
	}
	if n := len(evs.List()); n != 1 {
		t.Fatalf("agent2 has %d events; want its first state alone: %+v", n, evs.List())
	}
	unsubscribe(agents[1:]...)
	provtest.Eventually(t, "no batch left", func() bool { return len(pool.Batches()) == 0 && src.Health().Stats["dialogs"] == 0 })
}

// Two workers share the agents: a worker joining takes its share, one
// stopping hands its agents over, and the pool never sees an agent in two
// live batches at once, nor an agent in none once the hand-over is done.
func TestBatchesFollowTheAgentsBetweenWorkers(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, serverName)
	ns := provtest.Server(t)
	start := func(id string) *provtest.Env {
		cert, key := ca.Issue(id, "127.0.0.1")
		wcfg := provtest.Config()
		wcfg.ID, wcfg.SubscriptionsPerSecond, wcfg.Linger, wcfg.WorkerLease = id, 200, 100*time.Millisecond, 3*time.Second
		wcfg.FirstRetry, wcfg.MaxRetry = time.Hour, time.Hour
		return provtest.StartOn(t, ns, wcfg, clockwork.NewRealClock(), func(w *worker.Worker, clock clockwork.Clock) {
			src, err := sip.New(sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(t, ca.File, cert, key), Listen: "127.0.0.1:0",
				RequestTimeout: 3 * time.Second, Application: appEndpoint(pool.Addr())}, clock, w, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
			if err != nil {
				t.Fatal(err)
			}
			w.AddSource(schemas.SourceSIP, src)
		})
	}
	var agents []string
	for i := 1; i <= 12; i++ {
		a := fmt.Sprintf("sip:agent%02d@example.com", i)
		agents = append(agents, a)
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	// Each agent in exactly one batch, and every batch a live one's.
	onceEach := func() bool {
		seen := map[string]int{}
		for _, b := range pool.Batches() {
			for _, a := range b.Agents {
				seen[a]++
			}
		}
		for _, a := range agents {
			if seen[a] != 1 {
				return false
			}
		}
		return len(seen) == len(agents)
	}
	first := start("worker-a")
	first.Subscribe("ucc_app01", agents...)
	provtest.Eventually(t, "every agent batched once", onceEach)

	second := start("worker-b")
	provtest.Eventually(t, "the second worker's share batched, every agent once", func() bool {
		holders := map[string]bool{}
		for _, a := range agents {
			holders[claimOf(t, first, a).Worker] = true
		}
		return holders["worker-a"] && holders["worker-b"] && len(pool.Batches()) >= 2 && onceEach()
	})
	first.Stop()
	provtest.Eventually(t, "every agent batched once by the second worker", func() bool {
		for _, a := range agents {
			if c := claimOf(t, second, a); c.Worker != "worker-b" || c.State != schemas.StateActive {
				return false
			}
		}
		return onceEach()
	})
	if d := pool.Doubles(); len(d) != 0 {
		t.Fatalf("agents taken by a batch while another held them: %v", d)
	}
}

// A pool that does not answer is no fault of the agents: they wait for it
// without a failure counted, as in the rfc dialect, and are batched as soon
// as it answers.
func TestPoolDownCountsNoFailure(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	cert, key := ca.Issue("trustedapp", "127.0.0.1")
	down := "127.0.0.1:" + strconv.Itoa(freeport.T(t))
	env, src := provider(t, sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(t, ca.File, cert, key), RequestTimeout: time.Second,
		KeepAlive: 100 * time.Millisecond, Application: appEndpoint(down)}, func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	provtest.Eventually(t, "the pool seen down", func() bool { return !src.Health().Healthy && !strings.Contains(src.Health().Detail, "not checked") })
	const a = "sip:agent1@example.com"
	env.Subscribe("ucc_app01", a)
	provtest.Eventually(t, "waiting for the pool, no failure counted", func() bool {
		c := claimOf(t, env, a)
		return c.State == schemas.StateRetrying && c.Failures == 0 && strings.Contains(c.Reason, sources.ErrSourceDown.Error())
	})
	// An hour's back-off: only the pool coming back can make it active.
	pool := sfbtest.StartAt(t, ca, serverName, down)
	pool.SetState(a, sfbtest.State{Availability: 3500})
	provtest.Eventually(t, "batched once the pool answers", func() bool {
		return env.State(a) == schemas.StateActive && len(pool.Batches()) == 1
	})
	if c := claimOf(t, env, a); c.Failures != 0 {
		t.Fatalf("claim %+v; want no failure counted", c)
	}
}
