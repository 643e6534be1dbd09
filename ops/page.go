package ops

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// Paths of the status page.
const (
	PathPage    = "/"
	PathEvents  = "/api/events"
	PathExplain = "/api/explain"
)

// Explainer tells why an agent is as it is (presence.api.explain), for the
// page's explain panel.
type Explainer interface {
	Explain(ctx context.Context, req schemas.ExplainRequest) (schemas.Explanation, error)
}

// The page's stream sends changed rows at most every rowEvery, so that a
// burst of changes reaches a browser as one message per agent; a reader
// that fell behind what the worker keeps reads every row again, at most
// every resetEvery. Rows go in messages of at most rowsPerMessage, and the
// sources and workers every summaryEvery. Each stream reads every row at
// its start, under the worker's lock: at most maxStreams run at once.
const (
	rowEvery       = 250 * time.Millisecond
	resetEvery     = 5 * time.Second
	rowsPerMessage = 5000
	summaryEvery   = 2 * time.Second
	maxStreams     = 32
	explainTimeout = 5 * time.Second
	// sendTimeout ends the stream of a browser that stopped reading.
	sendTimeout = 30 * time.Second
)

//go:embed page
var pageFiles embed.FS

// page serves the status page, its stream and the explain panel's answers.
type page struct {
	w       Worker
	explain Explainer // nil: none served
	// closing ends every stream when the listener stops: a stream never
	// goes idle, so a shutdown would otherwise wait for it until its
	// deadline.
	closing context.Context
	// streams holds a slot per running stream.
	streams chan struct{}
	log     zerolog.Logger

	// The summary is read once for every stream: it counts every agent
	// under the worker's lock and asks NATS.
	mu       sync.Mutex
	summary  summary
	summedAt time.Time
}

func (p *page) routes(mux *http.ServeMux) {
	files, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	static := http.FileServerFS(files)
	mux.Handle("GET "+PathPage, secured(static))
	mux.Handle("GET "+PathEvents, secured(http.HandlerFunc(p.events)))
	mux.Handle("GET "+PathExplain, secured(http.HandlerFunc(p.explained)))
}

// secured sets the headers that keep the page to its own code: no inline
// script runs, nothing loads from elsewhere, no other site frames it.
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hd := rw.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(rw, r)
	})
}

// row is an agent as the page receives it.
type row struct {
	Key          string `json:"key"`
	URI          string `json:"uri,omitempty"`
	Availability string `json:"availability,omitempty"`
	Value        int    `json:"value,omitempty"`
	Activity     string `json:"activity,omitempty"`
	Source       string `json:"source,omitempty"`
	State        string `json:"state,omitempty"`
	UCCs         int    `json:"uccs,omitempty"`
	Holder       string `json:"holder,omitempty"`
	Seq          uint64 `json:"seq,omitempty"`
	Gone         bool   `json:"gone,omitempty"`
}

func rowOf(r worker.AgentRow) row {
	out := row{Key: r.Key, URI: r.URI, Source: r.Source, State: string(r.State), UCCs: r.UCCs, Holder: r.Holder, Seq: r.Seq, Gone: r.Gone}
	if p := r.Presence; p != nil {
		out.Availability, out.Value, out.Activity = string(p.Availability), p.AvailabilityValue, p.Activity
	}
	return out
}

// summary is the page's head: this worker, the sources and the workers.
type summary struct {
	Worker    string                   `json:"worker"`
	Agents    int                      `json:"agents"`
	Interests int                      `json:"interests"`
	Queued    int                      `json:"queued"`
	Sources   map[string]sourceSummary `json:"sources"`
	Workers   []workerSummary          `json:"workers"`
	Error     string                   `json:"error,omitempty"`
}

// sourceSummary is a source's entry of the status and the same in words,
// which the page shows rather than the raw figures.
type sourceSummary struct {
	schemas.SourceStatus
	Words string `json:"words"`
}

type workerSummary struct {
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	Leaving bool      `json:"leaving,omitempty"`
	Host    string    `json:"host,omitempty"`
}

// summarize reads the status, or gives the one read for any stream less
// than summaryEvery ago; what cannot be read (NATS away) is said in Error,
// and the rest still shown.
func (p *page) summarize(ctx context.Context) summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.summedAt.IsZero() && time.Since(p.summedAt) < summaryEvery {
		return p.summary
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	st, err := p.w.Status(ctx)
	s := summary{Worker: st.Worker, Agents: st.Agents, Interests: st.Interests, Queued: st.Queued, Sources: map[string]sourceSummary{}}
	for name, src := range st.Sources {
		s.Sources[name] = sourceSummary{SourceStatus: src, Words: schemas.SourceText(name, src)}
	}
	if err != nil {
		c := p.w.Counts()
		s = summary{Agents: c.Agents, Interests: c.Interests, Queued: c.Queued, Error: err.Error()}
	}
	for _, info := range st.Workers {
		s.Workers = append(s.Workers, workerSummary{ID: info.ID, Started: info.Started, Leaving: info.Leaving, Host: info.Host})
	}
	p.summary, p.summedAt = s, time.Now()
	return s
}

