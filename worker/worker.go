// Package worker owns the lifecycle of every agent's upstream subscription:
// interest from UCCs, the per-agent claim, the throttle, the back-off, the
// resubscribe after a source ends a subscription, and the presence state.
// The lifecycle itself is a state machine (machine.go); the Worker keeps the
// stores, the lock and the goroutines, and carries the machine's effects out.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/worker/membership"
)

// Config is how a worker behaves.
type Config struct {
	ID string
	// SubscriptionsPerSecond is the throttle on new upstream subscriptions.
	SubscriptionsPerSecond int
	// FirstRetry and MaxRetry bound the exponential back-off.
	FirstRetry, MaxRetry time.Duration
	// MaxFailures gives an agent up after this many consecutive failures; 0 never does.
	MaxFailures int
	// Linger keeps an upstream subscription after its last UCC left, so a
	// UCC that restarts does not cost a new SUBSCRIBE.
	Linger time.Duration
	// WorkerLease is how long this worker counts as alive without a beat.
	WorkerLease time.Duration
	// SubscribeTimeout bounds one upstream subscribe attempt.
	SubscribeTimeout time.Duration
	// Resume continues the upstream subscriptions of resumable sources
	// (sources.Resumer) from holder to holder: a worker that takes an
	// agent resumes it, and one that lets it go (a handover, a stop)
	// keeps it upstream. False ends them on every stop, as before.
	Resume bool
	// ResumesPerSecond paces resumes; 0 means DefaultResumesPerSecond.
	ResumesPerSecond int
	// Observer is told of requests, inputs, events and upstream
	// subscriptions, for metrics; nil observes nothing.
	Observer Observer
}

// DefaultResumesPerSecond paces resumes when Config leaves it zero.
const DefaultResumesPerSecond = 200

// Stores are the buckets a worker keeps its state in.
type Stores struct {
	State    StateStore
	Interest InterestStore
	Claims   ClaimStore
	Workers  WorkerStore
	// History and Peers serve explain; nil leaves the changes, and the
	// upstream subscriptions other workers hold, out of it.
	History HistoryStore
	Peers   Peers
}

// Worker runs the upstream subscriptions of the agents it claims.
type Worker struct {
	cfg     Config
	stores  Stores
	clock   clockwork.Clock
	log     zerolog.Logger
	machine machine
	limiter *rate.Limiter
	// resumeLimiter paces resumes, apart from the throttle: they make no
	// new subscription upstream.
	resumeLimiter *rate.Limiter
	started       time.Time
	sources       map[string]sources.Source
	obs           Observer

	// ctx lives from Start to Stop; effects started by timers and handlers
	// use it. attempts ends when Stop begins, so that no subscribe attempt
	// holds a stop up.
	ctx                    context.Context
	attempts               context.Context
	cancelAttempts         context.CancelFunc
	stopLoops, stopSources context.CancelFunc
	loops, sourceLoops     sync.WaitGroup
	// loopsStarted and loopsUp count the loops Start began and those still
	// running: a loop that ended on its own makes the worker unhealthy.
	loopsStarted int
	loopsUp      atomic.Int32

	mu sync.Mutex
	// inflight counts the running effects; quiet is closed whenever it is 0.
	// A counter under mu, not a WaitGroup: effects start while Stop waits.
	inflight int
	quiet    chan struct{}
	// endBase bounds ending upstream subscriptions: no bound but their own
	// timeout while running, the shutdown deadline once Stop began.
	endBase context.Context
	agents  map[string]*agent
	leases  map[leaseKey]clockwork.Timer
	queue   queue
	queued  chan struct{} // wakes the dispatcher; capacity 1
	closing bool
	claims  map[string]schemas.Claim // every worker's claims, as watched
	// unstored holds, per agent, the newest observation NATS did not store yet.
	unstored map[string]*observation
	// storing serializes the presence writes of each agent (striped). A
	// stripe is held for a KV round trip: with the input queue's 64 lanes
	// on 64 stripes a third of the lanes waited on another agent's write;
	// on 1,024 about one does.
	storing  [1024]sync.Mutex
	presence presenceCache
	// lease is this worker's membership, claimer its claims; members is
	// what the lease's last event told: who is live, and so who owns which
	// agent.
	lease   *membership.Lease
	claimer *membership.Claims
	members membership.Members
	// leaving is set while Stop hands the agents over.
	leaving bool
	// rows names the agents whose AgentRow changed, for status pages.
	rows rowChanges
}

