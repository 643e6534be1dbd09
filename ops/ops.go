// Package ops is the operator's HTTP side of a worker: Prometheus metrics,
// the liveness and readiness probes of orchestrators, and the live status
// page (page.go). It reads what the worker and the connection already know,
// at request time; nothing here sits on the path of a request or an input.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// Paths served.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Worker is what the listener reads of the worker.
type Worker interface {
	Counts() worker.Counts
	Health() worker.Health
	// Status, AgentRows, AgentChanges and AgentsChanged feed the status page.
	Status(ctx context.Context) (schemas.Status, error)
	AgentRows(keys []string) ([]worker.AgentRow, uint64)
	AgentChanges(since uint64) ([]string, uint64, bool)
	AgentsChanged(since uint64) <-chan struct{}
}

// NATS tells whether NATS is connected and the buckets answer
// (bus.Conn.Probe).
type NATS interface {
	Probe(ctx context.Context) error
}

// probeTimeout bounds the NATS part of one readiness check: orchestrators
// give a probe a few seconds.
const probeTimeout = 2 * time.Second

// Server is the listener. Listen binds it, Serve begins answering, Stop
// ends it.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	served chan struct{} // closed once the serving goroutine returned
	// closing ends the status page's streams when Stop begins.
	closing     context.Context
	stopStreams context.CancelFunc
	log         zerolog.Logger
}

// Listen binds addr, so that an address in use stops start-up before
// anything else runs; nothing is answered until Serve.
func Listen(addr string, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops: PRESENCE_HTTP_LISTEN %s: %w", addr, err)
	}
	closing, stopStreams := context.WithCancel(context.Background())
	return &Server{ln: ln, log: log, closing: closing, stopStreams: stopStreams}, nil
}

// Addr is the address bound, with the port the system chose for port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers the paths above and the status page, on a goroutine Stop
// ends: explain answers the page's explain panel (nil: none), and /metrics
// adds the collectors given (the worker's Metrics) to the gauges read
// from w.
func (s *Server) Serve(w Worker, nats NATS, explain Explainer, more ...prometheus.Collector) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(w))
	reg.MustRegister(more...)
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLogger{s.log}}))
	mux.HandleFunc("GET "+PathHealthz, func(rw http.ResponseWriter, _ *http.Request) {
		answer(rw, liveness(w.Health()))
	})
	mux.HandleFunc("GET "+PathReadyz, func(rw http.ResponseWriter, r *http.Request) {
		answer(rw, readiness(r.Context(), w.Health(), nats))
	})
	(&page{w: w, explain: explain, closing: s.closing, streams: make(chan struct{}, maxStreams), log: s.log}).routes(mux)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("ops listener stopped")
		}
	}()
}

// Stop ends the listener, letting requests in hand finish within ctx.
func (s *Server) Stop(ctx context.Context) {
	s.stopStreams()
	if s.srv == nil {
		_ = s.ln.Close()
		return
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.served
}

// liveness is nil while the worker's loops run.
func liveness(h worker.Health) error {
	switch {
	case h.Stopping:
		return errors.New("stopping")
	case !h.Running:
		return errors.New("worker loops are not running")
	}
	return nil
}

// readiness is nil when this worker can serve: its loops run, NATS and the
// buckets answer, its lease is fresh and it is not fenced. Otherwise it
// gives every reason that holds.
func readiness(ctx context.Context, h worker.Health, nats NATS) error {
	if err := liveness(h); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var reasons []string
	if err := nats.Probe(ctx); err != nil {
		reasons = append(reasons, err.Error())
	}
	switch since := h.SinceBeat.Round(time.Millisecond); {
	case h.Fenced:
		reasons = append(reasons, fmt.Sprintf("fenced: no lease renewal for %s, every upstream subscription ended", since))
	case !h.LeaseFresh:
		reasons = append(reasons, fmt.Sprintf("worker lease not fresh: last renewal %s ago", since))
	}
	if len(reasons) > 0 {
		return errors.New(strings.Join(reasons, "; "))
	}
	return nil
}

// answer writes 200 "ok", or 503 with the reason.
func answer(rw http.ResponseWriter, err error) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	if err != nil {
		rw.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(rw, err)
		return
	}
	fmt.Fprintln(rw, "ok")
}

// promLogger sends promhttp's errors to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }
