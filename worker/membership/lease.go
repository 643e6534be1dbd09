package membership

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Store is the presence_workers bucket, as a lease uses it (bus.Workers).
type Store interface {
	// Join records this worker as alive as it starts; it fails when another
	// live process holds the id.
	Join(ctx context.Context, w schemas.WorkerInfo) error
	// Beat records this worker as alive for one more lease; it fails when
	// another process took the id since.
	Beat(ctx context.Context, w schemas.WorkerInfo) error
	// List returns the live workers.
	List(ctx context.Context) ([]schemas.WorkerInfo, error)
	// Alive reports whether a worker's lease runs.
	Alive(ctx context.Context, id string) (bool, error)
}

// Kind is what a Members event tells.
type Kind uint8

const (
	// Read is a read of the live workers; Changed tells whether they moved.
	Read Kind = iota
	// Unfenced is the first read after a fence ended: the holder takes its
	// agents back.
	Unfenced
	// Leaving is this worker's own leave begun: it is out of Live, before
	// it beats as leaving.
	Leaving
	// HandOver follows the leaving beat: the others know, so the holder
	// gives its agents up.
	HandOver
)

// Members is who is alive, as one event tells it.
type Members struct {
	Kind Kind
	// Changed is true when Live is not what the last event said.
	Changed bool
	// Live is the sorted ids of the workers agents are shared among, this
	// one included unless it is leaving.
	Live []string
	// Alive has every worker with an entry, the leaving ones too (they
	// still hold their claims).
	Alive map[string]bool
	// Served is Live, but while leaving the Live from before: by it the
	// leaving worker still answers the inputs of what it owned, until the
	// others have taken over. Generation counts its changes.
	Served     []string
	Generation uint64
}

// Owner is the live worker whose share the agent is; "" when none is live.
func (m Members) Owner(key string) string { return Owner(key, m.Live) }

// ServedBy is the worker that answers the agent's inputs.
func (m Members) ServedBy(key string) string { return Owner(key, m.Served) }

// Handler hears what a lease learns, one event at a time and in order. It
// must not call back into the lease but for Fenced, SinceBeat and Poke.
type Handler interface {
	// Members hears each change of the live workers, and each read.
	Members(m Members)
	// Fenced hears that no beat succeeded for FenceAfter, and why the last
	// one failed (nil when none finished): the holder ends every upstream
	// subscription before its entry can lapse, and says why.
	Fenced(sinceBeat time.Duration, why error)
}

// Config is a lease's identity and length.
type Config struct {
	// ID is the worker's id, the key of its entry.
	ID string
	// Length is the bucket's TTL: how long a worker counts as alive
	// without a beat.
	Length time.Duration
}

// Lease is one worker's membership: Join, then Run beats and follows the
// live workers until its context ends; StartLeaving and HandOver leave.
type Lease struct {
	cfg   Config
	store Store
	clock clockwork.Clock
	log   zerolog.Logger
	h     Handler
	// poke asks Run to read the live workers now; servedChanged is
	// signalled at each change of the served generation. Capacity 1 each.
	poke, servedChanged chan struct{}

	// mu orders the Members events and guards what they tell. The handler
	// runs under it; nothing else that might wait on the handler does.
	mu       sync.Mutex
	started  time.Time
	leaving  bool
	members  Members
	fenceMu  sync.Mutex // a leaf: guards the fence, taken under anything
	lastBeat time.Time
	// beatErr is why the beats since lastBeat failed: what the fence says.
	beatErr error
	fenced  bool
	stopped bool
	fence   clockwork.Timer
}

// New returns the lease of a worker; h hears its events.
func New(cfg Config, store Store, clock clockwork.Clock, log zerolog.Logger, h Handler) *Lease {
	return &Lease{cfg: cfg, store: store, clock: clock, log: log, h: h,
		poke: make(chan struct{}, 1), servedChanged: make(chan struct{}, 1),
		members: Alone(cfg.ID)}
}

