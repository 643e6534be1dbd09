package ops_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/schemas"
)

// listen runs a listener with the page's explainer; it returns the server
// (the caller stops it) and its base URL.
func listen(t *testing.T, e *provtest.Env, explain ops.Explainer) (*ops.Server, string) {
	t.Helper()
	s, err := ops.Listen("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(e.Worker, e.Conn, explain)
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s, "http://" + s.Addr()
}

// pageRow is a row as the page receives it.
type pageRow struct {
	Key, URI, Availability, Activity, Source, State, Holder string
	UCCs                                                    int
	Seq                                                     uint64
	Gone                                                    bool
}

// sse is a client of the page's stream.
type sse struct {
	resp    *http.Response
	lines   *bufio.Scanner
	cancel  context.CancelFunc
	summary string // the data of the last summary event read
}

func openStream(t *testing.T, base string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+ops.PathEvents, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("%s answered %d %s; want 200 text/event-stream", ops.PathEvents, resp.StatusCode, ct)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 64<<20)
	s := &sse{resp: resp, lines: lines, cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sse) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next reads one event: its name and data; ok is false at the end of the
// stream.
func (s *sse) next() (event, data string, ok bool) {
	for s.lines.Scan() {
		line := s.lines.Text()
		switch {
		case line == "" && event != "":
			return event, data, true
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
	return "", "", false
}

// rowsUntil reads events, the rows applied to rows, until cond holds.
func (s *sse) rowsUntil(t *testing.T, rows map[string]pageRow, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		event, data, ok := s.next()
		if !ok {
			t.Fatalf("the stream ended before: %s", what)
		}
		if event == "summary" {
			s.summary = data
		}
		if event != "rows" && event != "reset" {
			continue
		}
		var msg struct{ Rows []pageRow }
		if err := json.Unmarshal([]byte(data), &msg); err != nil {
			t.Fatalf("%s event is not JSON: %v: %s", event, err, data)
		}
		if event == "reset" {
			clear(rows)
		}
		for _, r := range msg.Rows {
			if r.Gone {
				delete(rows, r.Key)
			} else {
				rows[r.Key] = r
			}
		}
	}
}

// TestPageStreamFollowsTheWorker: the stream starts with every wanted
// agent and the sources and workers, then sends the rows that change (an
// attendant input, a new agent, an agent nobody wants any more) without
// being asked again.
func TestPageStreamFollowsTheWorker(t *testing.T) {
	e := provtest.Start(t, provtest.Config(), withSources)
	_, base := listen(t, e, e.Worker)
	agent, sipAgent := "sip:a1@attendant.example", "sip:s1@example.com"
	e.Subscribe("ucc_app01", agent, sipAgent)
	e.Subscribe("ucc_app02", agent)
	provtest.Eventually(t, "both interests known", func() bool { return e.Worker.Counts().Interests == 3 })

	s := openStream(t, base)
	rows := map[string]pageRow{}
	key := schemas.Key(agent)
	s.rowsUntil(t, rows, "both agents listed, the summary read", func() bool { return len(rows) == 2 && s.summary != "" })
	if r := rows[key]; r.URI != agent || r.Source != schemas.SourceAttendant || r.State != "active" || r.UCCs != 2 || r.Availability != "" {
		t.Fatalf("row of %s: %+v; want attendant, active, 2 UCCs, no presence", agent, r)
	}
	var sum struct {
		Worker  string
		Agents  int
		Sources map[string]struct{ Enabled, Healthy bool }
		Workers []struct {
			ID      string
			Leaving bool
		}
	}
	if err := json.Unmarshal([]byte(s.summary), &sum); err != nil {
		t.Fatalf("summary %s: %v", s.summary, err)
	}
	if sum.Worker != "worker-a" || sum.Agents != 2 || !sum.Sources[schemas.SourceAttendant].Healthy ||
		sum.Sources[schemas.SourcePSTN].Enabled || len(sum.Workers) != 1 || sum.Workers[0].ID != "worker-a" || sum.Workers[0].Leaving {
		t.Fatalf("summary %s; want worker-a alone and live, two agents, attendant healthy, pstn off", s.summary)
	}

	if _, err := e.Client.Attendant(e.Ctx(), key, schemas.AttendantInput{Availability: "Busy", Activity: "InACall"}); err != nil {
		t.Fatal(err)
	}
	s.rowsUntil(t, rows, "the row Busy", func() bool { return rows[key].Availability == "Busy" && rows[key].Activity == "InACall" })

	later := "sip:a2@attendant.example"
	e.Subscribe("ucc_app01", later)
	s.rowsUntil(t, rows, "the new agent listed", func() bool { return rows[schemas.Key(later)].UCCs == 1 })

	if _, err := e.Client.Unsubscribe(e.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{sipAgent}}); err != nil {
		t.Fatal(err)
	}
	s.rowsUntil(t, rows, "the agent nobody wants gone", func() bool {
		_, listed := rows[schemas.Key(sipAgent)]
		return !listed
	})
}

// TestPageStreamsEnd: a stream's handler returns when its browser goes
// (its slot is free again), streams past the bound are refused, and every
// stream ends when the listener stops, so that a stop does not wait for
// them until its deadline.
func TestPageStreamsEnd(t *testing.T) {
	e := provtest.Start(t, provtest.Config(), withSources)
	e.Subscribe("ucc_app01", "sip:a1@attendant.example")
	s, base := listen(t, e, nil)

	// openAll opens every stream the listener takes; it reports whether
	// each was taken, and whether one more was then refused.
	openAll := func() (streams []*sse, all, refused bool) {
		for range ops.MaxStreams {
			resp, err := http.Get(base + ops.PathEvents)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return streams, false, false
			}
			st := &sse{resp: resp, lines: bufio.NewScanner(resp.Body), cancel: func() {}}
			if event, _, _ := st.next(); event != "reset" {
				t.Fatalf("first event %q; want reset", event)
			}
			streams = append(streams, st)
		}
		code, body := get(t, base+ops.PathEvents)
		return streams, true, code == http.StatusServiceUnavailable && strings.Contains(body, "open already")
	}
	streams, all, refused := openAll()
	if !all || !refused {
		t.Fatalf("%d streams taken, one more refused: %v; want %d and refused", len(streams), refused, ops.MaxStreams)
	}
	for _, st := range streams {
		st.close()
	}
	// A handler frees its slot when it returns: all are free once every
	// handler of a gone browser returned.
	var open []*sse
	provtest.Eventually(t, "every stream's handler returned", func() bool {
		streams, all, _ := openAll()
		if !all {
			for _, st := range streams {
				st.close()
			}
		}
		open = streams
		return all
	})

	// Stop ends the streams still open.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop waited for the streams until its deadline")
	}
	for _, st := range open {
		for {
			if _, _, ok := st.next(); !ok {
				break
			}
		}
		st.close()
	}
}

