// Package pstn is the PSTN source: a PSTN agent is Busy while any UCC of the
// service has a call on it, and Available when none has. UCCs report calls;
// the source holds no upstream subscription. The calls in progress live in a
// store every worker shares (Calls), so they outlive any one worker.
package pstn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// MaxFieldBytes bounds a call report's ucc and call_id.
const MaxFieldBytes = 256

// Calls keeps the calls in progress where every worker sees them: the
// presence_calls bucket of docs/contract.md, keyed by schemas.CallKey.
type Calls interface {
	// Put records a call and returns its revision.
	Put(ctx context.Context, key string, c schemas.Call) (revision uint64, err error)
	// Delete removes a call, only at revision unless revision is 0, and
	// returns the revision of the deletion; deleted is false when the call
	// changed first.
	Delete(ctx context.Context, key string, revision uint64) (deletedAt uint64, deleted bool, err error)
	// Watch returns every call now, then streams the changes after them
	// until ctx ends, when it closes the channel.
	Watch(ctx context.Context) (current []schemas.Change[schemas.Call], changes <-chan schemas.Change[schemas.Call], err error)
}

// retryDelay spaces the attempts to read the calls, and to delete a call
// past its limit, while the store fails.
const retryDelay = time.Second

// call is one call as this worker knows it. Revisions order what the
// watch and this worker's own writes say of it: what is older than rev is
// stale.
type call struct {
	rev uint64
	// ended marks a call this worker deleted before the watch showed the
	// deletion; it counts for nothing.
	ended bool
	// limit clears the call at its safety limit.
	limit clockwork.Timer
}

type agentCalls struct {
	agent sources.Agent
	calls map[string]*call // by presence_calls key
	up    int              // calls not ended
}

// Source tracks the calls on PSTN agents.
type Source struct {
	store Calls
	clock clockwork.Clock
	sink  sources.Sink
	log   zerolog.Logger
	// maxCall clears a call that never reports "ended", so that a UCC that
	// crashed mid-call cannot keep an agent Busy for ever.
	maxCall time.Duration
	// ready is closed once the calls in progress are read: until then the
	// source cannot tell Busy from Available.
	ready chan struct{}

	mu     sync.Mutex
	agents map[string]*agentCalls // by agent key
	// seen is the highest revision the watch showed: it shows the bucket's
	// writes in order, so a write of this worker's at or below it is one
	// the watch already told, or made stale.
	seen   uint64
	loaded bool
	closed bool
	// ctx is Run's, for the deletions at the safety limit.
	ctx context.Context
}

// New returns the PSTN source over the calls store; sink receives the
// presence of agents whose calls others changed or the safety limit cleared.
func New(store Calls, maxCall time.Duration, clock clockwork.Clock, sink sources.Sink, log zerolog.Logger) *Source {
	return &Source{store: store, clock: clock, sink: sink, log: log.With().Str("source", schemas.SourcePSTN).Logger(),
		maxCall: maxCall, ready: make(chan struct{}), agents: map[string]*agentCalls{}, ctx: context.Background()}
}

// Subscribe reports the agent's presence at once: Available unless a call is up.
func (s *Source) Subscribe(ctx context.Context, a sources.Agent) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	busy := s.busy(a.Key)
	s.mu.Unlock()
	s.sink.Observe(a, s.presence(busy))
	return nil
}

// Unsubscribe keeps the calls: UCCs still report them, and the next
// subscriber must see the agent Busy.
func (*Source) Unsubscribe(context.Context, sources.Agent) error { return nil }

// Serves an E.164 number: tel:+..., or a sip: URI with user=phone.
func (*Source) Serves(uri schemas.AgentURI, _ string) bool { return uri.PSTN }

// Why says which form made the agent a PSTN number.
func (*Source) Why(uri schemas.AgentURI, _ string) string {
	if strings.HasPrefix(uri.URI, "tel:") {
		return "tel: URI"
	}
	return "sip:+E164 URI a UCC gave with user=phone"
}

// Health reports the calls in progress, or that they are not read yet.
func (s *Source) Health() sources.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls, busy := 0, 0
	for _, ac := range s.agents {
		calls += ac.up
		if ac.up > 0 {
			busy++
		}
	}
	h := sources.Health{Healthy: s.loaded, Stats: map[string]any{"calls": calls, "busy_agents": busy}}
	if !s.loaded {
		h.Detail = "reading the calls in progress from " + schemas.BucketCalls
	}
	return h
}

