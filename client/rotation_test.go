package client_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// noticeLog keeps the notices a watch gave.
type noticeLog struct {
	mu      sync.Mutex
	notices []client.Notice
}

func (l *noticeLog) add(n client.Notice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notices = append(l.notices, n)
}

// since returns the notices after the first n.
func (l *noticeLog) since(n int) []client.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]client.Notice(nil), l.notices[min(n, len(l.notices)):]...)
}

func (l *noticeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.notices)
}

// The UCC's password is rotated on the server, and back: a server with one
// password, then the same port with another, then the first again. The
// watch says that NATS refuses it, keeps trying, and when the server takes
// its password again it catches up on the change made while it was
// refused, and goes on with live events.
func TestWatchSurvivesAPasswordRotation(t *testing.T) {
	first, second := provtest.RotatingUserConfig(t, "pw-1"), provtest.RotatingUserConfig(t, "pw-2")
	n := provtest.StartNATSWith(t, first)
	agents := regexp.MustCompile(`@attendant\.example$`)
	env := provtest.Join(t, n.URL(), provtest.Config(), clockwork.NewRealClock(), func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{agents}))
	})

	const agent = "sip:rotated@attendant.example"
	key := schemas.Key(agent)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	away := env.AttendantOnceUp(agent, "Away")

	watchConn, err := client.Connect(n.URL(), config.NATSAuth{User: provtest.RotatingUser, Password: "pw-1"}, nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer watchConn.Close()
	rec := &recorder{updates: map[string][]client.Update{}}
	notices := &noticeLog{}
	w, err := client.New(watchConn).Watch(ctx, []string{agent}, rec.update, client.WithNotices(notices.add), client.WithProbe(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if rec.last(key) != away {
		t.Fatalf("the watch began at seq %d; want %d", rec.last(key), away)
	}

	before := notices.count()
	n.RestartWith(second)
	provtest.Eventually(t, "the watch to say NATS refuses its credentials", func() bool {
		for _, nt := range notices.since(before) {
			if nt.Kind == client.Disconnected && errors.Is(nt.Err, nats.ErrAuthorization) {
				return true
			}
		}
		return false
	})
	// Refused over and over: one lasting reason, told once.
	refusedAt := notices.count()
	busy := env.AttendantOnceUp(agent, "Busy")
	for _, nt := range notices.since(refusedAt) {
		if nt.Kind == client.Disconnected && errors.Is(nt.Err, nats.ErrAuthorization) {
			t.Errorf("the refusal was told again: %+v", nt)
		}
	}
	if rec.last(key) != away {
		t.Fatalf("a refused watch delivered seq %d", rec.last(key))
	}

	n.RestartWith(first)
	provtest.Eventually(t, "the watch to catch up on the change it could not hear", func() bool { return rec.last(key) == busy })
	available := env.AttendantOnceUp(agent, "Available")
	provtest.Eventually(t, "the next change, live", func() bool { return rec.last(key) == available })
	select {
	case <-w.Done():
		t.Fatalf("the watch ended: %v", w.Err())
	default:
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, u := range rec.updates[key] {
		got = append(got, fmt.Sprintf("%d %s catchup=%v", u.Seq, u.Presence.Availability, u.CatchUp))
	}
	want := fmt.Sprint([]string{fmt.Sprintf("%d Away catchup=true", away), fmt.Sprintf("%d Busy catchup=true", busy), fmt.Sprintf("%d Available catchup=false", available)})
	if fmt.Sprint(got) != want {
		t.Fatalf("delivered %v; want %v", got, want)
	}
}

// A watch whose connection closes for good ends, and says why: no update
// can come any more, and a UCC that waits on Done learns it.
func TestWatchEndsWhenItsConnectionCloses(t *testing.T) {
	p := startProvider(t)
	nc := p.connect()
	notices := &noticeLog{}
	w, err := client.New(nc).Watch(context.Background(), []string{"sip:closed@attendant.example"}, func(client.Update) {}, client.WithNotices(notices.add))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if w.Err() != nil {
		t.Fatalf("a running watch has error %v", w.Err())
	}
	nc.Close()
	select {
	case <-w.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not end when its connection closed")
	}
	if !errors.Is(w.Err(), nats.ErrConnectionClosed) {
		t.Fatalf("the watch ended with %v; want %v", w.Err(), nats.ErrConnectionClosed)
	}
	provtest.Eventually(t, "the notice of the end", func() bool {
		for _, nt := range notices.since(0) {
			if nt.Kind == client.Disconnected && errors.Is(nt.Err, nats.ErrConnectionClosed) {
				return true
			}
		}
		return false
	})
}