// Alone is what a worker knows of the live workers before it read them:
// itself.
func Alone(id string) Members {
	return Members{Live: []string{id}, Alive: map[string]bool{id: true}}
}

// Join writes the worker's entry as it starts, then reads the live workers.
// Joining under an id this worker's earlier process left takes its entry,
// and with it its claims and its share of the agents, at once.
func (l *Lease) Join(ctx context.Context, started time.Time) error {
	l.mu.Lock()
	l.started = started
	l.mu.Unlock()
	if err := l.store.Join(ctx, schemas.WorkerInfo{ID: l.cfg.ID, Started: started.UTC()}); err != nil {
		return err
	}
	l.fenceMu.Lock()
	l.lastBeat = started
	l.fenceMu.Unlock()
	l.Refresh(ctx)
	return nil
}

// Run renews the lease every BeatEvery, on a schedule nothing else moves,
// and follows the live workers, until ctx ends. A timer of its own fences
// the worker when no beat succeeded for FenceAfter, whatever the beats are
// stuck on.
func (l *Lease) Run(ctx context.Context) {
	l.fenceMu.Lock()
	l.armFence()
	l.fenceMu.Unlock()
	every := BeatEvery(l.cfg.Length)
	next := l.clock.Now().Add(every)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.poke:
			l.Refresh(ctx)
			continue
		case <-l.clock.After(next.Sub(l.clock.Now())):
		}
		next = l.clock.Now().Add(every)
		beat, cancel := context.WithTimeout(ctx, every)
		err := l.beat(beat)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Warn().Err(err).Msg("worker heartbeat failed")
			l.fenceMu.Lock()
			l.beatErr = err
			l.fenceMu.Unlock()
			continue
		}
		l.fenceMu.Lock()
		l.lastBeat, l.beatErr = l.clock.Now(), nil
		l.armFence()
		unfence := l.fenced
		l.fenced = false
		l.fenceMu.Unlock()
		if unfence {
			l.log.Info().Msg("NATS reachable again; taking agents back")
		}
		l.refresh(ctx, unfence)
	}
}

func (l *Lease) beat(ctx context.Context) error {
	l.mu.Lock()
	info := schemas.WorkerInfo{ID: l.cfg.ID, Started: l.started.UTC(), Leaving: l.leaving}
	l.mu.Unlock()
	if err := l.store.Beat(ctx, info); err != nil {
		return fmt.Errorf("worker: beat: %w", err)
	}
	return nil
}

// armFence (re)starts the fence timer from the last beat; the caller holds
// l.fenceMu.
func (l *Lease) armFence() {
	if l.fence != nil {
		l.fence.Stop()
	}
	if l.stopped {
		return
	}
	l.fence = l.clock.AfterFunc(FenceAfter(l.cfg.Length)-l.clock.Since(l.lastBeat), l.fenceIfLate)
}

// fenceIfLate tells the handler once FenceAfter passed without a beat.
func (l *Lease) fenceIfLate() {
	l.fenceMu.Lock()
	since := l.clock.Since(l.lastBeat)
	if l.fenced || l.stopped || since < FenceAfter(l.cfg.Length) {
		l.fenceMu.Unlock()
		return
	}
	l.fenced = true
	why := l.beatErr
	l.fenceMu.Unlock()
	l.h.Fenced(since, why)
}

// Fenced reports whether the worker is fenced now: no beat succeeded for
// FenceAfter, and none since.
func (l *Lease) Fenced() bool {
	l.fenceMu.Lock()
	defer l.fenceMu.Unlock()
	return l.fenced
}

// SinceBeat is the time since the last beat that succeeded (or the join).
func (l *Lease) SinceBeat() time.Duration {
	l.fenceMu.Lock()
	defer l.fenceMu.Unlock()
	return l.clock.Since(l.lastBeat)
}

// Poke asks Run to read the live workers now; it never waits.
func (l *Lease) Poke() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

