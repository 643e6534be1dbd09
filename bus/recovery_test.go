package bus_test

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// natsOnPort is a NATS server with JetStream that a test stops and starts
// again on the same port and store, as an operator restarts an external
// nats-server.
type natsOnPort struct {
	t      testing.TB
	listen string
	dir    string
	ns     *bus.Embedded
}

func startNATSOnPort(t testing.TB) *natsOnPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	_ = l.Close()
	n := &natsOnPort{t: t, listen: listen, dir: t.TempDir()}
	n.start()
	t.Cleanup(func() {
		if n.ns != nil {
			n.ns.Shutdown()
		}
	})
	return n
}

func (n *natsOnPort) start() {
	n.t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: n.listen, DataDir: n.dir}, zerolog.Nop())
	if err != nil {
		n.t.Fatal(err)
	}
	n.ns = ns
}

func (n *natsOnPort) restart() {
	n.t.Helper()
	n.ns.Shutdown()
	n.ns = nil
	n.start()
}

func (n *natsOnPort) url() string { return "nats://" + n.listen }

var attendantPattern = regexp.MustCompile(`@attendant\.example$`)

func withAttendant(w *worker.Worker, clock clockwork.Clock) {
	w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{attendantPattern}))
}

// recovery is how long after NATS answered again the worker saw each change.
type recovery struct {
	interest, presence, deletion, request, input time.Duration
}

// restartUnderProvider runs a worker joined to a NATS server by URL,
// restarts the server, and at once writes an interest, a presence and a
// deletion from another client, while the worker is most likely still
// reconnecting. It waits until the worker has seen each (the deadline is
// for correctness, not speed) and returns how long each took.
func restartUnderProvider(t testing.TB) recovery {
	n := startNATSOnPort(t)
	e := provtest.Join(t, n.url(), provtest.Config(), clockwork.NewRealClock(), withAttendant)
	const (
		kept    = "sip:kept@attendant.example"
		dropped = "sip:dropped@attendant.example"
		added   = "sip:added@attendant.example"
	)
	e.Subscribe("ucc_app01", kept, dropped)
	get := func(uri string) schemas.AgentResult {
		rep, err := e.Worker.Get(context.Background(), schemas.GetRequest{URIs: []string{uri}})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Agents[0]
	}
	provtest.Eventually(t, "the worker has both agents", func() bool {
		return get(kept).State == schemas.StateActive && get(dropped).State == schemas.StateActive
	})

	n.restart()
	answering := time.Now()
	writer, err := bus.Connect(n.url(), nil, "writer", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stores, err := writer.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: 10 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if errs := stores.Interest.Put(ctx, []schemas.Interest{{UCC: "ucc_app01", URI: added, At: time.Now().UTC()}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	cur, _, err := stores.State.Load(ctx, schemas.Key(kept))
	if err != nil {
		t.Fatal(err)
	}
	busy := schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500, Activity: "written-while-away",
		Source: schemas.SourceAttendant, ObservedAt: time.Now().UTC()}
	if _, ok, err := stores.State.Swap(ctx, schemas.Event{URI: kept, Key: schemas.Key(kept), Presence: busy}, cur.Seq); err != nil || !ok {
		t.Fatalf("write presence: swapped %v, %v", ok, err)
	}
	if _, err := stores.Interest.Delete(ctx, schemas.Key(dropped), schemas.Key("ucc_app01"), 0); err != nil {
		t.Fatal(err)
	}

	// One loop looks at every condition, so that each time is its own.
	var r recovery
	checks := []struct {
		what string
		took *time.Duration
		cond func() bool
	}{
		{"the interest written after the restart", &r.interest, func() bool { return get(added).State == schemas.StateActive }},
		{"the presence written after the restart", &r.presence, func() bool {
			p := get(kept).Presence
			return p != nil && p.Activity == busy.Activity
		}},
		{"the interest deleted after the restart", &r.deletion, func() bool { return get(dropped).State == "" }},
		{"a request answered after the restart", &r.request, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := e.Client.Status(ctx)
			return err == nil
		}},
		{"an input answered after the restart", &r.input, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			rep, err := e.Client.Attendant(ctx, schemas.Key(added), schemas.AttendantInput{Availability: "Away"})
			return err == nil && rep.OK
		}},
	}
	// The deadline is for correctness; the times are the measurement.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var missing []string
		for _, c := range checks {
			if *c.took == 0 {
				if c.cond() {
					*c.took = time.Since(answering)
				} else {
					missing = append(missing, c.what)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not seen 10 s after NATS answered again: %s", strings.Join(missing, "; "))
		}
		time.Sleep(2 * time.Millisecond)
	}
	st, err := e.Client.Status(e.Ctx())
	if err != nil || st.Interests != 2 {
		t.Fatalf("status after the restart: %+v, %v; want the kept and the added interest", st, err)
	}
	return r
}

// TestWatchesResumeAfterNATSRestart: after the NATS server the worker joined
// restarts, an interest, a presence and a deletion written at once by
// another client all reach the worker, and the presence service and the
// inputs answer again.
func TestWatchesResumeAfterNATSRestart(t *testing.T) {
	r := restartUnderProvider(t)
	t.Logf("after NATS answered again: interest %s, presence %s, deletion %s, request %s, input %s",
		r.interest.Round(time.Millisecond), r.presence.Round(time.Millisecond), r.deletion.Round(time.Millisecond),
		r.request.Round(time.Millisecond), r.input.Round(time.Millisecond))
}

// BenchmarkRecoveryAfterNATSRestart measures how long after a restarted
// NATS server answers the worker has seen changes written at once, and
// answers requests and inputs.
func BenchmarkRecoveryAfterNATSRestart(b *testing.B) {
	var sum recovery
	for range b.N {
		r := restartUnderProvider(b)
		sum.interest += r.interest
		sum.presence += r.presence
		sum.deletion += r.deletion
		sum.request += r.request
		sum.input += r.input
	}
	per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
	b.ReportMetric(per(sum.interest), "ms-interest")
	b.ReportMetric(per(sum.presence), "ms-presence")
	b.ReportMetric(per(sum.deletion), "ms-deletion")
	b.ReportMetric(per(sum.request), "ms-request")
	b.ReportMetric(per(sum.input), "ms-input")
}
