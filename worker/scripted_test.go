package worker_test

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// scripted is an upstream presence system whose answers the test scripts.
// Lifecycle tests need one whose failures and timing they control; the real
// sources are tested against real servers in their own packages.
type scripted struct {
	clock clockwork.Clock

	mu       sync.Mutex
	attempts []attempt
	ended    []string
	results  map[string][]error // per URI, consumed in order; none left: success
	always   error              // the answer when results has none
	panics   bool
	up       map[string]bool
	onEnd    func(a sources.Agent)
}

type attempt struct {
	uri string
	at  time.Time
}

func newScripted(clock clockwork.Clock) *scripted {
	return &scripted{clock: clock, results: map[string][]error{}, up: map[string]bool{}}
}

func (s *scripted) Subscribe(_ context.Context, a sources.Agent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, attempt{uri: a.URI, at: s.clock.Now()})
	if s.panics {
		panic("scripted source panics")
	}
	if q := s.results[a.URI]; len(q) > 0 {
		s.results[a.URI] = q[1:]
		if q[0] != nil {
			return q[0]
		}
	} else if s.always != nil {
		return s.always
	}
	s.up[a.URI] = true
	return nil
}

func (s *scripted) Unsubscribe(_ context.Context, a sources.Agent) error {
	s.mu.Lock()
	onEnd := s.onEnd
	s.ended = append(s.ended, a.URI)
	delete(s.up, a.URI)
	s.mu.Unlock()
	if onEnd != nil {
		onEnd(a)
	}
	return nil
}

func (s *scripted) Health() sources.Health { return sources.Health{Healthy: true} }

// Serves what a SIP source serves.
func (s *scripted) Serves(uri schemas.AgentURI, _ string) bool {
	return strings.HasPrefix(uri.URI, "sip:")
}

// whenEnded runs f at each Unsubscribe, from the worker's goroutines.
func (s *scripted) whenEnded(f func(a sources.Agent)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEnd = f
}

func (s *scripted) script(uri string, results ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[uri] = append(s.results[uri], results...)
}

func (s *scripted) setAlways(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.always = err
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.attempts)
}

func (s *scripted) attemptList() []attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]attempt(nil), s.attempts...)
}

func (s *scripted) endedList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ended...)
}

// upList is the agents whose upstream subscription is up.
func (s *scripted) upList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var up []string
	for uri := range s.up {
		up = append(up, uri)
	}
	return up
}
