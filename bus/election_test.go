package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// startCluster starts n embedded servers that form one JetStream cluster,
// named n0, n1, ...; it returns them with their client URLs.
func startCluster(t *testing.T, n int) ([]*bus.Embedded, []string) {
	t.Helper()
	routes := make([]string, n)
	listens := make([]string, n)
	for i := range n {
		listens[i] = freeport.Addr(t)
		routes[i] = "nats-route://" + listens[i]
	}
	nodes := make([]*bus.Embedded, n)
	urls := make([]string, n)
	for i := range n {
		others := append(append([]string{}, routes[:i]...), routes[i+1:]...)
		addr := freeport.Addr(t)
		ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: addr, DataDir: t.TempDir(), Name: "n" + strconv.Itoa(i),
			Cluster:  bus.ClusterOptions{Name: "election", Listen: listens[i], Routes: strings.Join(others, ",")},
			Insecure: true}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if nodes[i] != nil {
				nodes[i].Shutdown()
			}
		})
		nodes[i], urls[i] = ns, "nats://"+addr
	}
	return nodes, urls
}

// leadOn moves the leadership of stream to the server named node, and waits
// until that server leads it.
func leadOn(t *testing.T, conn *bus.Conn, stream, node string) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": node}})
	provtest.Eventually(t, node+" leads "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := conn.JS.Stream(ctx, stream)
		if err != nil {
			return false
		}
		if cl := s.CachedInfo().Cluster; cl != nil && cl.Leader == node {
			return true
		}
		_, _ = conn.NC.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, req)
		return false
	})
}

// outcome is what became of one input.
type outcome struct {
	agent, n int
	rep      schemas.InputReply
	err      error
	took     time.Duration
}

// TestInputsRideOutALeaderElection runs three workers on a three-node
// JetStream cluster, every bucket and stream on three replicas, and sends
// acknowledged inputs to 24 agents without pause while the node leading
// presence_state and presence_inputs shuts down. Workers and UCC are
// connected to the two other nodes, so the election is the only fault: no
// input is refused internal, each is answered (late is fine) or refused
// unavailable, and none answered ok is lost.
func TestInputsRideOutALeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster and an election: not in -short")
	}
	nodes, urls := startCluster(t, 3)
	const victim = 2
	victimName := "n" + strconv.Itoa(victim)
	survivors := strings.Join(urls[:victim], ",")
	var envs []*provtest.Env
	for i := range 3 {
		cfg := provtest.Config()
		cfg.ID = "w" + strconv.Itoa(i)
		envs = append(envs, provtest.JoinCluster(t, survivors, 3, cfg, clockwork.NewRealClock(), withAttendant))
	}
	ucc, err := bus.Connect(survivors, nil, "ucc", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ucc.Close)
	for _, stream := range []string{"KV_" + schemas.BucketState, schemas.StreamInputs} {
		leadOn(t, ucc, stream, victimName)
	}
	c := client.New(ucc.NC)

	const agents = 24
	uri := func(a int) string { return fmt.Sprintf("sip:agent%d@attendant.example", a) }
	var mu sync.Mutex
	var outcomes []outcome
	okSince := map[int]int{} // per agent, inputs answered ok since the mark
	mark := func() {
		mu.Lock()
		defer mu.Unlock()
		clear(okSince)
	}
	okEach := func(want int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for a := range agents {
				if okSince[a] < want {
					return false
				}
			}
			return true
		}
	}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for a := range agents {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				// Late is fine: what matters is that an answer comes.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				sent := time.Now()
				rep, err := c.Attendant(ctx, schemas.Key(uri(a)), schemas.AttendantInput{Availability: "Busy", Activity: "n" + strconv.Itoa(n)})
				cancel()
				mu.Lock()
				outcomes = append(outcomes, outcome{agent: a, n: n, rep: rep, err: err, took: time.Since(sent)})
				if err == nil && rep.OK {
					okSince[a]++
				}
				mu.Unlock()
			}
		}()
	}
	provtest.Eventually(t, "inputs answered before the election", okEach(3))
	nodes[victim].Shutdown()
	nodes[victim] = nil
	killed := time.Now()
	mark()
	provtest.Eventually(t, "inputs answered after the election", okEach(5))
	close(stop)
	senders.Wait()
	t.Logf("a new leader answered every agent %s after the node went", time.Since(killed).Round(time.Millisecond))

	lastOK := map[int]int{}
	counts := map[string]int{}
	var slowest time.Duration
	for _, o := range outcomes {
		slowest = max(slowest, o.took)
		var e *client.Error
		switch {
		case o.err == nil && o.rep.OK:
			counts["ok"]++
			lastOK[o.agent] = max(lastOK[o.agent], o.n)
		case errors.Is(o.err, client.ErrUnavailable):
			counts["unavailable"]++
			if !errors.As(o.err, &e) || !strings.Contains(e.Message, "retry in") {
				t.Errorf("agent %d input %d: %v; want the seconds to wait", o.agent, o.n, o.err)
			}
		case errors.Is(o.err, nats.ErrTimeout), errors.Is(o.err, context.DeadlineExceeded):
			counts["unanswered"]++
			t.Errorf("agent %d input %d: no answer within 30 s", o.agent, o.n)
		default:
			counts["refused"]++
			t.Errorf("agent %d input %d: %+v, %v; want ok or unavailable", o.agent, o.n, o.rep, o.err)
		}
	}
	t.Logf("%d inputs: %v; the slowest answer took %s", len(outcomes), counts, slowest.Round(time.Millisecond))

	// An input answered ok was stored: the agent holds it or a later one.
	got := func(a int) int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ev, found, err := envs[0].Stores.State.Load(ctx, schemas.Key(uri(a)))
		if err != nil || !found {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(ev.Presence.Activity, "n"))
		return n
	}
	for a := range agents {
		provtest.Eventually(t, fmt.Sprintf("agent %d holds its last input answered ok (%d) or a later one", a, lastOK[a]), func() bool {
			return got(a) >= lastOK[a]
		})
	}
	for _, e := range envs {
		if strings.Contains(e.Logs.String(), `"code":"internal"`) {
			t.Errorf("a worker refused an input internal:\n%s", e.Logs.String())
		}
	}
}

