package graph_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/graphtest"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/graph"
	"github.com/contactcenter/presence-provider/worker"
)

const secret = "s3cret-value-never-logged"

// provider runs a provider on the real clock with the Graph source polling
// srv, and the attendant source for agents of attendant.example.
func provider(t testing.TB, srv *graphtest.Server, tune func(*graph.Config)) (*provtest.Env, *graph.Source) {
	t.Helper()
	return providerOn(t, srv, clockwork.NewRealClock(), tune)
}

// providerOn is provider on a clock of the test's.
func providerOn(t testing.TB, srv *graphtest.Server, clock clockwork.Clock, tune func(*graph.Config)) (*provtest.Env, *graph.Source) {
	t.Helper()
	cfg := graph.Config{BaseURL: srv.BaseURL(), AuthorityHost: srv.AuthorityHost(), HTTPClient: srv.Client(),
		MinCycle: 100 * time.Millisecond, FailingAfter: 3,
		Accounts: []graph.Account{{ID: "account-a", TenantID: "tenant-1", ClientID: "client-a", Secret: secret}}}
	if tune != nil {
		tune(&cfg)
	}
	for _, a := range cfg.Accounts {
		srv.App(a.ClientID, secret)
	}
	wcfg := provtest.Config()
	wcfg.SubscriptionsPerSecond = 1000
	wcfg.FirstRetry, wcfg.MaxRetry = time.Hour, time.Hour
	var src *graph.Source
	env := provtest.StartOn(t, provtest.Server(t), wcfg, clock, func(w *worker.Worker, clock clockwork.Clock) {
		var err error
		if src, err = graph.New(cfg, clock, w, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)); err != nil {
			t.Fatal(err)
		}
		w.AddSource(schemas.SourceGraph, src)
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`@attendant\.example$`)}))
	})
	return env, src
}

