package pstn_test

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/pstn"
)

// These tests run the PSTN source in whole providers on a real NATS server,
// on a fake clock: a stop and a start on the same server is a restart.

const (
	phone   = "tel:+31611111111"
	maxCall = 4 * time.Hour
)

var start = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// provider runs a worker with the PSTN source alone.
func provider(t *testing.T, ns *server.Server, id string, clock clockwork.Clock) *provtest.Env {
	t.Helper()
	cfg := provtest.Config()
	cfg.ID = id
	return provtest.StartParts(t, ns, cfg, clock, func(p provtest.Parts) {
		p.Worker.AddSource(schemas.SourcePSTN, pstn.New(p.Calls, maxCall, p.Clock, p.Worker, p.Log))
	})
}

// report sends a call report and fails the test unless it is applied.
func report(t *testing.T, env *provtest.Env, callID, state string) {
	t.Helper()
	rep, err := env.Client.PSTN(env.Ctx(), schemas.Key(phone), schemas.PSTNInput{UCC: "ucc_app01", CallID: callID, State: state})
	if err != nil || !rep.OK {
		t.Fatalf("call %s %s: %+v, %v", callID, state, rep, err)
	}
}

// availability is the agent's stored presence, as a get answers it.
func availability(t *testing.T, env *provtest.Env) schemas.Availability {
	t.Helper()
	rep, err := env.Client.Get(env.Ctx(), schemas.GetRequest{URIs: []string{phone}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agents[0].Presence == nil {
		return ""
	}
	return rep.Agents[0].Presence.Availability
}

// callsKnown waits until the worker's PSTN source has read n calls in progress.
func callsKnown(t *testing.T, env *provtest.Env, n int) {
	t.Helper()
	provtest.Eventually(t, "the calls in progress read", func() bool {
		st, err := env.Client.Status(env.Ctx())
		if err != nil {
			return false
		}
		pstn := st.Sources[schemas.SourcePSTN]
		return pstn.Healthy && pstn.Stats["calls"] == float64(n)
	})
}

// stillBusy proves the worker knows the call c1 is up: a second call that
// comes and goes leaves the agent Busy.
func stillBusy(t *testing.T, env *provtest.Env) {
	t.Helper()
	report(t, env, "c2", schemas.CallConnected)
	report(t, env, "c2", schemas.CallEnded)
	if got := availability(t, env); got != schemas.Busy {
		t.Fatalf("after a second call came and went: %s; want Busy, the first call is still up", got)
	}
}

// restarted reports the call c1 connected to a provider, stops it, lets
// down time pass, and returns the provider started again once it has read
// the call.
func restarted(t *testing.T, down time.Duration) (*provtest.Env, *clockwork.FakeClock) {
	t.Helper()
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(start)
	first := provider(t, ns, "worker-a", clock)
	first.Subscribe("ucc_app01", phone)
	report(t, first, "c1", schemas.CallConnected)
	first.Stop()
	clock.Advance(down)
	second := provider(t, ns, "worker-a", clock)
	callsKnown(t, second, 1)
	return second, clock
}

// endsAvailable waits until the last event is Available.
func endsAvailable(t *testing.T, events *provtest.Events) {
	t.Helper()
	provtest.Eventually(t, "an Available event", func() bool {
		evs := events.List()
		return len(evs) > 0 && evs[len(evs)-1].Presence.Availability == schemas.Available
	})
}

// TestBusyOutlivesARestart: the calls are in presence_calls, so the worker
// started after a stop knows the call is up; ended then frees the agent.
func TestBusyOutlivesARestart(t *testing.T) {
	second, _ := restarted(t, 0)
	if got := availability(t, second); got != schemas.Busy {
		t.Fatalf("after the restart: %s; want Busy", got)
	}
	stillBusy(t, second)
	report(t, second, "c1", schemas.CallEnded)
	if got := availability(t, second); got != schemas.Available {
		t.Fatalf("after ended: %s; want Available", got)
	}
	callsKnown(t, second, 0)
}

// TestBusyOutlivesAHandOver: the worker that takes the agent over knows the
// call the first one stored.
func TestBusyOutlivesAHandOver(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(start)
	a := provider(t, ns, "worker-a", clock)
	b := provider(t, ns, "worker-b", clock)
	a.Subscribe("ucc_app01", phone)
	callsKnown(t, b, 0)
	report(t, a, "c1", schemas.CallConnected)
	callsKnown(t, a, 1)
	callsKnown(t, b, 1)
	events := b.Collect(schemas.Key(phone))
	a.Stop() // hands over: b owns every agent now
	provtest.Eventually(t, "worker-a gone", func() bool {
		st, err := b.Client.Status(b.Ctx())
		return err == nil && len(st.Workers) == 1
	})
	stillBusy(t, b)
	report(t, b, "c1", schemas.CallEnded)
	if got := availability(t, b); got != schemas.Available {
		t.Fatalf("after ended: %s; want Available", got)
	}
	endsAvailable(t, events)
	evs := events.List()
	for _, ev := range evs[:len(evs)-1] {
		if ev.Presence.Availability != schemas.Busy {
			t.Fatalf("events during the hand-over %+v; want none but Busy before the call ended", evs)
		}
	}
}

// TestSafetyLimitCountsFromConnected: a call never reported ended is cleared
// at connected plus maxCallDuration, even when the worker that armed the
// limit stopped and another started in between.
func TestSafetyLimitCountsFromConnected(t *testing.T) {
	second, clock := restarted(t, 3*time.Hour)
	events := second.Collect(schemas.Key(phone))
	clock.Advance(maxCall - 3*time.Hour - time.Second)
	if got := availability(t, second); got != schemas.Busy {
		t.Fatalf("a second before the limit: %s; want Busy", got)
	}
	clock.Advance(time.Second)
	endsAvailable(t, events)
	callsKnown(t, second, 0)
	if got := availability(t, second); got != schemas.Available {
		t.Fatalf("at the limit: %s; want Available", got)
	}
}

// TestRepeatedConnectedRestartsTheLimit: the limit counts from the last
// connected, as docs/contract.md says.
func TestRepeatedConnectedRestartsTheLimit(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(start)
	env := provider(t, ns, "worker-a", clock)
	env.Subscribe("ucc_app01", phone)
	report(t, env, "c1", schemas.CallConnected)
	clock.Advance(time.Hour)
	report(t, env, "c1", schemas.CallConnected)
	clock.Advance(maxCall - time.Second)
	if got := availability(t, env); got != schemas.Busy {
		t.Fatalf("before the renewed limit: %s; want Busy", got)
	}
	clock.Advance(time.Second)
	provtest.Eventually(t, "Available at the renewed limit", func() bool { return availability(t, env) == schemas.Available })
}