// ServedChanged is signalled whenever the served generation grows.
func (l *Lease) ServedChanged() <-chan struct{} { return l.servedChanged }

// Refresh reads the live workers and tells the handler.
func (l *Lease) Refresh(ctx context.Context) { l.refresh(ctx, false) }

func (l *Lease) refresh(ctx context.Context, unfenced bool) {
	ctx, cancel := context.WithTimeout(ctx, BeatEvery(l.cfg.Length))
	defer cancel()
	workers, err := l.store.List(ctx)
	if err != nil {
		l.mu.Lock()
		leaving := l.leaving
		l.mu.Unlock()
		if ctx.Err() == nil || !leaving {
			l.log.Warn().Err(err).Msg("could not list live workers")
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// A leaving worker still holds its claims (it is alive) but owns no
	// agent: it is out of the list ownership follows.
	var live []string
	if !l.leaving {
		live = append(live, l.cfg.ID)
	}
	alive := map[string]bool{l.cfg.ID: true}
	for _, info := range workers {
		alive[info.ID] = true
		if info.ID != l.cfg.ID && !info.Leaving {
			live = append(live, info.ID)
		}
	}
	slices.Sort(live)
	m := &l.members
	changed := !slices.Equal(live, m.Live)
	m.Live, m.Alive, m.Changed, m.Kind = live, alive, changed, Read
	if unfenced {
		m.Kind = Unfenced
	}
	servedMoved := !l.leaving && changed
	if !l.leaving {
		m.Served = live
		if changed {
			m.Generation++
		}
	}
	l.h.Members(*m)
	if servedMoved {
		select {
		case l.servedChanged <- struct{}{}:
		default:
		}
	}
}

// StartLeaving marks the worker as leaving: its beats say so, and it is out
// of the live workers it reads. It reports whether it was leaving already.
func (l *Lease) StartLeaving() (already bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	already, l.leaving = l.leaving, true
	return already
}

// HandOver takes the worker out of Live (a Leaving event), beats as
// leaving, so that the others take its agents, then tells the handler to
// give them up (a HandOver event), while its lease still holds.
func (l *Lease) HandOver(ctx context.Context) {
	l.mu.Lock()
	l.leaving = true
	l.members.Live = slices.DeleteFunc(slices.Clone(l.members.Live), func(id string) bool { return id == l.cfg.ID })
	l.members.Kind, l.members.Changed = Leaving, true
	l.h.Members(l.members)
	l.mu.Unlock()
	beat, cancel := context.WithTimeout(ctx, BeatEvery(l.cfg.Length))
	if err := l.beat(beat); err != nil {
		l.log.Warn().Err(err).Msg("could not announce leaving")
	}
	cancel()
	l.mu.Lock()
	l.members.Kind = HandOver
	l.h.Members(l.members)
	l.mu.Unlock()
}

// Stop ends the fence timer; no Fenced event comes after it.
func (l *Lease) Stop() {
	l.fenceMu.Lock()
	defer l.fenceMu.Unlock()
	l.stopped = true
	if l.fence != nil {
		l.fence.Stop()
	}
}

// Follow reads the live workers again whenever another one beats for the
// first time, starts leaving or is gone, so that agents move at once rather
// than at the next beat, until changes ends. Renewals of a known state are
// skipped: every worker beats BeatEvery apart.
func (l *Lease) Follow(changes <-chan schemas.Change[schemas.WorkerInfo]) {
	known := map[string]bool{} // id → leaving, for the workers seen alive
	for ch := range changes {
		if ch.Loaded || ch.Key == l.cfg.ID {
			continue
		}
		leaving, seen := known[ch.Key]
		switch {
		case ch.Deleted:
			delete(known, ch.Key)
		case seen && leaving == ch.Value.Leaving:
			continue
		default:
			known[ch.Key] = ch.Value.Leaving
		}
		l.Poke()
	}
}
