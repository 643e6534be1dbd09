package membership

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// memStore is presence_workers in memory: the entries, and the beats it
// was given; beatErr fails every beat while set.
type memStore struct {
	mu      sync.Mutex
	entries map[string]schemas.WorkerInfo
	beats   []schemas.WorkerInfo
	beatErr error
	beaten  chan struct{} // one per beat tried
}

func newMemStore(others ...schemas.WorkerInfo) *memStore {
	s := &memStore{entries: map[string]schemas.WorkerInfo{}, beaten: make(chan struct{}, 100)}
	for _, w := range others {
		s.entries[w.ID] = w
	}
	return s
}

func (s *memStore) Join(_ context.Context, w schemas.WorkerInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[w.ID] = w
	return nil
}

func (s *memStore) Beat(_ context.Context, w schemas.WorkerInfo) error {
	s.mu.Lock()
	defer func() { s.mu.Unlock(); s.beaten <- struct{}{} }()
	if s.beatErr != nil {
		return s.beatErr
	}
	s.beats = append(s.beats, w)
	s.entries[w.ID] = w
	return nil
}

func (s *memStore) List(context.Context) ([]schemas.WorkerInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []schemas.WorkerInfo
	for _, w := range s.entries {
		out = append(out, w)
	}
	return out, nil
}

func (s *memStore) Alive(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entries[id]
	return ok, nil
}

func (s *memStore) put(w schemas.WorkerInfo) { s.mu.Lock(); s.entries[w.ID] = w; s.mu.Unlock() }

func (s *memStore) failBeats(err error) { s.mu.Lock(); s.beatErr = err; s.mu.Unlock() }

// recorder is a Handler that keeps what it hears.
type recorder struct {
	members chan Members
	fenced  chan time.Duration
}

func newRecorder() *recorder {
	return &recorder{members: make(chan Members, 100), fenced: make(chan time.Duration, 100)}
}

func (r *recorder) Members(m Members)                       { r.members <- m }
func (r *recorder) Fenced(sinceBeat time.Duration, _ error) { r.fenced <- sinceBeat }

func (r *recorder) next(t *testing.T) Members {
	t.Helper()
	select {
	case m := <-r.members:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no Members event")
		return Members{}
	}
}

func (r *recorder) noMembers(t *testing.T) {
	t.Helper()
	select {
	case m := <-r.members:
		t.Fatalf("an event nothing caused: %+v", m)
	default:
	}
}

