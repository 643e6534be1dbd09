package worker

import (
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker/membership"
)

// Counts are what this worker holds now: its view of the service's agents
// and interests, and its own claims and throttle line. Reading them costs
// one pass over the agents under the lock and no NATS request, so that
// metrics can be scraped often.
type Counts struct {
	// Agents and Interests count the agents some UCC wants, and the UCCs
	// that want them.
	Agents, Interests int
	// States counts those agents by source and subscription state.
	States map[string]map[schemas.State]int
	// Queued counts the agents in this worker's throttle line.
	Queued int
	// ClaimsHeld counts the claims that name this worker.
	ClaimsHeld int
	// LiveWorkers counts the workers agents are shared among, this one
	// included unless it is leaving.
	LiveWorkers int
}

// Counts returns what this worker holds now.
func (w *Worker) Counts() Counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts()
}

// counts is Counts for a caller that holds w.mu.
func (w *Worker) counts() Counts {
	c := Counts{States: map[string]map[schemas.State]int{}, LiveWorkers: len(w.members.Live)}
	for _, a := range w.agents {
		if !a.wanted() {
			continue
		}
		c.Agents++
		c.Interests += len(a.uccs)
		source := w.routeOf(a)
		states := c.States[source]
		if states == nil {
			states = map[schemas.State]int{}
			c.States[source] = states
		}
		states[w.stateOf(a, a.Key, source, false)]++
		if a.life.phase == phaseQueued {
			c.Queued++
		}
	}
	for _, claim := range w.claims {
		if claim.Worker == w.cfg.ID {
			c.ClaimsHeld++
		}
	}
	return c
}

// Health is what this worker knows of its own liveness, for probes.
type Health struct {
	// Running is true from Start until Stop begins, while every loop Start
	// began still runs.
	Running bool
	// Stopping is true once Stop began.
	Stopping bool
	// Fenced is true while NATS was out of reach for too long: the worker
	// holds nothing upstream then.
	Fenced bool
	// SinceBeat is the time since this worker last renewed its lease.
	SinceBeat time.Duration
	// LeaseFresh is true while the last renewal is recent enough that the
	// worker is not about to be fenced.
	LeaseFresh bool
}

// Health returns what this worker knows of its own liveness.
func (w *Worker) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	started := !w.started.IsZero()
	since := w.lease.SinceBeat()
	return Health{
		Running:    started && !w.leaving && int(w.loopsUp.Load()) == w.loopsStarted,
		Stopping:   w.leaving,
		Fenced:     w.lease.Fenced(),
		SinceBeat:  since,
		LeaseFresh: started && since < membership.FenceAfter(w.cfg.WorkerLease),
	}
}