func subscribeTeams(t testing.TB, env *provtest.Env, ucc string, pairs ...string) schemas.AgentsReply {
	t.Helper()
	req := schemas.SubscribeRequest{UCC: ucc}
	for i := 0; i < len(pairs); i += 2 {
		req.Agents = append(req.Agents, schemas.AgentRef{URI: pairs[i], TeamsUPN: pairs[i+1]})
	}
	rep, err := env.Client.Subscribe(env.Ctx(), req)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// waitClaim waits for the agent's claim to show the state and a reason
// holding reason. The worker answers requests from memory and writes the
// claim afterwards, by an effect of its own: a claim read once, as soon as
// a request shows the state, may still be the one before.
func waitClaim(t testing.TB, env *provtest.Env, uri string, state schemas.State, reason string) {
	t.Helper()
	provtest.Eventually(t, fmt.Sprintf("claim %s with reason %q", state, reason), func() bool {
		c, _, _, err := env.Stores.Claims.Get(env.Ctx(), schemas.Key(uri))
		return err == nil && c.State == state && strings.Contains(c.Reason, reason)
	})
}

func accountStats(src *graph.Source) []map[string]any {
	return src.Health().Stats["accounts"].([]map[string]any)
}

// oneAgent runs a provider with one Teams agent, agent1, subscribed and its
// events collected.
func oneAgent(t *testing.T) (*graphtest.Server, *provtest.Env, *graph.Source, *provtest.Events) {
	t.Helper()
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	env, src := provider(t, srv, nil)
	evs := env.Collect(schemas.Key(agent1))
	subscribeTeams(t, env, "ucc_app01", agent1, "agent1@contoso.com")
	return srv, env, src, evs
}

const agent1 = "sip:agent1@contoso.com"

func TestTeamsPresenceChangesBecomeEvents(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available", Activity: "Available"})
	env, src := provider(t, srv, nil)
	const uri = "sip:agent1@contoso.com"
	evs := env.Collect(schemas.Key(uri))
	rep := subscribeTeams(t, env, "ucc_app01", uri, "agent1@contoso.com")
	if rep.Agents[0].Source != schemas.SourceGraph {
		t.Fatalf("routed to %s; want graph", rep.Agents[0].Source)
	}
	provtest.Eventually(t, "Available", func() bool { return len(evs.List()) == 1 })
	srv.Set("agent1@contoso.com", graphtest.Presence{Availability: "Busy", Activity: "InACall"})
	provtest.Eventually(t, "Busy", func() bool { return len(evs.List()) == 2 })
	ev := evs.List()[1]
	if p := ev.Presence; p.Availability != schemas.Busy || p.AvailabilityValue != 6500 || p.Activity != "on-the-phone" || p.Source != "graph" ||
		ev.Previous == nil || ev.Previous.Availability != schemas.Available {
		t.Fatalf("event %+v; want Available -> Busy 6500 on-the-phone from graph", ev)
	}
	// Further cycles of the same presence publish nothing, and reuse the token.
	calls := len(srv.Calls("client-a"))
	provtest.Eventually(t, "five more cycles", func() bool { return len(srv.Calls("client-a")) >= calls+5 })
	if n := len(evs.List()); n != 2 {
		t.Fatalf("%d events after unchanged cycles; want 2", n)
	}
	if n := srv.TokensIssued("client-a"); n != 1 {
		t.Fatalf("%d tokens issued over %d calls; want 1, cached", n, len(srv.Calls("client-a")))
	}
	if st := accountStats(src)[0]; st["agents"] != 1 || st["requests_last_30s"].(int) < 5 {
		t.Fatalf("account status %v", st)
	}
	if strings.Contains(env.Logs.String(), secret) || strings.Contains(fmt.Sprint(src.Health()), secret) {
		t.Fatal("the client secret shows in the logs or the status")
	}
}

func TestTeamsBeatsAnAttendantPattern(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("both@contoso.com", graphtest.Presence{Availability: "Away", Activity: "Away"})
	env, _ := provider(t, srv, nil)
	const uri = "sip:both@attendant.example"
	rep := subscribeTeams(t, env, "ucc_app01", uri, "both@contoso.com")
	if rep.Agents[0].Source != schemas.SourceGraph {
		t.Fatalf("an agent with a Teams UPN matching a pattern routed to %s; want graph", rep.Agents[0].Source)
	}
	provtest.Eventually(t, "the agent's index knows the UPN", func() bool { return env.State(uri) == schemas.StateActive })
	in, err := env.Client.Attendant(env.Ctx(), schemas.Key(uri), schemas.AttendantInput{Availability: "Busy"})
	if err == nil && (in.Error == nil || in.Error.Code != schemas.CodeNotAttendantAgent) {
		t.Fatalf("attendant input for a Teams agent: %+v; want not_attendant_agent", in)
	}
}

func TestUnknownUPNFailsTheAgent(t *testing.T) {
	srv := graphtest.Start(t)
	env, _ := provider(t, srv, nil)
	const uri = "sip:ghost@contoso.com"
	subscribeTeams(t, env, "ucc_app01", uri, "ghost@contoso.com")
	provtest.Eventually(t, "failed", func() bool { return env.State(uri) == schemas.StateFailed })
	waitClaim(t, env, uri, schemas.StateFailed, "ghost@contoso.com is not a user")
}

func TestTwoAccountsShareTheAgents(t *testing.T) {
	srv := graphtest.Start(t)
	env, src := provider(t, srv, func(c *graph.Config) {
		c.Accounts = append(c.Accounts, graph.Account{ID: "account-b", TenantID: "tenant-1", ClientID: "client-b", Secret: secret})
	})
	var pairs []string
	for i := range 40 {
		upn := fmt.Sprintf("agent%02d@contoso.com", i)
		srv.User(upn, graphtest.Presence{Availability: "Available"})
		pairs = append(pairs, "sip:"+upn, upn)
	}
	subscribeTeams(t, env, "ucc_app01", pairs...)
	provtest.Eventually(t, "40 active", func() bool {
		st, err := env.Client.Status(env.Ctx())
		return err == nil && st.Sources["graph"].States[schemas.StateActive] == 40
	})
	stats := accountStats(src)
	if stats[0]["agents"] != 20 || stats[1]["agents"] != 20 {
		t.Fatalf("agents per account: %v and %v; want 20 each", stats[0]["agents"], stats[1]["agents"])
	}
	provtest.Eventually(t, "both accounts poll", func() bool { return len(srv.Calls("client-a")) > 25 && len(srv.Calls("client-b")) > 25 })
}

func TestBatchesStayWithin650IDs(t *testing.T) {
	srv := graphtest.Start(t)
	env, _ := provider(t, srv, nil)
	var pairs []string
	for i := range 700 {
		upn := fmt.Sprintf("agent%03d@contoso.com", i)
		srv.User(upn, graphtest.Presence{Availability: "Busy", Activity: "InAMeeting"})
		pairs = append(pairs, "sip:"+upn, upn)
	}
	subscribeTeams(t, env, "ucc_app01", pairs...)
	// The server refuses more than 650 ids with 400: every agent has its
	// presence only if the source split the cycle.
	provtest.Eventually(t, "700 presences", func() bool {
		rep, err := env.Client.Get(env.Ctx(), schemas.GetRequest{URIs: []string{"sip:agent000@contoso.com", "sip:agent699@contoso.com"}})
		return err == nil && rep.Agents[0].Presence != nil && rep.Agents[1].Presence != nil &&
			rep.Agents[1].Presence.Activity == "in-a-meeting"
	})
}

func TestThrottlingSlowsTheAccountAndLosesNothing(t *testing.T) {
	srv, env, src, evs := oneAgent(t)
	const uri = agent1
	provtest.Eventually(t, "Available", func() bool { return len(evs.List()) == 1 })

	srv.Inject(graphtest.Fault{Status: 429, RetryAfter: "1.5", Count: 1})
	srv.Set("agent1@contoso.com", graphtest.Presence{Availability: "DoNotDisturb", Activity: "Presenting"})
	provtest.Eventually(t, "paused", func() bool { _, paused := accountStats(src)[0]["paused_ms"]; return paused })
	before := len(srv.Calls("client-a"))
	provtest.Eventually(t, "the change after the pause", func() bool { return len(evs.List()) == 2 })
	if got := evs.List()[1].Presence; got.Availability != schemas.DoNotDisturb || got.Activity != "in-a-conference" {
		t.Fatalf("event after the pause: %+v", got)
	}
	calls := srv.Calls("client-a")[before-1:]
	longest := time.Duration(0)
	for i := 1; i < len(calls); i++ {
		longest = max(longest, calls[i].Sub(calls[i-1]))
	}
	if longest < 1500*time.Millisecond {
		t.Fatalf("longest gap between calls %s; the account must wait the fractional Retry-After of 1.5 s", longest)
	}
	if env.State(uri) != schemas.StateActive {
		t.Fatal("a 429 made the agent leave active")
	}
}

func TestAccountThatKeepsFailingMakesItsAgentsRetrying(t *testing.T) {
	srv, env, src, evs := oneAgent(t)
	const uri = agent1
	provtest.Eventually(t, "active", func() bool { return env.State(uri) == schemas.StateActive })

	srv.Inject(graphtest.Fault{Status: 503, Count: 4})
	provtest.Eventually(t, "retrying", func() bool { return env.State(uri) == schemas.StateRetrying })
	if h := src.Health(); h.Healthy || !strings.Contains(h.Detail, "503") {
		t.Fatalf("health %+v; want unhealthy with the 503", h)
	}
	// The account answers again: its agents come back at once (the worker's
	// back-off here is an hour), and changes flow again.
	srv.Set("agent1@contoso.com", graphtest.Presence{Availability: "Away"})
	provtest.Eventually(t, "active again", func() bool { return env.State(uri) == schemas.StateActive })
	provtest.Eventually(t, "Away", func() bool {
		l := evs.List()
		return len(l) > 0 && l[len(l)-1].Presence.Availability == schemas.Away
	})
}

// fakeNow is the time the fake-clock tests start at.
var fakeNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// The budget is spent evenly over Graph's window with its margin, never in
// a burst, and no 30 s ever holds more than the share of the budget: with
// 50 requests per 30 s at 80 %, 40 requests in any 32 s, one every 0.8 s.
func TestBudgetIsSpentEvenlyAndNeverExceeded(t *testing.T) {
	clock := clockwork.NewFakeClockAt(fakeNow)
	srv := graphtest.StartWithClock(t, clock)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	env, _ := providerOn(t, srv, clock, func(c *graph.Config) { c.RequestsPer30s = 50; c.MinCycle = 100 * time.Millisecond })
	subscribeTeams(t, env, "ucc_app01", agent1, "agent1@contoso.com")
	provtest.Eventually(t, "the UPN resolved", func() bool { return srv.Lookups() == 1 })
	// Time moves in 50 ms steps, each a moment for the poller to take its
	// turn: a poller that falls behind makes fewer calls, never more.
	for clock.Since(fakeNow) < 64*time.Second {
		clock.Advance(50 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	calls := srv.Calls("client-a")[srv.Lookups():]
	if len(calls) < 70 {
		t.Fatalf("%d presence calls in 64 s; the budget allows 80: it is not spent", len(calls))
	}
	for i := range calls {
		in30 := 0
		for _, c := range calls[i:] {
			if c.Sub(calls[i]) < 30*time.Second {
				in30++
			}
		}
		if in30 > 40 {
			t.Fatalf("%d calls within 30 s from %s; the source spends at most 40", in30, calls[i].Sub(fakeNow))
		}
	}
	// Spent evenly, not in a burst: in the first 8 s, at one call every
	// 0.8 s, 10 calls. The server notes a call when it arrives, which a
	// loaded machine delays; that only makes the count smaller.
	early := 0
	for _, c := range calls {
		if c.Sub(fakeNow) < 8*time.Second {
			early++
		}
	}
	if early > 10 {
		t.Fatalf("%d calls in the first 8 s; spent evenly at one every 0.8 s, at most 10", early)
	}
}

// An agent unsubscribed while its account waits for budget is not asked
// for: the ids of each request are read when the request goes.
func TestAgentsUnsubscribedWhileWaitingForBudgetAreNotAsked(t *testing.T) {
	clock := clockwork.NewFakeClockAt(fakeNow)
	srv := graphtest.StartWithClock(t, clock)
	var pairs, ids []string
	for i := range 700 {
		upn := fmt.Sprintf("agent%03d@contoso.com", i)
		ids = append(ids, srv.User(upn, graphtest.Presence{Availability: "Available"}))
		pairs = append(pairs, "sip:"+upn, upn)
	}
	// One request every 16 s: the second batch of a cycle waits that long.
	env, _ := providerOn(t, srv, clock, func(c *graph.Config) { c.RequestsPer30s, c.BudgetShare = 2, 1 })
	subscribeTeams(t, env, "ucc_app01", pairs...)
	env.AdvanceBy("a first request of 650 ids", 100*time.Millisecond, func() bool {
		polled := srv.Polled()
		return len(polled) > 0 && len(polled[len(polled)-1]) == 650
	})
	first := map[string]bool{}
	for _, id := range srv.Polled()[len(srv.Polled())-1] {
		first[id] = true
	}
	asked := len(srv.Polled())
	// The 50 agents of the second batch leave; their upstream subscriptions
	// end after the worker's linger (5 s), before the budget's next slot.
	var leaving []string
	for i, id := range ids {
		if !first[id] {
			leaving = append(leaving, fmt.Sprintf("sip:agent%03d@contoso.com", i))
		}
	}
	if len(leaving) != 50 {
		t.Fatalf("%d agents outside the first request; want 50", len(leaving))
	}
	if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: leaving}); err != nil {
		t.Fatal(err)
	}
	env.AdvanceBy("the next cycle's first request", 100*time.Millisecond, func() bool { return len(srv.Polled()) > asked })
	for _, ids := range srv.Polled()[asked:] {
		for _, id := range ids {
			if !first[id] {
				t.Fatalf("asked for %s, whose agent left while the account waited for budget", id)
			}
		}
	}
}

func TestUsersLeftOutOfAnAnswerAreReported(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	env, src := provider(t, srv, nil)
	subscribeTeams(t, env, "ucc_app01", "sip:agent1@contoso.com", "agent1@contoso.com")
	provtest.Eventually(t, "active", func() bool { return env.State("sip:agent1@contoso.com") == schemas.StateActive })
	srv.Omit("agent1@contoso.com", true)
	provtest.Eventually(t, "reported missing", func() bool { return src.Health().Stats["users_missing_from_answers"] == 1 })
}

func TestCertificateCredential(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Busy"})
	certFile := selfSignedPEM(t)
	env, _ := provider(t, srv, func(c *graph.Config) {
		c.Accounts[0].Secret, c.Accounts[0].CertificateFile = "", certFile
	})
	const uri = "sip:agent1@contoso.com"
	evs := env.Collect(schemas.Key(uri))
	subscribeTeams(t, env, "ucc_app01", uri, "agent1@contoso.com")
	provtest.Eventually(t, "Busy via a certificate's token", func() bool { return len(evs.List()) == 1 })
}

func selfSignedPEM(t *testing.T) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "presence-provider"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAccountWithoutCredentialsIsDownNotFatal(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	env, src := provider(t, srv, func(c *graph.Config) { c.Accounts[0].Secret = "" })
	const uri = "sip:agent1@contoso.com"
	subscribeTeams(t, env, "ucc_app01", uri, "agent1@contoso.com")
	provtest.Eventually(t, "retrying", func() bool { return env.State(uri) == schemas.StateRetrying })
	waitClaim(t, env, uri, schemas.StateRetrying, "no client secret")
	if h := src.Health(); h.Healthy || !strings.Contains(h.Detail, "no client secret") {
		t.Fatalf("health %+v; want down with the reason", h)
	}
}

func TestAccountWithoutCredentialsTakesNoAgents(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	env, _ := provider(t, srv, func(c *graph.Config) {
		c.Accounts = []graph.Account{
			{ID: "broken", TenantID: "tenant-1", ClientID: "client-x"},
			{ID: "account-a", TenantID: "tenant-1", ClientID: "client-a", Secret: secret},
		}
	})
	subscribeTeams(t, env, "ucc_app01", "sip:agent1@contoso.com", "agent1@contoso.com")
	provtest.Eventually(t, "active on the usable account", func() bool { return env.State("sip:agent1@contoso.com") == schemas.StateActive })
}

func TestAgentSubscribedWhileItsAccountFailsIsCalledBack(t *testing.T) {
	srv := graphtest.Start(t)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available"})
	srv.User("agent2@contoso.com", graphtest.Presence{Availability: "Busy"})
	env, _ := provider(t, srv, nil) // the worker's back-off is an hour
	subscribeTeams(t, env, "ucc_app01", "sip:agent1@contoso.com", "agent1@contoso.com")
	provtest.Eventually(t, "active", func() bool { return env.State("sip:agent1@contoso.com") == schemas.StateActive })
	srv.Inject(graphtest.Fault{Status: 503, Count: 4})
	provtest.Eventually(t, "retrying", func() bool { return env.State("sip:agent1@contoso.com") == schemas.StateRetrying })
	subscribeTeams(t, env, "ucc_app01", "sip:agent2@contoso.com", "agent2@contoso.com")
	provtest.Eventually(t, "both active once the account answers", func() bool {
		return env.State("sip:agent1@contoso.com") == schemas.StateActive && env.State("sip:agent2@contoso.com") == schemas.StateActive
	})
}
