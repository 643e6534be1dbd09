// Command presencebench measures the provider in one process on the embedded
// NATS server, the way BENCHMARKS.md reports it: subscribe throughput and
// peak memory, attendant input throughput against raw KV puts, the latency
// from an input to the event at a subscriber, and the durable input path
// (inputs.go): its sustained rate against raw JetStream publishes, its
// latency under load and its behaviour under overload; and what metrics cost
// on the input path (metrics.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

var heapProfile string

// withHistory keeps the events in presence_history, as presenced does.
var withHistory bool

// syncInterval is how the embedded server syncs its store, as
// PRESENCE_SYNC_INTERVAL sets it: 0 before each acknowledgement.
var syncInterval config.SyncInterval

func main() {
	agents := flag.Int("agents", 100000, "unique agents")
	uccs := flag.Int("uccs", 10, "UCCs subscribing every agent")
	batch := flag.Int("batch", 1000, "agents per subscribe request")
	inputs := flag.Int("inputs", 20000, "attendant inputs for the change throughput")
	samples := flag.Int("samples", 2000, "inputs timed one by one for the latency")
	flag.StringVar(&heapProfile, "heapprofile", "", "write a heap profile after the subscribe phase to this file")
	flag.BoolVar(&withHistory, "history", true, "keep the events in presence_history, as presenced does; false measures the path without it")
	flag.Func("sync", "how the embedded server syncs JetStream to disk, as PRESENCE_SYNC_INTERVAL: always (presenced's default) or an interval such as 2m", syncInterval.Decode)
	phases := flag.String("phases", "subscribe,change,latency,durable,metrics", "the phases to run, comma-separated")
	flag.IntVar(&durable.inputs, "durable-inputs", 100000, "inputs for the durable path's sustained rate")
	flag.IntVar(&durable.agents, "durable-agents", 1000, "agents the sustained rate's inputs go to, in turn")
	flag.DurationVar(&durable.window, "durable-window", 5*time.Second, "how long each paced latency run lasts")
	flag.DurationVar(&durable.overload, "overload", 10*time.Second, "how long 10 times the sustained rate is offered")
	flag.Int64Var(&durable.maxMsgs, "queue-max-msgs", 1000000, "the input queue's bound, as PRESENCE_INPUT_QUEUE_MAX_MSGS")
	metricsRounds := flag.Int("metrics-rounds", 5, "rounds of the metrics phase, each measuring a provider without metrics and history and one with both")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "presencebench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(strings.Split(*phases, ","), *agents, *uccs, *batch, *inputs, *samples, *metricsRounds); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "presencebench:", err)
		os.Exit(1)
	}
}

type provider struct {
	conn   *bus.Conn
	client *client.Client
	stores worker.Stores
	w      *worker.Worker
	stop   func()
}

// start runs a provider as presenced does, with every agent of the bench
// domain on the attendant source, and logs at info level into nothing so
// their cost is counted; obs (nil for none) observes the worker, and
// history keeps the events in presence_history.
func start(dir string, obs worker.Observer, history bool) (*provider, error) {
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: dir, SyncInterval: time.Duration(syncInterval)}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	conn, err := bus.Connect("", ns.Server, "presencebench", log)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	stores, err := conn.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: 10 * time.Second}, log)
	if err != nil {
		return nil, err
	}
	if history {
		if stores.History, err = conn.HistoryStream(ctx, bus.HistoryOptions{MaxAge: 7 * 24 * time.Hour, MaxBytes: 2 << 30, Replicas: 1}, log); err != nil {
			return nil, err
		}
	}
	clock := clockwork.NewRealClock()
	w := worker.New(worker.Config{
		ID: "bench", SubscriptionsPerSecond: 15, FirstRetry: 900 * time.Second, MaxRetry: 8 * time.Hour,
		MaxFailures: 3, Linger: 10 * time.Second, Observer: obs,
	}, stores.Stores, clock, log)
	w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`@bench\.example$`)}))
	inputs, err := conn.OpenInputs(ctx, bus.InputQueueOptions{WorkerID: "bench", Replicas: 1,
		MaxMsgs: durable.maxMsgs, MaxBytes: 1 << 30, MaxAge: 24 * time.Hour}, log)
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	svc, err := conn.Serve(ctx, w, "0.0.0-bench", inputs, log)
	if err != nil {
		return nil, err
	}
	// The UCC side has a connection of its own, as it would.
	ucc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	return &provider{conn: conn, client: client.New(ucc), stores: stores.Stores, w: w, stop: func() {
		ucc.Close()
		_ = svc.Stop()
		w.Stop(context.Background())
		conn.Close()
		ns.Shutdown()
	}}, nil
}

