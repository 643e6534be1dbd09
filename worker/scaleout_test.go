package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/pstn"
	"github.com/contactcenter/presence-provider/worker"
)

type node struct {
	env *provtest.Env
	src *scripted
}

// cluster runs n workers on one NATS server and one fake clock, each with
// its own scripted upstream, and lets them learn of each other.
func cluster(t *testing.T, n int, tune func(*worker.Config)) []node {
	t.Helper()
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	var nodes []node
	for i := range n {
		cfg := provtest.Config()
		cfg.ID = fmt.Sprintf("worker-%c", 'a'+i)
		cfg.WorkerLease = 3 * time.Second
		cfg.SubscriptionsPerSecond = 100
		if tune != nil {
			tune(&cfg)
		}
		var src *scripted
		env := provtest.StartOn(t, ns, cfg, clock, func(w *worker.Worker, clock clockwork.Clock) {
			src = newScripted(clock)
			w.AddSource(schemas.SourceSIP, src)
		})
		nodes = append(nodes, node{env: env, src: src})
	}
	// One heartbeat each: every worker has read the others.
	nodes[0].env.AdvanceUntil("workers know each other", func() bool {
		return nodes[0].env.Clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) > 1100*time.Millisecond
	})
	return nodes
}

func subscribeMany(t *testing.T, env *provtest.Env, n int) []string {
	t.Helper()
	var uris []string
	for i := range n {
		uris = append(uris, fmt.Sprintf("sip:agent%03d@domain.com", i))
	}
	for _, ucc := range []string{"ucc_app01", "ucc_app02"} {
		env.Subscribe(ucc, uris...)
	}
	return uris
}