// New returns a worker; add its sources, then Start it.
func New(cfg Config, stores Stores, clock clockwork.Clock, log zerolog.Logger) *Worker {
	if cfg.SubscribeTimeout == 0 {
		cfg.SubscribeTimeout = 45 * time.Second
	}
	if cfg.WorkerLease == 0 {
		cfg.WorkerLease = 10 * time.Second
	}
	if cfg.ResumesPerSecond == 0 {
		cfg.ResumesPerSecond = DefaultResumesPerSecond
	}
	quiet := make(chan struct{})
	close(quiet)
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	w := &Worker{
		obs:    obs,
		cfg:    cfg,
		stores: stores,
		clock:  clock,
		log:    log.With().Str("worker", cfg.ID).Logger(),
		machine: machine{retry: backoff{first: cfg.FirstRetry, max: cfg.MaxRetry},
			maxFailures: cfg.MaxFailures, linger: cfg.Linger, fed: map[string]bool{}, resumable: map[string]bool{}},
		limiter:       rate.NewLimiter(rate.Limit(cfg.SubscriptionsPerSecond), 1),
		resumeLimiter: rate.NewLimiter(rate.Limit(cfg.ResumesPerSecond), 1),
		sources:       map[string]sources.Source{},
		quiet:         quiet,
		endBase:       context.Background(),
		agents:        map[string]*agent{},
		leases:        map[leaseKey]clockwork.Timer{},
		queued:        make(chan struct{}, 1),
		claims:        map[string]schemas.Claim{},
		unstored:      map[string]*observation{},
		members:       membership.Alone(cfg.ID),
		presence:      presenceCache{events: map[string]schemas.Event{}, published: map[string]uint64{}},
		ctx:           context.Background(),
		attempts:      context.Background(),
	}
	w.lease = membership.New(membership.Config{ID: cfg.ID, Length: cfg.WorkerLease}, stores.Workers, clock, w.log, (*leaseEvents)(w))
	w.claimer = membership.NewClaims(w.lease, stores.Claims)
	return w
}

// AddSource enables a source of the registry (sources.Registry) under its
// name; call it before Start.
func (w *Worker) AddSource(name string, s sources.Source) {
	w.sources[name] = s
	if spec, _ := sources.Lookup(name); spec.Fed() {
		w.machine.fed[name] = true
	}
	if _, ok := s.(sources.Resumer); ok && w.cfg.Resume {
		w.machine.resumable[name] = true
	}
}

// Start begins the work: it records the worker as alive, watches the
// buckets, and runs the throttle and the sources until Stop.
func (w *Worker) Start(ctx context.Context) error {
	w.started = w.clock.Now()
	if err := w.lease.Join(ctx, w.started); err != nil {
		return err
	}
	// Sources outlive the worker's own loops: shutdown still unsubscribes
	// through them.
	sourceCtx, stopSources := context.WithCancel(context.WithoutCancel(ctx))
	loopCtx, stopLoops := context.WithCancel(ctx)
	w.ctx, w.stopLoops, w.stopSources = loopCtx, stopLoops, stopSources
	w.attempts, w.cancelAttempts = context.WithCancel(loopCtx)
	// Sources run before any agent is read: a resume or a subscribe may go
	// out as soon as the interests are, and needs its source's transport.
	for name, s := range w.sources {
		if r, ok := s.(sources.Runner); ok {
			w.run(&w.sourceLoops, "source "+name, func() {
				if err := r.Run(sourceCtx); err != nil && !errors.Is(err, context.Canceled) {
					w.log.Error().Err(err).Str("source", name).Msg("source stopped")
				}
			})
		}
	}
	if err := w.watch(loopCtx); err != nil {
		stopLoops()
		stopSources()
		return fmt.Errorf("worker: watch buckets: %w", err)
	}
	w.run(&w.loops, "throttle", func() { w.dispatch(loopCtx) })
	w.run(&w.loops, "heartbeat", func() { w.lease.Run(loopCtx) })
	w.log.Info().Int("sources", len(w.sources)).Msg("worker running")
	return nil
}

