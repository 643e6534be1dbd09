package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

const pstnAgent = "tel:+31611111111"

// pstnRun is one presenced data directory with the PSTN source, and
// presencectl to talk to it.
type pstnRun struct {
	presenced, presencectl string
	url                    string
	env                    []string
}

func newPSTNRun(t *testing.T, maxCallSeconds int) *pstnRun {
	t.Helper()
	r := &pstnRun{}
	r.presenced, r.presencectl = build(t)
	cfg := filepath.Join(t.TempDir(), "Config.xml")
	xml := fmt.Sprintf(`<config><PresenceProvider><PstnPresenceSource enabled="true" maxCallDuration="%d" /></PresenceProvider></config>`, maxCallSeconds)
	if err := os.WriteFile(cfg, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeport.T(t)
	r.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	r.env = []string{
		"PRESENCE_CONFIG=" + cfg,
		fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", port),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
		// The restarted process is the same worker: it owns the agent at once.
		"PRESENCE_WORKER_ID=w1",
	}
	return r
}

func (r *pstnRun) ctl(t *testing.T, args ...string) string {
	t.Helper()
	return ctl(t, r.presencectl, r.url, args...)
}

func (r *pstnRun) call(t *testing.T, id, state string) {
	t.Helper()
	r.callOn(t, pstnAgent, id, state)
}

func (r *pstnRun) callOn(t *testing.T, agent, id, state string) {
	t.Helper()
	var rep schemas.InputReply
	if out := r.ctl(t, "call", "-json", "-ucc", "ucc_app01", "-call", id, agent, state); json.Unmarshal([]byte(out), &rep) != nil || !rep.OK {
		t.Fatalf("call %s on %s %s answered %s", id, agent, state, out)
	}
}

func (r *pstnRun) availability(t *testing.T) schemas.Availability {
	t.Helper()
	return r.availabilityOf(t, pstnAgent)
}

func (r *pstnRun) availabilityOf(t *testing.T, agent string) schemas.Availability {
	t.Helper()
	var rep schemas.AgentsReply
	if err := json.Unmarshal([]byte(r.ctl(t, "get", "-json", agent)), &rep); err != nil {
		t.Fatal(err)
	}
	if p := rep.Agents[0].Presence; p != nil {
		return p.Availability
	}
	return ""
}

// callsKnown waits until the worker has read n calls in progress.
func (r *pstnRun) callsKnown(t *testing.T, n int) {
	t.Helper()
	provtest.Eventually(t, fmt.Sprintf("%d calls in progress read", n), func() bool {
		var st schemas.Status
		if json.Unmarshal([]byte(r.ctl(t, "status", "-json")), &st) != nil {
			return false
		}
		pstn := st.Sources[schemas.SourcePSTN]
		return pstn.Healthy && pstn.Stats["calls"] == float64(n)
	})
}

// kill ends the process with SIGKILL: nothing of it runs on.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
}

// TestPSTNBusySurvivesRestarts: a call reported connected keeps its agent
// Busy through a SIGTERM restart and a kill -9 restart on the same data
// directory, and ended then makes it Available.
func TestPSTNBusySurvivesRestarts(t *testing.T) {
	r := newPSTNRun(t, 14400)
	d := startDaemon(t, r.presenced, r.env)
	r.ctl(t, "subscribe", "-ucc", "ucc_app01", pstnAgent)
	r.call(t, "c1", schemas.CallConnected)
	if got := r.availability(t); got != schemas.Busy {
		t.Fatalf("after connected: %s; want Busy", got)
	}
	for _, restart := range []struct {
		name string
		stop func(t *testing.T)
	}{{"SIGTERM", func(t *testing.T) { d.stop(t) }}, {"kill -9", func(t *testing.T) { d.kill(t) }}} {
		restart.stop(t)
		d = startDaemon(t, r.presenced, r.env)
		r.callsKnown(t, 1)
		if got := r.availability(t); got != schemas.Busy {
			t.Fatalf("after the %s restart: %s; want Busy", restart.name, got)
		}
		// A second call that comes and goes leaves the agent Busy only if
		// the first is still known.
		r.call(t, "c2", schemas.CallConnected)
		r.call(t, "c2", schemas.CallEnded)
		if got := r.availability(t); got != schemas.Busy {
			t.Fatalf("after the %s restart, a second call came and went: %s; want Busy", restart.name, got)
		}
	}
	r.call(t, "c1", schemas.CallEnded)
	if got := r.availability(t); got != schemas.Available {
		t.Fatalf("after ended: %s; want Available", got)
	}
	d.stop(t)
}

