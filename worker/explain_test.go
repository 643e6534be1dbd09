package worker_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

func startAttendant(t *testing.T) *provtest.Env {
	t.Helper()
	return provtest.Start(t, provtest.Config(), func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`attendant\.example$`)}))
	})
}

func hasNote(ex schemas.Explanation, part string) bool {
	for _, n := range ex.Notes {
		if strings.Contains(n, part) {
			return true
		}
	}
	return false
}

func TestExplainAttendantAgentAfterInputs(t *testing.T) {
	env := startAttendant(t)
	const uri = "sip:agent1@attendant.example"
	if _, err := env.Client.Subscribe(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", LeaseS: 300,
		Agents: []schemas.AgentRef{{URI: uri}}}); err != nil {
		t.Fatal(err)
	}
	env.Subscribe("ucc_app02", uri)
	key, _ := client.Key(uri)
	var seqs []uint64
	for _, av := range []string{"Available", "Busy", "Away"} {
		rep, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: av, Activity: "act-" + av})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, rep.Seq)
	}
	var ex schemas.Explanation
	provtest.Eventually(t, "three changes in the history", func() bool {
		var err error
		ex, err = env.Client.Explain(env.Ctx(), "SIP:Agent1@attendant.example")
		if err != nil {
			t.Fatal(err)
		}
		return len(ex.Changes) == 3
	})
	if ex.URI != uri || ex.Key != key || ex.Subject != schemas.EventSubject(key) || ex.Worker != "worker-a" {
		t.Errorf("explained %s (%s, %s) by %s; want %s by worker-a", ex.URI, ex.Key, ex.Subject, ex.Worker, uri)
	}
	if ex.Route.Source != schemas.SourceAttendant || ex.Route.Rule != "attendant: pattern `attendant\\.example$` matched" {
		t.Errorf("route %+v; want attendant and the pattern that matched", ex.Route)
	}
	uccs := map[string]schemas.Interest{}
	for _, in := range ex.Interests {
		uccs[in.UCC] = in
	}
	if len(uccs) != 2 || uccs["ucc_app01"].LeaseS != 300 || uccs["ucc_app02"].LeaseS != 0 ||
		!uccs["ucc_app01"].At.Equal(env.Clock.Now()) {
		t.Errorf("interests %+v; want ucc_app01 leased 300 s and ucc_app02 with none, since now", ex.Interests)
	}
	// Fed by inputs: nobody holds a claim or an upstream subscription.
	if ex.Claim != nil || ex.Upstream != nil || !hasNote(ex, "fed by inputs on presence.in.attendant."+key) {
		t.Errorf("claim %+v, upstream %+v, notes %q; want none, and a note on the inputs", ex.Claim, ex.Upstream, ex.Notes)
	}
	if ex.Presence == nil || ex.Presence.Availability != schemas.Away || ex.Seq != seqs[2] || !ex.Presence.ObservedAt.Equal(env.Clock.Now()) {
		t.Errorf("presence %+v seq %d; want Away, seq %d, observed now", ex.Presence, ex.Seq, seqs[2])
	}
	for i, c := range ex.Changes {
		want := []schemas.Availability{schemas.Available, schemas.Busy, schemas.Away}[i]
		if c.Event.Seq != seqs[i] || c.Event.Presence.Availability != want || c.At.IsZero() {
			t.Errorf("change %d: seq %d %s at %s; want seq %d %s", i, c.Event.Seq, c.Event.Presence.Availability, c.At, seqs[i], want)
		}
	}
	if ex.Changes[1].Event.Previous == nil || ex.Changes[1].Event.Previous.Availability != schemas.Available {
		t.Errorf("second change's previous %+v; want Available", ex.Changes[1].Event.Previous)
	}
}

func TestExplainKeepsTheLastChanges(t *testing.T) {
	env := startAttendant(t)
	const uri = "sip:agent2@attendant.example"
	key, _ := client.Key(uri)
	var last uint64
	for i := range schemas.ExplainChanges + 5 {
		rep, err := env.Client.Attendant(env.Ctx(), key, schemas.AttendantInput{Availability: "Busy", Activity: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		last = rep.Seq
	}
	provtest.Eventually(t, "the last change in the history", func() bool {
		ex, err := env.Client.Explain(env.Ctx(), uri)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.Changes) == 0 || ex.Changes[len(ex.Changes)-1].Event.Seq != last {
			return false
		}
		if len(ex.Changes) != schemas.ExplainChanges || ex.Changes[0].Event.Presence.Activity != "5" {
			t.Fatalf("%d changes from activity %q; want the last %d, from 5", len(ex.Changes), ex.Changes[0].Event.Presence.Activity, schemas.ExplainChanges)
		}
		return true
	})
}

func TestExplainUnknownAgentAndBadURI(t *testing.T) {
	env := startAttendant(t)
	ex, err := env.Client.Explain(env.Ctx(), "sip:nobody@elsewhere.example")
	if err != nil {
		t.Fatalf("explain of an agent nobody knows: %v; want an explanation", err)
	}
	if ex.Route.Source != schemas.SourceNone || ex.Route.Rule != "none of the enabled sources (attendant) serves it" ||
		len(ex.Interests) != 0 || ex.Claim != nil || ex.Presence != nil || len(ex.Changes) != 0 ||
		!hasNote(ex, "no UCC subscribes the agent") || !hasNote(ex, "no presence known yet") {
		t.Errorf("unknown agent explained as %+v", ex)
	}
	_, err = env.Client.Explain(env.Ctx(), "sip:@domain.com")
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "it has no user") {
		t.Errorf("explain of sip:@domain.com: %v; want bad_request naming what is wrong", err)
	}
}