// TestExplainAndPageHeaders: explain answers an agent as JSON, a bad URI
// with 400 and its code, and a listener without an explainer with 404;
// the page and its stream go out with a policy that runs no inline script
// and loads nothing from elsewhere.
func TestExplainAndPageHeaders(t *testing.T) {
	e := provtest.Start(t, provtest.Config(), withSources)
	_, base := listen(t, e, e.Worker)
	agent := "sip:a1@attendant.example"
	e.Subscribe("ucc_app01", agent)

	explain := func(base, uri string) (int, map[string]any) {
		t.Helper()
		code, body := get(t, base+ops.PathExplain+"?uri="+url.QueryEscape(uri))
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("explain of %q is not JSON: %v: %s", uri, err, body)
		}
		return code, v
	}
	code, v := explain(base, agent)
	if route, _ := v["route"].(map[string]any); code != http.StatusOK || v["uri"] != agent || route["source"] != schemas.SourceAttendant {
		t.Errorf("explain of %s: %d %v; want 200 with its URI and source", agent, code, v)
	}
	code, v = explain(base, "<b>not a uri</b>")
	if errBody, _ := v["error"].(map[string]any); code != http.StatusBadRequest || errBody["code"] != schemas.CodeBadRequest {
		t.Errorf("explain of a bad URI: %d %v; want 400 bad_request", code, v)
	}
	if code, _ := explain(base, ""); code != http.StatusBadRequest {
		t.Errorf("explain without a uri: %d; want 400", code)
	}
	_, bare := listen(t, e, nil)
	if code, _ := explain(bare, agent); code != http.StatusNotFound {
		t.Errorf("explain without an explainer: %d; want 404", code)
	}

	for _, path := range []string{ops.PathPage, "/page.js", "/page.css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, policy %q; want 200 with a policy of the page's own files only", path, resp.StatusCode, csp)
		}
	}
	if code, body := get(t, base+ops.PathPage); !strings.Contains(body, `<script src="page.js"`) || strings.Contains(body, "<script>") {
		t.Errorf("the page (%d) must load its script from page.js, with none inline:\n%s", code, body)
	}
}
