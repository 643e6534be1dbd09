package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/sfbtest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/schemas"
)

// TestManualConfigSpeaksMSSIP: the manual's Config.xml, with
// Dialect="mssip", Transport="tls" and the certificates added, runs
// against the test front-end pool: the agents travel in batches of
// batchSize over mutual TLS, their first states and changes reach the UCC, and the
// manual's user endpoint is named once as retired. Graph is turned off:
// no Entra ID answers here.
func TestManualConfigSpeaksMSSIP(t *testing.T) {
	presenced, presencectl := build(t)
	ca := testca.New(t, "contoso-ca")
	const poolName = "pool.sipdomain.com"
	pool := sfbtest.Start(t, ca, poolName)
	cert, key := ca.Issue("ucc_presenceprovider01.sipdomain.com", "127.0.0.1")
	manual, err := os.ReadFile(filepath.Join("..", "..", "config", "testdata", "spec-example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	xml := string(manual)
	for _, r := range []struct{ old, new string }{
		{`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:ucc_presenceprovider01" >`,
			fmt.Sprintf(`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:ucc_presenceprovider01" Dialect="mssip" batchSize="2" Transport="tls" Listen="127.0.0.1:%d" TlsCAFile="%s" TlsCertFile="%s" TlsKeyFile="%s" TlsServerName="%s">`,
				freeport.T(t), ca.File, cert, key, poolName)},
		{`<ApplicationEndpoint OwnerUri="sip:ucc_presenceprovider01@sipdomain.com" />`,
			`<ApplicationEndpoint OwnerUri="sip:ucc_presenceprovider01@sipdomain.com" PoolFqdn="` + pool.Addr() + `" />`},
		{`<MsGraphPresenceSource enabled="true">`, `<MsGraphPresenceSource enabled="false">`},
	} {
		if !strings.Contains(xml, r.old) {
			t.Fatalf("the manual's Config.xml has no %s", r.old)
		}
		xml = strings.Replace(xml, r.old, r.new, 1)
	}
	config := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(config, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	d := startDaemon(t, presenced, []string{
		"PRESENCE_CONFIG=" + config,
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
	})
	agents := []string{"sip:agent1@sipdomain.com", "sip:agent2@sipdomain.com", "sip:agent3@sipdomain.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 15500, Device: "computer"})
	}
	ctl(t, presencectl, url, append([]string{"subscribe", "-ucc", "ucc_app01"}, agents...)...)
	presence := func(uri string) *schemas.Presence {
		var got schemas.AgentsReply
		if err := json.Unmarshal([]byte(ctl(t, presencectl, url, "-json", "get", uri)), &got); err != nil || len(got.Agents) != 1 {
			t.Fatalf("get %s: %v", uri, err)
		}
		if r := got.Agents[0]; r.Source == schemas.SourceSIP && r.State == schemas.StateActive {
			return r.Presence
		}
		return nil
	}
	for _, a := range agents {
		provtest.Eventually(t, a+" Away from the pool's first state", func() bool {
			p := presence(a)
			return p != nil && p.Availability == schemas.Away && p.AvailabilityValue == 15500 && p.Device == "Computer"
		})
	}
	// ceil(3 ÷ batchSize 2) dialogs.
	if b := pool.Batches(); len(b) != 2 || len(b[0].Agents)+len(b[1].Agents) != len(agents) {
		t.Fatalf("batches at the pool %+v; want two holding the %d agents", b, len(agents))
	}
	pool.SetState(agents[0], sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
	provtest.Eventually(t, "the change by BENOTIFY", func() bool {
		p := presence(agents[0])
		return p != nil && p.Availability == schemas.Busy && p.Activity == "on-the-phone"
	})
	if n := strings.Count(d.logs.String(), "retired by Microsoft"); n != 1 {
		t.Fatalf("%d lines name the user endpoint retired; want 1:\n%s", n, d.logs.String())
	}
}

// TestMSSIPBatchesThroughKillAndRestart: three workers share the agents in
// batches at the test pool; one is killed with SIGKILL and started again.
// The pool never sees an agent taken by a batch while another live batch
// holds it (subscriptionExpires below the lease lets a dead worker's
// batches end before its agents move), and every time things settle each
// agent is in exactly one live batch.
func TestMSSIPBatchesThroughKillAndRestart(t *testing.T) {
	bin, _ := build(t)
	ns := provtest.Server(t)
	ca := testca.New(t, "contoso-ca")
	const poolName = "pool.example.com"
	pool := sfbtest.Start(t, ca, poolName)
	cert, key := ca.Issue("trustedapp.example.com", "127.0.0.1")
	var envs [][]string
	procs := make([]*daemon, 3)
	for i := range procs {
		cfgFile := filepath.Join(t.TempDir(), "Config.xml")
		xml := fmt.Sprintf(`<config><PresenceProvider maxPresenceSubscriptionsPerSecond="100">
			<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Dialect="mssip" Transport="tls" subscriptionExpires="2"
			  TlsCAFile="%s" TlsCertFile="%s" TlsKeyFile="%s" TlsServerName="%s">
			  <ApplicationEndpoint OwnerUri="%s" PoolFqdn="%s" />
			</UcmaPresenceSource></PresenceProvider></config>`, ca.File, cert, key, poolName, clusterAppURI, pool.Addr())
		if err := os.WriteFile(cfgFile, []byte(xml), 0o600); err != nil {
			t.Fatal(err)
		}
		envs = append(envs, []string{
			"PRESENCE_CONFIG=" + cfgFile,
			"PRESENCE_NATS_URL=" + ns.ClientURL(),
			fmt.Sprintf("PRESENCE_WORKER_ID=w%d", i),
			fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(t)),
			"PRESENCE_WORKER_LEASE=4s",
			"PRESENCE_SHUTDOWN_TIMEOUT=20s",
		})
		procs[i] = spawnDaemon(t, bin, envs[i])
	}
	for _, d := range procs {
		d.waitReady(t)
	}
	var agents []string
	for i := range 30 {
		a := fmt.Sprintf("sip:agent%02d@example.com", i)
		agents = append(agents, a)
		pool.SetState(a, sfbtest.State{Availability: 3500})
	}
	url := ns.ClientURL()
	_, presencectl := build(t)
	ctl(t, presencectl, url, append([]string{"subscribe", "-ucc", "ucc_app01"}, agents...)...)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.BucketClaims)
	if err != nil {
		t.Fatal(err)
	}
	// claim is an agent's claim, empty before one is written.
	claim := func(uri string) schemas.Claim {
		var c schemas.Claim
		if e, err := kv.Get(ctx, schemas.Key(uri)); err == nil {
			_ = json.Unmarshal(e.Value(), &c)
		}
		return c
	}
	// settled: every agent active at one of the workers given, and in
	// exactly one live batch at the pool.
	settled := func(workers ...string) func() bool {
		return func() bool {
			seen := map[string]int{}
			for _, b := range pool.Batches() {
				for _, a := range b.Agents {
					seen[a]++
				}
			}
			for _, a := range agents {
				c := claim(a)
				if seen[a] != 1 || c.State != schemas.StateActive || !slices.Contains(workers, c.Worker) {
					return false
				}
			}
			return len(seen) == len(agents)
		}
	}
	provtest.Eventually(t, "every agent batched once across the three workers", settled("w0", "w1", "w2"))
	if err := procs[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "the killed worker's agents batched once by the others", settled("w0", "w1"))
	procs[2] = spawnDaemon(t, bin, envs[2])
	procs[2].waitReady(t)
	provtest.Eventually(t, "the restarted worker's share batched once", func() bool {
		held := map[string]bool{}
		for _, a := range agents {
			held[claim(a).Worker] = true
		}
		return held["w2"] && settled("w0", "w1", "w2")()
	})
	if d := pool.Doubles(); len(d) != 0 {
		t.Fatalf("agents taken by a batch while another live batch held them: %v", d)
	}
}

// testPool is the test front-end pool as the workers' upstream in the
// mssip dialect, reached over mutual TLS with a certificate of ca.
type testPool struct {
	*sfbtest.Pool
	ca        *testca.CA
	cert, key string
}

func startTestPool(tb testing.TB) testPool {
	tb.Helper()
	ca := testca.New(tb, "contoso-ca")
	cert, key := ca.Issue("trustedapp.example.com", "127.0.0.1")
	return testPool{Pool: sfbtest.Start(tb, ca, "pool.example.com"), ca: ca, cert: cert, key: key}
}

func (p testPool) source(expires int) string {
	return fmt.Sprintf(`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Dialect="mssip" Transport="tls" subscriptionExpires="%d"
			  TlsCAFile="%s" TlsCertFile="%s" TlsKeyFile="%s" TlsServerName="%s">
			  <ApplicationEndpoint OwnerUri="%s" PoolFqdn="%s" />
			</UcmaPresenceSource>`, expires, p.ca.File, p.cert, p.key, p.FQDN(), clusterAppURI, p.Addr())
}

// publish makes each agent Busy on the phone: a BENOTIFY to each batch
// holding it, and the first state of a batch that takes it later.
func (p testPool) publish(_ testing.TB, agents []string) {
	for _, a := range agents {
		p.SetState(a, sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
	}
}

// dialogs counts the live batches holding each agent.
func (p testPool) dialogs(testing.TB) map[string]int {
	n := map[string]int{}
	for _, b := range p.Batches() {
		for _, a := range b.Agents {
			n[a]++
		}
	}
	return n
}

// initialSubscribes counts per agent the SUBSCRIBEs answered 200 that
// listed it: a batch made or an agent added to one.
func (p testPool) initialSubscribes() map[string]int {
	n := map[string]int{}
	for _, a := range p.Answers() {
		if a.Status == 200 {
			for _, agent := range a.Agents {
				n[agent]++
			}
		}
	}
	return n
}

// batchDialogs is the number of batch dialogs the pool answered 200 after
// its first skip answers.
func (p testPool) batchDialogs(skip int) int {
	seen, made := map[string]bool{}, map[string]bool{}
	for i, a := range p.Answers() {
		if a.Status == 200 && !seen[a.CallID] && i >= skip {
			made[a.CallID] = true
		}
		seen[a.CallID] = true
	}
	return len(made)
}

// BenchmarkMSSIPResume is BenchmarkSIPResume in the mssip dialect, at the
// test pool, with 2,000 agents (or PRESENCE_BENCH_AGENTS): failover (three
// workers, kill -9 of one: kill → each of its agents delivered a change)
// and restart (one worker, SIGTERM, started again: ready → every agent
// delivered a change) at the product's defaults (throttle 15/s,
// subscriptions of 600 s, batches of 100). There is no resume in mssip: the
// new holder batches anew, and a dead worker's batches stay live at the
// pool until they expire, which the benchmark tolerates and reports (go
// test -run XXX -bench MSSIPResume -benchtime 1x). The restart's worker
// takes the agents at setupRate before its stop, which is not measured,
// and starts again at the default throttle.
func BenchmarkMSSIPResume(b *testing.B) {
	const (
		defaultRate = 15
		setupRate   = 500
		expires     = 600
	)
	n := benchAgents(b)
	// setUp starts workers at a new pool and waits until they hold the
	// agents, each Available at the pool.
	setUp := func(b *testing.B, workers, rate int, prefix string, holders map[string]bool) (testPool, *sipWorkers, []string) {
		pool := startTestPool(b)
		agents := sipAgents(prefix, n)
		for _, a := range agents {
			pool.SetState(a, sfbtest.State{Availability: 3500})
		}
		c := startWorkers(b, pool, workers, rate, expires)
		c.overlap = true
		c.subscribe(b, agents, 1)
		waitFor(b, "agents held", 30*time.Minute, func() bool { return c.settled(b, agents, holders) })
		return pool, c, agents
	}
	b.Run("failover", func(b *testing.B) {
		for range b.N {
			pool, c, agents := setUp(b, 3, defaultRate, "fo", map[string]bool{"w0": true, "w1": true, "w2": true})
			skip, doubles := len(pool.Answers()), len(pool.Doubles())
			f := failover(b, c, agents, 30*time.Minute)
			b.ReportMetric(float64(n), "agents")
			b.ReportMetric(f.took.Seconds(), "failover-s")
			b.ReportMetric(float64(f.victims), "failover-agents")
			b.ReportMetric(float64(c.initialSince(f.before, agents)), "failover-agent-subscriptions")
			b.ReportMetric(float64(pool.batchDialogs(skip)), "failover-batch-dialogs")
			b.ReportMetric(float64(len(pool.Doubles())-doubles), "failover-agents-in-two-batches")
		}
	})
	b.Run("restart", func(b *testing.B) {
		for range b.N {
			pool, c, agents := setUp(b, 1, setupRate, "rs", map[string]bool{"w0": true})
			c.configure(b, 0, defaultRate, expires)
			skip, doubles := len(pool.Answers()), len(pool.Doubles())
			took, initial, publishing := restartAlone(b, c, agents, 30*time.Minute)
			b.ReportMetric(float64(n), "agents")
			b.ReportMetric(took.Seconds(), "restart-s")
			b.ReportMetric(publishing.Seconds(), "restart-publishing-s")
			b.ReportMetric(float64(initial), "restart-agent-subscriptions")
			b.ReportMetric(float64(pool.batchDialogs(skip)), "restart-batch-dialogs")
			b.ReportMetric(float64(len(pool.Doubles())-doubles), "restart-agents-in-two-batches")
		}
	})
}