// leaderlessState refuses every write of presence_state as the bus does
// while the bucket has no leader, until leaderless is cleared.
type leaderlessState struct {
	worker.StateStore
	leaderless *atomic.Bool
}

func (s leaderlessState) Swap(ctx context.Context, ev schemas.Event, revision uint64) (uint64, bool, error) {
	if s.leaderless.Load() {
		return 0, false, fmt.Errorf("bus: %w", &schemas.Error{Code: schemas.CodeUnavailable, Message: "presence_state has no leader; retry in 2 s"})
	}
	return s.StateStore.Swap(ctx, ev, revision)
}

// TestInputRefusedUnavailableIsAppliedOnceALeaderIsBack: an input whose
// presence meets no leader for longer than the wait is answered
// unavailable, stays in the queue and is applied once (and before the
// agent's later inputs) when the leader is back.
func TestInputRefusedUnavailableIsAppliedOnceALeaderIsBack(t *testing.T) {
	var leaderless atomic.Bool
	env := provtest.StartFaulty(t, provtest.Server(t), provtest.Config(), clockwork.NewRealClock(), func(s worker.Stores) worker.Stores {
		s.State = leaderlessState{StateStore: s.State, leaderless: &leaderless}
		return s
	}, withAttendant)
	const uri = "sip:waits@attendant.example"
	key := schemas.Key(uri)
	evs := env.Collect(key)
	// Once another agent's input is answered, the worker's start-up replay
	// (which answers nobody) is behind it.
	if _, err := env.Client.Attendant(env.Ctx(), schemas.Key("sip:first@attendant.example"), schemas.AttendantInput{Availability: "Busy"}); err != nil {
		t.Fatal(err)
	}
	leaderless.Store(true)

	_, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Busy", Activity: "during"})
	var e *client.Error
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &e) || !strings.Contains(e.Message, "retry in") {
		t.Fatalf("input while presence_state has no leader: %v; want unavailable, saying when to retry", err)
	}
	later := make(chan error, 1)
	go func() {
		rep, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Away", Activity: "after"})
		if err == nil && !rep.OK {
			err = fmt.Errorf("answered %+v", rep)
		}
		later <- err
	}()
	leaderless.Store(false)
	if err := <-later; err != nil {
		t.Fatalf("input sent once the leader was back: %v", err)
	}
	provtest.Eventually(t, "the events of both inputs", func() bool { return len(evs.List()) >= 2 })
	var activities []string
	for _, ev := range evs.List() {
		activities = append(activities, ev.Presence.Activity)
	}
	if !slices.Equal(activities, []string{"during", "after"}) {
		t.Errorf("events %v; want the input refused unavailable applied once, before the later one", activities)
	}
}
