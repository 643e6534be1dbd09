package sip

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// seen is a sources.Sink that keeps what it is told.
type seen struct {
	mu       sync.Mutex
	observed []schemas.Presence
}

func (r *seen) Observe(_ sources.Agent, p schemas.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed = append(r.observed, p)
}

func (*seen) Lost(sources.Agent, error) {}

// mapDialogs is a DialogStore in memory, for one goroutine.
type mapDialogs map[string]schemas.Dialog

func (m mapDialogs) Put(_ context.Context, key string, d schemas.Dialog) error {
	m[key] = d
	return nil
}
func (m mapDialogs) Get(_ context.Context, key string) (schemas.Dialog, bool, error) {
	d, ok := m[key]
	return d, ok, nil
}
func (m mapDialogs) Delete(_ context.Context, key string) error { delete(m, key); return nil }

// unservedSource is a SIP stack that is never run: its dialogs are driven
// by the test, and nothing it would send leaves.
func unservedSource(t *testing.T, clock clockwork.Clock, sink sources.Sink) *Source {
	t.Helper()
	s, err := New(Config{Transport: "udp", Listen: "127.0.0.1:0", Dialogs: mapDialogs{},
		Application: Endpoint{Name: "application", URI: "sip:presenceprovider@example.com", Pool: "127.0.0.1:9"}},
		clock, sink, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.closeListeners()
		_ = s.ua.Close()
	})
	return s
}

// tracked is a dialog for the agent, made the agent's as a subscribe does.
func tracked(t *testing.T, s *Source, uri string) *dialog {
	t.Helper()
	d := &dialog{agent: sources.Agent{URI: uri, Key: schemas.Key(uri)}, ep: s.endpoints[0], asked: s.cfg.Expires,
		callID: sip.GenerateTagN(24), localTag: sip.GenerateTagN(12)}
	if err := sip.ParseUri(uri, &d.agentURI); err != nil {
		t.Fatal(err)
	}
	d.target = d.agentURI
	s.track(d)
	return d
}

// A NOTIFY already answered when the worker lets the dialog go is not
// applied after: the agent is no longer held here.
func TestNotifyUnderWayWhenUnsubscribedIsNotApplied(t *testing.T) {
	sink := &seen{}
	s := unservedSource(t, clockwork.NewRealClock(), sink)
	const uri = "sip:agent1@example.com"
	d := tracked(t, s, uri)
	req := sip.NewRequest(sip.NOTIFY, d.agentURI)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
	req.SetBody([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + uri + `"><tuple id="t"><status><basic>open</basic></status></tuple></presence>`))

	// onNotify found the dialog, then Unsubscribe ran before applyNotify.
	if err := s.Unsubscribe(context.Background(), d.agent); err != nil {
		t.Fatal(err)
	}
	s.applyNotify(d, req, subscriptionState{})
	if len(sink.observed) != 0 || s.reportedOf(d.agent.Key) {
		t.Fatalf("observed %v, reported %v after the unsubscribe; want nothing", sink.observed, s.reportedOf(d.agent.Key))
	}
}

// A refresh can take four CSeqs (a 423 retry, each with a digest retry):
// the dialog is stored before one that could pass the CSeq stored.
func TestRefreshReservesTheCSeqsOfA423(t *testing.T) {
	s := unservedSource(t, clockwork.NewRealClock(), &seen{})
	d := tracked(t, s, "sip:agent2@example.com")
	d.stored = d.cseq + 3
	if !s.reserveNeeded(d) {
		t.Fatalf("CSeq %d, stored %d: no store before a refresh that may send 4 more", d.cseq, d.stored)
	}
	d.stored = d.cseq + 4
	if s.reserveNeeded(d) {
		t.Fatalf("CSeq %d, stored %d: a store before a refresh that fits", d.cseq, d.stored)
	}
}

// A NOTIFY that shortens the subscription brings the refresh forward, and
// never puts off one due sooner (the check after a resume).
func TestShortenedNeverPostponesTheRefresh(t *testing.T) {
	clock := clockwork.NewFakeClock()
	s := unservedSource(t, clock, &seen{})
	d := tracked(t, s, "sip:agent3@example.com")
	s.mu.Lock()
	defer s.mu.Unlock()
	d.expires = clock.Now().Add(600 * time.Second)
	s.scheduleRefresh(d, notifyTimeoutCheck)
	s.shortened(d, 500*time.Second)
	if want := clock.Now().Add(notifyTimeoutCheck); !d.refreshAt.Equal(want) {
		t.Fatalf("refresh at %s; want it kept at %s", d.refreshAt, want)
	}
	s.shortened(d, 10*time.Second)
	if want := clock.Now().Add(8 * time.Second); !d.refreshAt.Equal(want) {
		t.Fatalf("refresh at %s; want it brought forward to %s", d.refreshAt, want)
	}
}
