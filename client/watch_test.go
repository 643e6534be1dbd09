package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// A UCC that imports client must not link the NATS server, the worker or
// the bus: only the wire types and a NATS client.
func TestClientLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "nats-server") || strings.HasSuffix(pkg, "presence-provider/worker") ||
			strings.HasSuffix(pkg, "presence-provider/bus") || strings.Contains(pkg, "presence-provider/sources") {
			t.Errorf("client depends on %s", pkg)
		}
	}
	if !strings.Contains(string(out), "github.com/nats-io/nats.go\n") {
		t.Error("go list -deps shows no nats.go: the test does not look at the client")
	}
}

// recorder keeps what a watch delivered, and when each notice came.
type recorder struct {
	mu      sync.Mutex
	updates map[string][]client.Update
	notices []timedNotice
}

type timedNotice struct {
	client.Notice
	at time.Time
}

func (r *recorder) update(u client.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates[u.Key] = append(r.updates[u.Key], u)
}

func (r *recorder) notice(n client.Notice) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, timedNotice{n, time.Now()})
}

// caughtUpAfter is when the first catch-up after t finished, or zero.
func (r *recorder) caughtUpAfter(t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notices {
		if n.Kind == client.CaughtUp && n.at.After(t) {
			return n.at
		}
	}
	return time.Time{}
}

func (r *recorder) last(key string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if us := r.updates[key]; len(us) > 0 {
		return us[len(us)-1].Seq
	}
	return 0
}

// change is one input the provider answered, with the seq it stored.
type change struct {
	key string
	seq uint64
	at  time.Time
}

