// Package pstn is the PSTN source: a PSTN agent is Busy while any UCC of the
// service has a call on it, and Available when none has. UCCs report calls;
// the source holds no upstream subscription.
package pstn

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// MaxFieldBytes bounds a call report's ucc and call_id.
const MaxFieldBytes = 256

type callRef struct{ ucc, callID string }

type agentCalls struct {
	agent sources.Agent
	calls map[callRef]clockwork.Timer
}

// Source tracks the calls on PSTN agents.
type Source struct {
	clock clockwork.Clock
	sink  sources.Sink
	// maxCall clears a call that never reports "ended", so that a UCC that
	// crashed mid-call cannot keep an agent Busy for ever.
	maxCall time.Duration

	mu     sync.Mutex
	agents map[string]*agentCalls
	closed bool
}

// New returns the PSTN source; sink receives the presence of calls that the
// safety limit clears.
func New(maxCall time.Duration, clock clockwork.Clock, sink sources.Sink) *Source {
	return &Source{clock: clock, sink: sink, maxCall: maxCall, agents: map[string]*agentCalls{}}
}

// Subscribe reports the agent's presence at once: Available unless a call is up.
func (s *Source) Subscribe(_ context.Context, a sources.Agent) error {
	s.mu.Lock()
	busy := s.agents[a.Key] != nil
	s.mu.Unlock()
	s.sink.Observe(a, s.presence(busy))
	return nil
}

// Unsubscribe keeps the calls: UCCs still report them, and the next
// subscriber must see the agent Busy.
func (*Source) Unsubscribe(context.Context, sources.Agent) error { return nil }

// Serves an E.164 number: tel:+..., or a sip: URI with user=phone.
func (*Source) Serves(uri schemas.AgentURI, _ string) bool { return uri.PSTN }

// Health reports the calls in progress.
func (s *Source) Health() sources.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := 0
	for _, ac := range s.agents {
		calls += len(ac.calls)
	}
	return sources.Health{Healthy: true, Stats: map[string]any{"calls": calls, "busy_agents": len(s.agents)}}
}

// Run clears the safety timers when ctx ends.
func (s *Source) Run(ctx context.Context) error {
	<-ctx.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ac := range s.agents {
		for _, t := range ac.calls {
			t.Stop()
		}
	}
	return nil
}

// Input applies a UCC's call report and returns the agent's presence after it.
func (s *Source) Input(a sources.Agent, body []byte) (schemas.Presence, error) {
	var in schemas.PSTNInput
	if err := json.Unmarshal(body, &in); err != nil {
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeBadRequest, Message: "pstn input is not the JSON of docs/contract.md, Inputs: " + err.Error()}
	}
	switch {
	case in.UCC == "" || in.CallID == "":
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput, Message: "ucc and call_id are mandatory"}
	case len(in.UCC) > MaxFieldBytes || len(in.CallID) > MaxFieldBytes:
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("ucc and call_id are at most %d bytes", MaxFieldBytes)}
	case in.State != schemas.CallConnected && in.State != schemas.CallEnded:
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("state %q is not %q or %q", in.State, schemas.CallConnected, schemas.CallEnded)}
	}
	for _, f := range [][2]string{{"ucc", in.UCC}, {"call_id", in.CallID}} {
		if err := schemas.CheckText(f[0], f[1]); err != nil {
			return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput, Message: err.Error()}
		}
	}
	ref := callRef{in.UCC, in.CallID}
	s.mu.Lock()
	if in.State == schemas.CallConnected {
		s.connect(a, ref)
	} else {
		s.end(a.Key, ref)
	}
	busy := s.agents[a.Key] != nil
	s.mu.Unlock()
	return s.presence(busy), nil
}

// connect records a call; a repeated report restarts its safety limit.
func (s *Source) connect(a sources.Agent, ref callRef) {
	ac := s.agents[a.Key]
	if ac == nil {
		ac = &agentCalls{agent: a, calls: map[callRef]clockwork.Timer{}}
		s.agents[a.Key] = ac
	}
	if t, ok := ac.calls[ref]; ok {
		t.Stop()
	}
	ac.calls[ref] = s.clock.AfterFunc(s.maxCall, func() { s.expire(a, ref) })
}

func (s *Source) end(key string, ref callRef) {
	ac := s.agents[key]
	if ac == nil {
		return
	}
	if t, ok := ac.calls[ref]; ok {
		t.Stop()
		delete(ac.calls, ref)
	}
	if len(ac.calls) == 0 {
		delete(s.agents, key)
	}
}

func (s *Source) expire(a sources.Agent, ref callRef) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.end(a.Key, ref)
	busy := s.agents[a.Key] != nil
	s.mu.Unlock()
	s.sink.Observe(a, s.presence(busy))
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
