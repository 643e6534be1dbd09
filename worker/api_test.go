package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/pstn"
	"github.com/contactcenter/presence-provider/worker"
)

// startAll runs a provider with every source: the real attendant and PSTN
// sources, and scripted stand-ins for SIP and Graph.
func startAll(t *testing.T, cfg worker.Config) *provtest.Env {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	return provtest.StartParts(t, provtest.Server(t), cfg, clock, func(p provtest.Parts) {
		p.Worker.AddSource(schemas.SourceSIP, newScripted(p.Clock))
		p.Worker.AddSource(schemas.SourceGraph, teams{newScripted(p.Clock)})
		p.Worker.AddSource(schemas.SourceAttendant, attendant.New(p.Clock, matchPatterns()))
		p.Worker.AddSource(schemas.SourcePSTN, pstn.New(p.Calls, 4*time.Hour, p.Clock, p.Worker, p.Log))
	})
}

// matchPatterns are the two Match patterns of docs/product.md's routing examples.
func matchPatterns() []*regexp.Regexp {
	return []*regexp.Regexp{regexp.MustCompile("workstreampeople.nl"), regexp.MustCompile("workstreampeople.com")}
}

// teams stands in for the Graph source: it serves the agents with a Teams UPN.
type teams struct{ *scripted }

func (teams) Serves(_ schemas.AgentURI, teamsUPN string) bool { return teamsUPN != "" }

func TestRoutingFollowsTheSpecsExamples(t *testing.T) {
	env := startAll(t, provtest.Config())
	rep, err := env.Client.Subscribe(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{
		{URI: "sip:example@workstreampeople.com"},                              // docs/product.md routing example 1
		{URI: "tel:+31612345678"},                                              // docs/product.md routing example 2
		{URI: "sip:example@anywhere.now"},                                      // docs/product.md routing example 3
		{URI: "sip:teams@workstreampeople.com", TeamsUPN: "teams@contoso.com"}, // Graph beats a pattern
		{URI: "sip:+31201234567@gw.example;user=phone"},                        // a phone number in a sip URI
		{URI: "sip:+31201234567@other.example"},                                // without user=phone: SIP
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"attendant", "pstn", "sip", "graph", "pstn", "sip"}
	for i, r := range rep.Agents {
		if r.Source != want[i] || r.Error != nil {
			t.Errorf("%s routed to %s (error %v); want %s", r.URI, r.Source, r.Error, want[i])
		}
	}
}

func TestRoutingSkipsDisabledSources(t *testing.T) {
	cfg := provtest.Config() // PSTN off: no PSTN source
	env := provtest.Start(t, cfg, func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceSIP, newScripted(clock))
	})
	rep := env.Subscribe("ucc_app01", "tel:+31612345678", "sip:a@b.c")
	if r := rep.Agents[0]; r.Source != schemas.SourceNone || r.State != schemas.StateUnsupported {
		t.Fatalf("PSTN agent with PSTN off: %s/%s; want none/unsupported", r.Source, r.State)
	}
	if r := rep.Agents[1]; r.Source != schemas.SourceSIP {
		t.Fatalf("sip agent: %s; want sip", r.Source)
	}
}

