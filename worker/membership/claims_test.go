package membership

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
)

// memClaims is presence_claims in memory, with the bucket's revisions.
type memClaims struct {
	mu      sync.Mutex
	rev     uint64
	entries map[string]memClaim
}

type memClaim struct {
	c   schemas.Claim
	rev uint64
}

var errWrongRevision = errors.New("wrong last sequence")

func newMemClaims() *memClaims { return &memClaims{entries: map[string]memClaim{}} }

func (s *memClaims) Create(_ context.Context, key string, c schemas.Claim) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[key]; ok {
		return 0, false, nil
	}
	s.rev++
	s.entries[key] = memClaim{c, s.rev}
	return s.rev, true, nil
}

func (s *memClaims) Update(_ context.Context, key string, c schemas.Claim, revision uint64) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; !ok || e.rev != revision {
		return 0, false, nil
	}
	s.rev++
	s.entries[key] = memClaim{c, s.rev}
	return s.rev, true, nil
}

func (s *memClaims) Get(_ context.Context, key string) (schemas.Claim, uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	return e.c, e.rev, ok, nil
}

func (s *memClaims) Delete(_ context.Context, key string, revision uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.rev != revision {
		return errWrongRevision
	}
	delete(s.entries, key)
	return nil
}

func (s *memClaims) put(key string, c schemas.Claim) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.entries[key] = memClaim{c, s.rev}
	return s.rev
}

func (s *memClaims) holder(key string) string {
	c, _, _, _ := s.Get(context.Background(), key)
	return c.Worker
}

func claimsOf(t *testing.T, workers *memStore) (*Claims, *memClaims, *recorder) {
	t.Helper()
	l, rec := started(t, workers, clockwork.NewFakeClock(), time.Hour)
	rec.next(t)
	store := newMemClaims()
	return NewClaims(l, store), store, rec
}

func TestTakeAFreeClaim(t *testing.T) {
	claims, store, _ := claimsOf(t, newMemStore())
	rev, from, err := claims.Take(context.Background(), "a", schemas.Claim{Source: "sip"})
	if err != nil || rev == 0 || from != "" {
		t.Fatalf("Take of a free claim = %d, %q, %v; want it created", rev, from, err)
	}
	if got := store.holder("a"); got != "w0" {
		t.Fatalf("claim written as %q's, want the lease's worker w0", got)
	}
}

func TestTakeRefusesALiveHoldersClaim(t *testing.T) {
	claims, store, _ := claimsOf(t, newMemStore(schemas.WorkerInfo{ID: "w1"}))
	store.put("a", schemas.Claim{Worker: "w1"})
	rev, _, err := claims.Take(context.Background(), "a", schemas.Claim{})
	if err != nil || rev != 0 {
		t.Fatalf("Take of a live worker's claim = %d, %v; want refused", rev, err)
	}
	if got := store.holder("a"); got != "w1" {
		t.Fatalf("claim now %q's, want still w1's", got)
	}
}

// A dead worker's claim is taken over, after a read of the live workers:
// else the new holder would hand the agent to the dead one at once.
func TestTakeOverADeadHoldersClaimReadsTheLiveWorkersFirst(t *testing.T) {
	claims, store, rec := claimsOf(t, newMemStore())
	store.put("a", schemas.Claim{Worker: "w9"})
	rev, from, err := claims.Take(context.Background(), "a", schemas.Claim{})
	if err != nil || rev == 0 || from != "w9" {
		t.Fatalf("Take of a dead worker's claim = %d, %q, %v; want taken over from w9", rev, from, err)
	}
	if got := store.holder("a"); got != "w0" {
		t.Fatalf("claim now %q's, want w0's", got)
	}
	if m := rec.next(t); m.Kind != Read {
		t.Fatalf("event of the take-over: %+v, want a read of the live workers", m)
	}
}

func TestTakeBackThisWorkersEarlierClaim(t *testing.T) {
	claims, store, rec := claimsOf(t, newMemStore())
	store.put("a", schemas.Claim{Worker: "w0", State: schemas.StateActive})
	rev, from, err := claims.Take(context.Background(), "a", schemas.Claim{State: schemas.StatePending})
	if err != nil || rev == 0 || from != "w0" {
		t.Fatalf("Take of this worker's earlier claim = %d, %q, %v; want taken back", rev, from, err)
	}
	rec.noMembers(t)
}

func TestReleaseByRevision(t *testing.T) {
	always := func() bool { return true }
	for _, tc := range []struct {
		name      string
		holder    string
		stale     bool // the revision given is not the claim's
		unchanged bool
		gone      bool
	}{
		{"at its revision", "w0", false, true, true},
		{"moved by a write of this worker's", "w0", true, true, true},
		{"moved, and the agent moved on", "w0", true, false, false},
		{"taken by another worker", "w1", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, store, _ := claimsOf(t, newMemStore())
			rev := store.put("a", schemas.Claim{Worker: "w0"})
			if tc.stale {
				store.put("a", schemas.Claim{Worker: tc.holder})
			}
			unchanged := always
			if !tc.unchanged {
				unchanged = func() bool { return false }
			}
			if err := claims.Release(context.Background(), "a", rev, unchanged); err != nil {
				t.Fatal(err)
			}
			if _, _, found, _ := store.Get(context.Background(), "a"); found == tc.gone {
				t.Fatalf("claim found after the release: %v, want %v", found, !tc.gone)
			}
		})
	}
}
