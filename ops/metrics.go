package ops

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/worker"
)

// Metrics counts what a worker does (it is the worker's Observer) and reads
// its SIP endpoints and Graph accounts at scrape time. Every label is a
// fixed name (an endpoint, a source, a result, a configured SIP endpoint or
// Graph account), never an agent's URI or UPN.
type Metrics struct {
	requests, inputs, published, subscribes, lost *prometheus.CounterVec
	change                                        *prometheus.HistogramVec
	// The series of every label value the worker gives exist from the
	// start, at 0, and are looked up without a lock on the input path.
	requestsBy, inputsBy, subscribesBy, lostBy map[[2]string]prometheus.Counter
	publishedBy                                map[string]prometheus.Counter
	changeBy                                   map[string]prometheus.Observer

	sipEndpoints                                              []sources.EndpointReporter
	graphAccounts                                             []sources.AccountReporter
	sipDialogs, sipUp, graphRequests, graphBudget, graphCycle *prometheus.Desc
}

// changeBuckets span an input applied at once (milliseconds) to a Graph
// poll cycle (tens of seconds).
var changeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics returns the metrics of one worker; give it to worker.Config as
// its Observer, tell it the sources with AddSource, and serve it.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_requests_total",
			Help: "presence.api requests this worker answered, by endpoint and result (ok, rejected: the caller's error, error)."},
			[]string{"endpoint", "result"}),
		inputs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_inputs_total",
			Help: "Inputs of fed sources this worker applied, by source and result (ok, rejected, error)."},
			[]string{"source", "result"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_events_published_total",
			Help: "Presence events this worker published on presence.<key>, by source."}, []string{"source"}),
		subscribes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_upstream_subscribes_total",
			Help: "Upstream subscription outcomes, by source and result (ok, resumed, failed, retry, gave_up)."},
			[]string{"source", "result"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_upstream_lost_total",
			Help: "Upstream subscriptions the source ended unasked, by source and reason (terminated, source_down, rejected, error)."},
			[]string{"source", "reason"}),
		change: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "presence_change_seconds",
			Help:    "Time from a source's observation of a presence to its event published, by source.",
			Buckets: changeBuckets}, []string{"source"}),
		requestsBy: map[[2]string]prometheus.Counter{}, inputsBy: map[[2]string]prometheus.Counter{},
		subscribesBy: map[[2]string]prometheus.Counter{}, lostBy: map[[2]string]prometheus.Counter{},
		publishedBy: map[string]prometheus.Counter{}, changeBy: map[string]prometheus.Observer{},
		sipDialogs: prometheus.NewDesc("presence_sip_dialogs",
			"SIP subscription dialogs this worker holds, by configured endpoint.", []string{"endpoint"}, nil),
		sipUp: prometheus.NewDesc("presence_sip_endpoint_up",
			"1 while the SIP endpoint's pool answers (OPTIONS or REGISTER), 0 otherwise.", []string{"endpoint"}, nil),
		graphRequests: prometheus.NewDesc("presence_graph_requests_total",
			"Microsoft Graph requests made, by account and HTTP status (none: no answer).", []string{"account", "code"}, nil),
		graphBudget: prometheus.NewDesc("presence_graph_budget_used_ratio",
			"Part of the account's requestsPer30Seconds spent in the last 30 seconds.", []string{"account"}, nil),
		graphCycle: prometheus.NewDesc("presence_graph_cycle_seconds",
			"Duration of the account's last poll of all its agents.", []string{"account"}, nil),
	}
	requestResults := []worker.Result{worker.ResultOK, worker.ResultRejected, worker.ResultError}
	for _, endpoint := range worker.Endpoints {
		for _, r := range requestResults {
			m.requestsBy[[2]string{endpoint, string(r)}] = m.requests.WithLabelValues(endpoint, string(r))
		}
	}
	for _, spec := range sources.Registry() {
		m.publishedBy[spec.Name] = m.published.WithLabelValues(spec.Name)
		m.changeBy[spec.Name] = m.change.WithLabelValues(spec.Name)
		if spec.Fed() {
			for _, r := range requestResults {
				m.inputsBy[[2]string{spec.Name, string(r)}] = m.inputs.WithLabelValues(spec.Name, string(r))
			}
			continue
		}
		for _, r := range []worker.Result{worker.SubscribeOK, worker.SubscribeResumed, worker.SubscribeFailed,
			worker.SubscribeRetry, worker.SubscribeGaveUp} {
			m.subscribesBy[[2]string{spec.Name, string(r)}] = m.subscribes.WithLabelValues(spec.Name, string(r))
		}
		for _, r := range []worker.Result{worker.LostTerminated, worker.LostSourceDown, worker.LostRejected, worker.LostError} {
			m.lostBy[[2]string{spec.Name, string(r)}] = m.lost.WithLabelValues(spec.Name, string(r))
		}
	}
	return m
}