func run(phases []string, agents, uccs, batch, inputs, samples, metricsRounds int) error {
	dir, err := os.MkdirTemp("", "presencebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("machine: %d cores, %s; store: file (JetStream, embedded), sync %s; presence_history: %v\n", runtime.NumCPU(), runtime.Version(), syncInterval, withHistory)
	var p *provider
	for _, phase := range phases {
		if p == nil && phase != "metrics" {
			if p, err = start(dir, nil, withHistory); err != nil {
				return err
			}
			defer p.stop()
		}
		var err error
		switch phase {
		case "subscribe":
			err = subscribeThroughput(p, agents, uccs, batch)
		case "change":
			err = changeThroughput(p, inputs)
		case "latency":
			err = latency(p, samples)
		case "durable":
			err = durablePath(p)
		case "metrics":
			err = metricsCost(inputs, samples, metricsRounds)
		default:
			err = fmt.Errorf("no phase %q: subscribe, change, latency, durable or metrics", phase)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func agentURI(i int) string { return fmt.Sprintf("sip:agent%06d@bench.example", i) }

func subscribeThroughput(p *provider, agents, uccs, batch int) error {
	ctx := context.Background()
	start := time.Now()
	for u := 0; u < uccs; u++ {
		ucc := fmt.Sprintf("ucc_app%02d", u)
		for first := 0; first < agents; first += batch {
			req := schemas.SubscribeRequest{UCC: ucc}
			for i := first; i < min(first+batch, agents); i++ {
				req.Agents = append(req.Agents, schemas.AgentRef{URI: agentURI(i)})
			}
			rep, err := p.client.Subscribe(ctx, req)
			if err != nil {
				return fmt.Errorf("subscribe: %w", err)
			}
			for _, r := range rep.Agents {
				if r.Error != nil {
					return fmt.Errorf("subscribe %s: %v", r.URI, r.Error)
				}
			}
		}
	}
	answered := time.Since(start)
	total := agents * uccs
	for {
		st, err := p.client.Status(ctx)
		if err != nil {
			return err
		}
		if st.Interests == total {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	applied := time.Since(start)
	runtime.GC()
	if heapProfile != "" {
		f, err := os.Create(heapProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
	}
	fmt.Printf("subscribe: %d agents x %d UCCs = %d agent-subscriptions in requests of %d\n", agents, uccs, total, batch)
	fmt.Printf("  all answered in %s: %.0f agent-subscriptions/s\n", answered.Round(time.Millisecond), float64(total)/answered.Seconds())
	fmt.Printf("  all applied by the worker in %s: %.0f agent-subscriptions/s\n", applied.Round(time.Millisecond), float64(total)/applied.Seconds())
	fmt.Printf("  peak RSS of the process: %s\n", rss("VmHWM"))
	fmt.Printf("  RSS now: %s\n", rss("VmRSS"))
	return nil
}

// changeThroughput sends attendant inputs without waiting for answers and
// counts them in the events that show them, against the same count of
// synchronous KV puts from one client: the worker writes each agent's
// backlog with one compare-and-set.
func changeThroughput(p *provider, n int) error {
	ctx := context.Background()
	inputs, err := inputsShown(p, "c", n)
	if err != nil {
		return err
	}
	kv, err := p.conn.JS.KeyValue(ctx, schemas.BucketState)
	if err != nil {
		return err
	}
	value := []byte(`{"uri":"sip:raw@bench.example","key":"x","presence":{"availability":"Busy","availability_value":6500}}`)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("raw%d", i%changeAgents), value); err != nil {
			return err
		}
	}
	raw := time.Since(start)
	inRate, rawRate := float64(n)/inputs.Seconds(), float64(n)/raw.Seconds()
	fmt.Printf("change throughput: %d attendant inputs over %d agents, all shown in events in %s: %.0f inputs/s\n", n, changeAgents, inputs.Round(time.Millisecond), inRate)
	fmt.Printf("  raw KV put, one synchronous client, same store, %d puts: %.0f puts/s\n", n, rawRate)
	fmt.Printf("  ratio: %.2f\n", inRate/rawRate)
	return nil
}

// changeAgents is the number of agents the change throughput's inputs go to.
const changeAgents = 1000

// inputsShown sends n attendant inputs without waiting for answers, over
// changeAgents agents whose URIs begin with prefix, and returns the time
// until the events showed them all.
func inputsShown(p *provider, prefix string, n int) (time.Duration, error) {
	a, stop, err := follow(p, prefix, changeAgents, func(time.Time) {})
	if err != nil {
		return 0, err
	}
	nc := p.conn.NC
	start := time.Now()
	for i := 0; i < n; i++ {
		a.send(i)
		if err := nc.Publish(schemas.AttendantPrefix+schemas.Key(agentURI(i%changeAgents)), inputBody(prefix, i)); err != nil {
			return 0, err
		}
	}
	for deadline := time.Now().Add(5 * time.Minute); a.shown() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d inputs shown in events", a.shown(), n)
		}
	}
	took := time.Since(start)
	return took, stop()
}

// latency times inputs one at a time, from the publish to the event at a
// subscriber.
func latency(p *provider, samples int) error {
	took, err := latencies(p, samples)
	if err != nil {
		return err
	}
	fmt.Printf("latency input -> event at a subscriber, %d samples: p50 %s, p99 %s, max %s\n",
		samples, percentile(took, 0.50), percentile(took, 0.99), took[len(took)-1].Round(time.Microsecond))
	return nil
}

// percentile of sorted durations, rounded for printing.
func percentile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))].Round(time.Microsecond)
}

// latencies times inputs one at a time, from the publish to the event at a
// subscriber, and returns the times sorted.
func latencies(p *provider, samples int) ([]time.Duration, error) {
	events := make(chan schemas.Event, 1)
	const uri = "sip:latency@bench.example"
	key := schemas.Key(uri)
	sub, err := p.client.Watch(context.Background(), []string{uri}, func(u client.Update) {
		if !u.CatchUp {
			events <- u.Event
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Stop() }()
	var took []time.Duration
	availability := []string{"Busy", "Away"}
	for i := 0; i < samples; i++ {
		body := fmt.Sprintf(`{"availability":%q}`, availability[i%2])
		start := time.Now()
		if err := p.conn.NC.Publish(schemas.AttendantPrefix+key, []byte(body)); err != nil {
			return nil, err
		}
		select {
		case <-events:
			took = append(took, time.Since(start))
		case <-time.After(10 * time.Second):
			return nil, errors.New("an input produced no event")
		}
	}
	slices.Sort(took)
	return took, nil
}

// rss reads a memory figure of this process from /proc.
func rss(field string) string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%d MiB", kb/1024)
		}
	}
	return "unknown"
}
