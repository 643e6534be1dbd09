package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// workersOf opens the presence_workers bucket as one process of its own
// would: each call draws another instance.
func workersOf(t *testing.T, ns *server.Server, lease time.Duration) worker.WorkerStore {
	t.Helper()
	conn, err := bus.Connect("", ns, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	stores, err := conn.Buckets(context.Background(), bus.BucketOptions{Replicas: 1, WorkerLease: lease}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return stores.Workers
}

// entries is the raw presence_workers bucket, for writing what another
// process would have written.
func entries(t *testing.T, ns *server.Server) jetstream.KeyValue {
	t.Helper()
	conn, err := bus.Connect("", ns, "raw", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	kv, err := conn.JS.KeyValue(context.Background(), schemas.BucketWorkers)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func entryOf(t *testing.T, kv jetstream.KeyValue, id string) schemas.WorkerInfo {
	t.Helper()
	e, err := kv.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("entry %s: %v", id, err)
	}
	var w schemas.WorkerInfo
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func put(t *testing.T, kv jetstream.KeyValue, w schemas.WorkerInfo) {
	t.Helper()
	data, _ := json.Marshal(w)
	if _, err := kv.Put(context.Background(), w.ID, data); err != nil {
		t.Fatal(err)
	}
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// A restarted process takes its id back at once; the process it replaced,
// were it still running somewhere, can no longer beat.
func TestWorkerIDTakenBackByTheNextProcessOnThisHost(t *testing.T) {
	ns := provtest.Server(t)
	old := workersOf(t, ns, 10*time.Second)
	kv := entries(t, ns)
	info := schemas.WorkerInfo{ID: "w1", Started: time.Now().UTC()}
	if err := old.Join(testCtx(t), info); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	first := entryOf(t, kv, "w1")
	if first.Instance == "" || first.Host != host || first.PID != os.Getpid() {
		t.Fatalf("entry %+v; want this process's instance, host %s and pid %d", first, host, os.Getpid())
	}

	// The same pid on the same host: a restarted container.
	restarted := workersOf(t, ns, 10*time.Second)
	if err := restarted.Join(testCtx(t), info); err != nil {
		t.Fatalf("the restarted process was refused its own id: %v", err)
	}
	second := entryOf(t, kv, "w1")
	if second.Instance == first.Instance {
		t.Fatal("the entry still names the earlier process")
	}
	var inUse *bus.IDInUseError
	if err := old.Beat(testCtx(t), info); !errors.As(err, &inUse) || inUse.Holder.Instance != second.Instance {
		t.Fatalf("the earlier process beat with %v; want its id refused, naming the new holder", err)
	}
	if err := restarted.Beat(testCtx(t), info); err != nil {
		t.Fatalf("the holder's beat: %v", err)
	}
}

func TestWorkerIDOfAProcessOnThisHost(t *testing.T) {
	ns := provtest.Server(t)
	workersOf(t, ns, 10*time.Second) // the bucket
	kv := entries(t, ns)
	host, _ := os.Hostname()

	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Skipf("no true(1) to make a process that is gone: %v", err)
	}
	put(t, kv, schemas.WorkerInfo{ID: "gone", Started: time.Now().UTC(), Instance: "old", Host: host, PID: exited.Process.Pid})
	if err := workersOf(t, ns, 10*time.Second).Join(testCtx(t), schemas.WorkerInfo{ID: "gone"}); err != nil {
		t.Fatalf("the id of a process that is gone: %v", err)
	}

	live := schemas.WorkerInfo{ID: "live", Started: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), Instance: "other", Host: host, PID: os.Getppid()}
	put(t, kv, live)
	err := workersOf(t, ns, 10*time.Second).Join(testCtx(t), schemas.WorkerInfo{ID: "live"})
	var inUse *bus.IDInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("the id of a running process: %v; want it refused", err)
	}
	for _, part := range []string{`worker id "live"`, "process " + strconv.Itoa(os.Getppid()), "host " + host, "2026-11-24T09:00:00Z", "PRESENCE_WORKER_ID"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("refusal %q does not say %q", err, part)
		}
	}
	if now := entryOf(t, kv, "live"); now != live {
		t.Fatalf("the refused start changed the entry: %+v", now)
	}
}

// Of a process on another host nothing can be proved: a start waits for its
// entry to end, and is refused when it beats.
func TestWorkerIDOfAProcessOnAnotherHost(t *testing.T) {
	ns := provtest.Server(t)
	const lease = time.Second
	workersOf(t, ns, lease) // the bucket, with this lease
	kv := entries(t, ns)
	elsewhere := schemas.WorkerInfo{ID: "w1", Started: time.Now().UTC(), Instance: "far", Host: "elsewhere.example", PID: 7}

	put(t, kv, elsewhere)
	joined := make(chan error, 1)
	go func() { joined <- workersOf(t, ns, lease).Join(testCtx(t), schemas.WorkerInfo{ID: "w1"}) }()
	// Beat as the other process until the start gives up.
	var err error
	for beating := true; beating; {
		select {
		case err = <-joined:
			beating = false
		case <-time.After(lease / 4):
			put(t, kv, elsewhere)
		}
	}
	var inUse *bus.IDInUseError
	if !errors.As(err, &inUse) || inUse.Holder.Host != "elsewhere.example" {
		t.Fatalf("start beside a beating process on another host: %v; want it refused", err)
	}

	put(t, kv, elsewhere)
	if err := workersOf(t, ns, lease).Join(testCtx(t), schemas.WorkerInfo{ID: "w1"}); err != nil {
		t.Fatalf("start after the other process stopped beating: %v", err)
	}
	if now := entryOf(t, kv, "w1"); now.Instance == "far" {
		t.Fatalf("entry %+v; want the new process's", now)
	}
}

// TestListSeesEveryWorkerWhileTheyBeat: a worker listed while others
// rewrite their entries (every beat does) is never missed; one missed makes
// the lister hand its agents to another worker and back.
func TestListSeesEveryWorkerWhileTheyBeat(t *testing.T) {
	ns := provtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 8
	var beating []worker.WorkerStore
	for i := range n {
		w := workersOf(t, ns, time.Minute)
		if err := w.Join(ctx, schemas.WorkerInfo{ID: "w" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		beating = append(beating, w)
	}
	stop := make(chan struct{})
	done := make(chan error, n)
	for i, w := range beating {
		go func() {
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if err := w.Beat(ctx, schemas.WorkerInfo{ID: "w" + strconv.Itoa(i)}); err != nil {
					done <- err
					return
				}
			}
		}()
	}
	lister := workersOf(t, ns, time.Minute)
	for range 300 {
		list, err := lister.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != n {
			close(stop)
			t.Fatalf("listed %d workers while %d beat: %+v", len(list), n, list)
		}
	}
	close(stop)
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
