package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

// exampleSecrets are the variables examples/nats-auth.conf and
// examples/nats-cluster.conf read, with values no log may show.
var exampleSecrets = map[string]string{
	"WORKER_PASSWORD":   "w0rker-Secret-7731",
	"UCC_PASSWORD":      "ucc-Secret-5521",
	"SOURCE_PASSWORD":   "s0urce-Secret-9940",
	"OPERATOR_PASSWORD": "0perator-Secret-1187",
	"ROUTE_PASSWORD":    "r0ute-Secret-4406",
}

// authEnv is presenced's environment with the example's users: the
// server's secrets, and the worker's own credentials.
func authEnv(confFile string) []string {
	env := []string{"PRESENCE_NATS_CONFIG=" + confFile, "PRESENCE_NATS_USER=worker",
		"PRESENCE_NATS_PASSWORD=" + exampleSecrets["WORKER_PASSWORD"]}
	for k, v := range exampleSecrets {
		env = append(env, k+"="+v)
	}
	return env
}

// roleConn is a client connected as one of the example's users; errs has
// every error the server sent it (permission violations among them).
type roleConn struct {
	nc   *nats.Conn
	errs chan error
}

func connectAs(t *testing.T, url, user string) *roleConn {
	t.Helper()
	rc := &roleConn{errs: make(chan error, 64)}
	var err error
	rc.nc, err = nats.Connect(url, nats.UserInfo(user, exampleSecrets[strings.ToUpper(user)+"_PASSWORD"]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { rc.errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(rc.nc.Close)
	return rc
}

// refused runs what and expects the server to answer it with a permissions
// violation.
func (rc *roleConn) refused(t *testing.T, what string, do func(nc *nats.Conn) error) {
	t.Helper()
	if err := do(rc.nc); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := rc.nc.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", what, err)
	}
	select {
	case err := <-rc.errs:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("%s: the server answered %v; want a permissions violation", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s: allowed; want a permissions violation", what)
	}
}

func publish(subject, data string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { return nc.Publish(subject, []byte(data)) }
}

func subscribe(subject, queue string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error {
		_, err := nc.QueueSubscribe(subject, queue, func(*nats.Msg) {})
		return err
	}
}

// TestRolesOfTheExampleConfiguration runs presenced with
// examples/nats-auth.conf and tries, as each role, what it may do (it works)
// and what it may not (the server refuses it, and no bucket and no event
// changes).
func TestRolesOfTheExampleConfiguration(t *testing.T) {
	presenced, _ := build(t)
	port := freeport.T(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startDaemon(t, presenced, append(authEnv("../../examples/nats-auth.conf"),
		"PRESENCE_CONFIG=../../examples/Config.xml",
		fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", port),
		fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(t)),
		"PRESENCE_DATA_DIR="+t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if nc, err := nats.Connect(url); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous connection: %v; want an authorization violation", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo("ucc", "guess")); err == nil {
		nc.Close()
		t.Fatal("a wrong password connected")
	}

	ucc, source, operator := connectAs(t, url, "ucc"), connectAs(t, url, "source"), connectAs(t, url, "operator")
	worker := connectAs(t, url, "worker")
	js, err := jetstream.New(worker.nc)
	if err != nil {
		t.Fatal(err)
	}

	// The operator watches every event.
	var mu sync.Mutex
	var events []schemas.Event
	if _, err := operator.nc.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := operator.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(events)
	}
	// waitEvent waits for an event of the agent key with the availability,
	// after the first `from` events, and returns its index.
	waitEvent := func(what string, from int, key string, a schemas.Availability) int {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			for i := from; i < len(events); i++ {
				if events[i].Key == key && events[i].Presence.Availability == a {
					mu.Unlock()
					return i
				}
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("no event for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// What each role may do.
	const agent, phone = "sip:agent1@attendant.example", "tel:+31612345678"
	key, phoneKey := schemas.Key(agent), schemas.Key(phone)
	uccClient, sourceClient, operatorClient := client.New(ucc.nc), client.New(source.nc), client.New(operator.nc)
	if _, err := uccClient.Subscribe(ctx, schemas.SubscribeRequest{UCC: "ucc_app01",
		Agents: []schemas.AgentRef{{URI: agent}, {URI: phone}, {URI: "sip:agent2@attendant.example"}}}); err != nil {
		t.Fatalf("ucc subscribe: %v", err)
	}
	if _, err := uccClient.Unsubscribe(ctx, schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{"sip:agent2@attendant.example"}}); err != nil {
		t.Fatalf("ucc unsubscribe: %v", err)
	}
	if _, err := uccClient.Sync(ctx, schemas.SubscribeRequest{UCC: "ucc_app02", Agents: []schemas.AgentRef{{URI: agent}}}); err != nil {
		t.Fatalf("ucc sync: %v", err)
	}
	if rep, err := sourceClient.Attendant(ctx, key, schemas.AttendantInput{Availability: "Busy"}); err != nil || !rep.OK {
		t.Fatalf("source attendant input: %+v, %v", rep, err)
	}
	waitEvent("the attendant input", 0, key, schemas.Busy)
	if rep, err := uccClient.PSTN(ctx, phoneKey, schemas.PSTNInput{UCC: "ucc_app01", CallID: "c1", State: "connected"}); err != nil || !rep.OK {
		t.Fatalf("ucc PSTN call: %+v, %v", rep, err)
	}
	waitEvent("the PSTN call", 0, phoneKey, schemas.Busy)
	if _, err := ucc.nc.Subscribe(schemas.EventSubject(key), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	// Watch stays within the ucc role: events and get.
	watched := make(chan client.Update, 1)
	w, err := uccClient.Watch(ctx, []string{agent}, func(u client.Update) { watched <- u })
	if err != nil {
		t.Fatalf("ucc watch: %v", err)
	}
	if u := <-watched; u.Presence.Availability != schemas.Busy || u.Seq == 0 {
		t.Fatalf("ucc watch began with %+v; want Busy with its seq", u)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	// The provider counts interests as its watch of them delivers them,
	// which may trail the replies.
	waitFor(t, "the operator's status to count 2 agents and 3 interests", 10*time.Second, func() bool {
		st, err := operatorClient.Status(ctx)
		if err != nil {
			t.Fatalf("operator status: %v", err)
		}
		return st.Agents == 2 && st.Interests == 3
	})
	// The UCC replays from the history; the operator explains and reads it too.
	if changes, err := uccClient.History(ctx, agent, client.HistoryOptions{}); err != nil || len(changes) == 0 {
		t.Fatalf("ucc history: %d changes, %v; want the attendant input's", len(changes), err)
	}
	if _, err := client.New(operator.nc).History(ctx, agent, client.HistoryOptions{Last: 1}); err != nil {
		t.Fatalf("operator history: %v", err)
	}
	if ex, err := operatorClient.Explain(ctx, agent); err != nil || ex.Route.Source != schemas.SourceAttendant || len(ex.Interests) != 2 {
		t.Fatalf("operator explain: %+v, %v; want the attendant agent of two UCCs", ex, err)
	}
	if _, err := operator.nc.RequestWithContext(ctx, "$SRV.PING.presence", nil); err != nil {
		t.Fatalf("operator $SRV.PING: %v", err)
	}
	for _, rc := range []*roleConn{ucc, source, operator} {
		select {
		case err := <-rc.errs:
			t.Fatalf("an allowed action drew %v", err)
		default:
		}
	}

	// What each may not: the server refuses, nothing changes.
	lastSeqs := func() map[string]uint64 {
		seqs := map[string]uint64{}
		for _, b := range []string{schemas.BucketState, schemas.BucketInterest, schemas.BucketClaims, schemas.BucketCalls} {
			s, err := js.Stream(ctx, "KV_"+b)
			if err != nil {
				t.Fatalf("bucket %s: %v", b, err)
			}
			seqs[b] = s.CachedInfo().State.LastSeq
		}
		return seqs
	}
	before, eventsBefore := lastSeqs(), eventCount()
	forged := `{"availability":"Available"}`
	stateKV := "$KV." + schemas.BucketState + "." + key
	for _, tt := range []struct {
		rc   *roleConn
		what string
		do   func(*nats.Conn) error
	}{
		{ucc, "ucc: forge an attendant input", publish(schemas.AttendantPrefix+key, forged)},
		{ucc, "ucc: read the status", publish(schemas.SubjectStatus, "{}")},
		{ucc, "ucc: put a presence in presence_state", publish(stateKV, forged)},
		{ucc, "ucc: delete presence_interest", publish("$JS.API.STREAM.DELETE.KV_"+schemas.BucketInterest, "")},
		{ucc, "ucc: beat in presence_workers", publish("$KV."+schemas.BucketWorkers+".rogue", `{"id":"rogue"}`)},
		{ucc, "ucc: end a call in presence_calls", publish("$KV."+schemas.BucketCalls+"."+schemas.CallKey(phoneKey, "ucc_app01", "c1"), "")},
		{ucc, "ucc: steal a SIP dialog in presence_dialogs", publish("$KV."+schemas.BucketDialogs+"."+key, `{"call_id":"x"}`)},
		{ucc, "ucc: join the service's queue group", subscribe(schemas.SubjectGet, "q")},
		{ucc, "ucc: take the inputs", subscribe("presence.in.>", "")},
		{ucc, "ucc: explain an agent", publish(schemas.SubjectExplain, `{"uri":"`+agent+`"}`)},
		{ucc, "ucc: make a consumer on presence_history", publish("$JS.API.CONSUMER.CREATE."+schemas.StreamHistory, "{}")},
		{ucc, "ucc: purge presence_history", publish("$JS.API.STREAM.PURGE."+schemas.StreamHistory, "")},
		{ucc, "ucc: answer for a worker", subscribe(schemas.UpstreamSubject("w1"), "")},
		{source, "source: read presence_history", publish("$JS.API.DIRECT.GET."+schemas.StreamHistory, `{"seq":1}`)},
		{source, "source: forge a PSTN call", publish(schemas.PSTNPrefix+phoneKey, `{"ucc":"x","call_id":"c9","state":"ended"}`)},
		{source, "source: unsubscribe a UCC's agents", publish(schemas.SubjectUnsub, `{"ucc":"ucc_app01","uris":["`+agent+`"]}`)},
		{source, "source: put an interest", publish("$KV."+schemas.BucketInterest+"."+key+".x", "{}")},
		{source, "source: listen to presence", subscribe(schemas.EventWildcard, "")},
		{source, "source: join the service's queue group", subscribe(schemas.SubjectGet, "q")},
		{operator, "operator: unsubscribe a UCC's agents", publish(schemas.SubjectUnsub, `{"ucc":"ucc_app01","uris":["`+agent+`"]}`)},
		{operator, "operator: forge an attendant input", publish(schemas.AttendantPrefix+key, forged)},
		{operator, "operator: delete a claim", publish("$KV."+schemas.BucketClaims+"."+key, "")},
		{operator, "operator: purge presence_state", publish("$JS.API.STREAM.PURGE.KV_"+schemas.BucketState, "")},
		{operator, "operator: join the service's queue group", subscribe(schemas.SubjectStatus, "q")},
		{operator, "operator: answer $SRV pings", subscribe("$SRV.PING", "")},
		{operator, "operator: ask a worker directly", publish(schemas.UpstreamSubject("w1"), `{"key":"`+key+`"}`)},
	} {
		tt.rc.refused(t, tt.what, tt.do)
	}
	if after := lastSeqs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("buckets changed: last sequences %v, before %v", after, before)
	}
	if _, err := js.Stream(ctx, "KV_"+schemas.BucketInterest); err != nil {
		t.Errorf("presence_interest after the refused delete: %v", err)
	}
	if kv, err := js.KeyValue(ctx, schemas.BucketWorkers); err != nil {
		t.Fatal(err)
	} else if _, err := kv.Get(ctx, "rogue"); err == nil {
		t.Error("a rogue worker beats in presence_workers")
	}
	// Only the real worker answers: every get is the provider's.
	for range 20 {
		getCtx, cancelGet := context.WithTimeout(ctx, 5*time.Second)
		rep, err := uccClient.Get(getCtx, schemas.GetRequest{URIs: []string{agent}})
		cancelGet()
		if err != nil || len(rep.Agents) != 1 || rep.Agents[0].Presence == nil || rep.Agents[0].Presence.Availability != schemas.Busy {
			t.Fatalf("get: %+v, %v", rep, err)
		}
	}
	// A last allowed input is the only event since the refusals.
	if _, err := sourceClient.Attendant(ctx, key, schemas.AttendantInput{Availability: "Away"}); err != nil {
		t.Fatal(err)
	}
	if i := waitEvent("the last attendant input", eventsBefore, key, schemas.Away); i != eventsBefore {
		t.Errorf("%d events came between the refusals and the last input", i-eventsBefore)
	}
}

// TestClusterWithRouteAuthorization runs three presenced whose embedded
// servers form a cluster with examples/nats-cluster.conf: the routes carry
// the route user, and a node that does not present it is refused.
func TestClusterWithRouteAuthorization(t *testing.T) {
	presenced, _ := build(t)
	attendantOnly := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(attendantOnly, []byte(`<config><PresenceProvider>
		<AttendantServiceSource enabled="true"><Match pattern="attendant\.example$" /></AttendantServiceSource>
		</PresenceProvider></config>`), 0o600); err != nil {
		t.Fatal(err)
	}
	clusterPorts := []int{freeport.T(t), freeport.T(t), freeport.T(t)}
	urls := make([]string, 3)
	daemons := make([]*daemon, 3)
	for i := range daemons {
		var routes []string
		for j, p := range clusterPorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		client := freeport.T(t)
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", client)
		daemons[i] = spawnDaemon(t, presenced, append(authEnv("../../examples/nats-cluster.conf"), "PRESENCE_CONFIG="+attendantOnly,
			fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", client),
			"PRESENCE_DATA_DIR="+t.TempDir(),
			fmt.Sprintf("PRESENCE_SERVER_NAME=n%d", i),
			fmt.Sprintf("PRESENCE_WORKER_ID=w%d", i),
			fmt.Sprintf("PRESENCE_CLUSTER_LISTEN=127.0.0.1:%d", clusterPorts[i]),
			"PRESENCE_CLUSTER_ROUTES="+strings.Join(routes, ",")))
	}
	for _, d := range daemons {
		d.waitReady(t) // ready means its replicated buckets exist: the routes work
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A UCC on one node, a source on another, an operator on the third.
	operator := connectAs(t, urls[1], "operator")
	events := make(chan schemas.Event, 16)
	if _, err := operator.nc.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			events <- ev
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := operator.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const agent = "sip:agent1@attendant.example"
	if _, err := client.New(connectAs(t, urls[0], "ucc").nc).Subscribe(ctx,
		schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{{URI: agent}}}); err != nil {
		t.Fatal(err)
	}
	if rep, err := client.New(connectAs(t, urls[2], "source").nc).Attendant(ctx, schemas.Key(agent),
		schemas.AttendantInput{Availability: "Busy"}); err != nil || !rep.OK {
		t.Fatalf("attendant input: %+v, %v", rep, err)
	}
	select {
	case ev := <-events:
		if ev.URI != agent || ev.Presence.Availability != schemas.Busy {
			t.Fatalf("event %+v; want the agent Busy", ev)
		}
	case <-ctx.Done():
		t.Fatal("the event did not cross the cluster")
	}
	st, err := client.New(operator.nc).Status(ctx)
	if err != nil || len(st.Workers) != 3 {
		t.Fatalf("status: %+v, %v; want three workers", st.Workers, err)
	}

	// A node without the route user's password is refused.
	for _, user := range []string{"", `"user":"route","pass":"guess",`} {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", clusterPorts[0]), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT {%s\"verbose\":false,\"pedantic\":false,\"name\":\"rogue\",\"cluster\":\"presence\"}\r\nPING\r\n", user)
		var got strings.Builder
		_, _ = io.Copy(&got, conn) // until the server closes it, or the deadline
		conn.Close()
		if !strings.Contains(got.String(), "Authorization Violation") || strings.Contains(got.String(), "PONG") {
			t.Errorf("a route with credentials {%s} was answered %q; want an authorization violation", user, got.String())
		}
	}
}

// TestExposedEmbeddedServerRefused starts presenced with its client port on
// every address, then with cluster routes, and no authentication: it stops
// with one line saying why and how to fix it, unless PRESENCE_INSECURE=true,
// which it warns of.
func TestExposedEmbeddedServerRefused(t *testing.T) {
	presenced, _ := build(t)
	for _, exposed := range [][]string{
		{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=0.0.0.0:%d", freeport.T(t))},
		{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)), fmt.Sprintf("PRESENCE_CLUSTER_LISTEN=127.0.0.1:%d", freeport.T(t))},
	} {
		cmd := exec.Command(presenced)
		cmd.Env = append(append(os.Environ(), exposed...), "PRESENCE_DATA_DIR="+t.TempDir())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Fatalf("%v: presenced ran", exposed)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "presenced: bus: the embedded NATS server would") || !strings.Contains(last, "PRESENCE_NATS_CONFIG") ||
			!strings.Contains(last, "PRESENCE_INSECURE=true") {
			t.Errorf("%v: presenced ended with %q; want one line saying why and how to fix it", exposed, last)
		}

	}
	// A lone node of a cluster never gets ready, so only the client port
	// runs insecure here; TestClusterSurvivesAKilledWorker runs routes so.
	d := startDaemon(t, presenced, []string{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=0.0.0.0:%d", freeport.T(t)),
		"PRESENCE_DATA_DIR=" + t.TempDir(), "PRESENCE_INSECURE=true"})
	warned := false
	for _, line := range strings.Split(d.logs.String(), "\n") {
		warned = warned || strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"message":"PRESENCE_INSECURE=true: `)
	}
	if !warned {
		t.Errorf("PRESENCE_INSECURE=true: no warning in\n%s", d.logs.String())
	}
	d.stop(t)
}