func started(t *testing.T, store Store, clock clockwork.Clock, length time.Duration) (*Lease, *recorder) {
	t.Helper()
	rec := newRecorder()
	l := New(Config{ID: "w0", Length: length}, store, clock, zerolog.Nop(), rec)
	if err := l.Join(context.Background(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	return l, rec
}

func TestMembersFollowTheLiveWorkersAndCountServedChanges(t *testing.T) {
	store := newMemStore(schemas.WorkerInfo{ID: "w2"}, schemas.WorkerInfo{ID: "w1"})
	l, rec := started(t, store, clockwork.NewFakeClock(), time.Hour)
	m := rec.next(t)
	if m.Kind != Read || !m.Changed || !slices.Equal(m.Live, []string{"w0", "w1", "w2"}) || m.Generation != 1 {
		t.Fatalf("after the join: %+v, want a change to the three, sorted, generation 1", m)
	}
	<-l.ServedChanged()

	l.Refresh(context.Background())
	if m := rec.next(t); m.Changed || m.Generation != 1 {
		t.Fatalf("a read of the same workers: %+v, want no change", m)
	}
	select {
	case <-l.ServedChanged():
		t.Fatal("served changed, though the live workers did not")
	default:
	}

	store.put(schemas.WorkerInfo{ID: "w3"})
	store.put(schemas.WorkerInfo{ID: "w1", Leaving: true})
	l.Refresh(context.Background())
	m = rec.next(t)
	if !m.Changed || !slices.Equal(m.Live, []string{"w0", "w2", "w3"}) || !m.Alive["w1"] || m.Generation != 2 {
		t.Fatalf("w3 joined and w1 leaving: %+v, want live w0 w2 w3, w1 still alive, generation 2", m)
	}
	<-l.ServedChanged()
	if m.Owner("agent") != Owner("agent", m.Live) {
		t.Fatal("Members.Owner is not the owner among its live workers")
	}
}

func TestHandOverLeavesTheLiveWorkersButServesAsBefore(t *testing.T) {
	store := newMemStore(schemas.WorkerInfo{ID: "w1"})
	l, rec := started(t, store, clockwork.NewFakeClock(), time.Hour)
	before := rec.next(t)

	if l.StartLeaving() {
		t.Fatal("StartLeaving: leaving already, before any leave")
	}
	l.HandOver(context.Background())
	leaving, handOver := rec.next(t), rec.next(t)
	if leaving.Kind != Leaving || !slices.Equal(leaving.Live, []string{"w1"}) {
		t.Fatalf("first event of a hand-over: %+v, want Leaving with w0 out of the live workers", leaving)
	}
	if handOver.Kind != HandOver || !slices.Equal(handOver.Live, []string{"w1"}) {
		t.Fatalf("second event of a hand-over: %+v, want HandOver", handOver)
	}
	if !slices.Equal(handOver.Served, before.Served) || handOver.Generation != before.Generation {
		t.Fatalf("a hand-over moved what is served: %v gen %d, was %v gen %d", handOver.Served, handOver.Generation, before.Served, before.Generation)
	}
	if len(store.beats) != 1 || !store.beats[0].Leaving {
		t.Fatalf("beats during the hand-over: %+v, want one, as leaving, between the two events", store.beats)
	}

	store.put(schemas.WorkerInfo{ID: "w2"})
	l.Refresh(context.Background())
	m := rec.next(t)
	if !slices.Equal(m.Live, []string{"w1", "w2"}) || !slices.Equal(m.Served, before.Served) || m.Generation != before.Generation {
		t.Fatalf("a read while leaving: %+v, want w0 out of live and served as before the leave", m)
	}
	if !l.StartLeaving() {
		t.Fatal("StartLeaving a second time: not leaving already")
	}
}

// A lease whose beats fail fences at FenceAfter, not before, once; the
// first beat that succeeds after it unfences.
func TestFencedWhenNoBeatSucceedsForFenceAfter(t *testing.T) {
	const length = 3 * time.Second // beats a second apart, fence after two
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := clockwork.NewFakeClock()
	store := newMemStore()
	l, rec := started(t, store, clock, length)
	rec.next(t)
	store.failBeats(errors.New("nats: no responders"))
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The heartbeat's wait and the fence timer.
	waitTimers := func() {
		t.Helper()
		if err := clock.BlockUntilContext(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	waitTimers()
	clock.Advance(BeatEvery(length))
	<-store.beaten
	waitTimers()
	if l.Fenced() {
		t.Fatal("fenced after one failed beat, a third of the lease")
	}
	clock.Advance(FenceAfter(length) - BeatEvery(length))
	select {
	case since := <-rec.fenced:
		if since < FenceAfter(length) {
			t.Fatalf("fenced %s after the last beat, before FenceAfter (%s)", since, FenceAfter(length))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not fenced at FenceAfter without a beat")
	}
	if !l.Fenced() {
		t.Fatal("Fenced() false after the Fenced event")
	}
	<-store.beaten
	rec.noMembers(t)

	store.failBeats(nil)
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the heartbeat only: the fence fired
		t.Fatal(err)
	}
	clock.Advance(BeatEvery(length))
	if m := rec.next(t); m.Kind != Unfenced {
		t.Fatalf("after the first beat that succeeded: %+v, want Unfenced", m)
	}
	if l.Fenced() {
		t.Fatal("still fenced after a beat succeeded")
	}
	if len(rec.fenced) != 0 {
		t.Fatal("fenced twice")
	}
}

func TestNoFenceAfterStop(t *testing.T) {
	const length = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := clockwork.NewFakeClock()
	store := newMemStore()
	l, _ := started(t, store, clock, length)
	store.failBeats(errors.New("nats: no responders"))
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := clock.BlockUntilContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	l.Stop()
	clock.Advance(length)
	<-store.beaten
	if l.Fenced() {
		t.Fatal("fenced after Stop")
	}
}

// Follow asks for a read at a worker's first beat, its leave and its end,
// and skips the renewals, its own entry and the entries loaded at the start.
func TestFollowReadsAtChangesOnly(t *testing.T) {
	type change = schemas.Change[schemas.WorkerInfo]
	w1 := change{Key: "w1", Value: schemas.WorkerInfo{ID: "w1"}}
	leaving := change{Key: "w1", Value: schemas.WorkerInfo{ID: "w1", Leaving: true}}
	gone := change{Key: "w1", Deleted: true}
	for _, tc := range []struct {
		name string
		// before are changes that each ask for a read; last is the one
		// looked at.
		before []change
		last   change
		read   bool
	}{
		{"loaded at the start", nil, change{Key: "w1", Value: w1.Value, Loaded: true}, false},
		{"its own entry", nil, change{Key: "w0", Value: schemas.WorkerInfo{ID: "w0"}}, false},
		{"a first beat", nil, w1, true},
		{"a renewal", []change{w1}, w1, false},
		{"a leave", []change{w1}, leaving, true},
		{"a renewal while leaving", []change{w1, leaving}, leaving, false},
		{"an end", []change{w1}, gone, true},
		{"a first beat after an end", []change{w1, gone}, w1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Config{ID: "w0", Length: time.Hour}, newMemStore(), clockwork.NewFakeClock(), zerolog.Nop(), newRecorder())
			ch, done := make(chan change), make(chan struct{})
			go func() { defer close(done); l.Follow(ch) }()
			for _, c := range tc.before {
				ch <- c
				<-l.poke
			}
			ch <- tc.last
			close(ch)
			<-done
			if got := len(l.poke) == 1; got != tc.read {
				t.Fatalf("read asked: %v, want %v", got, tc.read)
			}
		})
	}
}
