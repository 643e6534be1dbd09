package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
)

const clusterAppURI = "sip:presenceprovider@example.com"

// node is one presenced process of the test's cluster: worker and NATS node.
type node struct {
	env []string
	url string
	d   *daemon
}

// TestClusterSurvivesAKilledWorker runs three presenced processes whose
// embedded servers form a 3-node JetStream cluster, with Kamailio, 200
// agents and 5 UCCs, and kills one process with SIGKILL (its NATS node goes
// with it).
func TestClusterSurvivesAKilledWorker(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{SharedMemoryMB: 128})
	presenced, _ := build(t)
	nodes := make([]*node, 3)
	clusterPorts := []int{freeport.T(t), freeport.T(t), freeport.T(t)}
	for i := range nodes {
		var routes []string
		for j, p := range clusterPorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		cfgFile := filepath.Join(t.TempDir(), "Config.xml")
		xml := fmt.Sprintf(`<config><PresenceProvider maxPresenceSubscriptionsPerSecond="100"
			failedPresenceSubscriptionsResubscribeDelay="2" MaxFailedPresenceSubscriptionsResubscribeDelay="8">
			<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="udp"
			                    Listen="127.0.0.1:%d" subscriptionExpires="3">
			  <ApplicationEndpoint OwnerUri="%s" PoolFqdn="%s" />
			</UcmaPresenceSource></PresenceProvider></config>`, freeport.T(t), clusterAppURI, k.Addr())
		if err := os.WriteFile(cfgFile, []byte(xml), 0o600); err != nil {
			t.Fatal(err)
		}
		client := freeport.T(t)
		nodes[i] = &node{url: fmt.Sprintf("nats://127.0.0.1:%d", client), env: []string{
			"PRESENCE_CONFIG=" + cfgFile,
			fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", client),
			"PRESENCE_DATA_DIR=" + t.TempDir(),
			fmt.Sprintf("PRESENCE_SERVER_NAME=n%d", i),
			fmt.Sprintf("PRESENCE_WORKER_ID=w%d", i),
			fmt.Sprintf("PRESENCE_CLUSTER_LISTEN=127.0.0.1:%d", clusterPorts[i]),
			"PRESENCE_CLUSTER_ROUTES=" + strings.Join(routes, ","),
			"PRESENCE_WORKER_LEASE=6s",
			"PRESENCE_UNSUBSCRIBE_LINGER=1s",
			// Open routes: TestClusterWithRouteAuthorization runs them authorized.
			"PRESENCE_INSECURE=true",
		}}
	}
	startAll := func() {
		for _, n := range nodes {
			n.d = spawnDaemon(t, presenced, n.env)
		}
		for _, n := range nodes {
			n.d.waitReady(t)
		}
	}
	startAll()

	nc, err := nats.Connect(nodes[0].url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pc := client.New(nc)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var agents []string
	for i := range 200 {
		agents = append(agents, fmt.Sprintf("sip:agent%03d@example.com", i))
	}
	var mu sync.Mutex
	latest := map[string]schemas.Event{}
	sub, err := nc.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			mu.Lock()
			latest[ev.URI] = ev
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for u := range 5 {
		req := schemas.SubscribeRequest{UCC: fmt.Sprintf("ucc_app%02d", u)}
		for _, a := range agents {
			req.Agents = append(req.Agents, schemas.AgentRef{URI: a})
		}
		if _, err := pc.Subscribe(ctx, req); err != nil {
			t.Fatal(err)
		}
	}

	var lastErr error
	claims := func() map[string]schemas.Claim {
		// Short: a read that meets a stream leader being elected waits.
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, schemas.BucketClaims)
		if err != nil {
			lastErr = err
			return nil
		}
		out := map[string]schemas.Claim{}
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			lastErr = err
			return nil
		}
		for key := range lister.Keys() {
			if e, err := kv.Get(ctx, key); err == nil {
				var c schemas.Claim
				if json.Unmarshal(e.Value(), &c) == nil {
					out[key] = c
				}
			}
		}
		if ctx.Err() != nil {
			lastErr = ctx.Err()
			return nil
		}
		return out
	}
	// dialogs counts the provider's unexpired subscription dialogs per agent at Kamailio.
	dialogs := func() map[string]int {
		n := map[string]int{}
		for _, s := range k.Subscriptions(t) {
			if s.Watcher == clusterAppURI && s.Expires.After(time.Now()) {
				n[s.Presentity]++
			}
		}
		return n
	}
	settled := func(holders map[string]bool) bool {
		c := claims()
		if len(c) != len(agents) {
			return false
		}
		for _, cl := range c {
			if cl.State != schemas.StateActive || !holders[cl.Worker] {
				return false
			}
		}
		d := dialogs()
		for _, a := range agents {
			if d[a] != 1 {
				return false
			}
		}
		return true
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within %s: %s", within, what)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitFor("200 agents, one claim and one Kamailio dialog each, over three workers", 90*time.Second,
		func() bool { return settled(map[string]bool{"w0": true, "w1": true, "w2": true}) })
	byWorker := map[string]int{}
	for _, c := range claims() {
		byWorker[c.Worker]++
	}
	if byWorker["w2"] == 0 || byWorker["w0"] == 0 || byWorker["w1"] == 0 {
		t.Fatalf("agents per worker %v; every worker should hold a share", byWorker)
	}
	t.Logf("agents per worker before the kill: %v", byWorker)

	publish := func(agent, activity string) {
		t.Helper()
		if _, err := siptest.Publish(k.Addr(), agent, "", siptest.PIDF(agent, "open", activity, ""), 120); err != nil {
			t.Fatal(err)
		}
	}
	arrived := func(agent string, availability schemas.Availability) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return latest[agent].Presence.Availability == availability
		}
	}
	publish(agents[0], "on-the-phone")
	waitFor("a PUBLISH reaches the UCCs", 10*time.Second, arrived(agents[0], schemas.Busy))

	// kill -9 the third process: its worker and its NATS node die at once.
	if err := nodes[2].d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	survivors := map[string]bool{"w0": true, "w1": true}
	// Within the lease (6 s) plus the agents over the throttle (about 2 s),
	// and every sample on the way: never two dialogs for one agent.
	deadline := killed.Add(30 * time.Second)
	for !settled(survivors) {
		for agent, n := range dialogs() {
			if n > 1 {
				t.Fatalf("%s after the kill: Kamailio holds %d provider dialogs for %s", time.Since(killed), n, agent)
			}
		}
		if time.Now().After(deadline) {
			c, d := claims(), dialogs()
			holders := map[string]int{}
			for _, cl := range c {
				holders[cl.Worker+"/"+string(cl.State)]++
			}
			var missing []string
			for _, a := range agents {
				if cl, ok := c[schemas.Key(a)]; !ok || d[a] != 1 {
					missing = append(missing, fmt.Sprintf("%s (claim %+v, %d dialogs)", a, cl, d[a]))
				}
			}
			t.Fatalf("agents not taken over within 30 s of the kill: %d claims %v, %d with a dialog, last error %v; not taken over: %s",
				len(c), holders, len(d), lastErr, strings.Join(missing, ", "))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("failover complete %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	// Agents with no publication yet: a second PUBLISH would be merged
	// with the first by Kamailio.
	later := agents[1:21]
	for _, a := range later {
		publish(a, "away")
	}
	for _, a := range later {
		waitFor("PUBLISHes after the failover reach the UCCs", 10*time.Second, arrived(a, schemas.Away))
	}

	// Stop the others too, then start all three again on their stores:
	// every interest and every last presence is still there.
	for _, n := range nodes[:2] {
		n.d.stop(t)
	}
	startAll()
	nc2, err := nats.Connect(nodes[1].url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	after := client.New(nc2)
	waitFor("every interest back after the restart", 60*time.Second, func() bool {
		st, err := after.Status(ctx)
		return err == nil && st.Interests == 1000 && st.Agents == 200
	})
	rep, err := after.Get(ctx, schemas.GetRequest{URIs: later})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Agents {
		if r.Presence == nil || r.Presence.Availability != schemas.Away {
			t.Fatalf("%s after the restart: %+v; want its last presence", r.URI, r.Presence)
		}
	}
}