func TestOneBadEntryNeverFailsItsNeighbours(t *testing.T) {
	env := startAll(t, provtest.Config())
	rep, err := env.Client.Subscribe(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{
		{URI: "sip:good1@anywhere.now"},
		{URI: "http://example.com"},
		{URI: "sip:good2@anywhere.now", TeamsUPN: "not a upn"},
		{URI: "tel:+123456789012345678"},
		{URI: "sip:good3@anywhere.now"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	codes := []string{"", schemas.CodeInvalidURI, schemas.CodeInvalidUPN, schemas.CodeInvalidURI, ""}
	for i, r := range rep.Agents {
		got := ""
		if r.Error != nil {
			got = r.Error.Code
			if r.Error.Message == "" {
				t.Errorf("entry %d: error without a message", i)
			}
		}
		if got != codes[i] {
			t.Errorf("entry %d (%s): error %q; want %q", i, r.URI, got, codes[i])
		}
	}
	env.AdvanceUntil("good agents active", func() bool {
		st, _ := env.Client.Status(env.Ctx())
		return st.Interests == 2 && st.Sources["sip"].States[schemas.StateActive] == 2
	})
}

// rawRequest sends bytes as they are, as a broken client would.
func rawRequest(t *testing.T, env *provtest.Env, subject string, data []byte) *nats.Msg {
	t.Helper()
	msg, err := env.Conn.NC.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestUnreadableRequestsGetBadRequest(t *testing.T) {
	env := startAll(t, provtest.Config())
	many := schemas.SubscribeRequest{UCC: "u"}
	for i := 0; i <= schemas.MaxAgentsPerRequest; i++ {
		many.Agents = append(many.Agents, schemas.AgentRef{URI: fmt.Sprintf("sip:a%d@b.c", i)})
	}
	tooMany, _ := json.Marshal(many)
	huge := append([]byte(`{"ucc":"u","agents":[],"pad":"`), make([]byte, 5<<20)...)
	huge = append(huge, '"', '}')
	for _, tc := range []struct {
		name, subject string
		body          []byte
	}{
		{"bad JSON", schemas.SubjectSubscribe, []byte(`{"ucc": "u", "agents": [`)},
		{"not an object", schemas.SubjectGet, []byte(`42`)},
		{"no ucc", schemas.SubjectSubscribe, []byte(`{"agents": [{"uri": "sip:a@b.c"}]}`)},
		{"no ucc on unsubscribe", schemas.SubjectUnsub, []byte(`{"uris": ["sip:a@b.c"]}`)},
		{"more than 10,000 agents", schemas.SubjectSubscribe, tooMany},
		{"oversized", schemas.SubjectSync, huge},
		{"negative lease", schemas.SubjectSubscribe, []byte(`{"ucc": "u", "agents": [], "lease_s": -1}`)},
		{"empty body", schemas.SubjectGet, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := rawRequest(t, env, tc.subject, tc.body)
			if code := msg.Header.Get("Nats-Service-Error-Code"); code != "400" {
				t.Fatalf("error code header %q; want 400", code)
			}
			var rep schemas.ErrorReply
			if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error == nil || rep.Error.Code != schemas.CodeBadRequest || rep.Error.Message == "" {
				t.Fatalf("body %s; want a bad_request error with a message", msg.Data)
			}
		})
	}
	// Unknown fields are ignored, and the worker still serves after all of the above.
	msg := rawRequest(t, env, schemas.SubjectSubscribe, []byte(`{"ucc": "u", "future": 1, "agents": [{"uri": "sip:a@b.c", "skill": "x"}]}`))
	var rep schemas.AgentsReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil || len(rep.Agents) != 1 || rep.Agents[0].Error != nil {
		t.Fatalf("request with unknown fields: %s", msg.Data)
	}
}

func keyOf(uri string) string {
	u, err := schemas.ParseURI(uri)
	if err != nil {
		panic(err)
	}
	return u.Key()
}

func TestAttendantInputs(t *testing.T) {
	env := startAll(t, provtest.Config())
	const uri = "sip:agent@workstreampeople.com"
	key := keyOf(uri)
	evs := env.Collect(key)

	// Before any UCC subscribes, the input becomes the agent's state.
	rep, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "away", Activity: "OutOfOffice", Device: "Computer"})
	if err != nil || !rep.OK || rep.Seq == 0 {
		t.Fatalf("input reply %+v, %v; want ok with a seq", rep, err)
	}
	sub := env.Subscribe("ucc_app01", uri)
	p := sub.Agents[0].Presence
	if p == nil || p.Availability != schemas.Away || p.AvailabilityValue != 15500 || p.Activity != "OutOfOffice" || p.Source != "attendant" {
		t.Fatalf("first subscriber got %+v; want the earlier input at once", p)
	}
	// The same presence again publishes nothing; the entry records the
	// input's position all the same.
	again, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Away", Activity: "OutOfOffice", Device: "Computer"})
	if err != nil || !again.OK || again.Seq <= rep.Seq {
		t.Fatalf("repeat input: %+v, %v; want ok with a seq above %d", again, err, rep.Seq)
	}
	rep = again
	busy, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Busy", AvailabilityValue: 6700})
	if err != nil || busy.Seq <= rep.Seq {
		t.Fatalf("change: %+v, %v; want a higher seq", busy, err)
	}
	provtest.Eventually(t, "two events", func() bool { return len(evs.List()) == 2 })
	got := evs.List()
	if got[0].Previous != nil || got[1].Previous == nil || got[1].Previous.Availability != schemas.Away ||
		got[1].Presence.AvailabilityValue != 6700 || got[1].Seq != busy.Seq {
		t.Fatalf("events %+v; want none→Away then Away→Busy(6700) with seq %d", got, busy.Seq)
	}

	for _, tc := range []struct {
		name, key, body, code string
	}{
		{"no pattern matches", keyOf("sip:agent@anywhere.now"), `{"availability": "Busy"}`, schemas.CodeNotAttendantAgent},
		{"unknown availability", key, `{"availability": "Lunch"}`, schemas.CodeInvalidInput},
		{"value outside its band", key, `{"availability": "Busy", "availability_value": 3500}`, schemas.CodeInvalidInput},
		{"bad JSON", key, `{"availability": `, schemas.CodeBadRequest},
		{"key not base64url", "not*base64", `{"availability": "Busy"}`, schemas.CodeInvalidURI},
		{"key of a URI not normalised", schemas.Key("sip:Agent@WorkstreamPeople.com"), `{"availability": "Busy"}`, schemas.CodeInvalidURI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := rawRequest(t, env, schemas.AttendantPrefix+tc.key, []byte(tc.body))
			var rep schemas.InputReply
			if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error == nil || rep.Error.Code != tc.code {
				t.Fatalf("reply %s; want error %s", msg.Data, tc.code)
			}
		})
	}
	// An input without a reply subject is applied all the same.
	if err := env.Conn.NC.Publish(schemas.AttendantPrefix+key, []byte(`{"availability": "Available"}`)); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "fire-and-forget input applied", func() bool { return len(evs.List()) == 3 })
}