// Run follows the calls of every worker until ctx ends, reading them all
// again whenever the watch breaks, then clears the safety timers.
func (s *Source) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	defer s.close()
	for ctx.Err() == nil {
		current, changes, err := s.store.Watch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("cannot read the calls in progress; trying again")
			}
			select {
			case <-ctx.Done():
			case <-s.clock.After(retryDelay):
			}
			continue
		}
		s.load(current)
		for ch := range changes {
			s.apply(ch)
		}
	}
	return nil
}

func (s *Source) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ac := range s.agents {
		for _, c := range ac.calls {
			c.stop()
		}
	}
}

// wait returns once the calls in progress are read, or with ctx's error.
func (s *Source) wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pstn: calls in progress not read yet: %w", ctx.Err())
	}
}

// Input applies a UCC's call report and returns the agent's presence after
// it: the call is stored, or deleted, before the answer.
func (s *Source) Input(ctx context.Context, a sources.Agent, body []byte) (schemas.Presence, error) {
	in, err := parse(body)
	if err != nil {
		return schemas.Presence{}, err
	}
	if err := s.wait(ctx); err != nil {
		return schemas.Presence{}, err
	}
	key := schemas.CallKey(a.Key, in.UCC, in.CallID)
	if in.State == schemas.CallConnected {
		connected := s.clock.Now().UTC()
		rev, err := s.store.Put(ctx, key, schemas.Call{UCC: in.UCC, CallID: in.CallID, Connected: connected})
		if err != nil {
			return schemas.Presence{}, fmt.Errorf("pstn: call not stored: %w", err)
		}
		s.change(a, schemas.Change[schemas.Call]{Key: key, Revision: rev, Value: schemas.Call{Connected: connected}}, false)
	} else {
		rev, _, err := s.store.Delete(ctx, key, 0)
		if err != nil {
			return schemas.Presence{}, fmt.Errorf("pstn: call not removed: %w", err)
		}
		s.change(a, schemas.Change[schemas.Call]{Key: key, Revision: rev, Deleted: true}, false)
	}
	s.mu.Lock()
	busy := s.busy(a.Key)
	s.mu.Unlock()
	return s.presence(busy), nil
}

// parse reads a call report, refusing what docs/contract.md refuses.
func parse(body []byte) (schemas.PSTNInput, error) {
	var in schemas.PSTNInput
	if err := json.Unmarshal(body, &in); err != nil {
		return in, &schemas.Error{Code: schemas.CodeBadRequest, Message: "pstn input is not the JSON of docs/contract.md, Inputs: " + err.Error()}
	}
	switch {
	case in.UCC == "" || in.CallID == "":
		return in, &schemas.Error{Code: schemas.CodeInvalidInput, Message: "ucc and call_id are mandatory"}
	case len(in.UCC) > MaxFieldBytes || len(in.CallID) > MaxFieldBytes:
		return in, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("ucc and call_id are at most %d bytes", MaxFieldBytes)}
	case in.State != schemas.CallConnected && in.State != schemas.CallEnded:
		return in, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("state %q is not %q or %q", in.State, schemas.CallConnected, schemas.CallEnded)}
	}
	for _, f := range [][2]string{{"ucc", in.UCC}, {"call_id", in.CallID}} {
		if err := schemas.CheckText(f[0], f[1]); err != nil {
			return in, &schemas.Error{Code: schemas.CodeInvalidInput, Message: err.Error()}
		}
	}
	return in, nil
}

// load takes the calls read from the store as the whole truth: a call this
// worker knows that is not among them, and not written since, ended while
// the watch was away.
func (s *Source) load(current []schemas.Change[schemas.Call]) {
	s.mu.Lock()
	s.seen = 0 // a bucket made again by hand counts from 1
	s.mu.Unlock()
	listed := make(map[string]bool, len(current))
	for _, ch := range current {
		listed[ch.Key] = true
		s.apply(ch)
	}
	gone := func(key string, c *call) bool { return !listed[key] && c.rev <= s.seen }
	s.mu.Lock()
	var agents []sources.Agent
	for _, ac := range s.agents {
		for key, c := range ac.calls {
			if gone(key, c) {
				agents = append(agents, ac.agent)
				break
			}
		}
	}
	first := !s.loaded
	s.loaded = true
	s.mu.Unlock()
	for _, a := range agents {
		s.update(a, true, func(ac *agentCalls) {
			for key, c := range ac.calls {
				if gone(key, c) {
					ac.remove(key)
				}
			}
		})
	}
	if first {
		close(s.ready)
	}
}

// apply takes one change the watch shows.
func (s *Source) apply(ch schemas.Change[schemas.Call]) {
	agentKey, _, _ := strings.Cut(ch.Key, ".")
	raw, err := base64.RawURLEncoding.DecodeString(agentKey)
	if err != nil || agentKey == "" {
		s.log.Warn().Str("key", ch.Key).Msg("call whose key names no agent skipped")
		return
	}
	s.change(sources.Agent{URI: string(raw), Key: agentKey}, ch, true)
}