// describing is a scripted source that tells what it holds, as the SIP
// source does: the detail lives in the holder's memory only.
type describing struct{ *scripted }

func (describing) Describe(a sources.Agent, u *schemas.Upstream) {
	u.SIP = &schemas.SIPUpstream{Endpoint: "application", CallID: "call-" + a.Key}
}

func TestExplainOnANonOwnerAsksTheHolder(t *testing.T) {
	ns := provtest.Server(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	var envs []*provtest.Env
	var srcs []*scripted
	for _, id := range []string{"worker-a", "worker-b"} {
		cfg := provtest.Config()
		cfg.ID, cfg.WorkerLease, cfg.SubscriptionsPerSecond = id, 3*time.Second, 100
		envs = append(envs, provtest.StartOn(t, ns, cfg, clock, func(w *worker.Worker, clock clockwork.Clock) {
			src := newScripted(clock)
			srcs = append(srcs, src)
			w.AddSource(schemas.SourceSIP, describing{src})
		}))
	}
	envs[0].AdvanceUntil("workers know each other", func() bool {
		return clock.Since(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) > 1100*time.Millisecond
	})
	// One agent each worker holds: its first attempt fails, so it backs off.
	var uri string
	var holder, other int
	for i := 0; uri == ""; i++ {
		candidate := fmt.Sprintf("sip:agent%d@domain.com", i)
		for _, s := range srcs {
			s.script(candidate, errors.New("503 Service Unavailable"))
		}
		envs[0].Subscribe("ucc_app01", candidate)
		envs[0].AdvanceUntil("the agent retrying", func() bool {
			c, found := claimOf(t, envs[0], candidate)
			return found && c.State == schemas.StateRetrying
		})
		c, _ := claimOf(t, envs[0], candidate)
		if c.Worker == "worker-b" {
			uri, holder, other = candidate, 1, 0
		}
	}
	failedAt := clock.Now()
	// worker-a explains from the claims it watches, which may lag the
	// bucket read above: wait (in real time) until it saw worker-b's.
	var ex schemas.Explanation
	var err error
	provtest.Eventually(t, "worker-a to see worker-b's claim", func() bool {
		ex, err = envs[other].Worker.Explain(envs[other].Ctx(), schemas.ExplainRequest{URI: uri})
		return err == nil && ex.Claim != nil
	})
	key, _ := client.Key(uri)
	up := ex.Upstream
	if ex.Worker != "worker-a" || ex.Claim == nil || ex.Claim.Worker != "worker-b" || up == nil {
		t.Fatalf("worker-a explained claim %+v upstream %+v notes %q; want worker-b's subscription", ex.Claim, up, ex.Notes)
	}
	if up.Worker != "worker-b" || up.Source != schemas.SourceSIP || up.State != schemas.StateRetrying || up.Failures != 1 ||
		up.LastError != "503 Service Unavailable" || up.LastErrorAt == nil || up.LastErrorAt.After(failedAt) ||
		up.NextRetry == nil || !up.NextRetry.After(*up.LastErrorAt) {
		t.Errorf("upstream %+v; want worker-b's retrying subscription with its failure and next retry", up)
	}
	if up.SIP == nil || up.SIP.CallID != "call-"+key || up.SIP.Endpoint != "application" {
		t.Errorf("upstream SIP %+v; want the holder's dialog", up.SIP)
	}
	if ex.Route.Source != schemas.SourceSIP || !strings.HasPrefix(ex.Route.Rule, "sip serves it") {
		t.Errorf("route %+v; want sip (a source with no rule of its own)", ex.Route)
	}

	// A holder cut off from NATS does not answer: its claim stays, with a note.
	envs[holder].CutOff()
	ex, err = envs[other].Worker.Explain(envs[other].Ctx(), schemas.ExplainRequest{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Upstream != nil || ex.Claim == nil || ex.Claim.Worker != "worker-b" || !hasNote(ex, "owner worker-b did not answer") {
		t.Errorf("explained with worker-b cut off: claim %+v upstream %+v notes %q; want its claim and the note that it did not answer",
			ex.Claim, ex.Upstream, ex.Notes)
	}
}
