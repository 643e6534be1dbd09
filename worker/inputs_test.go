package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// startQueue runs one worker with the attendant source on the real clock,
// its input queue bounded by queue.
func startQueue(t *testing.T, queue bus.InputQueueOptions) *provtest.Env {
	t.Helper()
	return provtest.StartQueue(t, provtest.Server(t), provtest.Config(), queue, clockwork.NewRealClock(),
		func(w *worker.Worker, clock clockwork.Clock) {
			w.AddSource(schemas.SourceAttendant, attendant.New(clock, matchPatterns()))
		})
}

func floodAgent(i int) string { return fmt.Sprintf("sip:flood%05d@workstreampeople.com", i) }

func floodInput(n int) []byte {
	return []byte(`{"availability": "Busy", "activity": "n` + strconv.Itoa(n) + `"}`)
}

// waitFor polls cond until it holds or the time is up: for conditions that
// take longer than provtest.Eventually waits (a flood applied).
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAFloodOfInputsIsAppliedWhole publishes 200,000 inputs without reply
// subjects to 2,000 agents as fast as the client can: every agent ends with
// its last input, none lost to a slow consumer.
func TestAFloodOfInputsIsAppliedWhole(t *testing.T) {
	inputs, agents := 200_000, 2_000
	if testing.Short() || raceEnabled {
		// The full size runs without -race: go test -count=1 -run TestAFloodOfInputsIsAppliedWhole ./worker/
		inputs, agents = 20_000, 200
		t.Logf("-short or -race: %d inputs to %d agents; the full 200,000 run without -race", inputs, agents)
	}
	env := startQueue(t, bus.InputQueueOptions{})
	nc := env.Conn.NC
	for n := range inputs {
		if err := nc.Publish(schemas.AttendantPrefix+keyOf(floodAgent(n%agents)), floodInput(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Agent a's last input is the last n with n%agents == a.
	want := func(a int) string { return "n" + strconv.Itoa(inputs-agents+a) }
	next := 0
	waitFor(t, "every agent at its last input", 10*time.Minute, func() bool {
		for ; next < agents; next++ {
			ev, found, err := env.Stores.State.Load(env.Ctx(), keyOf(floodAgent(next)))
			if err != nil || !found || ev.Presence.Activity != want(next) {
				return false
			}
		}
		return true
	})
}

// reply is one answer to an input of a test.
type reply struct {
	n   int
	rep schemas.InputReply
}

// request publishes input n with a reply subject of its own under inbox.
func request(t *testing.T, nc *nats.Conn, inbox, subject string, n int, body []byte) {
	t.Helper()
	if err := nc.PublishRequest(subject, inbox+"."+strconv.Itoa(n), body); err != nil {
		t.Fatal(err)
	}
}

// answers collects the replies to the requests under inbox.
func answers(t *testing.T, nc *nats.Conn, inbox string) (replies func() []reply) {
	t.Helper()
	var mu sync.Mutex
	var got []reply
	sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
		n, _ := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
		var rep schemas.InputReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Errorf("reply %s: %v", m.Data, err)
		}
		mu.Lock()
		got = append(got, reply{n: n, rep: rep})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() []reply {
		mu.Lock()
		defer mu.Unlock()
		return append([]reply(nil), got...)
	}
}

// TestOverloadIsRefusedNeverSilent floods a queue of 100 inputs with
// requests, one per agent: each is answered, ok and stored, or overloaded
// and never applied.
func TestOverloadIsRefusedNeverSilent(t *testing.T) {
	const inputs = 20_000
	env := startQueue(t, bus.InputQueueOptions{MaxMsgs: 100})
	nc := env.Conn.NC
	inbox := nats.NewInbox()
	got := answers(t, nc, inbox)
	for n := range inputs {
		request(t, nc, inbox, schemas.AttendantPrefix+keyOf(floodAgent(n)), n, floodInput(n))
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every input answered", 3*time.Minute, func() bool { return len(got()) >= inputs })
	seen := map[int]bool{}
	overloaded := 0
	for _, r := range got() {
		if seen[r.n] {
			t.Fatalf("input %d answered twice", r.n)
		}
		seen[r.n] = true
		ev, found, err := env.Stores.State.Load(env.Ctx(), keyOf(floodAgent(r.n)))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.rep.OK:
			if !found || ev.Presence.Activity != "n"+strconv.Itoa(r.n) {
				t.Errorf("input %d answered ok but the agent holds %+v (found %v)", r.n, ev.Presence, found)
			}
		case r.rep.Error != nil && r.rep.Error.Code == schemas.CodeOverloaded:
			overloaded++
			if found {
				t.Errorf("input %d answered overloaded but applied: %+v", r.n, ev.Presence)
			}
		default:
			t.Errorf("input %d answered %+v", r.n, r.rep)
		}
	}
	if overloaded == 0 {
		t.Errorf("no input of %d refused by a queue of 100", inputs)
	}
	t.Logf("%d inputs: %d ok, %d overloaded", inputs, inputs-overloaded, overloaded)
}

// TestInputsLeftToAJoiningWorkerWaitForIt: from the moment a worker joins,
// the others leave it its agents' inputs and pass them; until it serves,
// only its own consumer, opened before it joined, keeps them from the
// purge (which removes what every consumer passed). Once it serves it
// applies every one.
func TestInputsLeftToAJoiningWorkerWaitForIt(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewRealClock()
	withAttendant := func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, matchPatterns()))
	}
	a := provtest.StartOn(t, ns, provtest.Config(), clock, withAttendant)

	// Worker B joins but does not serve yet, as presenced between its
	// start and its service.
	cfg := provtest.Config()
	cfg.ID = "worker-b"
	log := zerolog.New(a.Logs).With().Str("worker", cfg.ID).Logger()
	conn, err := bus.Connect("", ns, cfg.ID, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	stores, err := conn.Buckets(a.Ctx(), bus.BucketOptions{Replicas: 1, WorkerLease: time.Minute}, log)
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := conn.OpenInputs(a.Ctx(), bus.InputQueueOptions{WorkerID: cfg.ID, Replicas: 1}, log)
	if err != nil {
		t.Fatal(err)
	}
	b := worker.New(cfg, stores.Stores, clock, log)
	withAttendant(b, clock)
	if err := b.Start(a.Ctx()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(context.Background()) })

	var theirs []string // agents worker A leaves to B
	provtest.Eventually(t, "worker A leaves agents to B", func() bool {
		theirs = theirs[:0]
		for i := range 40 {
			if !a.Worker.Serves(keyOf(floodAgent(i))) {
				theirs = append(theirs, floodAgent(i))
			}
		}
		return len(theirs) >= 10
	})
	notMine := []worker.QueuedInput{{Source: schemas.SourceAttendant, Key: keyOf(theirs[0]), Body: floodInput(0),
		Pos: 1, Generation: a.Worker.ServedGeneration()}}
	if res := a.Worker.Input(a.Ctx(), notMine); res[0].Verdict != worker.NotMine {
		t.Fatalf("worker A's verdict on an input of an agent B serves: %v; want not mine", res[0].Verdict)
	}
	for n, uri := range theirs {
		if err := a.Conn.NC.Publish(schemas.AttendantPrefix+keyOf(uri), floodInput(n)); err != nil {
			t.Fatal(err)
		}
	}
	js := a.Conn.JS
	stream, err := js.Stream(a.Ctx(), schemas.StreamInputs)
	if err != nil {
		t.Fatal(err)
	}
	floors := func() map[string]uint64 {
		out := map[string]uint64{}
		for info := range stream.ListConsumers(a.Ctx()).Info() {
			out[info.Config.Description] = info.AckFloor.Stream
		}
		return out
	}
	var last uint64
	provtest.Eventually(t, "worker A passed every input", func() bool {
		info, err := stream.Info(a.Ctx())
		if err != nil || info.State.Msgs < uint64(len(theirs)) {
			return false
		}
		last = info.State.LastSeq
		return floors()["inputs for worker worker-a"] >= last
	})
	floor, held := floors()["inputs for worker worker-b"]
	if !held || floor >= last {
		t.Fatalf("ack floors %v after worker A passed the inputs left to B: none keeps them for B, so a purge may remove them unread", floors())
	}

	svc, err := conn.Serve(a.Ctx(), b, "0.0.0-test", inputs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	provtest.Eventually(t, "worker B applied every input left to it", func() bool {
		for n, uri := range theirs {
			ev, found, err := a.Stores.State.Load(a.Ctx(), keyOf(uri))
			if err != nil || !found || ev.Presence.Activity != "n"+strconv.Itoa(n) {
				return false
			}
		}
		return true
	})
}