// change records what a change says of a call, unless this worker already
// knows something newer of it, and arms the call's safety limit. observe
// says the change is the watch's, not this worker's own write.
func (s *Source) change(a sources.Agent, ch schemas.Change[schemas.Call], observe bool) {
	s.update(a, observe, func(ac *agentCalls) {
		switch {
		case observe:
			s.seen = max(s.seen, ch.Revision)
		case ch.Revision <= s.seen:
			return
		}
		c := ac.calls[ch.Key]
		// The same revision is news only as the deletion that follows an
		// ended this worker wrote: it ends the wait for it.
		if c != nil && (ch.Revision < c.rev || ch.Revision == c.rev && !(ch.Deleted && c.ended)) {
			return
		}
		ac.remove(ch.Key)
		switch {
		case !ch.Deleted:
			ac.calls[ch.Key] = s.arm(ch.Key, ch.Revision, ch.Value.Connected)
			ac.up++
		case !observe:
			// Deleted here: the watch's deletion is still to come.
			ac.calls[ch.Key] = &call{rev: ch.Revision, ended: true}
		}
	})
}

// update edits the agent's calls under s.mu. When observe is set and the
// edit turns the agent Busy or Available, it reports the presence: a change
// this worker did not make itself has nobody else to tell.
func (s *Source) update(a sources.Agent, observe bool, edit func(ac *agentCalls)) {
	s.mu.Lock()
	was := s.busy(a.Key)
	ac := s.agents[a.Key]
	if ac == nil {
		ac = &agentCalls{agent: a, calls: map[string]*call{}}
		s.agents[a.Key] = ac
	}
	edit(ac)
	if len(ac.calls) == 0 {
		delete(s.agents, a.Key)
	}
	now := s.busy(a.Key)
	s.mu.Unlock()
	if observe && now != was {
		s.sink.Observe(a, s.presence(now))
	}
}

// remove forgets a call and stops its timer.
func (ac *agentCalls) remove(key string) {
	c := ac.calls[key]
	if c == nil {
		return
	}
	c.stop()
	if !c.ended {
		ac.up--
	}
	delete(ac.calls, key)
}

// arm returns a call whose timer clears it at connected plus the limit,
// at once when that has passed; the caller holds s.mu.
func (s *Source) arm(key string, rev uint64, connected time.Time) *call {
	c := &call{rev: rev}
	if !s.closed {
		c.limit = s.clock.AfterFunc(connected.Add(s.maxCall).Sub(s.clock.Now()), func() { s.expire(key, rev) })
	}
	return c
}

func (c *call) stop() {
	if c.limit != nil {
		c.limit.Stop()
	}
}

// expire deletes a call that reached its safety limit. Every worker tries:
// the deletion is of the revision this worker saw, so only one succeeds and
// a call reported connected again meanwhile stays. The watch then shows the
// deletion, and the agent's owner stores the presence.
func (s *Source) expire(key string, rev uint64) {
	s.mu.Lock()
	ctx, closed := s.ctx, s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	if _, _, err := s.store.Delete(ctx, key, rev); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Str("key", key).Msg("cannot clear a call past its safety limit; trying again")
		s.mu.Lock()
		defer s.mu.Unlock()
		agentKey, _, _ := strings.Cut(key, ".")
		if ac := s.agents[agentKey]; ac != nil && !s.closed {
			if c := ac.calls[key]; c != nil && c.rev == rev && !c.ended {
				c.limit = s.clock.AfterFunc(retryDelay, func() { s.expire(key, rev) })
			}
		}
	}
}

// busy says whether a call is up on the agent; the caller holds s.mu.
func (s *Source) busy(agentKey string) bool {
	ac := s.agents[agentKey]
	return ac != nil && ac.up > 0
}

// Current is the agent's presence as the calls known now make it.
func (s *Source) Current(a sources.Agent) schemas.Presence {
	s.mu.Lock()
	busy := s.busy(a.Key)
	s.mu.Unlock()
	return s.presence(busy)
}

func (s *Source) presence(busy bool) schemas.Presence {
	p := schemas.Presence{
		Availability:      schemas.Available,
		AvailabilityValue: schemas.Available.Value(),
		Device:            "Phone",
		Modalities:        schemas.Modalities{Audio: true},
		Source:            schemas.SourcePSTN,
		ObservedAt:        s.clock.Now().UTC(),
	}
	if busy {
		p.Availability, p.AvailabilityValue, p.Activity = schemas.Busy, schemas.Busy.Value(), "InACall"
	}
	return p
}
