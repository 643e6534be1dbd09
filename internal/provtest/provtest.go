// Package provtest runs a whole provider for tests: a real embedded NATS
// server with JetStream, the buckets of docs/contract.md, the presence
// service and a worker, on a clock the test controls.
package provtest

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// Env is a running provider.
type Env struct {
	Server     *server.Server
	Conn       *bus.Conn
	Stores     bus.Stores
	Client     *client.Client
	Clock      *clockwork.FakeClock
	Worker     *worker.Worker
	Logs       *Logs
	svc        *bus.Service
	workerConn *bus.Conn
	stopped    bool
	t          testing.TB
}

// Config returns a worker configuration for tests: quick numbers a test can
// reason about on the fake clock.
func Config() worker.Config {
	return worker.Config{
		ID:                     "worker-a",
		SubscriptionsPerSecond: 10,
		FirstRetry:             10 * time.Second,
		MaxRetry:               80 * time.Second,
		MaxFailures:            3,
		Linger:                 5 * time.Second,
		WorkerLease:            time.Hour,
	}
}

// Server starts an embedded NATS server in a temporary folder.
func Server(t testing.TB) *server.Server {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns.Server
}

// Start runs a provider on a fake clock with the given worker configuration;
// add registers its sources (the worker is their sink).
func Start(t testing.TB, cfg worker.Config, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return StartOn(t, Server(t), cfg, clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)), add)
}

// StartReal runs a provider on the real clock, for tests against real
// servers that keep real time.
func StartReal(t testing.TB, cfg worker.Config, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return StartOn(t, Server(t), cfg, clockwork.NewRealClock(), add)
}

// StartOn runs a provider on a server the test already has (a second worker,
// or a restart). Env.Clock is set when clock is a fake one.
func StartOn(t testing.TB, ns *server.Server, cfg worker.Config, clock clockwork.Clock, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return StartQueue(t, ns, cfg, bus.InputQueueOptions{}, clock, add)
}

// StartQueue is StartOn with the input queue's bounds; its WorkerID is the
// worker's, and its Replicas (1 when 0) those of every bucket and stream.
func StartQueue(t testing.TB, ns *server.Server, cfg worker.Config, queue bus.InputQueueOptions, clock clockwork.Clock, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return start(t, "", ns, cfg, clock, nil, queue, adding(add))
}

// StartWithoutHistory is StartOn without presence_history, for benchmarks
// of what keeping the events costs.
func StartWithoutHistory(t testing.TB, ns *server.Server, cfg worker.Config, clock clockwork.Clock, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return startWith(t, "", ns, cfg, clock, nil, bus.InputQueueOptions{}, adding(add), false)
}

// Join runs a provider whose worker and observer join NATS at url, as
// presenced does with PRESENCE_NATS_URL: they reconnect when the server
// there restarts. Env.Server is nil.
func Join(t testing.TB, url string, cfg worker.Config, clock clockwork.Clock, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return start(t, url, nil, cfg, clock, nil, bus.InputQueueOptions{}, adding(add))
}

// JoinCluster is Join for a NATS cluster (url lists its nodes) with every
// bucket and stream on replicas nodes.
func JoinCluster(t testing.TB, url string, replicas int, cfg worker.Config, clock clockwork.Clock, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return start(t, url, nil, cfg, clock, nil, bus.InputQueueOptions{Replicas: replicas}, adding(add))
}

// adding adapts a function that adds sources from the worker and the clock.
func adding(add func(w *worker.Worker, clock clockwork.Clock)) func(Parts) {
	return func(p Parts) {
		if add != nil {
			add(p.Worker, p.Clock)
		}
	}
}

