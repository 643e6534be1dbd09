package sip_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/sip"
)

// memDialogs is a DialogStore in memory: the bucket's part is tested in bus.
type memDialogs struct {
	mu sync.Mutex
	m  map[string]schemas.Dialog
	// unreachable fails every Put, as NATS does while a worker is fenced.
	unreachable bool
}

func (s *memDialogs) Put(_ context.Context, key string, d schemas.Dialog) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unreachable {
		return errors.New("nats: no response from stream")
	}
	s.m[key] = d
	return nil
}

func (s *memDialogs) Get(_ context.Context, key string) (schemas.Dialog, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[key]
	return d, ok, nil
}

func (s *memDialogs) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// recorder is a sources.Sink that keeps what it is told.
type recorder struct {
	mu   sync.Mutex
	seen []schemas.Presence
	lost []error
}

func (r *recorder) Observe(_ sources.Agent, p schemas.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, p)
}

func (r *recorder) Lost(_ sources.Agent, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, err)
}

func (r *recorder) last() (schemas.Presence, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return schemas.Presence{}, 0
	}
	return r.seen[len(r.seen)-1], len(r.seen)
}

// stack is one worker's SIP stack, on a port of its own.
type stack struct {
	src  *sip.Source
	sink *recorder
	port int
	logs *provtest.Logs
}

func startStack(t *testing.T, k *siptest.Kamailio, store sip.DialogStore) *stack {
	t.Helper()
	return startStackTo(t, k.Addr(), store)
}

// startStackTo is startStack with the application endpoint at pool.
func startStackTo(t *testing.T, pool string, store sip.DialogStore) *stack {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	_ = c.Close()
	st := &stack{sink: &recorder{}, port: port, logs: &provtest.Logs{}}
	st.src, err = sip.New(sip.Config{Transport: "udp", Listen: fmt.Sprintf("127.0.0.1:%d", port), Application: appEndpoint(pool),
		RequestTimeout: 3 * time.Second, Dialogs: store}, clockwork.NewRealClock(), st.sink, zerolog.New(st.logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.src.Run(ctx)
	}()
	provtest.Eventually(t, "the SIP stack serving", func() bool { return strings.Contains(st.logs.String(), "SIP stack listening") })
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("SIP stack on port %d:\n%s", port, st.logs.String())
		}
	})
	return st
}

// dialogsOf lists Kamailio's unexpired provider dialogs for the agent.
func dialogsOf(t *testing.T, k *siptest.Kamailio, agent string) []siptest.Subscription {
	var out []siptest.Subscription
	for _, s := range k.Subscriptions(t) {
		if s.Watcher == appURI && s.Presentity == agent && s.Expires.After(time.Now()) {
			out = append(out, s)
		}
	}
	return out
}

