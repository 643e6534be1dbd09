package membership_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
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
	l0, h0, _ := leaseOn(t, ns, "w0")
	l1, _, _ := leaseOn(t, ns, "w1")
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

// Claims on a real presence_claims bucket: a live holder's claim is
// refused, a release by a revision a later write moved still gives it up,
// and a gone holder's claim is taken over.
func TestClaimsOnPresenceClaims(t *testing.T) {
	ns := provtest.Server(t)
	ctx := context.Background()
	_, _, c0 := leaseOn(t, ns, "w0")
	_, _, c1 := leaseOn(t, ns, "w1")
	key := schemas.Key("sip:agent@example.com")
	rev, from, err := c0.Take(ctx, key, schemas.Claim{Source: schemas.SourceSIP, State: schemas.StatePending})
	if err != nil || rev == 0 || from != "" {
		t.Fatalf("w0 takes a free claim: %d, %q, %v", rev, from, err)
	}
	if rev, _, err := c1.Take(ctx, key, schemas.Claim{Source: schemas.SourceSIP}); err != nil || rev != 0 {
		t.Fatalf("w1 takes w0's claim while w0 lives: %d, %v; want refused", rev, err)
	}
	// w0's process ends and a new one takes the claim back: the revision
	// w0 knew is stale, but the claim is still w0's.
	if again, from, err := c0.Take(ctx, key, schemas.Claim{Source: schemas.SourceSIP, State: schemas.StateActive}); err != nil || again == 0 || from != "w0" {
		t.Fatalf("w0 takes its own claim back: %d, %q, %v", again, from, err)
	}
	if err := c0.Release(ctx, key, rev, func() bool { return true }); err != nil {
		t.Fatalf("release at a stale revision: %v", err)
	}
	if rev, from, err := c1.Take(ctx, key, schemas.Claim{Source: schemas.SourceSIP}); err != nil || rev == 0 || from != "" {
		t.Fatalf("w1 takes the released claim: %d, %q, %v; want it created afresh", rev, from, err)
	}
}

// leaseOn joins a worker's lease on the server's presence_workers, each on
// a connection of its own, as a process would.
func leaseOn(t *testing.T, ns *server.Server, id string) (*membership.Lease, *lastMembers, *membership.Claims) {
	t.Helper()
	ctx := context.Background()
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
	return l, h, membership.NewClaims(l, stores.Claims)
}
