package ops_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// upstream is a presence system that takes every subscription: enough for
// claims and the throttle, which only sources with upstream subscriptions
// have. It stands in for SIP, and serves sip: URIs.
type upstream struct {
	mu sync.Mutex
	up map[string]bool
}

func (u *upstream) Subscribe(_ context.Context, a sources.Agent) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.up[a.URI] = true
	return nil
}

func (u *upstream) Unsubscribe(_ context.Context, a sources.Agent) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.up, a.URI)
	return nil
}

func (u *upstream) Serves(uri schemas.AgentURI, _ string) bool {
	return strings.HasPrefix(uri.URI, "sip:")
}

func (u *upstream) Health() sources.Health { return sources.Health{Healthy: true} }

var attendantPattern = regexp.MustCompile(`@attendant\.example$`)

func withSources(w *worker.Worker, clock clockwork.Clock) {
	w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{attendantPattern}))
	w.AddSource(schemas.SourceSIP, &upstream{up: map[string]bool{}})
}

// serve runs the listener over a provider on a free port, with more
// collectors (the worker's Metrics); it returns the base URL.
func serve(t testing.TB, w ops.Worker, nats ops.NATS, more ...prometheus.Collector) string {
	t.Helper()
	s, err := ops.Listen("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(w, nats, nil, more...)
	t.Cleanup(func() { s.Stop(context.Background()) })
	return "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+ops.PathMetrics)
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v\n%s", err, body)
	}
	return families
}

// value is a gauge's value for the given labels (name, value pairs).
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := len(got) == len(labels)/2
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if match {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// gauges is what the test expects of the provider's gauges.
type gauges struct {
	agents                            map[[2]string]float64 // by source and state; the others are 0
	interests, claims, workers, queue float64
}

func (g gauges) match(t *testing.T, families map[string]*dto.MetricFamily) bool {
	t.Helper()
	for _, m := range families["presence_agents"].GetMetric() {
		var key [2]string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "source":
				key[0] = l.GetValue()
			case "state":
				key[1] = l.GetValue()
			}
		}
		if m.GetGauge().GetValue() != g.agents[key] {
			return false
		}
	}
	return value(t, families, "presence_interests") == g.interests &&
		value(t, families, "presence_claims_held") == g.claims &&
		value(t, families, "presence_workers_live") == g.workers &&
		value(t, families, "presence_throttle_queue") == g.queue
}

