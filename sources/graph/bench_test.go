package graph_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/internal/graphtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/graph"
)

// BenchmarkFifteenThousandAgents polls 15,000 Teams agents on one account
// with the production settings (1,500 requests per 30 s, 80 % of it spent,
// cycles of 1 s at the least) for a minute while one user changes every
// half second on the server, and reports the cycle length, the most
// requests in any 30 s, the latency from a change on the server to its
// event at a UCC, and memory. Run it once:
//
//	go test -run '^$' -bench FifteenThousand -benchtime 1x ./sources/graph/
func BenchmarkFifteenThousandAgents(b *testing.B) {
	const agents = 15000
	const measure = 60 * time.Second
	srv := graphtest.Start(b)
	var upns []string
	for i := range agents {
		upn := fmt.Sprintf("agent%05d@contoso.com", i)
		srv.User(upn, graphtest.Presence{Availability: "Available"})
		upns = append(upns, upn)
	}
	env, src := provider(b, srv, func(c *graph.Config) { c.MinCycle = time.Second; c.RequestsPer30s = 1500 })

	var mu sync.Mutex
	changedAt := map[string]time.Time{}
	var latencies []time.Duration
	sub, err := env.Conn.NC.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if at, ok := changedAt[ev.Key]; ok {
			latencies = append(latencies, time.Since(at))
			delete(changedAt, ev.Key)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	for first := 0; first < agents; first += 1000 {
		var pairs []string
		for _, upn := range upns[first:min(first+1000, agents)] {
			pairs = append(pairs, "sip:"+upn, upn)
		}
		subscribeTeams(b, env, "ucc_app01", pairs...)
	}
	// 15,000 subscriptions at the test throttle of 1,000/s take longer than
	// Eventually waits.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		st, err := env.Client.Status(env.Ctx())
		if err == nil && st.Sources["graph"].States[schemas.StateActive] == agents {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not all %d agents active after 3 minutes", agents)
		}
	}
	time.Sleep(2 * time.Second) // one whole cycle with every agent in it

	measured := len(srv.Calls("client-a"))
	for b.Loop() {
		deadline := time.Now().Add(measure)
		for time.Now().Before(deadline) {
			upn := upns[rand.IntN(agents)]
			mu.Lock()
			if _, pending := changedAt[schemas.Key("sip:"+upn)]; !pending {
				changedAt[schemas.Key("sip:"+upn)] = time.Now()
				srv.Set(upn, graphtest.Presence{Availability: "Busy", Activity: "InACall"})
			}
			mu.Unlock()
			time.Sleep(500 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // the last changes' cycle
	}
	b.StopTimer()
	calls := srv.Calls("client-a")[measured:]
	most := 0
	for i := range calls {
		n, _ := slices.BinarySearchFunc(calls[i:], calls[i].Add(30*time.Second), func(t, at time.Time) int { return t.Compare(at) })
		most = max(most, n)
	}

	st := src.Health().Stats["accounts"].([]map[string]any)[0]
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	mu.Lock()
	slices.Sort(latencies)
	n := len(latencies)
	mu.Unlock()
	if n == 0 {
		b.Fatal("no change arrived")
	}
	b.ReportMetric(float64(st["cycle_ms"].(int64)), "cycle-ms")
	b.ReportMetric(float64(most), "most-requests/30s")
	b.ReportMetric(float64(latencies[n/2].Milliseconds()), "latency-p50-ms")
	b.ReportMetric(float64(latencies[n*99/100].Milliseconds()), "latency-p99-ms")
	b.ReportMetric(float64(n), "changes")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(float64(rss())/(1<<10), "rss-MiB")
}

// rss is the process's resident memory in KiB.
func rss() int {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return kb
		}
	}
	return 0
}