// TestWatchLosesNothingAcrossReconnectAndRestart changes presence every
// 50 ms while the watching UCC's connection is cut and the provider is
// restarted on the same store: the watch delivers each agent's changes in
// seq order, each once, every change made while it listened, and ends on
// the agent's current presence.
func TestWatchLosesNothingAcrossReconnectAndRestart(t *testing.T) {
	p := startProvider(t)
	agents := []string{"sip:w1@attendant.example", "sip:w2@attendant.example", "sip:w3@attendant.example"}
	ucc := client.New(p.connect())
	req := schemas.SubscribeRequest{UCC: "ucc_watch"}
	for _, a := range agents {
		req.Agents = append(req.Agents, schemas.AgentRef{URI: a})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if rep, err := ucc.Subscribe(ctx, req); err != nil || client.Failed(rep) != nil {
		t.Fatalf("subscribe: %v %v", err, client.Failed(rep))
	}
	source := client.New(p.connect())
	if _, err := source.Attendant(ctx, schemas.Key(agents[0]), schemas.AttendantInput{Availability: "Away"}); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{updates: map[string][]client.Update{}}
	watchConn := p.connect()
	w, err := client.New(watchConn).Watch(ctx, agents, rec.update, client.WithNotices(rec.notice), client.WithProbe(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if us := rec.updates[schemas.Key(agents[0])]; len(us) != 1 || !us[0].CatchUp || us[0].Presence.Availability != schemas.Away {
		t.Fatalf("the watch began with %+v; want the current presence, Away", us)
	}

	// Presence changes every 50 ms, agent after agent.
	var mu sync.Mutex
	var changes []change
	stop := make(chan struct{})
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			key := schemas.Key(agents[i%len(agents)])
			avail := []string{"Busy", "Available", "Away"}[(i/len(agents))%3]
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			rep, err := source.Attendant(rctx, key, schemas.AttendantInput{Availability: avail})
			cancel()
			if err == nil && rep.OK {
				mu.Lock()
				changes = append(changes, change{key, rep.Seq, time.Now()})
				mu.Unlock()
			}
		}
	}()
	changesSoFar := func() int { mu.Lock(); defer mu.Unlock(); return len(changes) }
	waitChanges := func(n int) {
		t.Helper()
		start := changesSoFar()
		provtest.Eventually(t, "presence changes", func() bool { return changesSoFar() >= start+n })
	}

	// Windows in which the watch may miss events: from the cut to the
	// catch-up that follows it.
	type window struct{ from, to time.Time }
	var windows []window
	blind := func(cut func()) {
		t.Helper()
		from := time.Now()
		cut()
		var to time.Time
		provtest.Eventually(t, "the watch catches up", func() bool { to = rec.caughtUpAfter(from); return !to.IsZero() })
		windows = append(windows, window{from, to})
	}

	waitChanges(10)
	blind(func() {
		if err := watchConn.ForceReconnect(); err != nil {
			t.Fatal(err)
		}
	})
	waitChanges(10)
	blind(func() { p.stop(); p.start() })
	waitChanges(10)
	close(stop)
	<-changed

	final, err := ucc.Get(ctx, schemas.GetRequest{URIs: agents})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range final.Agents {
		provtest.Eventually(t, "the watch reaches the current presence of "+r.URI, func() bool { return rec.last(r.Key) == r.Seq })
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	delivered := map[string]map[uint64]bool{}
	for key, us := range rec.updates {
		delivered[key] = map[uint64]bool{}
		for i, u := range us {
			if i > 0 && u.Seq <= us[i-1].Seq {
				t.Errorf("%s: seq %d delivered after %d", u.URI, u.Seq, us[i-1].Seq)
			}
			delivered[key][u.Seq] = true
		}
	}
	missed := 0
	for _, c := range changes {
		inWindow := false
		for _, w := range windows {
			inWindow = inWindow || (!c.at.Before(w.from) && !c.at.After(w.to))
		}
		if !delivered[c.key][c.seq] && !inWindow {
			t.Errorf("change seq %d of %s, answered at %s while the watch listened, was never delivered", c.seq, c.key, c.at.Format(time.StampMilli))
		}
		if !delivered[c.key][c.seq] {
			missed++
		}
	}
	kinds := map[client.NoticeKind]int{}
	for _, n := range rec.notices {
		kinds[n.Kind]++
	}
	if kinds[client.Disconnected] < 2 || kinds[client.Reconnected] < 2 || kinds[client.CaughtUp] < 2 {
		t.Errorf("notices %v; want two disconnects, reconnects and catch-ups", kinds)
	}
	t.Logf("%d changes, %d superseded while the watch could not listen, notices %v", len(changes), missed, kinds)
}

func TestWatchRefusesABadURI(t *testing.T) {
	p := startProvider(t)
	_, err := client.New(p.connect()).Watch(context.Background(), []string{"agent1"}, func(client.Update) {})
	var e *client.Error
	if !errors.Is(err, client.ErrInvalidURI) || !errors.As(err, &e) || e.URI != "agent1" {
		t.Fatalf("watch of agent1: %v; want invalid_uri naming it", err)
	}
}

// Two workers may publish one agent's events close together during a
// hand-over: the watch delivers none whose seq is not above the last.
func TestWatchDropsRepeatedAndOldEvents(t *testing.T) {
	p := startProvider(t)
	const agent = "sip:dup@attendant.example"
	key := schemas.Key(agent)
	nc := p.connect()
	c := client.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "Busy"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{updates: map[string][]client.Update{}}
	w, err := c.Watch(ctx, []string{agent}, rec.update)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for _, seq := range []uint64{first.Seq, first.Seq - 1} {
		ev := schemas.Event{URI: agent, Key: key, Seq: seq, Presence: schemas.Presence{Availability: schemas.Offline}}
		data, _ := json.Marshal(ev)
		if err := nc.Publish(schemas.EventSubject(key), data); err != nil {
			t.Fatal(err)
		}
	}
	next, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "Away"})
	if err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "the next change", func() bool { return rec.last(key) == next.Seq })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, u := range rec.updates[key] {
		got = append(got, fmt.Sprintf("%d %s catchup=%v", u.Seq, u.Presence.Availability, u.CatchUp))
	}
	want := []string{fmt.Sprintf("%d Busy catchup=true", first.Seq), fmt.Sprintf("%d Away catchup=false", next.Seq)}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("delivered %q; want %q", got, want)
	}
}
