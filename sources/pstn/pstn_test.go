package pstn_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/pstn"
)

type nopSink struct{}

func (nopSink) Observe(sources.Agent, schemas.Presence) {}
func (nopSink) Lost(sources.Agent, error)               {}

// Whatever the body, a call report is either applied (the agent is then
// Busy or Available) or refused with a contract error; it never panics.
func FuzzPSTNInput(f *testing.F) {
	for _, s := range []string{
		`{"ucc": "ucc_app01", "call_id": "c-1", "state": "connected"}`, `{"ucc": "ucc_app01", "call_id": "c-1", "state": "ended"}`,
		`{"ucc": "u", "call_id": "c", "state": "ringing"}`, `{"ucc": "", "call_id": "c", "state": "ended"}`,
		`{"ucc": "u\u202e", "call_id": "c", "state": "ended"}`, `{"ucc": "u", "call_id": "c\u0000", "state": "ended"}`,
		`{"ucc": 7}`, `{`, `null`, "{\"ucc\": \"\xff\", \"call_id\": \"c\", \"state\": \"ended\"}",
	} {
		f.Add([]byte(s))
	}
	clock := clockwork.NewFakeClock()
	src := pstn.New(newMemCalls(), time.Hour, clock, nopSink{}, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	go func() { _ = src.Run(ctx) }()
	agent := sources.Agent{URI: "tel:+31612345678", Key: schemas.Key("tel:+31612345678")}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := src.Input(ctx, agent, body)
		if err != nil {
			var e *schemas.Error
			if !errors.As(err, &e) || (e.Code != schemas.CodeBadRequest && e.Code != schemas.CodeInvalidInput) || e.Message == "" {
				t.Fatalf("Input(%q): error %#v is not bad_request or invalid_input with a message", body, err)
			}
			return
		}
		var in schemas.PSTNInput
		if json.Unmarshal(body, &in) != nil || schemas.CheckText("ucc", in.UCC) != nil || schemas.CheckText("call_id", in.CallID) != nil {
			t.Fatalf("Input(%q) accepted a report docs/contract.md refuses", body)
		}
		if p.Availability != schemas.Busy && p.Availability != schemas.Available {
			t.Fatalf("Input(%q): %s; want Busy or Available", body, p.Availability)
		}
	})
}

// memCalls is the calls store in memory, for fuzzing the input path without
// a NATS server; the tests of the store itself run on the real one.
type memCalls struct {
	// afterPut, when set, runs once a Put is stored, before it returns.
	afterPut func(key string, rev uint64)

	mu      sync.Mutex
	rev     uint64
	calls   map[string]schemas.Change[schemas.Call]
	changes chan schemas.Change[schemas.Call]
}

func newMemCalls() *memCalls {
	return &memCalls{calls: map[string]schemas.Change[schemas.Call]{}, changes: make(chan schemas.Change[schemas.Call], 1<<16)}
}

func (m *memCalls) Put(_ context.Context, key string, c schemas.Call) (uint64, error) {
	m.mu.Lock()
	m.rev++
	ch := schemas.Change[schemas.Call]{Key: key, Value: c, Revision: m.rev}
	m.calls[key] = ch
	m.send(ch)
	m.mu.Unlock()
	if m.afterPut != nil {
		m.afterPut(key, ch.Revision)
	}
	return ch.Revision, nil
}

func (m *memCalls) Delete(_ context.Context, key string, revision uint64) (uint64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if revision != 0 && m.calls[key].Revision != revision {
		return 0, false, nil
	}
	m.rev++
	delete(m.calls, key)
	m.send(schemas.Change[schemas.Call]{Key: key, Revision: m.rev, Deleted: true})
	return m.rev, true, nil
}

// send drops what the watcher has no room for: a fuzzer outruns it.
func (m *memCalls) send(ch schemas.Change[schemas.Call]) {
	select {
	case m.changes <- ch:
	default:
	}
}

func (m *memCalls) Watch(context.Context) ([]schemas.Change[schemas.Call], <-chan schemas.Change[schemas.Call], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var current []schemas.Change[schemas.Call]
	for _, ch := range m.calls {
		current = append(current, ch)
	}
	return current, m.changes, nil
}

// observed is a sink that hands on every presence the source reports.
type observed chan schemas.Presence

func (o observed) Observe(_ sources.Agent, p schemas.Presence) { o <- p }
func (observed) Lost(sources.Agent, error)                     {}

func (o observed) next(t *testing.T, want schemas.Availability) {
	t.Helper()
	select {
	case p := <-o:
		if p.Availability != want {
			t.Fatalf("observed %s; want %s", p.Availability, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing observed; want %s", want)
	}
}

// TestWatchAheadOfTheInput: the watch may show a call's write, and its
// deletion by another worker (at the safety limit), before the write that
// stored it returns. The input must then not bring the call back: NATS
// cannot order this on purpose, so the store is a fake.
func TestWatchAheadOfTheInput(t *testing.T) {
	store := newMemCalls()
	sink := make(observed, 8)
	src := pstn.New(store, time.Hour, clockwork.NewFakeClock(), sink, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = src.Run(ctx) }()
	store.afterPut = func(key string, rev uint64) {
		if _, deleted, _ := store.Delete(ctx, key, rev); !deleted {
			t.Error("the call was not deleted")
		}
		sink.next(t, schemas.Busy)
		sink.next(t, schemas.Available)
	}
	agent := sources.Agent{URI: "tel:+31612345678", Key: schemas.Key("tel:+31612345678")}
	p, err := src.Input(ctx, agent, []byte(`{"ucc": "ucc_app01", "call_id": "c-1", "state": "connected"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Availability != schemas.Available || src.Health().Stats["calls"] != 0 {
		t.Fatalf("input answered %s with %v calls known; want Available and none: the call ended", p.Availability, src.Health().Stats["calls"])
	}
}