// AddSource reads the source's own state at scrape time, when it has any
// (SIP endpoints, Graph accounts); call it before serving.
func (m *Metrics) AddSource(s sources.Source) {
	if e, ok := s.(sources.EndpointReporter); ok {
		m.sipEndpoints = append(m.sipEndpoints, e)
	}
	if a, ok := s.(sources.AccountReporter); ok {
		m.graphAccounts = append(m.graphAccounts, a)
	}
}

// counter is the pre-made series of a pair of labels, or the vector's.
func counter(by map[[2]string]prometheus.Counter, vec *prometheus.CounterVec, a, b string) prometheus.Counter {
	if c, ok := by[[2]string{a, b}]; ok {
		return c
	}
	return vec.WithLabelValues(a, b)
}

// Request implements worker.Observer.
func (m *Metrics) Request(endpoint string, r worker.Result) {
	counter(m.requestsBy, m.requests, endpoint, string(r)).Inc()
}

// Input implements worker.Observer.
func (m *Metrics) Input(source string, r worker.Result) {
	counter(m.inputsBy, m.inputs, source, string(r)).Inc()
}

// Published implements worker.Observer.
func (m *Metrics) Published(source string, sinceObserved time.Duration) {
	c, ok := m.publishedBy[source]
	if !ok {
		c = m.published.WithLabelValues(source)
	}
	c.Inc()
	if sinceObserved < 0 {
		return
	}
	h, ok := m.changeBy[source]
	if !ok {
		h = m.change.WithLabelValues(source)
	}
	h.Observe(sinceObserved.Seconds())
}

// Subscribe implements worker.Observer.
func (m *Metrics) Subscribe(source string, r worker.Result) {
	counter(m.subscribesBy, m.subscribes, source, string(r)).Inc()
}

// Lost implements worker.Observer.
func (m *Metrics) Lost(source string, reason worker.Result) {
	counter(m.lostBy, m.lost, source, string(reason)).Inc()
}

var _ worker.Observer = (*Metrics)(nil)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{m.sipDialogs, m.sipUp, m.graphRequests, m.graphBudget, m.graphCycle} {
		ch <- d
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.inputs, m.published, m.subscribes, m.lost, m.change}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	for _, src := range m.sipEndpoints {
		for _, ep := range src.Endpoints() {
			up := 0.0
			if ep.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(m.sipUp, prometheus.GaugeValue, up, ep.Name)
			ch <- prometheus.MustNewConstMetric(m.sipDialogs, prometheus.GaugeValue, float64(ep.Dialogs), ep.Name)
		}
	}
	for _, src := range m.graphAccounts {
		for _, acct := range src.Accounts() {
			for status, n := range acct.Requests {
				code := "none"
				if status != 0 {
					code = strconv.Itoa(status)
				}
				ch <- prometheus.MustNewConstMetric(m.graphRequests, prometheus.CounterValue, float64(n), acct.ID, code)
			}
			ch <- prometheus.MustNewConstMetric(m.graphBudget, prometheus.GaugeValue, acct.BudgetUsed, acct.ID)
			ch <- prometheus.MustNewConstMetric(m.graphCycle, prometheus.GaugeValue, acct.LastCycle.Seconds(), acct.ID)
		}
	}
}