func TestPSTNAgentIsBusyWhileAnyUCCHasACall(t *testing.T) {
	env := startAll(t, provtest.Config())
	const uri = "tel:+31612345678"
	key := keyOf(uri)
	evs := env.Collect(key)
	env.Subscribe("ucc_app01", uri)
	provtest.Eventually(t, "Available on subscribe", func() bool { return len(evs.List()) == 1 })

	call := func(ucc, id, state string) {
		t.Helper()
		rep, err := env.Client.PSTN(env.Ctx(), key, schemas.PSTNInput{UCC: ucc, CallID: id, State: state})
		if err != nil || !rep.OK {
			t.Fatalf("call %s %s %s: %+v, %v", ucc, id, state, rep, err)
		}
	}
	call("ucc_app01", "c-1", schemas.CallConnected)
	call("ucc_app02", "c-2", schemas.CallConnected)
	call("ucc_app01", "c-1", schemas.CallEnded)
	call("ucc_app02", "c-2", schemas.CallEnded)
	provtest.Eventually(t, "Busy then Available", func() bool { return len(evs.List()) == 3 })
	var seen []string
	for _, ev := range evs.List() {
		seen = append(seen, fmt.Sprintf("%s/%d", ev.Presence.Availability, ev.Presence.AvailabilityValue))
	}
	if fmt.Sprint(seen) != "[Available/3500 Busy/6500 Available/3500]" {
		t.Fatalf("events %v; want Available, Busy while either call is up, Available", seen)
	}

	// A call that never reports "ended" clears at the safety limit.
	call("ucc_app01", "c-3", schemas.CallConnected)
	provtest.Eventually(t, "Busy", func() bool { return len(evs.List()) == 4 })
	waitForTimers(t, env, baseTimers+1)
	env.Clock.Advance(4*time.Hour - time.Second)
	if len(evs.List()) != 4 {
		t.Fatal("call cleared before the safety limit")
	}
	env.Clock.Advance(time.Second)
	provtest.Eventually(t, "Available after the safety limit", func() bool {
		l := evs.List()
		return len(l) == 5 && l[4].Presence.Availability == schemas.Available
	})

	msg := rawRequest(t, env, schemas.PSTNPrefix+keyOf("sip:someone@anywhere.now"), []byte(`{"ucc":"u","call_id":"c","state":"connected"}`))
	var rep schemas.InputReply
	if json.Unmarshal(msg.Data, &rep); rep.Error == nil || rep.Error.Code != schemas.CodeNotPSTNAgent {
		t.Fatalf("PSTN input for a sip agent: %s; want not_pstn_agent", msg.Data)
	}
	msg = rawRequest(t, env, schemas.PSTNPrefix+key, []byte(`{"ucc":"u","call_id":"c","state":"ringing"}`))
	if json.Unmarshal(msg.Data, &rep); rep.Error == nil || rep.Error.Code != schemas.CodeInvalidInput {
		t.Fatalf("unknown call state: %s; want invalid_input", msg.Data)
	}
}

