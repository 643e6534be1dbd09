// Package worker owns the lifecycle of every agent's upstream subscription:
// interest from UCCs, the per-agent claim, the throttle, the back-off, the
// resubscribe after a source ends a subscription, and the presence state.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
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
	Routes           sources.Routes
}

// Stores are the buckets a worker keeps its state in.
type Stores struct {
	State    StateStore
	Interest InterestStore
	Claims   ClaimStore
	Workers  WorkerStore
}

// Worker runs the upstream subscriptions of the agents it claims.
type Worker struct {
	cfg     Config
	stores  Stores
	clock   clockwork.Clock
	log     zerolog.Logger
	retry   backoff
	limiter *rate.Limiter
	started time.Time
	sources map[string]sources.Source

	// ctx lives from Start to Stop; effects started by timers and handlers use it.
	ctx                    context.Context
	stopLoops, stopSources context.CancelFunc
	loops, sourceLoops     sync.WaitGroup
	effects                sync.WaitGroup

	mu       sync.Mutex
	agents   map[string]*agent
	leases   map[leaseKey]clockwork.Timer
	queue    queue
	queued   chan struct{} // wakes the dispatcher; capacity 1
	closing  bool
	claims   map[string]schemas.Claim // every worker's claims, as watched
	presence presenceCache
	// live is the sorted ids of the live workers, this one included: who
	// owns which agent follows from it.
	live []string
	// fenced is set while this worker cannot reach NATS: it holds nothing
	// upstream then, since its lease may run out.
	fenced   bool
	lastBeat time.Time
	fence    clockwork.Timer
	// leaving is set while Stop hands the agents over; servedLive is the
	// live list from before, by which this worker still answers the inputs
	// of what it owned until the others have taken over.
	leaving    bool
	servedLive []string
	// liveChanged asks the heartbeat to read the live workers now (a claim
	// was released by a worker that may be leaving); capacity 1.
	liveChanged chan struct{}
}

// New returns a worker; add its sources, then Start it.
func New(cfg Config, stores Stores, clock clockwork.Clock, log zerolog.Logger) *Worker {
	if cfg.SubscribeTimeout == 0 {
		cfg.SubscribeTimeout = 45 * time.Second
	}
	if cfg.WorkerLease == 0 {
		cfg.WorkerLease = 10 * time.Second
	}
	return &Worker{
		cfg:         cfg,
		stores:      stores,
		clock:       clock,
		log:         log.With().Str("worker", cfg.ID).Logger(),
		retry:       backoff{first: cfg.FirstRetry, max: cfg.MaxRetry},
		limiter:     rate.NewLimiter(rate.Limit(cfg.SubscriptionsPerSecond), 1),
		sources:     map[string]sources.Source{},
		agents:      map[string]*agent{},
		leases:      map[leaseKey]clockwork.Timer{},
		queued:      make(chan struct{}, 1),
		claims:      map[string]schemas.Claim{},
		live:        []string{cfg.ID},
		liveChanged: make(chan struct{}, 1),
		presence:    presenceCache{events: map[string]schemas.Event{}},
		ctx:         context.Background(),
	}
}

// AddSource makes a source available under its contract name; call it before Start.
func (w *Worker) AddSource(name string, s sources.Source) { w.sources[name] = s }

