package worker

import (
	"sync"

	"github.com/contactcenter/presence-provider/schemas"
)

// AgentRow is one agent some UCC wants, as a status page lists it.
type AgentRow struct {
	Key, URI string
	// Source serves the agent (schemas.SourceNone for none); State is its
	// subscription's state, as replies tell it.
	Source string
	State  schemas.State
	// UCCs counts the UCCs that want the agent.
	UCCs int
	// Holder is the worker whose claim names the agent; empty for none.
	Holder string
	// Presence is the agent's current presence at revision Seq; nil before
	// the first.
	Presence *schemas.Presence
	Seq      uint64
	// Gone is set, with Key alone, for an agent no UCC wants any more.
	Gone bool
}

// AgentRows returns the rows of the agents of keys (Gone for those no UCC
// wants), or of every agent some UCC wants when keys is nil. mark is the
// point in the changes they include: AgentChanges(mark) names what changed
// after. The pass holds the worker's lock, like Counts.
func (w *Worker) AgentRows(keys []string) (rows []AgentRow, mark uint64) {
	// The mark is read first: a change made while the rows are read is
	// then named again, never lost.
	mark = w.rows.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if keys == nil {
		rows = make([]AgentRow, 0, len(w.agents))
		for _, a := range w.agents {
			if a.wanted() {
				rows = append(rows, w.row(a))
			}
		}
		return rows, mark
	}
	rows = make([]AgentRow, 0, len(keys))
	for _, key := range keys {
		if a := w.agents[key]; a != nil && a.wanted() {
			rows = append(rows, w.row(a))
		} else {
			rows = append(rows, AgentRow{Key: key, Gone: true})
		}
	}
	return rows, mark
}

// row is an agent's row; the caller holds w.mu.
func (w *Worker) row(a *agent) AgentRow {
	source := w.routeOf(a)
	r := AgentRow{Key: a.Key, URI: a.URI, Source: source, State: w.stateOf(a, a.Key, source, false),
		UCCs: len(a.uccs), Holder: w.claims[a.Key].Worker}
	if ev, ok := w.presence.get(a.Key); ok {
		p := ev.Presence
		r.Presence, r.Seq = &p, ev.Seq
	}
	return r
}

// AgentChanges returns the keys of the agents whose rows changed after
// mark since, a key maybe more than once, and the mark to ask from next. ok
// is false when more changed than the worker keeps (or since is not one of
// its marks): read every row again then, with AgentRows(nil).
func (w *Worker) AgentChanges(since uint64) (keys []string, next uint64, ok bool) {
	return w.rows.since(since)
}

// AgentsChanged returns a channel that is closed once some agent's row
// changes after mark since (at once if one did).
func (w *Worker) AgentsChanged(since uint64) <-chan struct{} { return w.rows.changed(since) }

// rowRing is how many changes rowChanges keeps: a reader that falls
// further behind reads every row again, so it bounds what one catch-up
// costs as well as the memory.
const rowRing = 4096

// rowChanges names the agents whose rows changed, as a ring of the last
// keys numbered by a running mark, so that any number of readers catch up
// from their own mark without the writers knowing of them.
type rowChanges struct {
	mu   sync.Mutex
	n    uint64   // changes so far: the current mark
	ring []string // the key of change i at i % rowRing
	// wake is closed at the next change; nil while nobody waits, so that a
	// change costs no allocation then.
	wake chan struct{}
}

// mark records a change of the agent of key.
func (c *rowChanges) mark(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring == nil {
		c.ring = make([]string, rowRing)
	}
	c.ring[c.n%rowRing] = key
	c.n++
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

func (c *rowChanges) now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *rowChanges) since(mark uint64) ([]string, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mark > c.n || c.n-mark > rowRing {
		return nil, c.n, false
	}
	keys := make([]string, 0, c.n-mark)
	for i := mark; i < c.n; i++ {
		keys = append(keys, c.ring[i%rowRing])
	}
	return keys, c.n, true
}

func (c *rowChanges) changed(mark uint64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n != mark {
		done := make(chan struct{})
		close(done)
		return done
	}
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.wake
}