// TestMetricsAfterAScenario subscribes agents of two sources and of none,
// from two UCCs, sends an attendant input, and lets the throttle hold some
// subscriptions back: the gauges tell exactly that, with the Go and process
// collectors beside them, and no agent's URI in any label.
func TestMetricsAfterAScenario(t *testing.T) {
	e := provtest.Start(t, provtest.Config(), withSources) // 10 subscriptions a second, on a fake clock
	base := serve(t, e.Worker, e.Conn)

	sipAgents := []string{"sip:s1@example.com", "sip:s2@example.com", "sip:s3@example.com", "sip:s4@example.com"}
	e.Subscribe("ucc_app01", append([]string{"sip:a1@attendant.example", "sip:a2@attendant.example"}, sipAgents...)...)
	e.Subscribe("ucc_app02", "sip:a1@attendant.example", "tel:+31612345678")
	if _, err := e.Client.Attendant(e.Ctx(), schemas.Key("sip:a1@attendant.example"),
		schemas.AttendantInput{Availability: "Busy", Activity: "InACall"}); err != nil {
		t.Fatal(err)
	}

	// The clock stands still: the throttle lets one SIP subscription go,
	// the other three wait.
	throttled := gauges{
		agents: map[[2]string]float64{
			{schemas.SourceAttendant, "active"}: 2,
			{schemas.SourceSIP, "active"}:       1, {schemas.SourceSIP, "pending"}: 3,
			{schemas.SourceNone, "unsupported"}: 1,
		},
		interests: 8, claims: 1, workers: 1, queue: 3,
	}
	var families map[string]*dto.MetricFamily
	provtest.Eventually(t, "metrics of one SIP agent up and three throttled", func() bool {
		families = scrape(t, base)
		return throttled.match(t, families)
	})
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.ContainsAny(l.GetValue(), "@:+") {
					t.Errorf("%s has label %s=%q: an agent's URI or UPN must never be a label", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	all := throttled
	all.agents = map[[2]string]float64{
		{schemas.SourceAttendant, "active"}: 2,
		{schemas.SourceSIP, "active"}:       4,
		{schemas.SourceNone, "unsupported"}: 1,
	}
	all.claims, all.queue = 4, 0
	e.AdvanceUntil("metrics of every SIP agent up", func() bool { return all.match(t, scrape(t, base)) })

	if _, err := e.Client.Unsubscribe(e.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app02", URIs: []string{"sip:a1@attendant.example", "tel:+31612345678"}}); err != nil {
		t.Fatal(err)
	}
	left := all
	left.agents = map[[2]string]float64{{schemas.SourceAttendant, "active"}: 2, {schemas.SourceSIP, "active"}: 4}
	left.interests = 6
	provtest.Eventually(t, "metrics after ucc_app02 left", func() bool { return left.match(t, scrape(t, base)) })
}

// TestProbesFollowNATS runs a worker joined to an external NATS server by
// URL and stops that server: /readyz turns 503 with the reason (NATS, then
// the fence once the lease could not be renewed), /healthz stays 200, and
// both answer 200 once the server is back. A stopping worker is neither.
func TestProbesFollowNATS(t *testing.T) {
	n := provtest.StartNATS(t)
	cfg := provtest.Config()
	cfg.WorkerLease = 3 * time.Second // fenced 2 s after the last renewal
	e := provtest.Join(t, n.URL(), cfg, clockwork.NewRealClock(), withSources)
	base := serve(t, e.Worker, e.Conn)
	var last string // the last answer, for a failure's message
	answers := func(path string, code int, reason string) func() bool {
		return func() bool {
			got, body := get(t, base+path)
			last = fmt.Sprint(got, " ", body)
			return got == code && strings.Contains(body, reason)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last answer: %s", last)
		}
	})

	provtest.Eventually(t, "/readyz 200", answers(ops.PathReadyz, http.StatusOK, "ok"))
	if code, body := get(t, base+ops.PathHealthz); code != http.StatusOK {
		t.Fatalf("/healthz answered %d %q; want 200", code, body)
	}

	n.Stop()
	provtest.Eventually(t, "/readyz 503: NATS not connected", answers(ops.PathReadyz, http.StatusServiceUnavailable, "NATS is not connected"))
	provtest.Eventually(t, "/readyz 503: fenced", answers(ops.PathReadyz, http.StatusServiceUnavailable, "fenced"))
	if code, body := get(t, base+ops.PathHealthz); code != http.StatusOK {
		t.Fatalf("/healthz answered %d %q while NATS is down; want 200: the worker's loops still run", code, body)
	}

	n.Start()
	provtest.Eventually(t, "/readyz 200 once NATS is back", answers(ops.PathReadyz, http.StatusOK, "ok"))

	e.Stop()
	for _, path := range []string{ops.PathHealthz, ops.PathReadyz} {
		if code, body := get(t, base+path); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
			t.Errorf("%s answered %d %q after Stop; want 503 stopping", path, code, body)
		}
	}
}

// TestProbesBeforeAndWithoutBuckets: a worker that is not started is not
// alive, and one whose bucket is gone is not ready, naming the bucket.
func TestProbesBeforeAndWithoutBuckets(t *testing.T) {
	w := worker.New(provtest.Config(), worker.Stores{}, clockwork.NewRealClock(), zerolog.Nop())
	base := serve(t, w, nil)
	if code, body := get(t, base+ops.PathHealthz); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("/healthz of a worker not started answered %d %q; want 503 not running", code, body)
	}

	e := provtest.Start(t, provtest.Config(), withSources) // no PSTN source: its bucket is not in use
	base = serve(t, e.Worker, e.Conn)
	if code, body := get(t, base+ops.PathReadyz); code != http.StatusOK {
		t.Fatalf("/readyz answered %d %q; want 200", code, body)
	}
	if err := e.Conn.JS.DeleteKeyValue(e.Ctx(), schemas.BucketCalls); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+ops.PathReadyz); code != http.StatusServiceUnavailable || !strings.Contains(body, "bucket presence_calls does not answer") {
		t.Errorf("/readyz without the presence_calls bucket answered %d %q; want 503 naming the bucket", code, body)
	}
}
