package ops_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/graphtest"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/graph"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// lines is a log sink the test reads back, line by line.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// objects parses every line as one JSON object, failing the test on any
// line that is not.
func (l *lines) objects(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		out = append(out, obj)
	}
	return out
}

// metricsProvider runs a provider on the real clock whose worker counts into
// fresh Metrics, served on a free port; add builds its sources and returns
// those the metrics read at scrape time.
func metricsProvider(t *testing.T, tune func(*worker.Config), add func(w *worker.Worker, clock clockwork.Clock) sources.Source) (*provtest.Env, string) {
	t.Helper()
	metrics := ops.NewMetrics()
	cfg := provtest.Config()
	cfg.SubscriptionsPerSecond = 200
	cfg.FirstRetry, cfg.MaxRetry = time.Second, 4*time.Second
	cfg.Observer = metrics
	if tune != nil {
		tune(&cfg)
	}
	e := provtest.StartReal(t, cfg, func(w *worker.Worker, clock clockwork.Clock) {
		metrics.AddSource(add(w, clock))
	})
	return e, serve(t, e.Worker, e.Conn, metrics)
}

// sipPassword is the application endpoint's digest password: it must never
// be in a log line.
const sipPassword = "s3cret-sip-digest-password"

// sipProvider runs a provider with the SIP source on server, its lines
// (sipgo's among them) written at debug level to logs.
func sipProvider(t *testing.T, server string, logs *lines) (*provtest.Env, string) {
	t.Helper()
	return metricsProvider(t, nil, func(w *worker.Worker, clock clockwork.Clock) sources.Source {
		src, err := sip.New(sip.Config{Transport: "udp", Listen: "127.0.0.1:0", RequestTimeout: time.Second,
			KeepAlive:   200 * time.Millisecond,
			Application: sip.Endpoint{Name: "application", URI: "sip:presenceprovider@example.com", Pool: server, Password: sipPassword}},
			clock, w, zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger())
		if err != nil {
			t.Fatal(err)
		}
		w.AddSource(schemas.SourceSIP, src)
		return src
	})
}

// TestSIPMetricsFollowKamailio subscribes two agents on a real Kamailio,
// publishes a presence and stops Kamailio: the endpoint is up with two
// dialogs, then down with none and two subscriptions lost; the event has
// its change time. At debug level every line, sipgo's included, is JSON;
// each SIP transaction is logged with its method, Call-ID, status and
// time; the password is in none.
func TestSIPMetricsFollowKamailio(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	logs := &lines{}
	e, base := sipProvider(t, k.Addr(), logs)
	const one, two = "sip:agent1@example.com", "sip:agent2@example.com"
	evs := e.Collect(schemas.Key(one))
	e.Subscribe("ucc_app01", one, two)
	provtest.Eventually(t, "endpoint up with two dialogs", func() bool {
		f := scrape(t, base)
		return value(t, f, "presence_sip_endpoint_up", "endpoint", "application") == 1 &&
			value(t, f, "presence_sip_dialogs", "endpoint", "application") == 2
	})
	k.Publish(t, one, siptest.PIDF(one, "open", "on-the-phone", ""), 60)
	provtest.Eventually(t, "the Busy event", func() bool { return len(evs.List()) == 1 })
	f := scrape(t, base)
	if got := count(f, "presence_upstream_subscribes_total", "source", "sip", "result", "ok"); got != 2 {
		t.Errorf("subscribes ok = %v; want 2", got)
	}
	if got := count(f, "presence_events_published_total", "source", "sip"); got != 1 {
		t.Errorf("events published by sip = %v; want 1", got)
	}
	if h := series(f, "presence_change_seconds", "source", "sip"); h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("presence_change_seconds{source=sip} = %v; want one sample", h)
	}

	k.Stop()
	provtest.Eventually(t, "endpoint down, dialogs lost", func() bool {
		f := scrape(t, base)
		return value(t, f, "presence_sip_endpoint_up", "endpoint", "application") == 0 &&
			value(t, f, "presence_sip_dialogs", "endpoint", "application") == 0 &&
			count(f, "presence_upstream_lost_total", "source", "sip", "reason", "terminated") == 2
	})

	transactions := map[string]bool{}
	for _, line := range logs.objects(t) {
		if line["message"] == "SIP transaction" {
			if line["call_id"] == "" || line["took"] == nil {
				t.Errorf("SIP transaction line without its Call-ID or time: %v", line)
			}
			if _, answered := line["status"]; answered {
				transactions[line["method"].(string)] = true
			}
		}
	}
	if !transactions["SUBSCRIBE"] || !transactions["OPTIONS"] {
		t.Errorf("answered SIP transactions logged: %v; want SUBSCRIBE and OPTIONS", transactions)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if strings.Contains(logs.buf.String(), sipPassword) {
		t.Error("the SIP password is in the logs")
	}
	if !strings.Contains(logs.buf.String(), `"lib":"sipgo"`) {
		t.Error("no line of sipgo's own at debug level")
	}
}

