package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// hanging is an upstream server that never answers: every call waits until
// its context ends.
type hanging struct {
	mu        sync.Mutex
	started   int
	cancelled int
}

func (h *hanging) Subscribe(ctx context.Context, _ sources.Agent) error {
	h.mu.Lock()
	h.started++
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.cancelled++
	h.mu.Unlock()
	return ctx.Err()
}

func (h *hanging) Unsubscribe(ctx context.Context, _ sources.Agent) error {
	<-ctx.Done()
	return ctx.Err()
}

func (h *hanging) Health() sources.Health { return sources.Health{Healthy: true} }

func (h *hanging) Serves(schemas.AgentURI, string) bool { return true }

func (h *hanging) counts() (started, cancelled int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.cancelled
}

// Stop returns by its deadline whatever the upstream server does: attempts
// in flight are cancelled at once, un-SUBSCRIBEs wait no longer than the
// deadline, and the stop says nothing misleading.
func TestStopIsBoundedWhenUpstreamNeverAnswers(t *testing.T) {
	cfg := provtest.Config()
	cfg.SubscriptionsPerSecond = 1000
	src := &hanging{}
	env := provtest.StartReal(t, cfg, func(w *worker.Worker, _ clockwork.Clock) {
		w.AddSource(schemas.SourceSIP, src)
	})
	env.Subscribe("ucc_app01", "sip:a@d.com", "sip:b@d.com", "sip:c@d.com")
	provtest.Eventually(t, "three attempts in flight", func() bool { started, _ := src.counts(); return started == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		env.Worker.Stop(ctx)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(provtest.StopTimeout):
		t.Fatal("Stop did not return though its deadline passed long ago")
	}
	if _, cancelled := src.counts(); cancelled != 3 {
		t.Fatalf("%d of 3 attempts in flight were cancelled", cancelled)
	}
	if logs := env.Logs.String(); strings.Contains(logs, "context canceled") || strings.Contains(logs, "recovered from panic") {
		t.Fatalf("misleading shutdown logs:\n%s", logs)
	}
}

// Workers follow presence_workers as it changes: a join, a clean leave and
// a death move agents at once. The fake clock is never moved far enough for
// a heartbeat (a third of an hour's lease), so only the watch can tell.
func TestWorkersWatchEachOtherAndMoveAgentsAtOnce(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	start := func(id string) node {
		cfg := provtest.Config()
		cfg.ID, cfg.SubscriptionsPerSecond = id, 1000
		var src *scripted
		env := provtest.StartOn(t, ns, cfg, clock, func(w *worker.Worker, clock clockwork.Clock) {
			src = newScripted(clock)
			w.AddSource(schemas.SourceSIP, src)
		})
		return node{env: env, src: src}
	}
	a := start("worker-a")
	uris := subscribeMany(t, a.env, 30)
	throttle := func(what string, cond func() bool) {
		t.Helper()
		provtest.Eventually(t, what, func() bool {
			clock.Advance(time.Millisecond) // the throttle's slots, nothing more
			return cond()
		})
	}
	throttle("worker-a holds all 30", func() bool { return holders(t, a.env, uris)["worker-a"] == 30 })

	b := start("worker-b")
	throttle("worker-b took its share when it joined", func() bool {
		h := holders(t, a.env, uris)
		return h["worker-b"] > 0 && h["worker-a"]+h["worker-b"] == 30
	})
	b.env.Stop()
	throttle("worker-a holds all 30 after worker-b left", func() bool { return holders(t, a.env, uris)["worker-a"] == 30 })

	c := start("worker-c")
	throttle("worker-c took its share", func() bool {
		h := holders(t, a.env, uris)
		return h["worker-c"] > 0 && h["worker-a"]+h["worker-c"] == 30
	})
	// worker-c dies: its connection is gone and its entry with its lease.
	c.env.CutOff()
	if err := a.env.Stores.Workers.Leave(a.env.Ctx(), "worker-c"); err != nil {
		t.Fatal(err)
	}
	throttle("worker-a took the dead worker's agents", func() bool { return holders(t, a.env, uris)["worker-a"] == 30 })
	if since := clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)); since >= 20*time.Minute {
		t.Fatalf("the fake clock moved %s: a heartbeat may have done the watch's work", since)
	}
}

// Stopping workers while others join, die, subscribe and take inputs never
// races, panics or hangs, and a stopped worker leaves nothing upstream.
func TestStopDuringChurn(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) { churn(t) })
	}
}

func churn(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewRealClock()
	start := func(id string) node {
		cfg := provtest.Config()
		cfg.ID, cfg.SubscriptionsPerSecond = id, 500
		var src *scripted
		env := provtest.StartOn(t, ns, cfg, clock, func(w *worker.Worker, clock clockwork.Clock) {
			src = newScripted(clock)
			w.AddSource(schemas.SourceSIP, src)
			w.AddSource(schemas.SourceAttendant, attendant.New(clock, matchPatterns()))
		})
		return node{env: env, src: src}
	}
	nodes := []node{start("worker-a"), start("worker-b")}
	a := nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var busy sync.WaitGroup
	busy.Add(2)
	go func() { // UCCs subscribe and leave
		defer busy.Done()
		for i := 0; ctx.Err() == nil; i++ {
			uri := fmt.Sprintf("sip:agent%d@domain.com", i%40)
			req := schemas.SubscribeRequest{UCC: fmt.Sprint("ucc", i%3), Agents: []schemas.AgentRef{{URI: uri}}}
			_, _ = a.env.Client.Subscribe(ctx, req)
			if i%5 == 0 {
				_, _ = a.env.Client.Unsubscribe(ctx, schemas.UnsubscribeRequest{UCC: req.UCC, URIs: []string{uri}})
			}
		}
	}()
	go func() { // a third-party client reports presence
		defer busy.Done()
		for i := 0; ctx.Err() == nil; i++ {
			key := keyOf(fmt.Sprintf("sip:agent%d@workstreampeople.nl", i%10))
			_ = a.env.Conn.NC.Publish(schemas.AttendantPrefix+key, mustJSON(schemas.AttendantInput{Availability: string(schemas.Busy)}))
			time.Sleep(time.Millisecond)
		}
	}()
	joined := start("worker-c")
	dying := start("worker-d")
	provtest.Eventually(t, "agents spread", func() bool { return a.src.count() > 0 && joined.src.count() > 0 })
	dying.env.CutOff()
	joined.env.Stop()
	cancel()
	busy.Wait()
	for _, n := range nodes {
		n.env.Stop()
	}
	for _, n := range append(nodes, joined) {
		n.src.mu.Lock()
		up := len(n.src.up)
		n.src.mu.Unlock()
		if up != 0 {
			t.Errorf("a stopped worker left %d upstream subscriptions", up)
		}
		if logs := n.env.Logs.String(); strings.Contains(logs, "recovered from panic") {
			t.Errorf("panic during churn:\n%s", logs)
		}
	}
}
