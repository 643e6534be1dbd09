package ops_test

import (
	"regexp"
	"time"

	"context"
	"errors"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// refusing is an upstream presence system that refuses the agents whose URI
// holds "refused", and takes the others.
type refusing struct{ *upstream }

func (u refusing) Subscribe(ctx context.Context, a sources.Agent) error {
	if strings.Contains(a.URI, "refused") {
		return errors.New("403 Forbidden")
	}
	return u.upstream.Subscribe(ctx, a)
}

// series is the sample of a metric with exactly the given labels (name,
// value pairs), nil when there is none.
func series(families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	for _, m := range families[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := len(got) == len(labels)/2
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if match {
			return m
		}
	}
	return nil
}

// count is a counter's value, -1 when the series is missing.
func count(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(families, name, labels...)
	if m == nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestCountersAfterAScenario runs requests, an attendant input, a refused
// upstream agent retried until it is given up, and a subscription the
// source ends, against a real worker and NATS: the counters and the change
// histogram scraped from /metrics tell exactly that.
func TestCountersAfterAScenario(t *testing.T) {
	metrics := ops.NewMetrics()
	cfg := provtest.Config() // MaxFailures 3
	cfg.Observer = metrics
	e := provtest.Start(t, cfg, func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{attendantPattern}))
		w.AddSource(schemas.SourceSIP, refusing{&upstream{up: map[string]bool{}}})
	})
	base := serve(t, e.Worker, e.Conn, metrics)

	families := scrape(t, base)
	for _, name := range []string{"presence_requests_total", "presence_inputs_total", "presence_events_published_total",
		"presence_upstream_subscribes_total", "presence_upstream_lost_total"} {
		if f := families[name]; f == nil || len(f.GetMetric()) == 0 {
			t.Errorf("no %s series before anything happened: they should exist at 0", name)
		}
	}

	e.Subscribe("ucc_app01", "sip:a1@attendant.example", "sip:ok@example.com")
	e.Subscribe("ucc_app02", "sip:a1@attendant.example")
	e.Subscribe("ucc_app03", "sip:refused@example.com")
	if _, err := e.Client.Subscribe(e.Ctx(), schemas.SubscribeRequest{}); err == nil {
		t.Fatal("a subscribe without a UCC was taken")
	}
	if _, err := e.Client.Get(e.Ctx(), schemas.GetRequest{URIs: []string{"sip:ok@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.Attendant(e.Ctx(), schemas.Key("sip:a1@attendant.example"),
		schemas.AttendantInput{Availability: "Busy", Activity: "InACall"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.Attendant(e.Ctx(), schemas.Key("sip:a1@attendant.example"),
		schemas.AttendantInput{Availability: "Sleepy"}); err == nil {
		t.Fatal("an attendant input with an unknown availability was taken")
	}

	// The refused agent fails three times (MaxFailures), with two retries
	// between, and is given up; the other SIP agent is up.
	// Waited on by scraping, not by asking the provider, which is a get.
	e.AdvanceBy("the refused agent given up", time.Second, func() bool {
		return count(scrape(t, base), "presence_upstream_subscribes_total", "source", "sip", "result", "gave_up") == 1
	})
	ok := sources.Agent{URI: "sip:ok@example.com", Key: schemas.Key("sip:ok@example.com")}
	e.Worker.Lost(ok, sources.ErrTerminated)
	e.AdvanceUntil("the lost agent subscribed again", func() bool {
		return count(scrape(t, base), "presence_upstream_subscribes_total", "source", "sip", "result", "ok") == 2
	})

	families = scrape(t, base)
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"presence_requests_total", []string{"endpoint", "subscribe", "result", "ok"}, 3},
		{"presence_requests_total", []string{"endpoint", "subscribe", "result", "rejected"}, 1},
		{"presence_requests_total", []string{"endpoint", "get", "result", "ok"}, 1},
		{"presence_requests_total", []string{"endpoint", "sync", "result", "ok"}, 0},
		{"presence_inputs_total", []string{"source", "attendant", "result", "ok"}, 1},
		{"presence_inputs_total", []string{"source", "attendant", "result", "rejected"}, 1},
		{"presence_events_published_total", []string{"source", "attendant"}, 1},
		{"presence_upstream_subscribes_total", []string{"source", "sip", "result", "ok"}, 2},
		{"presence_upstream_subscribes_total", []string{"source", "sip", "result", "failed"}, 2},
		{"presence_upstream_subscribes_total", []string{"source", "sip", "result", "retry"}, 2},
		{"presence_upstream_subscribes_total", []string{"source", "sip", "result", "gave_up"}, 1},
		{"presence_upstream_lost_total", []string{"source", "sip", "reason", "terminated"}, 1},
		{"presence_upstream_lost_total", []string{"source", "sip", "reason", "error"}, 0},
	}
	for _, w := range want {
		if got := count(families, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v; want %v", w.name, w.labels, got, w.value)
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.ContainsAny(l.GetValue(), "@:") {
					t.Errorf("%s has label %s=%q: an agent's URI must never be a label", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	h := series(families, "presence_change_seconds", "source", "attendant")
	if h == nil || h.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("presence_change_seconds{source=attendant}: %v; want one sample, for the one attendant input", h)
	} else if sum := h.GetHistogram().GetSampleSum(); sum < 0 || sum > 1 {
		t.Errorf("the attendant input took %v s from its observation to its event; want at most a second on a fake clock", sum)
	}
}