// TestSeqGrowsStrictlyWithSeveralWriters has two writers store the same
// agent at once (the owner's input path, unserialised): compare-and-set must
// chain every event to the one before it.
func TestSeqGrowsStrictlyWithSeveralWriters(t *testing.T) {
	a := startAll(t, provtest.Config())
	key := keyOf("sip:agent@workstreampeople.com")
	evs := a.Collect(key)

	var wg sync.WaitGroup
	const writes = 40
	for i, w := range []*worker.Worker{a.Worker, a.Worker} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < writes; n++ {
				body := fmt.Sprintf(`{"availability": "Busy", "activity": "w%d-%d"}`, i, n)
				in := worker.QueuedInput{Source: schemas.SourceAttendant, Key: key, Body: []byte(body), Generation: w.ServedGeneration()}
				if res := w.Input(a.Ctx(), []worker.QueuedInput{in}); res[0].Verdict != worker.Applied || res[0].Err != nil {
					t.Error(res[0].Verdict, res[0].Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	provtest.Eventually(t, "every write published", func() bool { return len(evs.List()) == 2*writes })
	got := evs.List()
	sort.Slice(got, func(i, j int) bool { return got[i].Seq < got[j].Seq })
	for i := 1; i < len(got); i++ {
		if got[i].Seq == got[i-1].Seq {
			t.Fatalf("two events with seq %d", got[i].Seq)
		}
		if got[i].Previous == nil || !got[i].Previous.SameAs(got[i-1].Presence) {
			t.Fatalf("event seq %d says previous %+v; the event before it (seq %d) is %+v", got[i].Seq, got[i].Previous, got[i-1].Seq, got[i-1].Presence)
		}
	}
}

// TestAStaleInputIsLeftUnapplied has the worker answer an input read for an
// older generation of the agents it serves with the Stale verdict, and store
// nothing: the replay of what the previous owners left comes first.
func TestAStaleInputIsLeftUnapplied(t *testing.T) {
	a := startAll(t, provtest.Config())
	key := keyOf("sip:agent@workstreampeople.com")
	body := []byte(`{"availability": "Busy"}`)
	stale := []worker.QueuedInput{
		{Source: schemas.SourceAttendant, Key: key, Body: body, Pos: 1, Generation: a.Worker.ServedGeneration() + 1},
		{Source: schemas.SourceAttendant, Key: key, Body: body, Pos: 2, Generation: a.Worker.ServedGeneration() + 1},
	}
	for i, res := range a.Worker.Input(a.Ctx(), stale) {
		if res.Verdict != worker.Stale || res.Err != nil {
			t.Fatalf("input %d of a stale generation: verdict %v, error %v; want stale", i, res.Verdict, res.Err)
		}
	}
	if _, found, err := a.Stores.State.Load(a.Ctx(), key); err != nil || found {
		t.Fatalf("a stale input stored a presence (found %v, %v)", found, err)
	}
	current := []worker.QueuedInput{{Source: schemas.SourceAttendant, Key: key, Body: body, Pos: 1, Generation: a.Worker.ServedGeneration()}}
	if res := a.Worker.Input(a.Ctx(), current); res[0].Verdict != worker.Applied || res[0].Err != nil || !res[0].Reply.OK {
		t.Fatalf("input of the current generation: %+v; want applied", res[0])
	}
}

func TestAPanicInASourceInputIsAnswered(t *testing.T) {
	env := provtest.Start(t, provtest.Config(), func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, panicky{attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(".")})})
	})
	key := keyOf("sip:a@b.c")
	msg := rawRequest(t, env, schemas.AttendantPrefix+key, []byte(`{"availability": "Busy", "activity": "panic"}`))
	var rep schemas.InputReply
	if json.Unmarshal(msg.Data, &rep); rep.Error == nil || rep.Error.Code != schemas.CodeInternal {
		t.Fatalf("panicking input: %s; want an internal error", msg.Data)
	}
	ok, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Busy"})
	if err != nil || !ok.OK {
		t.Fatalf("the next input: %+v, %v; want it served", ok, err)
	}
}