// TestSIPRefusalsCountFailuresAndRetries: a server that refuses the first
// SUBSCRIBE (403) makes one failed attempt, one retry and then a
// subscription; one that ends the subscription as rejected makes a lost
// subscription (reason error) and a failure.
func TestSIPRefusalsCountFailuresAndRetries(t *testing.T) {
	subscribes := func(f map[string]*dto.MetricFamily, result string) float64 {
		return count(f, "presence_upstream_subscribes_total", "source", "sip", "result", result)
	}
	t.Run("403", func(t *testing.T) {
		sipp := siptest.StartSippServer(t, siptest.FailureScenario(403, "Forbidden"), siptest.SippOptions{})
		e, base := sipProvider(t, sipp.Addr(), &lines{})
		e.Subscribe("ucc_app01", "sip:agent1@example.com")
		provtest.Eventually(t, "subscribed after the retry", func() bool { return subscribes(scrape(t, base), "ok") == 1 })
		f := scrape(t, base)
		if subscribes(f, "failed") != 1 || subscribes(f, "retry") != 1 || subscribes(f, "gave_up") != 0 {
			t.Errorf("failed %v, retry %v, gave_up %v; want 1, 1, 0", subscribes(f, "failed"), subscribes(f, "retry"), subscribes(f, "gave_up"))
		}
	})
	t.Run("terminated as rejected", func(t *testing.T) {
		sipp := siptest.StartSippServer(t, siptest.RejectedScenario(), siptest.SippOptions{})
		e, base := sipProvider(t, sipp.Addr(), &lines{})
		e.Subscribe("ucc_app01", "sip:agent1@example.com")
		// RFC 6665: not to be subscribed again, so the agent is given up at once.
		provtest.Eventually(t, "lost as rejected, then given up", func() bool {
			f := scrape(t, base)
			return count(f, "presence_upstream_lost_total", "source", "sip", "reason", "rejected") == 1 && subscribes(f, "gave_up") == 1
		})
		f := scrape(t, base)
		if got := count(f, "presence_upstream_lost_total", "source", "sip", "reason", "terminated"); got != 0 {
			t.Errorf("lost as terminated %v; a rejection is no plain termination", got)
		}
		if got := subscribes(f, "retry"); got != 0 {
			t.Errorf("%v retries after a rejection", got)
		}
	})
}

// TestGraphMetrics polls a fake Graph that throttles one request: the
// requests are counted by status, the 429 among them, and the account's
// budget and cycle are shown. At debug level each Graph request is logged
// with its count of ids, status and time, and neither the secret nor a
// token is in any line.
func TestGraphMetrics(t *testing.T) {
	srv := graphtest.Start(t)
	const secret = "graph-client-secret-value"
	srv.App("client-a", secret)
	srv.User("agent1@contoso.com", graphtest.Presence{Availability: "Available", Activity: "Available"})
	logs := &lines{}
	e, base := metricsProvider(t, nil, func(w *worker.Worker, clock clockwork.Clock) sources.Source {
		src, err := graph.New(graph.Config{BaseURL: srv.BaseURL(), AuthorityHost: srv.AuthorityHost(), HTTPClient: srv.Client(),
			MinCycle: 100 * time.Millisecond,
			Accounts: []graph.Account{{ID: "account-a", TenantID: "tenant-1", ClientID: "client-a", Secret: secret}}},
			clock, w, zerolog.New(logs).Level(zerolog.DebugLevel))
		if err != nil {
			t.Fatal(err)
		}
		w.AddSource(schemas.SourceGraph, src)
		return src
	})
	const uri = "sip:agent1@example.com"
	evs := e.Collect(schemas.Key(uri))
	if _, err := e.Client.Subscribe(e.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01",
		Agents: []schemas.AgentRef{{URI: uri, TeamsUPN: "agent1@contoso.com"}}}); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "the first event", func() bool { return len(evs.List()) == 1 })
	srv.Inject(graphtest.Fault{Status: 429, RetryAfter: "0.2", Count: 1})
	var f map[string]*dto.MetricFamily
	provtest.Eventually(t, "a 429 and polls after it", func() bool {
		f = scrape(t, base)
		return count(f, "presence_graph_requests_total", "account", "account-a", "code", "429") == 1 &&
			count(f, "presence_graph_requests_total", "account", "account-a", "code", "200") >= 3
	})
	if used := value(t, f, "presence_graph_budget_used_ratio", "account", "account-a"); used <= 0 || used > 1 {
		t.Errorf("budget used ratio %v; want within (0, 1] after a few requests", used)
	}
	if cycle := value(t, f, "presence_graph_cycle_seconds", "account", "account-a"); cycle <= 0 {
		t.Errorf("cycle seconds %v; want the last cycle's length", cycle)
	}
	if got := count(f, "presence_upstream_subscribes_total", "source", "graph", "result", "ok"); got != 1 {
		t.Errorf("graph subscribes ok = %v; want 1", got)
	}
	if h := series(f, "presence_change_seconds", "source", "graph"); h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("presence_change_seconds{source=graph} = %v; want one sample", h)
	}

	requests := 0
	for _, line := range logs.objects(t) {
		if line["message"] != "Graph request" {
			continue
		}
		requests++
		if line["status"] == nil || line["took"] == nil || line["method"] == nil {
			t.Errorf("Graph request line without method, status or time: %v", line)
		}
		if line["path"] == "/communications/getPresencesByUserId" && line["ids"] != float64(1) {
			t.Errorf("presence request line %v; want ids 1", line)
		}
	}
	if requests == 0 {
		t.Error("no Graph request logged at debug level")
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if out := logs.buf.String(); strings.Contains(out, secret) || strings.Contains(out, "Bearer") {
		t.Error("the client secret or a token is in the logs")
	}
}