// A dialog made by one stack is continued by another: one in-dialog
// refresh moves the NOTIFYs to it, the server keeps one subscription, and a
// NOTIFY that reaches the first stack in between is answered 200, not 481.
func TestResumeMovesTheDialog(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	store := &memDialogs{m: map[string]schemas.Dialog{}}
	first, second := startStack(t, k, store), startStack(t, k, store)
	const uri = "sip:agent1@example.com"
	agent := sources.Agent{URI: uri, Key: schemas.Key(uri)}
	ctx := context.Background()

	if err := first.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	before := dialogsOf(t, k, uri)
	if len(before) != 1 || !strings.Contains(before[0].Contact, fmt.Sprint(first.port)) {
		t.Fatalf("dialogs %+v; want one, to the first stack", before)
	}
	rec, _, _ := store.Get(ctx, agent.Key)
	if rec.CallID != before[0].CallID || rec.RemoteTag != before[0].ToTag || rec.LocalTag != before[0].FromTag {
		t.Fatalf("stored %+v; want the dialog %+v", rec, before[0])
	}

	if err := first.src.Detach(ctx, agent); err != nil {
		t.Fatal(err)
	}
	etag := k.Publish(t, uri, siptest.PIDF(uri, "open", "on-the-phone", ""), 60)
	provtest.Eventually(t, "the first stack answers the NOTIFY of a dialog stored for the next holder", func() bool {
		return strings.Contains(first.logs.String(), "answered 200 and dropped")
	})
	if _, n := first.sink.last(); n != 0 {
		t.Fatalf("a detached stack reported %d presences", n)
	}

	if err := second.src.Resume(ctx, agent); err != nil {
		t.Fatalf("resume: %v", err)
	}
	after := dialogsOf(t, k, uri)
	if len(after) != 1 || after[0].CallID != before[0].CallID || !strings.Contains(after[0].Contact, fmt.Sprint(second.port)) {
		t.Fatalf("dialogs after the resume %+v; want the same one, to the second stack", after)
	}
	provtest.Eventually(t, "the current state after the resume", func() bool {
		p, _ := second.sink.last()
		return p.Availability == schemas.Busy
	})
	k.ModifyPublish(t, uri, etag, siptest.PIDF(uri, "open", "away", ""), 60)
	provtest.Eventually(t, "the next change at the second stack", func() bool {
		p, _ := second.sink.last()
		return p.Availability == schemas.Away
	})
	if _, n := first.sink.last(); n != 0 {
		t.Fatalf("the first stack reported %d presences after it let the dialog go", n)
	}
	if n := k.InitialSubscribes()[uri]; n != 1 {
		t.Fatalf("%d initial SUBSCRIBEs for %s; want 1, then in-dialog refreshes only", n, uri)
	}
	var cseqs []string
	for _, r := range k.Requests() {
		if r.Method == "SUBSCRIBE" && r.CallID == before[0].CallID {
			cseqs = append(cseqs, r.CSeq)
		}
	}
	rec, _, _ = store.Get(ctx, agent.Key)
	if len(cseqs) != 2 || cseqs[1] != fmt.Sprint(rec.CSeq-16) {
		t.Fatalf("CSeqs sent %v, stored %d; want the resume past the reserve, stored 16 above it", cseqs, rec.CSeq)
	}

	// The holder ends it: un-SUBSCRIBE, and nothing left to resume.
	if err := second.src.Unsubscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "un-SUBSCRIBE at Kamailio", func() bool { return len(dialogsOf(t, k, uri)) == 0 })
	if err := first.src.Resume(ctx, agent); !errors.Is(err, sources.ErrNothingToResume) {
		t.Fatalf("resume after the un-SUBSCRIBE: %v; want nothing to resume", err)
	}
}

// A server restarted since the dialog was stored answers the resume 481:
// the resume fails, holding nothing, and a new subscription follows.
func TestResumeAfterServerRestartFails(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	store := &memDialogs{m: map[string]schemas.Dialog{}}
	first, second := startStack(t, k, store), startStack(t, k, store)
	const uri = "sip:agent2@example.com"
	agent := sources.Agent{URI: uri, Key: schemas.Key(uri)}
	ctx := context.Background()
	if err := first.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if err := first.src.Detach(ctx, agent); err != nil {
		t.Fatal(err)
	}
	k.Restart(t)
	err := second.src.Resume(ctx, agent)
	if err == nil || errors.Is(err, sources.ErrNothingToResume) || !strings.Contains(err.Error(), "481") {
		t.Fatalf("resume after a server restart: %v; want the 481", err)
	}
	if n := second.src.Health().Stats["dialogs"]; n != 0 {
		t.Fatalf("%v dialogs held after a failed resume; want 0", n)
	}
	if err := second.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if n := len(dialogsOf(t, k, uri)); n != 1 {
		t.Fatalf("%d dialogs after subscribing anew; want 1", n)
	}
}

