package membership_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/worker/membership"
)

// lastMembers is a Handler that keeps the last event.
type lastMembers struct{ last chan membership.Members }

func (h *lastMembers) Members(m membership.Members) {
	select {
	case <-h.last:
	default:
	}
	h.last <- m
}
func (h *lastMembers) Fenced(time.Duration, error) {}

// Two leases on a real presence_workers bucket see each other join, and
// one leave: the leaver's beat, over the revision it wrote, marks it.
func TestLeasesOnPresenceWorkers(t *testing.T) {
	ns := provtest.Server(t)
	ctx := context.Background()
	lease := func(id string) (*membership.Lease, *lastMembers) {
		conn, err := bus.Connect("", ns, id, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		stores, err := conn.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: time.Minute}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		h := &lastMembers{last: make(chan membership.Members, 1)}
		clock := clockwork.NewRealClock()
		l := membership.New(membership.Config{ID: id, Length: time.Minute}, stores.Workers, clock, zerolog.Nop(), h)
		if err := l.Join(ctx, clock.Now()); err != nil {
			t.Fatal(err)
		}
		return l, h
	}
	l0, h0 := lease("w0")
	l1, _ := lease("w1")
	l0.Refresh(ctx)
	if m := <-h0.last; !slices.Equal(m.Live, []string{"w0", "w1"}) {
		t.Fatalf("w0 reads live %v, want w0 and w1", m.Live)
	}
	l1.StartLeaving()
	l1.HandOver(ctx)
	l0.Refresh(ctx)
	m := <-h0.last
	if !slices.Equal(m.Live, []string{"w0"}) || !m.Alive["w1"] {
		t.Fatalf("after w1's hand-over w0 reads live %v, alive %v; want w0 alone live, w1 still alive", m.Live, m.Alive)
	}
	if m.Owner("any agent") != "w0" {
		t.Fatalf("owner %q, want w0, the only live worker", m.Owner("any agent"))
	}
}