// Start begins the work: it records the worker as alive, watches the
// buckets, and runs the throttle and the sources until Stop.
func (w *Worker) Start(ctx context.Context) error {
	w.started = w.clock.Now()
	if err := w.beat(ctx); err != nil {
		return err
	}
	w.lastBeat = w.started
	w.refreshLive(ctx)
	// Sources outlive the worker's own loops: shutdown still unsubscribes
	// through them.
	sourceCtx, stopSources := context.WithCancel(context.WithoutCancel(ctx))
	loopCtx, stopLoops := context.WithCancel(ctx)
	w.ctx, w.stopLoops, w.stopSources = loopCtx, stopLoops, stopSources
	states, err := w.stores.State.Watch(loopCtx)
	if err == nil {
		var claims <-chan schemas.Change[schemas.Claim]
		var interests <-chan schemas.Change[schemas.Interest]
		if claims, err = w.stores.Claims.Watch(loopCtx); err == nil {
			if interests, err = w.stores.Interest.Watch(loopCtx); err == nil {
				w.run(&w.loops, "state watch", func() { w.watchStates(states) })
				w.run(&w.loops, "claim watch", func() { w.watchClaims(claims) })
				w.run(&w.loops, "interest watch", func() { w.watchInterests(interests) })
			}
		}
	}
	if err != nil {
		stopLoops()
		stopSources()
		return fmt.Errorf("worker: watch buckets: %w", err)
	}
	w.run(&w.loops, "throttle", func() { w.dispatch(loopCtx) })
	w.run(&w.loops, "heartbeat", func() { w.heartbeat(loopCtx) })
	for name, s := range w.sources {
		if r, ok := s.(sources.Runner); ok {
			w.run(&w.sourceLoops, "source "+name, func() {
				if err := r.Run(sourceCtx); err != nil && !errors.Is(err, context.Canceled) {
					w.log.Error().Err(err).Str("source", name).Msg("source stopped")
				}
			})
		}
	}
	w.log.Info().Int("sources", len(w.sources)).Msg("worker running")
	return nil
}

func (w *Worker) run(group *sync.WaitGroup, name string, f func()) {
	group.Add(1)
	go func() {
		defer group.Done()
		defer w.recoverPanic(name)
		f()
	}()
}

// Stop hands the agents over (it beats as leaving, so the others take them)
// and ends every upstream subscription before it gives the claim up, so no
// other worker can hold an agent at the same time; then it stops its
// sources and leaves the live workers last.
func (w *Worker) Stop() {
	w.handOver()
	w.mu.Lock()
	w.closing = true
	if w.fence != nil {
		w.fence.Stop()
	}
	for _, a := range w.agents {
		a.stopTimer()
	}
	for _, lease := range w.leases {
		lease.Stop()
	}
	w.mu.Unlock()
	w.stopLoops()
	w.loops.Wait()
	w.effects.Wait()

	// No effect runs now, and none can start: the agents stand still.
	var held []*agent
	w.mu.Lock()
	for _, a := range w.agents {
		if _, fed := w.fed(a.source); a.claimRev != 0 || (a.phase == phaseActive && !fed) {
			held = append(held, a)
		}
	}
	w.mu.Unlock()
	// Side by side, each with its own time: one slow server must not leave
	// the others' claims behind.
	var ends sync.WaitGroup
	slots := make(chan struct{}, stopParallelism)
	for _, a := range held {
		ends.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; ends.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
			defer cancel()
			w.endUpstream(ctx, a.Agent, a.source, a.claimRev)
		}()
	}
	ends.Wait()
	// Nothing is held upstream any more: only now may the others take
	// what was not released.
	leave, cancelLeave := context.WithTimeout(context.Background(), 5*time.Second)
	if err := w.stores.Workers.Leave(leave, w.cfg.ID); err != nil {
		w.log.Warn().Err(err).Msg("could not leave presence_workers")
	}
	cancelLeave()
	w.stopSources()
	w.sourceLoops.Wait()
	w.log.Info().Int("released", len(held)).Msg("worker stopped")
}

// stopParallelism bounds the upstream subscriptions Stop ends at once: high,
// so that a stop without NATS (claims cannot be released) costs one
// release timeout, not one per batch.
const stopParallelism = 256

// goEffect runs f on its own goroutine unless the worker is closing; the
// caller holds w.mu. Shutdown waits for every effect.
func (w *Worker) goEffect(name string, f func(ctx context.Context)) {
	if w.closing {
		return
	}
	w.effects.Add(1)
	go func() {
		defer w.effects.Done()
		defer w.recoverPanic(name)
		f(w.ctx)
	}()
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

func (w *Worker) beat(ctx context.Context) error {
	w.mu.Lock()
	info := schemas.WorkerInfo{ID: w.cfg.ID, Started: w.started.UTC(), Leaving: w.leaving}
	w.mu.Unlock()
	if err := w.stores.Workers.Beat(ctx, info); err != nil {
		return fmt.Errorf("worker: beat: %w", err)
	}
	return nil
}
