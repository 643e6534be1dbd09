package ops_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// benchAgents is the service size of the scrape benchmark.
const benchAgents = 100_000

// BenchmarkScrape100kAgents measures one /metrics scrape of a worker that
// holds 100,000 agents, half on the attendant source and half on an
// upstream one (each with its claim): the time and the bytes of one scrape,
// with the gauges alone and with the worker's counters and histogram too.
func BenchmarkScrape100kAgents(b *testing.B) {
	metrics := ops.NewMetrics()
	cfg := provtest.Config()
	cfg.SubscriptionsPerSecond = benchAgents // the throttle is not what is measured
	cfg.Observer = metrics
	e := provtest.StartOn(b, provtest.Server(b), cfg, clockwork.NewRealClock(), withSources)
	for first := 0; first < benchAgents; first += schemas.MaxAgentsPerRequest {
		req := schemas.SubscribeRequest{UCC: "ucc_app01"}
		for i := first; i < min(first+schemas.MaxAgentsPerRequest, benchAgents); i++ {
			domain := "example.com"
			if i%2 == 0 {
				domain = "attendant.example"
			}
			req.Agents = append(req.Agents, schemas.AgentRef{URI: fmt.Sprintf("sip:agent%06d@%s", i, domain)})
		}
		// A request of 10,000 agents may take more than a test request's
		// 10 s on a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := e.Client.Subscribe(ctx, req)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for c := e.Worker.Counts(); c.Agents < benchAgents || c.ClaimsHeld < benchAgents/2; c = e.Worker.Counts() {
		if time.Now().After(deadline) {
			b.Fatalf("after 5 minutes: %d agents, %d claims; want %d and %d", c.Agents, c.ClaimsHeld, benchAgents, benchAgents/2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Side by side on the same worker: the gauges alone, as before the
	// counters, and everything /metrics serves.
	for _, served := range []struct {
		name string
		more []prometheus.Collector
	}{{"gauges", nil}, {"all", []prometheus.Collector{metrics}}} {
		base := serve(b, e.Worker, e.Conn, served.more...)
		b.Run(served.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				resp, err := http.Get(base + ops.PathMetrics)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("scrape: %d, %v", resp.StatusCode, err)
				}
				size = int(n)
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

// BenchmarkObserveInput is what the metrics add to one applied input: the
// input counted, and its event counted and timed.
func BenchmarkObserveInput(b *testing.B) {
	m := ops.NewMetrics()
	for b.Loop() {
		m.Input(schemas.SourceAttendant, worker.ResultOK)
		m.Published(schemas.SourceAttendant, 150*time.Microsecond)
	}
}
