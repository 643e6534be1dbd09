package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/schemas"
)

// Update is one agent's presence as Watch delivers it.
type Update struct {
	schemas.Event
	// CatchUp is set when the presence was read from the provider (when the
	// watch starts, after a reconnect, or when the provider answers again)
	// rather than received as an event: Previous is then nil, and changes
	// between the last update and this one happened while nobody listened.
	CatchUp bool
}

// NoticeKind says what a Notice reports.
type NoticeKind int

const (
	// Disconnected: the connection to NATS dropped; it reconnects by itself.
	// Err, when set, says what is wrong; while it stays down, another
	// Disconnected comes each time the reason changes (a server that
	// refuses the credentials: Err is nats.ErrAuthorization). With Err
	// nats.ErrConnectionClosed the connection closed for good: the watch
	// ends (see Watcher.Done).
	Disconnected NoticeKind = iota + 1
	// Reconnected: the connection is back; a catch-up follows.
	Reconnected
	// ProviderGone: the provider does not answer (Err says how it failed).
	// Events may be lost until it is back.
	ProviderGone
	// CaughtUp: after a reconnect or the provider's return, the agents'
	// presence was read again; Changed updates came of it.
	CaughtUp
)

func (k NoticeKind) String() string {
	switch k {
	case Disconnected:
		return "disconnected"
	case Reconnected:
		return "reconnected"
	case ProviderGone:
		return "provider gone"
	case CaughtUp:
		return "caught up"
	}
	return fmt.Sprintf("notice %d", int(k))
}

// Notice is something that happened to a watch's connection or provider.
type Notice struct {
	Kind    NoticeKind
	Err     error
	Changed int
}

// WatchOption changes how Watch runs.
type WatchOption func(*Watcher)

// WithNotices has fn told of disconnects, reconnects, a provider that
// stops answering and each catch-up, in order with the updates.
func WithNotices(fn func(Notice)) WatchOption {
	return func(w *Watcher) { w.notices = fn }
}

// DefaultProbe is how often a watch asks whether the provider answers.
const DefaultProbe = 5 * time.Second

// WithProbe sets how often the watch checks that the provider answers (an
// empty get); a provider that answers again after it did not is caught up
// with, since events may have been lost meanwhile. It bounds each request
// of the watch too.
func WithProbe(every time.Duration) WatchOption {
	return func(w *Watcher) { w.probe = every }
}

// eventBuffer is how many events may wait for the filter, which only
// compares seqs and queues: NATS drops what does not fit (a slow consumer).
const eventBuffer = 1 << 16

// Watcher follows agents' presence; see Client.Watch.
type Watcher struct {
	c       *Client
	notices func(Notice)
	probe   time.Duration
	fn      func(Update)
	all     bool

	subs   []*nats.Subscription
	events chan *nats.Msg
	status chan nats.Status
	// catchUps carries get replies to the loop that filters by seq.
	catchUps chan catchUp
	queue    queue
	stop     chan struct{}
	stopOnce sync.Once
	group    sync.WaitGroup
	// ended is closed when the watch ended by itself, after err is set.
	ended chan struct{}
	err   error

	mu   sync.Mutex
	uris map[string]string // key -> normalised URI, what catch-ups read
}

