package ops

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// states are the states an agent can be in: each series of a known source
// and state exists from the first scrape on, at 0.
var states = []schemas.State{schemas.StatePending, schemas.StateActive, schemas.StateRetrying,
	schemas.StateFailed, schemas.StateUnsupported}

// Collector turns the worker's counts into gauges at scrape time. Labels
// are sources and states, never an agent's URI or UPN: the series are the
// same few whatever the number of agents.
type Collector struct {
	w                                             Worker
	agents, interests, claims, workers, throttled *prometheus.Desc
}

// NewCollector returns the collector of a worker's gauges.
func NewCollector(w Worker) *Collector {
	return &Collector{
		w: w,
		agents: prometheus.NewDesc("presence_agents",
			"Agents some UCC wants, by routed source and subscription state, as this worker sees the service.",
			[]string{"source", "state"}, nil),
		interests: prometheus.NewDesc("presence_interests",
			"Interests of UCCs in agents, as this worker sees the service.", nil, nil),
		claims: prometheus.NewDesc("presence_claims_held",
			"Agent claims this worker holds: the upstream subscriptions it owns.", nil, nil),
		workers: prometheus.NewDesc("presence_workers_live",
			"Live workers the agents are shared among, as this worker sees them.", nil, nil),
		throttled: prometheus.NewDesc("presence_throttle_queue",
			"Agents waiting in this worker's subscription throttle.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.agents, c.interests, c.claims, c.workers, c.throttled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counts := c.w.Counts()
	names := []string{schemas.SourceNone}
	for _, spec := range sources.Registry() {
		names = append(names, spec.Name)
	}
	for _, source := range names {
		for _, state := range states {
			ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue,
				float64(counts.States[source][state]), source, string(state))
		}
	}
	// A state or source added later still shows, once it has agents.
	for source, byState := range counts.States {
		for state, n := range byState {
			if !slices.Contains(names, source) || !slices.Contains(states, state) {
				ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(n), source, string(state))
			}
		}
	}
	for d, v := range map[*prometheus.Desc]int{c.interests: counts.Interests, c.claims: counts.ClaimsHeld,
		c.workers: counts.LiveWorkers, c.throttled: counts.Queued} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
}