// A dialog whose store failed cannot be resumed by the next holder, which
// would subscribe anew beside it: Detach ends it rather than leaving it to
// expire, so the server never holds two for one agent.
func TestDetachEndsADialogTheStoreMissed(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	store := &memDialogs{m: map[string]schemas.Dialog{}, unreachable: true}
	first, second := startStack(t, k, store), startStack(t, k, store)
	const uri = "sip:agent3@example.com"
	agent := sources.Agent{URI: uri, Key: schemas.Key(uri)}
	ctx := context.Background()
	if err := first.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if n := len(dialogsOf(t, k, uri)); n != 1 {
		t.Fatalf("%d dialogs after subscribing; want 1", n)
	}
	if err := first.src.Detach(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if n := len(dialogsOf(t, k, uri)); n != 0 {
		t.Fatalf("%d dialogs after detaching one never stored; want it ended", n)
	}
	if !strings.Contains(first.logs.String(), "ended rather than left for the next holder") {
		t.Error("no log line says why the dialog was ended")
	}
	if err := second.src.Resume(ctx, agent); !errors.Is(err, sources.ErrNothingToResume) {
		t.Fatalf("resume: %v; want nothing to resume", err)
	}
	if err := second.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if n := len(dialogsOf(t, k, uri)); n != 1 {
		t.Fatalf("%d dialogs after the next holder subscribed anew; want 1", n)
	}
}

// gate forwards UDP datagrams to a server while open and drops them while
// shut: requests that never reach it, as on a cut link. The server answers
// to the Via of each request, the sender itself, not through the gate.
type gate struct {
	conn net.PacketConn
	mu   sync.Mutex
	open bool
}

func startGate(t *testing.T, to string) *gate {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{conn: conn}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			if open {
				_, _ = conn.WriteTo(buf[:n], dst)
			}
		}
	}()
	t.Cleanup(func() { _ = conn.Close() })
	return g
}

func (g *gate) addr() string { return g.conn.LocalAddr().String() }

func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
}

// A resume that times out proves nothing about the dialog it tried to
// continue, which may still be live at the server: the next subscribe
// ends that dialog first, fails while it cannot, and only then subscribes
// anew, so the server never holds two live dialogs for the agent.
func TestResumeThatTimesOutLeavesNoSecondDialog(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	store := &memDialogs{m: map[string]schemas.Dialog{}}
	g := startGate(t, k.Addr())
	first, second := startStack(t, k, store), startStackTo(t, g.addr(), store)
	const uri = "sip:agent4@example.com"
	agent := sources.Agent{URI: uri, Key: schemas.Key(uri)}
	ctx := context.Background()
	if err := first.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if err := first.src.Detach(ctx, agent); err != nil {
		t.Fatal(err)
	}
	old := dialogsOf(t, k, uri)
	if len(old) != 1 {
		t.Fatalf("%d dialogs after subscribing; want 1", len(old))
	}

	// The link to the server is cut: the resume gets no answer.
	err := second.src.Resume(ctx, agent)
	if err == nil || errors.Is(err, sources.ErrNothingToResume) {
		t.Fatalf("resume over a cut link: %v; want it to fail", err)
	}
	// Subscribing anew would put a second dialog beside the live one.
	err = second.src.Subscribe(ctx, agent)
	if err == nil || !strings.Contains(err.Error(), "may still be live at the server") {
		t.Fatalf("subscribe while the stored dialog may live: %v; want it refused", err)
	}
	if n := k.InitialSubscribes()[uri]; n != 1 {
		t.Fatalf("%d initial SUBSCRIBEs for %s while the old dialog could not be ended; want 1", n, uri)
	}

	g.setOpen(true)
	if err := second.src.Subscribe(ctx, agent); err != nil {
		t.Fatal(err)
	}
	now := dialogsOf(t, k, uri)
	if len(now) != 1 || now[0].CallID == old[0].CallID || !strings.Contains(now[0].Contact, fmt.Sprint(second.port)) {
		t.Fatalf("dialogs %+v; want one, new, to the second stack (the old was %s)", now, old[0].CallID)
	}
	// The old dialog ended before the new one began.
	var order []string
	for _, r := range k.Requests() {
		if r.Method == "SUBSCRIBE" && (r.CallID == old[0].CallID && r.ToTag != "" || r.ToTag == "") {
			order = append(order, r.CallID)
		}
	}
	if len(order) < 3 || order[len(order)-1] != now[0].CallID || order[len(order)-2] != old[0].CallID {
		t.Fatalf("SUBSCRIBEs by Call-ID %v; want the old dialog's last request just before the new one", order)
	}
	rec, _, _ := store.Get(ctx, agent.Key)
	if rec.CallID != now[0].CallID {
		t.Fatalf("stored dialog %s; want the new one, %s", rec.CallID, now[0].CallID)
	}
}