// watch follows the four buckets until ctx ends.
func (w *Worker) watch(ctx context.Context) error {
	states, err := w.stores.State.Watch(ctx, w.presence.holds)
	if err != nil {
		return err
	}
	claims, err := w.stores.Claims.Watch(ctx)
	if err != nil {
		return err
	}
	interests, err := w.stores.Interest.Watch(ctx)
	if err != nil {
		return err
	}
	workers, err := w.stores.Workers.Watch(ctx)
	if err != nil {
		return err
	}
	loads := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	w.run(&w.loops, "state watch", func() { applyChanges(states, w.stateChanged, loads[0]) })
	w.run(&w.loops, "claim watch", func() { applyChanges(claims, w.claimChanged, loads[1]) })
	w.run(&w.loops, "interest watch", func() { applyChanges(interests, w.interestChanged, loads[2]) })
	w.run(&w.loops, "worker watch", func() { w.lease.Follow(workers) })
	// Replies and ownership answer from what the buckets hold: a worker
	// that answered before reading it would tell of agents it does not
	// know yet (a get right after a restart would miss the last change).
	for _, loaded := range loads {
		select {
		case <-loaded:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// applyChanges applies a watch's changes until it ends, and closes loaded
// once those of the entries the bucket held at the start are applied (or
// the watch ended before).
func applyChanges[T any](changes <-chan schemas.Change[T], apply func(schemas.Change[T]), loaded chan<- struct{}) {
	defer func() {
		if loaded != nil {
			close(loaded)
		}
	}()
	for ch := range changes {
		if ch.Loaded {
			if loaded != nil {
				close(loaded)
				loaded = nil
			}
			continue
		}
		apply(ch)
	}
}

func (w *Worker) run(group *sync.WaitGroup, name string, f func()) {
	group.Add(1)
	if group == &w.loops {
		w.loopsStarted++
		w.loopsUp.Add(1)
	}
	go func() {
		defer group.Done()
		if group == &w.loops {
			defer w.loopsUp.Add(-1)
		}
		defer w.recoverPanic(name)
		f()
	}()
}

// Stop hands the agents over (it beats as leaving, so the others take them)
// and ends every upstream subscription before it gives the claim up, so no
// other worker can hold an agent at the same time (with Config.Resume, a
// resumable source's subscription is detached instead: it stays upstream
// for the next holder, alive or yet to start, to resume); then it stops its
// sources and leaves the live workers last. Attempts in flight are cancelled
// at once, and everything waits at most until ctx ends: what is not released
// by then is taken over when this worker's lease runs out. A second Stop
// returns at once.
func (w *Worker) Stop(ctx context.Context) {
	again := w.lease.StartLeaving()
	w.mu.Lock()
	w.leaving = true
	w.mu.Unlock()
	if again {
		return
	}
	w.cancelAttempts()
	w.handOver(ctx)
	w.lease.Stop()
	w.mu.Lock()
	w.closing = true
	for _, a := range w.agents {
		a.stopTimer()
	}
	for _, lease := range w.leases {
		lease.Stop()
	}
	w.mu.Unlock()
	w.stopLoops()
	w.wait(ctx, "loops", &w.loops)
	w.waitQuiet(ctx)

	// No effect runs now, and none can start: end what is still held.
	type end struct {
		agent    sources.Agent
		source   string
		claimRev uint64
		keep     bool
	}
	var ends []end
	w.mu.Lock()
	for _, a := range w.agents {
		for _, eff := range w.step(a, event{kind: evStop}) {
			if eff.kind == effEnd {
				ends = append(ends, end{a.Agent, eff.source, eff.claimRev, eff.keep})
			}
		}
	}
	w.mu.Unlock()
	// Side by side, each with its own time: one slow server must not leave
	// the others' claims behind.
	var ending sync.WaitGroup
	slots := make(chan struct{}, stopParallelism)
	for _, e := range ends {
		ending.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; ending.Done() }()
			ctx, cancel := context.WithTimeout(ctx, endTimeout)
			defer cancel()
			w.endUpstream(ctx, e.agent, e.source, e.claimRev, e.keep, always)
		}()
	}
	ending.Wait()
	// Nothing is held upstream any more: only now may the others take
	// what was not released.
	leave, cancelLeave := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	if err := w.stores.Workers.Leave(leave, w.cfg.ID); err != nil {
		w.log.Warn().Err(err).Msg("could not leave presence_workers; the others take over when the lease runs out")
	}
	cancelLeave()
	w.stopSources()
	w.wait(ctx, "sources", &w.sourceLoops)
	w.log.Info().Int("released", len(ends)).Msg("worker stopped")
}

const (
	// stopParallelism bounds the upstream subscriptions Stop ends at once:
	// high, so that a stop without NATS (claims cannot be released) costs
	// one release timeout, not one per batch.
	stopParallelism = 256
	// leaveTimeout bounds deleting this worker's entry: it runs even past
	// the shutdown deadline, since it lets the others take over at once.
	leaveTimeout = time.Second
)

// wait waits for a group of goroutines, or for ctx.
func (w *Worker) wait(ctx context.Context, what string, group *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		group.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		w.log.Warn().Str("waiting_for", what).Msg("shutdown deadline reached")
	}
}

// goEffect runs f on its own goroutine unless the worker is closing; the
// caller holds w.mu.
func (w *Worker) goEffect(name string, f func(ctx context.Context)) {
	if w.closing {
		return
	}
	if w.inflight == 0 {
		w.quiet = make(chan struct{})
	}
	w.inflight++
	go func() {
		defer func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.inflight--; w.inflight == 0 {
				close(w.quiet)
			}
		}()
		defer w.recoverPanic(name)
		f(w.ctx)
	}()
}

// waitQuiet waits until no effect runs, or ctx ends; it reports which.
func (w *Worker) waitQuiet(ctx context.Context) bool {
	w.mu.Lock()
	quiet := w.quiet
	w.mu.Unlock()
	select {
	case <-quiet:
		return true
	case <-ctx.Done():
		w.log.Warn().Msg("shutdown deadline reached with upstream work still running")
		return false
	}
}

// after runs f on the clock after d, unless the worker is closing (then it
// returns nil). The caller holds w.mu.
func (w *Worker) after(d time.Duration, f func()) clockwork.Timer {
	if w.closing {
		return nil
	}
	return w.clock.AfterFunc(d, f)
}

// recoverPanic keeps a bug in one source or handler from killing the worker.
func (w *Worker) recoverPanic(where string) {
	if r := recover(); r != nil {
		w.log.Error().Str("in", where).Interface("panic", r).Stack().Msg("recovered from panic")
	}
}