// Watch delivers to fn the current presence of the agents of uris (those
// with one), then every change of theirs, in seq order per agent, each
// once: an event whose seq is not above the last delivered for its agent is
// dropped. After a reconnect, or when the provider answers again after it
// did not, it reads the agents again with Get and delivers each entry whose
// seq is above the last delivered (Update.CatchUp): a change made while
// nobody listened is never lost, though changes it overtook are not seen.
// It needs the rights of the ucc role: get, and presence.* events.
//
// With no uris it follows every agent's events without a first read, and
// catches up on the agents it has seen. fn is called from one goroutine,
// never concurrently; a slow fn delays updates but loses none. Watch
// returns once fn has the current presence, so fn must not wait for Watch
// to return; ctx bounds that first read, and the watch runs until Stop, or
// until its connection closes for good (Done).
func (c *Client) Watch(ctx context.Context, uris []string, fn func(Update), opts ...WatchOption) (*Watcher, error) {
	w := &Watcher{c: c, probe: DefaultProbe, fn: fn, all: len(uris) == 0,
		events: make(chan *nats.Msg, eventBuffer), catchUps: make(chan catchUp),
		stop: make(chan struct{}), ended: make(chan struct{}), uris: map[string]string{}}
	for _, o := range opts {
		o(w)
	}
	subjects := []string{schemas.EventWildcard}
	if !w.all {
		subjects = subjects[:0]
		for _, raw := range uris {
			u, err := ParseURI(raw)
			if err != nil {
				return nil, err
			}
			if _, twice := w.uris[u.Key()]; !twice {
				w.uris[u.Key()] = u.URI
				subjects = append(subjects, schemas.EventSubject(u.Key()))
			}
		}
	}
	w.status = c.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	for _, subject := range subjects {
		s, err := c.nc.ChanSubscribe(subject, w.events)
		if err != nil {
			_ = w.unsubscribe()
			return nil, fmt.Errorf("client: watch %s: %w", subject, err)
		}
		w.subs = append(w.subs, s)
	}
	// Listening before reading: a change after the read arrives as an event.
	flush := c.nc.Flush
	if _, ok := ctx.Deadline(); ok {
		flush = func() error { return c.nc.FlushWithContext(ctx) }
	}
	if err := flush(); err != nil {
		_ = w.unsubscribe()
		return nil, fmt.Errorf("client: watch: %w", err)
	}
	w.queue.init()
	w.run(w.filter)
	w.run(w.deliver)
	if !w.all {
		if _, err := w.catchUp(ctx); err != nil {
			_ = w.Stop()
			return nil, err
		}
		// The current presence is fn's before Watch returns.
		delivered := make(chan struct{})
		w.queue.push(item{done: delivered})
		<-delivered
	}
	w.run(w.keep)
	return w, nil
}

func (w *Watcher) run(f func()) {
	w.group.Add(1)
	go func() {
		defer w.group.Done()
		f()
	}()
}

