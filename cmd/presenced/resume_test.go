package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
)

// sipUpstream is the SIP server the workers subscribe at: Kamailio in the
// rfc dialect, the test front-end pool in mssip.
type sipUpstream interface {
	// source is the UcmaPresenceSource element for subscriptions of
	// expires seconds.
	source(expires int) string
	// publish makes each agent's presence Busy there, as its phone would.
	publish(tb testing.TB, agents []string)
	// dialogs counts the provider's live subscription dialogs per agent.
	dialogs(tb testing.TB) map[string]int
	// initialSubscribes counts per agent the subscriptions that took it
	// anew (no dialog continued).
	initialSubscribes() map[string]int
}

// kamailio is Kamailio as the workers' upstream in the rfc dialect.
type kamailio struct{ *siptest.Kamailio }

func (k kamailio) source(expires int) string {
	return fmt.Sprintf(`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="udp" subscriptionExpires="%d">
			  <ApplicationEndpoint OwnerUri="%s" PoolFqdn="%s" />
			</UcmaPresenceSource>`, expires, clusterAppURI, k.Addr())
}

func (k kamailio) publish(tb testing.TB, agents []string) {
	tb.Helper()
	for _, a := range agents {
		if _, err := siptest.Publish(k.Addr(), a, "", siptest.PIDF(a, "open", "on-the-phone", ""), 300); err != nil {
			tb.Fatal(err)
		}
	}
}

func (k kamailio) dialogs(tb testing.TB) map[string]int {
	n := map[string]int{}
	for _, s := range k.Subscriptions(tb) {
		if s.Watcher == clusterAppURI && s.Expires.After(time.Now()) {
			n[s.Presentity]++
		}
	}
	return n
}

func (k kamailio) initialSubscribes() map[string]int { return k.InitialSubscribes() }

// sipWorkers is presenced processes sharing one NATS (in the test process,
// so that killing a worker kills no NATS node) and one SIP server, and a
// UCC's view of the events.
type sipWorkers struct {
	up   sipUpstream
	bin  string
	envs [][]string
	// configs are the workers' Config.xml files.
	configs []string
	procs   []*daemon
	nc      *nats.Conn
	kv      jetstream.KeyValue
	ctx     context.Context
	// overlap tolerates two live dialogs for one agent, as a failover
	// without resume makes until the dead worker's expire.
	overlap bool

	mu sync.Mutex
	// arrived is when each agent's event of each availability first came.
	arrived map[string]map[schemas.Availability]time.Time
}

const (
	resumeLease = 4 * time.Second
	// testExpires is the tests' subscriptionExpires: refreshes (at four
	// fifths) happen within a test.
	testExpires = 30
)

// startSIPWorkers starts n workers at Kamailio; rate is
// maxPresenceSubscriptionsPerSecond, expires subscriptionExpires, and env
// is added to every worker's environment.
func startSIPWorkers(tb testing.TB, k *siptest.Kamailio, n, rate, expires int, env ...string) *sipWorkers {
	tb.Helper()
	return startWorkers(tb, kamailio{k}, n, rate, expires, env...)
}

