package sip_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
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
	return mssipProviderLogging(t, tune, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
}

// mssipProviderLogging is mssipProvider with the SIP source's logger given.
func mssipProviderLogging(t *testing.T, tune func(*sip.Config), log zerolog.Logger) (*provtest.Env, *sip.Source, *sfbtest.Pool) {
	t.Helper()
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, serverName)
	cert, key := ca.Issue("trustedapp", "127.0.0.1")
	cfg := sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(t, ca.File, cert, key), Application: appEndpoint(pool.Addr())}
	if tune != nil {
		tune(&cfg)
	}
	env, src := providerLogging(t, cfg, func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour }, log)
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
	agents, first := twoBatched(t, env, pool)
	provtest.Eventually(t, "a refresh in the batch's dialog", func() bool {
		for _, a := range pool.Answers() {
			if a.CallID == first && a.Status == 200 && len(a.Agents) == 0 {
				return true
			}
		}
		return false
	})
	pool.Restart()
	batchedAnew(t, env, pool, first, agents, "the pool's restart")
}

// twoBatched has two agents subscribed in one batch, returning them and the
// batch's Call-ID.
func twoBatched(t *testing.T, env *provtest.Env, pool *sfbtest.Pool) (agents []string, callID string) {
	t.Helper()
	agents = []string{"sip:agent1@example.com", "sip:agent2@example.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	env.Subscribe("ucc_app01", agents...)
	for _, a := range agents {
		provtest.Eventually(t, a+" active", func() bool { return env.State(a) == schemas.StateActive })
	}
	return agents, pool.Batches()[0].CallID
}

// batchedAnew waits for the agents of the batch first, which ended for
// cause, to be active in one new batch with no failure counted.
func batchedAnew(t *testing.T, env *provtest.Env, pool *sfbtest.Pool, first string, agents []string, cause string) {
	t.Helper()
	provtest.Eventually(t, "the agents batched anew after "+cause, func() bool {
		b := pool.Batches()
		return len(b) == 1 && b[0].CallID != first && len(b[0].Agents) == len(agents)
	})
	for _, a := range agents {
		provtest.Eventually(t, a+" active again", func() bool { return env.State(a) == schemas.StateActive })
		if c := claimOf(t, env, a); c.Failures != 0 {
			t.Fatalf("%s: %s counted as a failure: %+v", a, cause, c)
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

// A BENOTIFY that arrives after a newer one is dropped: the older state
// never overwrites the newer, so an agent gone Busy is never shown
// Available.
func TestBatchNotificationsOutOfOrder(t *testing.T) {
	logs := &provtest.Logs{}
	env, _, pool := mssipProviderLogging(t, nil, zerolog.New(logs).Level(zerolog.DebugLevel))
	const a = "sip:agent1@example.com"
	pool.SetState(a, sfbtest.State{Availability: 15500})
	evs := env.Collect(schemas.Key(a))
	env.Subscribe("ucc_app01", a)
	waitEvent(t, evs, 1, schemas.Away)
	late := pool.OutOfOrder(a, sfbtest.State{Availability: 3500}, sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
	waitEvent(t, evs, 2, schemas.Busy)
	late()
	provtest.Eventually(t, "the late BENOTIFY handled", func() bool {
		return strings.Contains(logs.String(), "older than one applied") || len(evs.List()) > 2
	})
	if list := evs.List(); len(list) != 2 {
		t.Fatalf("events %+v; want Away then Busy alone", list)
	}
	ev, found, err := env.Stores.State.Load(env.Ctx(), schemas.Key(a))
	if err != nil || !found || ev.Presence.Availability != schemas.Busy {
		t.Fatalf("stored presence %+v (found %t, %v); want Busy", ev.Presence, found, err)
	}
}

// A notification that beats the 200 of the batch taking the agent is
// applied, and the older state piggybacked in the 200 does not overwrite
// it.
func TestBatchNotifyBeforeTheAnswer(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	const a = "sip:agent1@example.com"
	pool.SetState(a, sfbtest.State{Availability: 3500})
	// As a NOTIFY the pool sends its 200 only once the watcher has it.
	pool.UseNotify()
	pool.NotifyBeforeAnswer(a, sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
	evs := env.Collect(schemas.Key(a))
	env.Subscribe("ucc_app01", a)
	provtest.Eventually(t, "active, the notification's Busy last", func() bool {
		list := evs.List()
		return env.State(a) == schemas.StateActive && len(list) > 0 && list[len(list)-1].Presence.Availability == schemas.Busy
	})
	if got := pool.Notified(); len(got) != 1 || got[0] != 200 {
		t.Fatalf("answers to the early NOTIFY %v; want one 200", got)
	}
}

// A subscribe given up on while its batch request is out (the worker
// stopping hands the agent over) leaves the batch once the pool's 200 is
// in: no member is left that nobody holds, refreshed beside the next
// holder's batch.
func TestCancelledBatchedSubscribeLeavesNoMember(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, serverName)
	cert, key := ca.Issue("trustedapp", "127.0.0.1")
	st := startStackWith(t, sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(t, ca.File, cert, key), Listen: "127.0.0.1:0",
		RequestTimeout: 3 * time.Second, Application: appEndpoint(pool.Addr())}, 0)
	a := sources.Agent{URI: "sip:agent1@example.com", Key: schemas.Key("sip:agent1@example.com")}
	pool.SetState(a.URI, sfbtest.State{Availability: 3500})
	release := pool.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() { returned <- st.src.Subscribe(ctx, a) }()
	provtest.Eventually(t, "the batch request at the pool", func() bool { return pool.Held() == 1 })
	cancel()
	release()
	if err := <-returned; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe: %v; want the cancellation", err)
	}
	provtest.Eventually(t, "the agent out of the batch the 200 made", func() bool {
		taken := false
		for _, ans := range pool.Answers() {
			taken = taken || (ans.Status == 200 && len(ans.Agents) == 1)
		}
		return taken && len(pool.Batches()) == 0 && st.src.Health().Stats["batched_agents"] == 0
	})
}

// A batch dialog the pool ends, whatever the reason, is no agent's fault:
// its agents are batched again at once, none failed for good or counted,
// though the same reason on one agent's instance would fail it.
func TestBatchTerminationFailsNoAgent(t *testing.T) {
	env, _, pool := mssipProvider(t, nil)
	agents, first := twoBatched(t, env, pool)
	pool.Terminate("rejected")
	batchedAnew(t, env, pool, first, agents, "the batch's end")
}

// A pool that wants longer subscriptions (423 with Min-Expires) gets them:
// the batch asks again at once, and from then on, for its Min-Expires, in
// the same attempt, and no agent counts a failure.
func TestBatchAsksForTheMinExpires(t *testing.T) {
	env, _, pool := mssipProvider(t, func(c *sip.Config) { c.Expires = time.Minute })
	pool.SetMinExpires(2 * time.Minute)
	const a = "sip:agent1@example.com"
	pool.SetState(a, sfbtest.State{Availability: 3500})
	env.Subscribe("ucc_app01", a)
	provtest.Eventually(t, "active", func() bool { return env.State(a) == schemas.StateActive })
	if c := claimOf(t, env, a); c.Failures != 0 {
		t.Fatalf("the 423 counted as a failure: %+v", c)
	}
	var statuses []int
	for _, ans := range pool.Answers() {
		statuses = append(statuses, ans.Status)
	}
	if fmt.Sprint(statuses) != "[423 200]" {
		t.Fatalf("answers %v; want the 423, then a 200 to the Min-Expires asked", statuses)
	}
	if b := pool.Batches(); len(b) != 1 || time.Until(b[0].Expires) < time.Minute {
		t.Fatalf("batches %+v; want one granted the two minutes", b)
	}
}

// An agent that joins a batch without a state (a 200 with no first state)
// and gets none from a notification within Timer N fails alone and leaves
// the batch; the agent beside it keeps its subscription.
func TestBatchMemberWithoutStateFailsAtTimerN(t *testing.T) {
	env, _, pool := mssipProvider(t, func(c *sip.Config) { c.TimerN = 300 * time.Millisecond })
	const known, silent = "sip:known@example.com", "sip:silent@example.com"
	for _, a := range []string{known, silent} {
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	env.Subscribe("ucc_app01", known)
	provtest.Eventually(t, "known active", func() bool { return env.State(known) == schemas.StateActive })
	pool.NoFirstState(silent)
	env.Subscribe("ucc_app01", silent)
	provtest.Eventually(t, "silent failed at Timer N", func() bool {
		c := claimOf(t, env, silent)
		return c.State == schemas.StateRetrying && c.Failures == 1 && strings.Contains(c.Reason, "Timer N")
	})
	provtest.Eventually(t, "silent out of the batch", func() bool { return agentsAt(pool) == "[known]" })
	if c := claimOf(t, env, known); c.Failures != 0 || env.State(known) != schemas.StateActive {
		t.Fatalf("known failed with its neighbour: %+v", c)
	}
}

// 1,000 agents travel in at most ceil(1,000 ÷ batch size) batch dialogs,
// and a change of every one of them reaches every UCC listening: issue
// 20's bar at scale, at the default batch size and at the largest. The
// changes come as 1,000 BENOTIFYs at once, which sipgo hands over on a
// goroutine each: in any order, and none may be taken for another agent's
// older one.
func TestThousandAgentsInBatches(t *testing.T) {
	for _, size := range []int{sip.DefaultBatchSize, 1000} {
		t.Run(fmt.Sprintf("batches of %d", size), func(t *testing.T) {
			env, src, pool := mssipProvider(t, func(c *sip.Config) { c.BatchSize = size })
			const n = 1000
			agents := make([]string, n)
			for i := range agents {
				agents[i] = fmt.Sprintf("sip:agent%d@example.com", i)
				pool.SetState(agents[i], sfbtest.State{Availability: 3500})
			}
			env.Subscribe("ucc_app01", agents...)
			env.Subscribe("ucc_app02", agents...)
			provtest.Eventually(t, "every agent batched", func() bool { return src.Health().Stats["batched_agents"] == n })
			if batches, want := pool.Batches(), (n+size-1)/size; len(batches) > want {
				t.Fatalf("%d batch dialogs for %d agents; want at most %d", len(batches), n, want)
			}
			if doubles := pool.Doubles(); len(doubles) != 0 {
				t.Fatalf("agents in two live batches: %v", doubles)
			}

			// Each UCC listens on its own connection, as UCCs do.
			uccs := []*busyCount{listenBusy(t, env), listenBusy(t, env)}
			for _, a := range agents {
				pool.SetState(a, sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
			}
			for i, u := range uccs {
				provtest.Eventually(t, fmt.Sprintf("UCC %d to hear every agent Busy", i+1), func() bool { return u.agents() == n })
			}
		})
	}
}

// busyCount counts the agents a UCC heard go Busy.
type busyCount struct {
	mu   sync.Mutex
	busy map[string]bool
}

func (b *busyCount) agents() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.busy)
}

// listenBusy subscribes a connection of its own to every agent's events.
func listenBusy(t *testing.T, env *provtest.Env) *busyCount {
	t.Helper()
	nc, err := nats.Connect(env.Server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b := &busyCount{busy: map[string]bool{}}
	if _, err := nc.Subscribe(schemas.EventSubject("*"), func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Presence.Availability == schemas.Busy {
			b.mu.Lock()
			b.busy[ev.Key] = true
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return b
}