// StartFaulty is StartOn with the worker's stores passed through faults
// first, for tests of what NATS failing to answer does to the worker.
func StartFaulty(t testing.TB, ns *server.Server, cfg worker.Config, clock clockwork.Clock, faults func(worker.Stores) worker.Stores, add func(w *worker.Worker, clock clockwork.Clock)) *Env {
	t.Helper()
	return start(t, "", ns, cfg, clock, faults, bus.InputQueueOptions{}, adding(add))
}

// Parts are what a test builds its sources from: the worker (their sink),
// the clock, and the stores of sources that keep state in NATS, over the
// worker's own connection.
type Parts struct {
	Worker *worker.Worker
	Clock  clockwork.Clock
	Calls  *bus.Calls
	Log    zerolog.Logger
}

// StartParts is StartOn for sources that need more than the worker and the
// clock (the PSTN source's calls).
func StartParts(t testing.TB, ns *server.Server, cfg worker.Config, clock clockwork.Clock, add func(Parts)) *Env {
	t.Helper()
	return start(t, "", ns, cfg, clock, nil, bus.InputQueueOptions{}, add)
}

func start(t testing.TB, url string, ns *server.Server, cfg worker.Config, clock clockwork.Clock, faults func(worker.Stores) worker.Stores,
	queue bus.InputQueueOptions, add func(Parts)) *Env {
	t.Helper()
	return startWith(t, url, ns, cfg, clock, faults, queue, add, true)
}