// stream writes server-sent events.
type stream struct {
	rw http.ResponseWriter
	rc *http.ResponseController
}

func (s stream) send(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return err
	}
	// JSON has no raw line breaks: the data is one line.
	if _, err := fmt.Fprintf(s.rw, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

// sendRows sends rows in messages of at most rowsPerMessage; the first is
// named first (a reset replaces every row the page had).
func (s stream) sendRows(first string, rows []worker.AgentRow) error {
	event := first
	for start := 0; start == 0 || start < len(rows); start += rowsPerMessage {
		chunk := rows[start:min(start+rowsPerMessage, len(rows))]
		out := make([]row, len(chunk))
		for i, r := range chunk {
			out[i] = rowOf(r)
		}
		if err := s.send(event, struct {
			Rows []row `json:"rows"`
		}{out}); err != nil {
			return err
		}
		event = "rows"
	}
	return nil
}

// events is the page's stream: every row first (event reset), the summary
// (event summary), then the rows that changed (event rows). It ends
// with the request or when the listener stops; it starts no goroutine.
func (p *page) events(rw http.ResponseWriter, r *http.Request) {
	select {
	case p.streams <- struct{}{}:
		defer func() { <-p.streams }()
	default:
		http.Error(rw, fmt.Sprintf("%d status pages are open already; close one", maxStreams), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(p.closing, cancel)()

	rw.Header().Set("Content-Type", "text/event-stream")
	rw.WriteHeader(http.StatusOK)
	s := stream{rw: rw, rc: http.NewResponseController(rw)}
	err := p.follow(ctx, s)
	if err != nil && ctx.Err() == nil {
		p.log.Debug().Err(err).Msg("status page stream ended")
	}
}

func (p *page) follow(ctx context.Context, s stream) error {
	var last summary
	sendSummary := func() error {
		sum := p.summarize(ctx)
		if jsonText(sum) == jsonText(last) {
			return nil
		}
		last = sum
		return s.send("summary", sum)
	}
	// The rows first: they come from memory, the summary from NATS, which
	// may not answer.
	rows, mark := p.w.AgentRows(nil)
	if err := s.sendRows("reset", rows); err != nil {
		return err
	}
	rows = nil
	if err := sendSummary(); err != nil {
		return err
	}
	lastReset := time.Now()
	summaries := time.NewTicker(summaryEvery)
	defer summaries.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-summaries.C:
			if err := sendSummary(); err != nil {
				return err
			}
			continue
		case <-p.w.AgentsChanged(mark):
		}
		// Let the burst gather.
		if err := pause(ctx, rowEvery); err != nil {
			return err
		}
		keys, next, ok := p.w.AgentChanges(mark)
		if !ok {
			if err := pause(ctx, resetEvery-time.Since(lastReset)); err != nil {
				return err
			}
			rows, next = p.w.AgentRows(nil)
			lastReset = time.Now()
			if err := s.sendRows("reset", rows); err != nil {
				return err
			}
			mark = next
			continue
		}
		rows, _ = p.w.AgentRows(distinct(keys))
		if err := s.sendRows("rows", rows); err != nil {
			return err
		}
		mark = next
	}
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// distinct drops repeated keys, keeping the first of each.
func distinct(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// jsonText is v as JSON, to compare two values by what the page receives.
func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// explained answers GET /api/explain?uri=... with the explainer's answer as
// JSON, or {"error": {...}}: 400 for a bad URI, 404 without an explainer.
func (p *page) explained(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	if p.explain == nil {
		writeJSON(rw, http.StatusNotFound, errorBody(&schemas.Error{Code: schemas.CodeBadRequest, Message: "explain is not served by this listener"}))
		return
	}
	uri := r.URL.Query().Get("uri")
	if uri == "" {
		writeJSON(rw, http.StatusBadRequest, errorBody(&schemas.Error{Code: schemas.CodeBadRequest, Message: "the query parameter uri is mandatory"}))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), explainTimeout)
	defer cancel()
	answer, err := p.explain.Explain(ctx, schemas.ExplainRequest{URI: uri})
	if err != nil {
		var e *schemas.Error
		if !errors.As(err, &e) {
			e = &schemas.Error{Code: schemas.CodeInternal, Message: err.Error()}
		}
		code := http.StatusBadRequest
		if e.Code == schemas.CodeInternal {
			code = http.StatusInternalServerError
		}
		writeJSON(rw, code, errorBody(e))
		return
	}
	writeJSON(rw, http.StatusOK, answer)
}

func errorBody(e *schemas.Error) any {
	return struct {
		Error *schemas.Error `json:"error"`
	}{e}
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"the answer is not JSON"}}`)
	}
	rw.WriteHeader(code)
	_, _ = rw.Write(body)
}
