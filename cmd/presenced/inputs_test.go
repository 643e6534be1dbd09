package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

// attendantConfig is a Config.xml with the AttendantService source alone.
func attendantConfig(t testing.TB) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Config.xml")
	xml := `<config><PresenceProvider><AttendantServiceSource enabled="true">
		<Match pattern="attendant\.example$" /></AttendantServiceSource></PresenceProvider></config>`
	if err := os.WriteFile(file, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// kill9 kills presenced with SIGKILL and waits for it to be gone.
func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// activity is the stored activity of an agent, from presence_state.
func activity(t *testing.T, nc *nats.Conn, uri string) string {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, schemas.Key(uri))
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	var ev schemas.Event
	if err := json.Unmarshal(e.Value(), &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Presence.Activity
}

// TestInputsRightAfterAKill9Restart: presenced is killed with SIGKILL and
// started again on its data directory; 100 attendant inputs sent at once
// after are all answered and stored, the dead worker's agents included.
func TestInputsRightAfterAKill9Restart(t *testing.T) {
	presenced, _ := build(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	env := []string{
		"PRESENCE_CONFIG=" + attendantConfig(t),
		"PRESENCE_EMBEDDED_LISTEN=" + url[len("nats://"):],
		"PRESENCE_DATA_DIR=" + t.TempDir(),
		"PRESENCE_WORKER_LEASE=3s",
	}
	d := startDaemon(t, presenced, env)
	nc := connect(t, url)
	ucc := client.New(nc)
	agent := func(i int) string { return fmt.Sprintf("sip:agent%03d@attendant.example", i) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 100 {
		if rep, err := ucc.Attendant(ctx, schemas.Key(agent(i)), schemas.AttendantInput{Availability: "Away", Activity: "before"}); err != nil || !rep.OK {
			t.Fatalf("input before the kill: %+v, %v", rep, err)
		}
	}
	d.kill9(t)
	startDaemon(t, presenced, env)

	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := ucc.Attendant(ctx, schemas.Key(agent(i)), schemas.AttendantInput{Availability: "Busy", Activity: "after"})
			if err != nil || !rep.OK {
				t.Errorf("%s: input after the restart answered %+v, %v", agent(i), rep, err)
			}
		}()
	}
	wg.Wait()
	for i := range 100 {
		if got := activity(t, nc, agent(i)); got != "after" {
			t.Errorf("%s holds activity %q; want the input sent after the restart", agent(i), got)
		}
	}
}

// TestAKilledWorkersInputsAreAppliedOnceInOrder runs three presenced on one
// NATS and kills one with SIGKILL while agents receive a stream of
// request/reply inputs: every input is answered, applied once, and each
// agent's events come in the order of its inputs, without a gap or a repeat.
func TestAKilledWorkersInputsAreAppliedOnceInOrder(t *testing.T) {
	presenced, _ := build(t)
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	cfg := attendantConfig(t)
	var workers []*daemon
	for i := range 3 {
		workers = append(workers, startDaemon(t, presenced, []string{
			"PRESENCE_CONFIG=" + cfg,
			"PRESENCE_NATS_URL=" + ns.ClientURL(),
			fmt.Sprintf("PRESENCE_WORKER_ID=w%d", i),
			"PRESENCE_WORKER_LEASE=3s",
		}))
	}
	nc := connect(t, ns.ClientURL())
	ucc := client.New(nc)

	const agents, inputs = 12, 60
	agent := func(i int) string { return fmt.Sprintf("sip:stream%02d@attendant.example", i) }
	var mu sync.Mutex
	events := map[string][]schemas.Event{}
	sub, err := nc.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		var ev schemas.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			mu.Lock()
			events[ev.URI] = append(events[ev.URI], ev)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var sent sync.WaitGroup
	halfway := make(chan struct{}, agents)
	for a := range agents {
		sent.Add(1)
		go func() {
			defer sent.Done()
			for n := range inputs {
				if n == inputs/3 {
					halfway <- struct{}{}
				}
				rep, err := ucc.Attendant(ctx, schemas.Key(agent(a)), schemas.AttendantInput{Availability: "Busy", Activity: "n" + strconv.Itoa(n)})
				if err != nil || !rep.OK {
					t.Errorf("%s input %d: %+v, %v", agent(a), n, rep, err)
					return
				}
			}
		}()
	}
	for range agents {
		<-halfway
	}
	workers[1].kill9(t)
	sent.Wait()
	if t.Failed() {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for a := range agents {
		uri := agent(a)
		for {
			mu.Lock()
			n := len(events[uri])
			mu.Unlock()
			if n >= inputs || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		got := append([]schemas.Event(nil), events[uri]...)
		mu.Unlock()
		sort.Slice(got, func(i, j int) bool { return got[i].Seq < got[j].Seq })
		// A consumer drops an event whose seq is not above the last it saw
		// (docs/contract.md, seq): a new owner publishes the stored event
		// again, in case the dead one stored it without publishing.
		got = slices.CompactFunc(got, func(a, b schemas.Event) bool { return a.Seq == b.Seq })
		var acts []string
		for _, ev := range got {
			acts = append(acts, ev.Presence.Activity)
		}
		if len(acts) != inputs {
			t.Errorf("%s: %d events, want %d: %v", uri, len(acts), inputs, acts)
			continue
		}
		for n, act := range acts {
			if act != "n"+strconv.Itoa(n) {
				t.Errorf("%s: event %d is %q; want n%d (events %v)", uri, n, act, n, acts)
				break
			}
		}
		if got := activity(t, nc, uri); got != "n"+strconv.Itoa(inputs-1) {
			t.Errorf("%s holds %q; want its last input", uri, got)
		}
	}
}