func startWith(t testing.TB, url string, ns *server.Server, cfg worker.Config, clock clockwork.Clock, faults func(worker.Stores) worker.Stores,
	queue bus.InputQueueOptions, add func(Parts), history bool) *Env {
	t.Helper()
	queue.WorkerID, queue.Replicas = cfg.ID, max(queue.Replicas, 1)
	logs := &Logs{}
	log := zerolog.New(logs).With().Timestamp().Logger()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provider logs:\n%s", logs.String())
		}
	})
	conn, err := bus.Connect(url, ns, cfg.ID, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stores, err := conn.Buckets(ctx, bus.BucketOptions{Replicas: queue.Replicas, WorkerLease: bucketLease}, log)
	if err != nil {
		t.Fatal(err)
	}
	if history {
		if stores.History, err = conn.HistoryStream(ctx, bus.HistoryOptions{MaxAge: time.Hour, MaxBytes: 1 << 30, Replicas: queue.Replicas}, log); err != nil {
			t.Fatal(err)
		}
	}
	if faults != nil {
		stores.Stores = faults(stores.Stores)
	}
	w := worker.New(cfg, stores.Stores, clock, log)
	add(Parts{Worker: w, Clock: clock, Calls: stores.Calls, Log: log})
	inputs, err := conn.OpenInputs(ctx, queue, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The test looks on with a connection of its own, as a UCC would, so it
	// can still look after the worker stopped.
	observer, err := bus.Connect(url, ns, "observer", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(observer.Close)
	looking, err := observer.Buckets(ctx, bus.BucketOptions{Replicas: queue.Replicas, WorkerLease: bucketLease}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := clock.(*clockwork.FakeClock)
	e := &Env{Server: ns, Conn: observer, Stores: looking, Client: client.New(observer.NC), Clock: fake, Worker: w, Logs: logs, workerConn: conn, t: t}
	t.Cleanup(e.Stop)
	if e.svc, err = conn.Serve(ctx, w, "0.0.0-test", inputs, log); err != nil {
		t.Fatal(err)
	}
	return e
}

// bucketLease is the real-time TTL of presence_workers entries in tests.
// Workers beat on the test's clock, often a fake one a loaded machine moves
// slowly: a shorter TTL would end live workers' entries between two beats.
// Tests make a worker die by deleting its entry.
const bucketLease = time.Minute

// eventuallyWithin is how long Eventually waits before it fails a test.
const eventuallyWithin = 30 * time.Second

// StopTimeout bounds a test provider's shutdown, as PRESENCE_SHUTDOWN_TIMEOUT does presenced's.
const StopTimeout = 30 * time.Second

// Stop shuts the provider down as SIGTERM would; a second call does nothing.
func (e *Env) Stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	if e.svc != nil {
		_ = e.svc.StopRequests()
	}
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	e.Worker.Stop(ctx)
	if e.svc != nil {
		_ = e.svc.Stop()
	}
	e.workerConn.Close()
}

// CutOff closes the worker's NATS connection for good, as a network
// partition would: the worker itself keeps running.
func (e *Env) CutOff() { e.workerConn.NC.Close() }

// Ctx is a context for one request.
func (e *Env) Ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// Subscribe subscribes agents for a UCC and fails the test on a request error.
func (e *Env) Subscribe(ucc string, uris ...string) schemas.AgentsReply {
	e.t.Helper()
	req := schemas.SubscribeRequest{UCC: ucc}
	for _, u := range uris {
		req.Agents = append(req.Agents, schemas.AgentRef{URI: u})
	}
	rep, err := e.Client.Subscribe(e.Ctx(), req)
	if err != nil {
		e.t.Fatalf("subscribe %s: %v", ucc, err)
	}
	return rep
}

// AttendantOnceUp sets an attendant agent's presence once the provider
// answers (after a restart, its worker may still be reconnecting) and
// returns the seq stored. The input goes once: one retried after a lost
// answer would be applied twice, since the provider keeps inputs durably.
func (e *Env) AttendantOnceUp(uri, availability string) uint64 {
	e.t.Helper()
	Eventually(e.t, "the provider to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.Client.Get(ctx, schemas.GetRequest{})
		return err == nil
	})
	rep, err := e.Client.Attendant(e.Ctx(), schemas.Key(uri), schemas.AttendantInput{Availability: availability})
	if err != nil || !rep.OK {
		e.t.Fatalf("attendant input %s for %s: %v %+v", availability, uri, err, rep)
	}
	return rep.Seq
}

// AdvanceUntil moves the fake clock on in small steps until cond holds, for
// tests that need time to pass but do not measure it.
func (e *Env) AdvanceUntil(what string, cond func() bool) {
	e.t.Helper()
	e.AdvanceBy(what, 10*time.Millisecond, cond)
}

// AdvanceBy is AdvanceUntil in steps of step, for tests whose timers are
// seconds apart.
func (e *Env) AdvanceBy(what string, step time.Duration, cond func() bool) {
	e.t.Helper()
	Eventually(e.t, what, func() bool {
		e.Clock.Advance(step)
		return cond()
	})
}

// Eventually polls cond in real time until it holds, or fails the test. It
// waits for the provider's goroutines, never for the provider's clock. The
// deadline only ends a test that is failing: generous, for a loaded machine.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventuallyWithin)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Logs collects the provider's log lines.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Events collects every event published for one agent, unfiltered, as a
// UCC subscribed to presence.<key> receives them.
type Events struct {
	mu  sync.Mutex
	got []schemas.Event
}

// Collect starts collecting the events of the agent key.
func (e *Env) Collect(key string) *Events {
	e.t.Helper()
	evs := &Events{}
	sub, err := e.Conn.NC.Subscribe(schemas.EventSubject(key), func(m *nats.Msg) {
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Errorf("event is not JSON: %s", m.Data)
			return
		}
		evs.mu.Lock()
		evs.got = append(evs.got, ev)
		evs.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.Conn.NC.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return evs
}

// List is the events so far, in arrival order.
func (evs *Events) List() []schemas.Event {
	evs.mu.Lock()
	defer evs.mu.Unlock()
	return append([]schemas.Event(nil), evs.got...)
}

// State is what a get answers as the agent's subscription state.
func (e *Env) State(uri string) schemas.State {
	e.t.Helper()
	rep, err := e.Client.Get(e.Ctx(), schemas.GetRequest{URIs: []string{uri}})
	if err != nil {
		e.t.Fatal(err)
	}
	return rep.Agents[0].State
}