// startWorkers is startSIPWorkers at any upstream.
func startWorkers(tb testing.TB, up sipUpstream, n, rate, expires int, env ...string) *sipWorkers {
	tb.Helper()
	bin, _ := build(tb)
	ns := provtest.Server(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	tb.Cleanup(cancel)
	c := &sipWorkers{up: up, bin: bin, ctx: ctx, arrived: map[string]map[schemas.Availability]time.Time{}}
	for i := range n {
		cfgFile := filepath.Join(tb.TempDir(), "Config.xml")
		c.configs = append(c.configs, cfgFile)
		c.configure(tb, i, rate, expires)
		c.envs = append(c.envs, append([]string{
			"PRESENCE_CONFIG=" + cfgFile,
			"PRESENCE_NATS_URL=" + ns.ClientURL(),
			fmt.Sprintf("PRESENCE_WORKER_ID=w%d", i),
			// Its own port, kept across restarts as a deployment would.
			fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(tb)),
			"PRESENCE_WORKER_LEASE=" + resumeLease.String(),
			"PRESENCE_SHUTDOWN_TIMEOUT=20s",
		}, env...))
	}
	c.procs = make([]*daemon, n)
	for i := range n {
		c.procs[i] = spawnDaemon(tb, bin, c.envs[i])
	}
	for _, d := range c.procs {
		d.waitReady(tb)
	}
	var err error
	if c.nc, err = nats.Connect(ns.ClientURL()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.nc.Close)
	js, _ := jetstream.New(c.nc)
	if c.kv, err = js.KeyValue(ctx, schemas.BucketClaims); err != nil {
		tb.Fatal(err)
	}
	sub, err := c.nc.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.arrived[ev.URI] == nil {
			c.arrived[ev.URI] = map[schemas.Availability]time.Time{}
		}
		if _, seen := c.arrived[ev.URI][ev.Presence.Availability]; !seen {
			c.arrived[ev.URI][ev.Presence.Availability] = now
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	return c
}

// configure writes worker i's Config.xml: rate is
// maxPresenceSubscriptionsPerSecond, expires subscriptionExpires. A worker
// reads it when it starts.
func (c *sipWorkers) configure(tb testing.TB, i, rate, expires int) {
	tb.Helper()
	xml := fmt.Sprintf(`<config><PresenceProvider maxPresenceSubscriptionsPerSecond="%d">
			%s</PresenceProvider></config>`, rate, c.up.source(expires))
	if err := os.WriteFile(c.configs[i], []byte(xml), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// restart starts worker i again on its own settings and waits until it is
// ready; it returns when it was.
func (c *sipWorkers) restart(tb testing.TB, i int) time.Time {
	tb.Helper()
	c.procs[i] = spawnDaemon(tb, c.bin, c.envs[i])
	c.procs[i].waitReady(tb)
	return time.Now()
}

func (c *sipWorkers) subscribe(tb testing.TB, agents []string, uccs int) {
	tb.Helper()
	pc := client.New(c.nc)
	for u := range uccs {
		req := schemas.SubscribeRequest{UCC: fmt.Sprintf("ucc_app%02d", u)}
		for _, a := range agents {
			req.Agents = append(req.Agents, schemas.AgentRef{URI: a})
		}
		if _, err := pc.Subscribe(c.ctx, req); err != nil {
			tb.Fatal(err)
		}
	}
}

// claims reads every claim; nil when the read failed.
func (c *sipWorkers) claims() map[string]schemas.Claim {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	lister, err := c.kv.ListKeys(ctx)
	if err != nil {
		return nil
	}
	out := map[string]schemas.Claim{}
	for key := range lister.Keys() {
		if e, err := c.kv.Get(ctx, key); err == nil {
			var cl schemas.Claim
			if json.Unmarshal(e.Value(), &cl) == nil {
				out[key] = cl
			}
		}
	}
	return out
}

// dialogs counts the provider's live subscription dialogs per agent upstream.
func (c *sipWorkers) dialogs(tb testing.TB) map[string]int { return c.up.dialogs(tb) }

// settled reports whether every agent is held active by one of holders and
// has exactly one live dialog; it fails tb when one has two.
func (c *sipWorkers) settled(tb testing.TB, agents []string, holders map[string]bool) bool {
	tb.Helper()
	d := c.dialogs(tb)
	ok := true
	for _, a := range agents {
		if d[a] > 1 && !c.overlap {
			tb.Fatalf("the server holds %d provider dialogs for %s", d[a], a)
		}
		ok = ok && (d[a] == 1 || c.overlap && d[a] > 1)
	}
	if !ok {
		return false
	}
	cl := c.claims()
	if len(cl) != len(agents) {
		return false
	}
	for _, a := range agents {
		if h := cl[schemas.Key(a)]; h.State != schemas.StateActive || !holders[h.Worker] {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds, failing tb after within.
func waitFor(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publish makes each agent's presence Busy upstream, as its phone would.
func (c *sipWorkers) publish(tb testing.TB, agents []string) {
	tb.Helper()
	c.up.publish(tb, agents)
}

// delivered waits until every agent's Busy event came and returns the time
// from since to the last one; it fails tb if the server holds two live
// dialogs for one agent meanwhile.
func (c *sipWorkers) delivered(tb testing.TB, agents []string, since time.Time, within time.Duration) time.Duration {
	tb.Helper()
	var last time.Time
	waitFor(tb, fmt.Sprintf("a change of each of %d agents reaches the UCCs", len(agents)), within, func() bool {
		for a, n := range c.dialogs(tb) {
			if n > 1 && !c.overlap {
				tb.Fatalf("%s after the start: the server holds %d provider dialogs for %s", time.Since(since), n, a)
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		last = since
		for _, a := range agents {
			at, ok := c.arrived[a][schemas.Busy]
			if !ok {
				return false
			}
			last = later(last, at)
		}
		return true
	})
	return last.Sub(since)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// initialSince counts the subscriptions that took the agents anew (at
// Kamailio: initial SUBSCRIBEs, no To tag) since the counts before.
func (c *sipWorkers) initialSince(before map[string]int, agents []string) int {
	now := c.up.initialSubscribes()
	n := 0
	for _, a := range agents {
		n += now[a] - before[a]
	}
	return n
}

func sipAgents(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("sip:%s%04d@example.com", prefix, i))
	}
	return out
}

// failedOver is what failover saw.
type failedOver struct {
	killed  time.Time
	took    time.Duration // from the kill to the last change delivered
	victims int           // the killed worker's agents
	before  map[string]int
}

// failover kills worker 2 of three with SIGKILL and waits until each of its
// agents delivers a change PUBLISHed right after the kill, never seeing two
// live dialogs for one agent, and every agent is held by the survivors.
func failover(tb testing.TB, c *sipWorkers, agents []string, within time.Duration) failedOver {
	tb.Helper()
	var victims []string
	held := c.claims()
	for _, a := range agents {
		if held[schemas.Key(a)].Worker == "w2" {
			victims = append(victims, a)
		}
	}
	if len(victims) == 0 {
		tb.Fatal("worker w2 holds no agent")
	}
	before := c.up.initialSubscribes()
	if err := c.procs[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	killed := time.Now()
	c.publish(tb, victims)
	took := c.delivered(tb, victims, killed, within)
	waitFor(tb, "every agent held by the survivors, one dialog each", within, func() bool {
		return c.settled(tb, agents, map[string]bool{"w0": true, "w1": true})
	})
	return failedOver{killed: killed, took: took, victims: len(victims), before: before}
}

// restartAlone stops the only worker with SIGTERM, starts it again, and
// PUBLISHes a change of every agent once it is ready. It returns the time
// from ready until every agent delivered it, the initial SUBSCRIBEs
// Kamailio received after the stop, and the time the PUBLISHes took.
func restartAlone(tb testing.TB, c *sipWorkers, agents []string, within time.Duration) (took time.Duration, initial int, publishing time.Duration) {
	tb.Helper()
	before := c.up.initialSubscribes()
	c.procs[0].stop(tb)
	ready := c.restart(tb, 0)
	c.publish(tb, agents)
	publishing = time.Since(ready)
	took = c.delivered(tb, agents, ready, within)
	waitFor(tb, "every agent held again, one dialog each", within, func() bool {
		return c.settled(tb, agents, map[string]bool{"w0": true})
	})
	return took, c.initialSince(before, agents), publishing
}

// Three workers, 300 SIP agents of three UCCs, one worker killed: the
// survivors continue its dialogs with in-dialog refreshes, with no new
// subscription at Kamailio, and each of its agents delivers a change
// PUBLISHed after the kill within the lease plus 2 s.
//
// The NOTIFYs of those changes went to the killed worker first, and time
// out about 30 s later. A server that keeps a subscription then (Kamailio
// with timeout_rm_subs 0) sees no new subscription at all; one that removes
// it (Kamailio's default) gets a new SUBSCRIBE for each agent that lost its
// dialog so, soon after the early refresh of resumed dialogs finds it gone.
func TestFailoverResumesSIPDialogs(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := map[bool]string{true: "server keeps subscriptions", false: "server removes them on NOTIFY timeout"}[keep]
		t.Run(name, func(t *testing.T) {
			k := siptest.StartKamailio(t, siptest.KamailioOptions{SharedMemoryMB: 128, KeepSubscriptionsOnNotifyTimeout: keep})
			c := startSIPWorkers(t, k, 3, 100, testExpires)
			agents := sipAgents("failover", 300)
			c.subscribe(t, agents, 3)
			waitFor(t, "300 agents, each held active with one dialog", 60*time.Second, func() bool {
				return c.settled(t, agents, map[string]bool{"w0": true, "w1": true, "w2": true})
			})
			f := failover(t, c, agents, time.Minute)
			initial := c.initialSince(f.before, agents)
			t.Logf("%d agents of the killed worker delivered a change %s after the kill; %d initial SUBSCRIBEs", f.victims, f.took.Round(10*time.Millisecond), initial)
			if initial != 0 {
				t.Errorf("Kamailio received %d initial SUBSCRIBEs after the kill; want in-dialog refreshes only", initial)
			}
			if f.took > resumeLease+2*time.Second {
				t.Errorf("the killed worker's agents delivered their change %s after the kill; want within the lease (%s) + 2 s", f.took, resumeLease)
			}
			// Past the NOTIFY timeouts (SIP timer F, 32 s) and the early
			// refresh of resumed dialogs (35 s after the resume).
			waitFor(t, "one dialog each, past the NOTIFY timeouts", 90*time.Second, func() bool {
				return time.Since(f.killed) > 45*time.Second && c.settled(t, agents, map[string]bool{"w0": true, "w1": true})
			})
			initial = c.initialSince(f.before, agents)
			t.Logf("%s after the kill: %d initial SUBSCRIBEs", time.Since(f.killed).Round(time.Second), initial)
			if keep && initial != 0 {
				t.Errorf("Kamailio received %d initial SUBSCRIBEs after the kill; want none", initial)
			}
			if initial > f.victims {
				t.Errorf("Kamailio received %d initial SUBSCRIBEs after the kill; want at most one for each of the %d agents of the killed worker", initial, f.victims)
			}
		})
	}
}

// One worker, 300 agents, SIGTERM then a new start: the stop keeps the
// dialogs, the new process resumes them, and every agent delivers a change
// within 5 s of ready with no new subscription at Kamailio.
func TestRestartResumesSIPDialogs(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{SharedMemoryMB: 128})
	c := startSIPWorkers(t, k, 1, 100, testExpires)
	agents := sipAgents("restart", 300)
	c.subscribe(t, agents, 3)
	waitFor(t, "300 agents, each held active with one dialog", 60*time.Second, func() bool {
		return c.settled(t, agents, map[string]bool{"w0": true})
	})
	took, initial, _ := restartAlone(t, c, agents, time.Minute)
	t.Logf("every agent delivered a change %s after ready; %d initial SUBSCRIBEs", took.Round(10*time.Millisecond), initial)
	if initial != 0 {
		t.Errorf("Kamailio received %d initial SUBSCRIBEs after the restart; want in-dialog refreshes only", initial)
	}
	if took > 5*time.Second {
		t.Errorf("every agent delivered its change %s after ready; want within 5 s", took)
	}
}

// Kamailio restarted (forgetting every subscription) while a new worker
// resumes the dialogs its predecessor kept: the resumes answered 481, and
// the refreshes of those resumed before the restart, subscribe anew, and
// every agent ends with one live dialog that delivers changes.
func TestServerRestartDuringResume(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{SharedMemoryMB: 128})
	c := startSIPWorkers(t, k, 1, 100, testExpires, "PRESENCE_RESUME_RATE=50")
	agents := sipAgents("kamrestart", 300)
	c.subscribe(t, agents, 1)
	waitFor(t, "300 agents, each held active with one dialog", 60*time.Second, func() bool {
		return c.settled(t, agents, map[string]bool{"w0": true})
	})
	c.procs[0].stop(t)
	c.procs[0] = spawnDaemon(t, c.bin, c.envs[0])
	waitFor(t, "the first resume", time.Minute, func() bool {
		return strings.Contains(c.procs[0].logs.String(), "upstream subscription resumed")
	})
	k.Restart(t)
	// Expiry 30 s: those resumed before the restart learn at their refresh (24 s).
	waitFor(t, "every agent subscribed anew, one dialog each", 90*time.Second, func() bool {
		return c.settled(t, agents, map[string]bool{"w0": true})
	})
	if n := strings.Count(c.procs[0].logs.String(), "upstream resume failed"); n == 0 {
		t.Error("no resume failed after the server restart")
	}
	published := time.Now()
	c.publish(t, agents)
	c.delivered(t, agents, published, time.Minute)
}

// benchAgents is the number of agents of the resume benchmarks: 2,000, or
// PRESENCE_BENCH_AGENTS.
func benchAgents(b *testing.B) int {
	n := 2000
	if s := os.Getenv("PRESENCE_BENCH_AGENTS"); s != "" {
		if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
			b.Fatalf("PRESENCE_BENCH_AGENTS=%q: not a positive number of agents", s)
		}
	}
	return n
}

// BenchmarkSIPResume measures failover and restart with 2,000 SIP agents
// (or PRESENCE_BENCH_AGENTS)
// against Kamailio at the product's defaults (throttle 15/s, subscriptions
// of 600 s), with resume and with PRESENCE_RESUME=false, in one run (go
// test -run XXX -bench SIPResume -benchtime 1x). Without resume a failover
// leaves the dead worker's dialogs live beside the new ones until they
// expire: the benchmark tolerates that, the tests do not.
func BenchmarkSIPResume(b *testing.B) {
	n := benchAgents(b)
	for _, resume := range []bool{true, false} {
		b.Run(fmt.Sprintf("resume=%v", resume), func(b *testing.B) {
			env := fmt.Sprintf("PRESENCE_RESUME=%v", resume)
			prefix := map[bool]string{true: "on", false: "off"}[resume]
			for range b.N {
				k := siptest.StartKamailio(b, siptest.KamailioOptions{SharedMemoryMB: 256, KeepSubscriptionsOnNotifyTimeout: true})
				c := startSIPWorkers(b, k, 3, 15, 600, env)
				c.overlap = !resume
				agents := sipAgents("fo"+prefix, n)
				c.subscribe(b, agents, 1)
				waitFor(b, "agents held", 30*time.Minute, func() bool {
					return c.settled(b, agents, map[string]bool{"w0": true, "w1": true, "w2": true})
				})
				f := failover(b, c, agents, 30*time.Minute)
				b.ReportMetric(float64(n), "agents")
				b.ReportMetric(f.took.Seconds(), "failover-s")
				b.ReportMetric(float64(f.victims), "failover-agents")
				b.ReportMetric(float64(c.initialSince(f.before, agents)), "failover-initial-SUBSCRIBEs")

				k2 := siptest.StartKamailio(b, siptest.KamailioOptions{SharedMemoryMB: 256, KeepSubscriptionsOnNotifyTimeout: true})
				alone := startSIPWorkers(b, k2, 1, 15, 600, env)
				alone.overlap = !resume
				agents = sipAgents("rs"+prefix, n)
				alone.subscribe(b, agents, 1)
				waitFor(b, "agents held", 30*time.Minute, func() bool {
					return alone.settled(b, agents, map[string]bool{"w0": true})
				})
				took, initial, publishing := restartAlone(b, alone, agents, 30*time.Minute)
				b.ReportMetric(took.Seconds(), "restart-s")
				b.ReportMetric(publishing.Seconds(), "restart-publishing-s")
				b.ReportMetric(float64(initial), "restart-initial-SUBSCRIBEs")
			}
		})
	}
}

// Three workers restarted one at a time (SIGTERM, then start) while one
// agent's presence changes every 100 ms: every change reaches the UCC in
// order, and Kamailio never receives an initial SUBSCRIBE after the first.
func TestRollingRestartMissesNoChange(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{SharedMemoryMB: 128, KeepSubscriptionsOnNotifyTimeout: true})
	c := startSIPWorkers(t, k, 3, 100, testExpires)
	agents := sipAgents("rolling", 30)
	agent := agents[0]
	var mu sync.Mutex
	var seen []schemas.Availability
	sub, err := c.nc.Subscribe(schemas.EventSubject(schemas.Key(agent)), func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ev.Presence.Availability)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	c.subscribe(t, agents, 2)
	waitFor(t, "30 agents, each held active with one dialog", 60*time.Second, func() bool {
		return c.settled(t, agents, map[string]bool{"w0": true, "w1": true, "w2": true})
	})
	before := k.InitialSubscribes()
	owners := c.claims()

	// A cycle of states that each differ from the one before: a change
	// missed shows as a state skipped.
	cycle := []struct {
		basic, activity string
		availability    schemas.Availability
	}{
		{"open", "on-the-phone", schemas.Busy}, {"open", "away", schemas.Away}, {"open", "", schemas.Available},
		{"open", "presentation", schemas.DoNotDisturb}, {"open", "breakfast", schemas.BeRightBack}, {"closed", "", schemas.Offline},
	}
	stop := make(chan struct{})
	published := make(chan int, 1)
	var count atomic.Int32
	go func() {
		etag, n := "", 0
		defer func() { published <- n }()
		for {
			st := cycle[n%len(cycle)]
			next, err := siptest.Publish(k.Addr(), agent, etag, siptest.PIDF(agent, st.basic, st.activity, ""), 300)
			if err != nil {
				t.Errorf("PUBLISH %d: %v", n, err)
				return
			}
			etag = next
			n++
			count.Store(int32(n))
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	for i := range c.procs {
		// Changes before, during and after each restart.
		from := count.Load()
		waitFor(t, "five changes published", 10*time.Second, func() bool { return count.Load() >= from+5 })
		c.procs[i].stop(t)
		c.restart(t, i)
		// Its agents went to the others at the stop and come back to it.
		waitFor(t, fmt.Sprintf("every agent back with its holder, one dialog each, after w%d restarted", i), time.Minute, func() bool {
			if !c.settled(t, agents, map[string]bool{"w0": true, "w1": true, "w2": true}) {
				return false
			}
			now := c.claims()
			for key, cl := range owners {
				if now[key].Worker != cl.Worker {
					return false
				}
			}
			return true
		})
	}
	from := count.Load()
	waitFor(t, "five changes published", 10*time.Second, func() bool { return count.Load() >= from+5 })
	close(stop)
	n := <-published
	last := cycle[(n-1)%len(cycle)].availability
	waitFor(t, "the last change delivered", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == last
	})
	mu.Lock()
	defer mu.Unlock()
	next := map[schemas.Availability]schemas.Availability{}
	for i, st := range cycle {
		next[st.availability] = cycle[(i+1)%len(cycle)].availability
	}
	missed := 0
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[i-1] && seen[i] != next[seen[i-1]] {
			missed++
			t.Errorf("event %d: %s after %s; the change to %s was missed", i, seen[i], seen[i-1], next[seen[i-1]])
		}
	}
	t.Logf("%d changes published during the rolling restart, %d events, %d missed", n, len(seen), missed)
	if n := c.initialSince(before, agents); n != 0 {
		t.Errorf("Kamailio received %d initial SUBSCRIBEs during the rolling restart; want none", n)
	}
}
