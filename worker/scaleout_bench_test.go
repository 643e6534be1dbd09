package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// realCluster runs n workers on one embedded server on the real clock, each
// with an instant scripted upstream, and the service-wide throttle given.
func realCluster(b *testing.B, n, perSecond int) []node {
	ns := provtest.Server(b)
	var nodes []node
	for i := range n {
		cfg := provtest.Config()
		cfg.ID = fmt.Sprintf("worker-%c", 'a'+i)
		cfg.WorkerLease = 10 * time.Second
		cfg.SubscriptionsPerSecond = perSecond
		var src *scripted
		env := provtest.StartOn(b, ns, cfg, clockwork.NewRealClock(), func(w *worker.Worker, clock clockwork.Clock) {
			src = newScripted(clock)
			w.AddSource(schemas.SourceSIP, src)
		})
		nodes = append(nodes, node{env: env, src: src})
	}
	time.Sleep(4 * time.Second) // a heartbeat each: they know each other
	return nodes
}

func subscribeInBatches(b *testing.B, env *provtest.Env, agents int) {
	for first := 0; first < agents; first += 1000 {
		req := schemas.SubscribeRequest{UCC: "ucc_app01"}
		for i := first; i < min(first+1000, agents); i++ {
			req.Agents = append(req.Agents, schemas.AgentRef{URI: fmt.Sprintf("sip:agent%06d@domain.com", i)})
		}
		if _, err := env.Client.Subscribe(env.Ctx(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// claimCount counts the active claims per worker.
func claimCount(b *testing.B, env *provtest.Env) map[string]int {
	ctx := context.Background()
	kv, err := env.Conn.JS.KeyValue(ctx, schemas.BucketClaims)
	if err != nil {
		b.Fatal(err)
	}
	watcher, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Stop()
	count := map[string]int{}
	for e := range watcher.Updates() {
		if e == nil {
			break
		}
		var c schemas.Claim
		if err := json.Unmarshal(e.Value(), &c); err == nil && c.State == schemas.StateActive {
			count[c.Worker]++
		}
	}
	return count
}

func waitClaims(b *testing.B, env *provtest.Env, want int, holders map[string]bool, within time.Duration) map[string]int {
	deadline := time.Now().Add(within)
	for {
		count := claimCount(b, env)
		held := 0
		for w, n := range count {
			if holders == nil || holders[w] {
				held += n
			}
		}
		if held == want {
			return count
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d agents held after %s: %v", held, want, within, count)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkFailover kills (cuts off) one of three workers holding 1,000
// agents at a service-wide throttle of 100/s and times until the two others
// hold every agent.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./worker/
func BenchmarkFailover(b *testing.B) {
	nodes := realCluster(b, 3, 100)
	env := nodes[0].env
	subscribeInBatches(b, env, 1000)
	before := waitClaims(b, env, 1000, nil, 2*time.Minute)
	for b.Loop() {
		start := time.Now()
		nodes[2].env.CutOff() // as kill -9 would: no release, no goodbye
		waitClaims(b, env, 1000, map[string]bool{"worker-a": true, "worker-b": true}, 2*time.Minute)
		b.ReportMetric(time.Since(start).Seconds(), "failover-s")
	}
	b.ReportMetric(float64(before["worker-c"]), "agents-moved")
}

// BenchmarkSteadyStateKVWrites holds 100,000 agents over three workers and
// counts the writes to every bucket over 30 s at rest: lease upkeep must be
// about workers/lease, not agents/lease.
//
//	go test -run '^$' -bench SteadyState -benchtime 1x -timeout 20m ./worker/
func BenchmarkSteadyStateKVWrites(b *testing.B) {
	nodes := realCluster(b, 3, 20000)
	env := nodes[0].env
	subscribeInBatches(b, env, 100000)
	counts := waitClaims(b, env, 100000, nil, 15*time.Minute)
	time.Sleep(5 * time.Second) // the last claim updates land
	ctx := context.Background()
	lastSeqs := func() uint64 {
		var total uint64
		for _, bucket := range []string{schemas.BucketState, schemas.BucketInterest, schemas.BucketClaims, schemas.BucketWorkers} {
			s, err := env.Conn.JS.Stream(ctx, "KV_"+bucket)
			if err != nil {
				b.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			total += info.State.LastSeq
		}
		return total
	}
	for b.Loop() {
		first := lastSeqs()
		time.Sleep(30 * time.Second)
		b.ReportMetric(float64(lastSeqs()-first)/30, "kv-writes/s")
	}
	lo, hi := 100000, 0
	for _, n := range counts {
		lo, hi = min(lo, n), max(hi, n)
	}
	b.ReportMetric(float64(hi)/float64(lo), "max/min-agents")
	b.ReportMetric(float64(lo), "min-agents")
	b.ReportMetric(float64(hi), "max-agents")
}