// panicky is the attendant source with a bug: it panics on one activity.
type panicky struct{ *attendant.Source }

func (p panicky) Input(ctx context.Context, a sources.Agent, body []byte) (schemas.Presence, error) {
	var in schemas.AttendantInput
	if json.Unmarshal(body, &in) == nil && in.Activity == "panic" {
		panic(errors.New("a bug"))
	}
	return p.Source.Input(ctx, a, body)
}

// A worker answers only once it has read what the buckets hold: a get right
// after a restart tells the presence stored before it, with its seq.
func TestAGetRightAfterARestartTellsWhatWasStored(t *testing.T) {
	ns := provtest.Server(t)
	add := func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, matchPatterns()))
	}
	first := provtest.StartOn(t, ns, provtest.Config(), clockwork.NewRealClock(), add)
	const uri = "sip:agent@workstreampeople.com"
	var stored schemas.InputReply
	for i := range 2000 { // many agents, so that reading them takes a moment
		rep, err := first.Client.Attendant(first.Ctx(), keyOf(fmt.Sprintf("sip:agent%d@workstreampeople.com", i)), schemas.AttendantInput{Availability: "Busy"})
		if err != nil {
			t.Fatal(err)
		}
		stored = rep
	}
	if _, err := first.Client.Attendant(first.Ctx(), keyOf(uri), schemas.AttendantInput{Availability: "Away"}); err != nil {
		t.Fatal(err)
	}
	first.Stop()
	again := provtest.StartOn(t, ns, provtest.Config(), clockwork.NewRealClock(), add)
	rep, err := again.Client.Get(again.Ctx(), schemas.GetRequest{URIs: []string{uri, "sip:agent1999@workstreampeople.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Agents[0].Presence; p == nil || p.Availability != schemas.Away {
		t.Fatalf("get right after the restart: %+v; want the stored Away", rep.Agents[0])
	}
	if rep.Agents[1].Seq != stored.Seq {
		t.Fatalf("get right after the restart: seq %d; want the stored %d", rep.Agents[1].Seq, stored.Seq)
	}
}