// TestPSTNSafetyLimitCountsFromConnected: with maxCallDuration at its
// minimum, 60 s, a call never reported ended and a kill -9 restart 30 s
// after connected, the call clears at connected + 60 s: before the limit
// would end were it counted from the restart.
func TestPSTNSafetyLimitCountsFromConnected(t *testing.T) {
	const limit = 60 * time.Second
	r := newPSTNRun(t, int(limit/time.Second))
	d := startDaemon(t, r.presenced, r.env)
	r.ctl(t, "subscribe", "-ucc", "ucc_app01", pstnAgent)
	connected := time.Now()
	r.call(t, "c1", schemas.CallConnected)
	// The wait is what is under test: the call must outlive the restart.
	time.Sleep(limit / 2)
	d.kill(t)
	restarted := time.Now()
	startDaemon(t, r.presenced, r.env)
	r.callsKnown(t, 1)
	if got := r.availability(t); got != schemas.Busy {
		t.Fatalf("after the restart: %s; want Busy", got)
	}
	deadline := restarted.Add(limit)
	for r.availability(t) != schemas.Available {
		if time.Now().After(deadline) {
			t.Fatalf("still Busy %s after connected, %s after the restart: the limit counts from the restart", time.Since(connected), time.Since(restarted))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if since := time.Since(connected); since < limit {
		t.Fatalf("cleared %s after connected; want at the limit, %s", since, limit)
	}
	r.callsKnown(t, 0)
}

// TestPSTNBusySurvivesFailover: two workers share one NATS; the one that
// owns some of the agents is killed with SIGKILL, and once its lease ran out
// the other, which takes its agents over, knows their calls.
func TestPSTNBusySurvivesFailover(t *testing.T) {
	r := newPSTNRun(t, 14400)
	r.env = append(r.env, "PRESENCE_WORKER_LEASE=3s")
	hub := startDaemon(t, r.presenced, r.env)
	// The second worker joins the first one's embedded NATS.
	other := startDaemon(t, r.presenced, append(append([]string{}, r.env...),
		"PRESENCE_NATS_URL="+r.url, "PRESENCE_WORKER_ID=w2", "PRESENCE_DATA_DIR="+t.TempDir()))
	provtest.Eventually(t, "two workers", func() bool {
		var st schemas.Status
		return json.Unmarshal([]byte(r.ctl(t, "status", "-json")), &st) == nil && len(st.Workers) == 2
	})
	var agents []string
	for i := range 20 {
		agents = append(agents, fmt.Sprintf("tel:+316111111%02d", i))
	}
	r.ctl(t, append([]string{"subscribe", "-ucc", "ucc_app01"}, agents...)...)
	for _, a := range agents {
		r.callOn(t, a, "c1", schemas.CallConnected)
	}
	// The owner stores the presence: the agents the second worker stored
	// Busy are the ones its death hands over.
	var owned []string
	for _, line := range strings.Split(other.logs.String(), "\n") {
		var l struct{ Message, URI string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "presence change" && strings.Contains(line, `"availability":"Busy"`) {
			owned = append(owned, l.URI)
		}
	}
	if len(owned) == 0 {
		t.Fatal("the second worker owns none of the 20 agents; nothing fails over")
	}
	other.kill(t)
	provtest.Eventually(t, "the killed worker's lease over", func() bool {
		var st schemas.Status
		return json.Unmarshal([]byte(r.ctl(t, "status", "-json")), &st) == nil && len(st.Workers) == 1
	})
	for _, a := range owned {
		r.callOn(t, a, "c2", schemas.CallConnected)
		r.callOn(t, a, "c2", schemas.CallEnded)
		if got := r.availabilityOf(t, a); got != schemas.Busy {
			t.Fatalf("%s after the failover, a second call came and went: %s; want Busy", a, got)
		}
		r.callOn(t, a, "c1", schemas.CallEnded)
		if got := r.availabilityOf(t, a); got != schemas.Available {
			t.Fatalf("%s after ended: %s; want Available", a, got)
		}
	}
	hub.stop(t)
}
