package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// presenceCache is the last event of every agent, as watched and as written
// here: replies read it, and writes start their compare-and-set from it.
type presenceCache struct {
	mu     sync.RWMutex
	events map[string]schemas.Event
	// published is the seq of the last event this process published, per
	// agent: an event it published itself needs no second sending.
	published map[string]uint64
}

func (c *presenceCache) publishedSeq(key string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.published[key]
}

func (c *presenceCache) markPublished(ev schemas.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.published[ev.Key] = ev.Seq
}

func (c *presenceCache) get(key string) (schemas.Event, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ev, ok := c.events[key]
	return ev, ok
}

// put keeps the newer of two events: the watcher may deliver a write of this
// worker after the write itself was cached.
func (c *presenceCache) put(ev schemas.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.events[ev.Key]; !ok || ev.Seq > cur.Seq {
		c.events[ev.Key] = ev
	}
}

// holds reports whether the cache has the agent's event of revision rev,
// or a newer one: a write of this process, which its watch need not decode.
func (c *presenceCache) holds(key string, rev uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ev, ok := c.events[key]
	return ok && ev.Seq >= rev
}

func (c *presenceCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.events, key)
}

func (w *Worker) stateChanged(ch schemas.Change[schemas.Event]) {
	// Every presence stored elsewhere comes through this watch; this
	// process's own writes mark their rows as they are written.
	defer w.rows.mark(ch.Key)
	if ch.Deleted {
		w.presence.drop(ch.Key)
		return
	}
	w.presence.put(ch.Value)
}

// storeLock is the lock of an agent's presence writes, one of a few shared
// by all agents.
func (w *Worker) storeLock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &w.storing[h.Sum32()%uint32(len(w.storing))]
}

// store writes what a source observed, one write of an agent at a time; a
// source whose view changes on several goroutines is asked for it again
// under the lock, so that an older view never lands over a newer one.
func (w *Worker) store(ctx context.Context, a sources.Agent, p schemas.Presence) (uint64, bool, error) {
	lock := w.storeLock(a.Key)
	lock.Lock()
	defer lock.Unlock()
	w.mu.Lock()
	src := w.sourceOf(a)
	w.mu.Unlock()
	if c, ok := src.(sources.Current); ok {
		p = c.Current(a)
	}
	return w.writePresence(ctx, a, &p, 0)
}

// republish sends an agent's stored event again when the input that stored
// it is applied a second time, unless this process published it: the
// worker that stored it may have died before it published the event.
// Consumers drop an event whose seq is not above the last they saw
// (docs/contract.md, seq), so a repeat costs them nothing, and one that
// missed it gets it.
func (w *Worker) republish(ev schemas.Event) {
	if w.presence.publishedSeq(ev.Key) >= ev.Seq {
		return
	}
	if err := w.stores.State.Publish(ev); err != nil {
		w.log.Warn().Err(err).Str("uri", ev.URI).Msg("could not publish the stored presence again")
		return
	}
	w.obs.Published(sourceLabel(ev.Presence.Source), -1)
}

// sourceLabel is a presence's source as a metric label: a name of the
// registry, never a value a sender chose.
func sourceLabel(source string) string {
	if _, ok := sources.Lookup(source); ok {
		return source
	}
	return InputSourceUnknown
}

// maxSwapAttempts bounds the compare-and-set loop: each lost round means
// another writer stored a newer presence of the same agent, so the bound is
// only met by a writer starved by others for the same agent.
const maxSwapAttempts = 64

// writePresence stores p as the agent's presence and publishes the event
// when p differs from what is stored; a nil p keeps the stored presence. pos,
// when not 0, is the input's sequence in presence_inputs: it is recorded with
// the presence even when nothing else changes, and an input at or below the
// recorded one is not applied again (applied false). It returns the agent's
// seq after the write.
func (w *Worker) writePresence(ctx context.Context, a sources.Agent, p *schemas.Presence, pos uint64) (seq uint64, applied bool, err error) {
	cur, found := w.presence.get(a.Key)
	for attempt := 0; attempt < maxSwapAttempts; attempt++ {
		if attempt > 0 || !found {
			var err error
			if cur, found, err = w.stores.State.Load(ctx, a.Key); err != nil {
				return 0, false, fmt.Errorf("load presence of %s: %w", a.URI, err)
			}
		}
		if found && pos != 0 && cur.InputSeq >= pos {
			if cur.InputSeq == pos {
				w.republish(cur)
			}
			return cur.Seq, false, nil
		}
		if p == nil && !found {
			return 0, true, nil
		}
		same := found && (p == nil || cur.Presence.SameAs(*p))
		if same && pos == 0 {
			return cur.Seq, true, nil
		}
		ev := schemas.Event{URI: a.URI, Key: a.Key, InputSeq: max(pos, cur.InputSeq)}
		switch {
		case same:
			ev.Presence, ev.Previous = cur.Presence, cur.Previous
		case found:
			prev := cur.Presence
			ev.Presence, ev.Previous = *p, &prev
		default:
			ev.Presence = *p
		}
		rev, swapped, err := w.stores.State.Swap(ctx, ev, cur.Seq)
		if err != nil {
			return 0, false, fmt.Errorf("store presence of %s: %w", a.URI, err)
		}
		if !swapped {
			continue
		}
		ev.Seq = rev
		w.presence.put(ev)
		// Its watch skips what this process wrote: the row changes here.
		w.rows.mark(a.Key)
		if same {
			// Only the input's position changed: there is nothing to publish.
			w.presence.markPublished(ev)
			return rev, true, nil
		}
		if err := w.stores.State.Publish(ev); err != nil {
			return rev, true, fmt.Errorf("publish presence of %s: %w", a.URI, err)
		}
		w.presence.markPublished(ev)
		since := time.Duration(-1)
		if !ev.Presence.ObservedAt.IsZero() {
			// An observation time from another clock may be ahead of ours.
			since = max(w.clock.Since(ev.Presence.ObservedAt), 0)
		}
		w.obs.Published(sourceLabel(ev.Presence.Source), since)
		w.log.Info().Str("uri", a.URI).Uint64("seq", rev).
			Object("previous", presenceLog{ev.Previous}).Object("new", presenceLog{&ev.Presence}).
			Msg("presence change")
		return rev, true, nil
	}
	return 0, false, errors.New("presence of " + a.URI + " changed under every write attempt")
}

// presenceLog writes a presence the way operators read it in the product's
// log lines (docs/product.md, Logs): availability, value, activity, device,
// network, modalities.
type presenceLog struct{ p *schemas.Presence }

func (l presenceLog) MarshalZerologObject(e *zerolog.Event) {
	if l.p == nil {
		return
	}
	p := l.p
	e.Str("availability", string(p.Availability)).Int("value", p.AvailabilityValue).
		Str("activity", p.Activity).Str("device", p.Device).Str("source_network", p.SourceNetwork).
		Bool("audio", p.Modalities.Audio).Bool("video", p.Modalities.Video).Bool("text", p.Modalities.Text).
		Str("source", p.Source)
}