func (w *Watcher) unsubscribe() error {
	w.c.nc.RemoveStatusListener(w.status)
	var errs []error
	for _, s := range w.subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Done is closed when the watch ends by itself: its connection closed for
// good (by its owner, or by options that limit reconnects), so no update
// can come any more. Err says why. A watch on a connection from Connect
// reconnects for ever and ends only with Stop.
func (w *Watcher) Done() <-chan struct{} { return w.ended }

// Err is why the watch ended by itself once Done is closed, nil before.
func (w *Watcher) Err() error {
	select {
	case <-w.ended:
		return w.err
	default:
		return nil
	}
}

// end records why the watch cannot go on and tells the caller.
func (w *Watcher) end(err error) {
	w.err = err
	close(w.ended)
	w.notice(Notice{Kind: Disconnected, Err: err})
}

// Stop ends the watch and returns once fn is no longer called; a second
// call does nothing.
func (w *Watcher) Stop() error {
	var err error
	w.stopOnce.Do(func() {
		err = w.unsubscribe()
		close(w.stop)
		w.group.Wait()
	})
	return err
}

// catchUp reads the watched agents and hands the entries to the filter;
// it returns how many of them became updates.
func (w *Watcher) catchUp(ctx context.Context) (int, error) {
	w.mu.Lock()
	uris := make([]string, 0, len(w.uris))
	for _, u := range w.uris {
		uris = append(uris, u)
	}
	w.mu.Unlock()
	changed := 0
	for len(uris) > 0 {
		n := min(len(uris), schemas.MaxAgentsPerRequest)
		rep, err := w.c.Get(ctx, schemas.GetRequest{URIs: uris[:n]})
		if err != nil {
			return changed, err
		}
		uris = uris[n:]
		read := catchUp{entries: rep.Agents, taken: make(chan int, 1)}
		select {
		case w.catchUps <- read:
		case <-w.stop:
			return changed, errStopped
		}
		changed += <-read.taken
	}
	return changed, nil
}

var errStopped = errors.New("client: watch stopped")

// catchUp is one get reply on its way to the filter, which answers on taken
// how many entries it delivered.
type catchUp struct {
	entries []schemas.AgentResult
	taken   chan int
}

// filter keeps the last seq delivered per agent: the one place that decides
// what is new, for events and catch-ups alike.
func (w *Watcher) filter() {
	defer w.queue.close()
	last := map[string]uint64{}
	for {
		select {
		case <-w.stop:
			return
		case m := <-w.events:
			var ev schemas.Event
			if json.Unmarshal(m.Data, &ev) != nil || ev.Key == "" || ev.Seq <= last[ev.Key] {
				continue
			}
			last[ev.Key] = ev.Seq
			if w.all {
				w.mu.Lock()
				w.uris[ev.Key] = ev.URI
				w.mu.Unlock()
			}
			w.queue.push(item{update: &Update{Event: ev}})
		case read := <-w.catchUps:
			n := 0
			for _, r := range read.entries {
				if r.Error != nil || r.Presence == nil || r.Seq <= last[r.Key] {
					continue
				}
				last[r.Key] = r.Seq
				ev := schemas.Event{URI: r.URI, Key: r.Key, Seq: r.Seq, Presence: *r.Presence}
				w.queue.push(item{update: &Update{Event: ev, CatchUp: true}})
				n++
			}
			read.taken <- n
		}
	}
}

// deliver calls fn and the notices, in order, from one goroutine.
func (w *Watcher) deliver() {
	for {
		it, ok := w.queue.pop()
		if !ok {
			return
		}
		switch {
		case it.update != nil:
			w.fn(*it.update)
		case it.done != nil:
			close(it.done)
		case w.notices != nil:
			w.notices(*it.notice)
		}
	}
}

func (w *Watcher) notice(n Notice) { w.queue.push(item{notice: &n}) }

// keep follows the connection and probes the provider, and catches up
// whenever events may have been missed: after a reconnect, and when the
// provider answers again after it did not. While the connection is down it
// reports each new reason nats.go gives for it (an authorization error on
// every attempt to reconnect is one lasting reason, told once).
func (w *Watcher) keep() {
	tick := time.NewTicker(w.probe)
	defer tick.Stop()
	owed, gone, down := false, false, false
	var told string // the reason last told while down
	stillDown := func() {
		if err := w.c.nc.LastError(); err != nil && err.Error() != told {
			told = err.Error()
			w.notice(Notice{Kind: Disconnected, Err: err})
		}
	}
	for {
		select {
		case <-w.stop:
			return
		case s, open := <-w.status:
			if !open {
				return // Stop removed the listener
			}
			switch s {
			case nats.DISCONNECTED, nats.RECONNECTING:
				if !down {
					down, told = true, ""
					w.notice(Notice{Kind: Disconnected})
				}
				stillDown()
				continue
			case nats.CLOSED:
				w.closed()
				return
			case nats.CONNECTED:
				if !down {
					continue
				}
				down, owed = false, true
				w.notice(Notice{Kind: Reconnected})
			}
		case <-tick.C:
			if w.c.nc.IsClosed() { // its status can be lost: nats.go drops what a full listener misses
				w.closed()
				return
			}
			if down {
				stillDown()
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.probe)
		var err error
		changed := 0
		if owed {
			changed, err = w.catchUp(ctx)
		} else {
			_, err = w.c.Get(ctx, schemas.GetRequest{})
		}
		cancel()
		switch {
		case errors.Is(err, errStopped):
			return
		case err != nil:
			owed = true
			if !gone && w.c.nc.IsConnected() {
				gone = true
				w.notice(Notice{Kind: ProviderGone, Err: err})
			}
		case owed:
			owed, gone = false, false
			w.notice(Notice{Kind: CaughtUp, Changed: changed})
		}
	}
}

// closed ends the watch whose connection closed for good, with the last
// error the connection had, if any.
func (w *Watcher) closed() {
	err := fmt.Errorf("client: watch: %w", nats.ErrConnectionClosed)
	if last := w.c.nc.LastError(); last != nil {
		err = fmt.Errorf("client: watch: %w: %w", nats.ErrConnectionClosed, last)
	}
	w.end(err)
}

// item is an update or a notice waiting for fn, or a mark closed when
// what came before it is delivered.
type item struct {
	update *Update
	notice *Notice
	done   chan struct{}
}

// queue is unbounded, so that the filter never waits for fn and NATS never
// drops an event for a slow consumer.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []item
	closed bool
}

func (q *queue) init() { q.cond = sync.NewCond(&q.mu) }

func (q *queue) push(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the next item; false once the queue is closed.
func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return item{}, false
	}
	it := q.items[0]
	q.items[0] = item{}
	q.items = q.items[1:]
	return it, true
}