// holders maps each worker id to the agents it claims.
func holders(t *testing.T, env *provtest.Env, uris []string) map[string]int {
	t.Helper()
	count := map[string]int{}
	for _, uri := range uris {
		c, found := claimOf(t, env, uri)
		if found && c.State == schemas.StateActive {
			count[c.Worker]++
		}
	}
	return count
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestAgentsSpreadOverWorkersOneHolderEach(t *testing.T) {
	nodes := cluster(t, 3, nil)
	env := nodes[0].env
	uris := subscribeMany(t, env, 90)
	env.AdvanceUntil("90 agents held", func() bool { return total(holders(t, env, uris)) == 90 })
	byWorker := holders(t, env, uris)
	upstream := 0
	for _, n := range nodes {
		upstream += n.src.count()
	}
	if upstream != 90 {
		t.Fatalf("%d upstream subscriptions for 90 agents on 3 workers; want 90", upstream)
	}
	for id, n := range byWorker {
		if n < 15 || n > 45 {
			t.Fatalf("worker %s holds %d of 90 agents (%v); want a share near 30", id, n, byWorker)
		}
	}
	if len(byWorker) != 3 {
		t.Fatalf("holders %v; want all three workers", byWorker)
	}
}

func TestThrottleIsSharedByTheLiveWorkers(t *testing.T) {
	nodes := cluster(t, 2, func(c *worker.Config) { c.SubscriptionsPerSecond = 10 })
	uris := subscribeMany(t, nodes[0].env, 20)
	nodes[0].env.AdvanceUntil("20 agents held", func() bool { return total(holders(t, nodes[0].env, uris)) == 20 })
	// A source notes an attempt after the claim's round trip to NATS, while
	// the fake clock moves on: a gap may look up to a few steps short of
	// the 200 ms of a shared throttle, never near the 100 ms of an unshared one.
	for _, n := range nodes {
		attempts := n.src.attemptList()
		for i := 1; i < len(attempts); i++ {
			if gap := attempts[i].at.Sub(attempts[i-1].at); gap < 150*time.Millisecond {
				t.Fatalf("two subscriptions %s apart on one of two workers sharing 10/s; want about 200 ms", gap)
			}
		}
		if span, want := attempts[len(attempts)-1].at.Sub(attempts[0].at), time.Duration(len(attempts)-1)*190*time.Millisecond; span < want {
			t.Fatalf("%d subscriptions within %s on one of two workers sharing 10/s; want %s at least", len(attempts), span, want)
		}
	}
}

func TestWorkerThatLeavesHandsItsAgentsOver(t *testing.T) {
	nodes := cluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	uris := subscribeMany(t, a.env, 40)
	a.env.AdvanceUntil("40 agents held", func() bool { return total(holders(t, a.env, uris)) == 40 })
	ofB := holders(t, a.env, uris)["worker-b"]
	if ofB == 0 {
		t.Fatal("worker-b holds nothing; the test needs it to hold a share")
	}
	var stillClaimed atomic.Int32
	b.src.whenEnded(func(agent sources.Agent) {
		if c, _, found, _ := a.env.Stores.Claims.Get(context.Background(), agent.Key); found && c.Worker == "worker-b" {
			stillClaimed.Add(1)
		}
	})
	b.env.Stop()
	if len(b.src.endedList()) != ofB || int(stillClaimed.Load()) != ofB {
		t.Fatalf("worker-b ended %d upstream subscriptions, %d while still claimed; want %d, each before its claim went", len(b.src.endedList()), stillClaimed.Load(), ofB)
	}
	a.env.AdvanceUntil("worker-a holds all 40", func() bool { return holders(t, a.env, uris)["worker-a"] == 40 })
	if n := a.src.count(); n != 40 {
		t.Fatalf("worker-a made %d upstream subscriptions; want 40 (its own and worker-b's, once each)", n)
	}
}

func TestCutOffWorkerFencesAndItsAgentsAreTakenOver(t *testing.T) {
	nodes := cluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	uris := subscribeMany(t, a.env, 40)
	a.env.AdvanceUntil("40 agents held", func() bool { return total(holders(t, a.env, uris)) == 40 })
	ofB := holders(t, a.env, uris)["worker-b"]
	cut := a.env.Clock.Now()
	b.env.CutOff()
	// Before its 3 s lease could run out, worker-b holds nothing upstream.
	a.env.AdvanceUntil("worker-b fenced", func() bool { return len(b.src.endedList()) == ofB })
	if since := a.env.Clock.Since(cut); since >= 3*time.Second {
		t.Fatalf("worker-b ended its subscriptions %s after losing NATS; its lease is 3 s", since)
	}
	// Its lease runs out (here: its entry goes), and worker-a takes its agents.
	if err := a.env.Stores.Workers.Leave(a.env.Ctx(), "worker-b"); err != nil {
		t.Fatal(err)
	}
	a.env.AdvanceUntil("worker-a holds all 40", func() bool { return holders(t, a.env, uris)["worker-a"] == 40 })
}

// TestFencedWorkersTakeTheirAgentsBack: clock jumps past two thirds of
// the lease fence both workers (as a stalled NATS cluster electing leaders
// does); once their beats succeed they take every agent back, each with a
// claim of its own and one upstream subscription, and keep them.
func TestFencedWorkersTakeTheirAgentsBack(t *testing.T) {
	nodes := cluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	uris := subscribeMany(t, a.env, 40)
	a.env.AdvanceUntil("40 agents held", func() bool { return total(holders(t, a.env, uris)) == 40 })
	for round := range 3 {
		endedBefore := len(a.src.endedList()) + len(b.src.endedList())
		// A beat that lands before its fence timer fires saves a worker:
		// jump until both were fenced.
		a.env.AdvanceBy("both workers fenced", 2500*time.Millisecond, func() bool {
			return len(a.src.endedList())+len(b.src.endedList()) >= endedBefore+40
		})
		var last string
		t.Cleanup(func() {
			if t.Failed() && last != "" {
				t.Logf("round %d, last seen: %s", round, last)
			}
		})
		a.env.AdvanceUntil(fmt.Sprintf("round %d: 40 agents held again, one upstream subscription each", round), func() bool {
			h := holders(t, a.env, uris)
			last = fmt.Sprintf("active claims %v, up at a %v, up at b %v", h, a.src.upList(), b.src.upList())
			return total(h) == 40 && len(a.src.upList())+len(b.src.upList()) == 40
		})
		// And still held once nothing runs any more: nothing the fence
		// started is left to end what was taken back.
		for _, n := range nodes {
			if !n.env.Worker.Quiet(a.env.Ctx()) {
				t.Fatalf("round %d: effects still running 10 s after the agents were taken back", round)
			}
		}
		if h, up := holders(t, a.env, uris), len(a.src.upList())+len(b.src.upList()); total(h) != 40 || up != 40 {
			t.Fatalf("round %d, once quiet: active claims %v, %d upstream subscriptions; want 40 of each", round, h, up)
		}
	}
}

// TestInputsWithTwoWorkers: both workers read every input from the input
// queue, the agent's owner alone applies, stores and answers, so a PSTN
// agent's calls add up in order, and each input is answered once.
func TestInputsWithTwoWorkers(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	var envs []*provtest.Env
	for _, id := range []string{"worker-a", "worker-b"} {
		cfg := provtest.Config()
		cfg.ID, cfg.WorkerLease = id, 3*time.Second
		envs = append(envs, provtest.StartParts(t, ns, cfg, clock, func(p provtest.Parts) {
			p.Worker.AddSource(schemas.SourceAttendant, attendant.New(p.Clock, matchPatterns()))
			p.Worker.AddSource(schemas.SourcePSTN, pstn.New(p.Calls, 4*time.Hour, p.Clock, p.Worker, p.Log))
		}))
	}
	env := envs[0]
	env.AdvanceUntil("workers know each other", func() bool {
		return env.Clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) > 1100*time.Millisecond
	})
	for i := range 10 {
		uri := fmt.Sprintf("tel:+3161234560%d", i)
		key := keyOf(uri)
		evs := env.Collect(key)
		env.Subscribe("ucc_app01", uri)
		provtest.Eventually(t, "Available", func() bool { return len(evs.List()) == 1 })
		for _, in := range []schemas.PSTNInput{
			{UCC: "ucc_app01", CallID: "c1", State: schemas.CallConnected},
			{UCC: "ucc_app02", CallID: "c2", State: schemas.CallConnected},
			{UCC: "ucc_app01", CallID: "c1", State: schemas.CallEnded},
			{UCC: "ucc_app02", CallID: "c2", State: schemas.CallEnded},
		} {
			msg := rawRequest(t, env, schemas.PSTNPrefix+key, mustJSON(in))
			var rep schemas.InputReply
			if json.Unmarshal(msg.Data, &rep); !rep.OK {
				t.Fatalf("%s: %s", uri, msg.Data)
			}
		}
		provtest.Eventually(t, "Busy then Available", func() bool { return len(evs.List()) == 3 })
		if got := evs.List()[2].Presence.Availability; got != schemas.Available || evs.List()[1].Presence.Availability != schemas.Busy {
			t.Fatalf("%s: events %+v; want Available, Busy while either call is up, Available", uri, evs.List())
		}
	}
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}
