package worker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// rowOf finds an agent's row by key.
func rowOf(rows []worker.AgentRow, key string) (worker.AgentRow, bool) {
	i := slices.IndexFunc(rows, func(r worker.AgentRow) bool { return r.Key == key })
	if i < 0 {
		return worker.AgentRow{}, false
	}
	return rows[i], true
}

// TestAgentRowsFollowChanges: the rows list the wanted agents with their
// source, state, UCCs and presence; a change (an input, a UCC leaving)
// wakes a reader waiting on its mark and is named by AgentChanges, and an
// agent no UCC wants any more reads as Gone.
func TestAgentRowsFollowChanges(t *testing.T) {
	e := startQueue(t, bus.InputQueueOptions{})
	busy, other := "sip:rows1@workstreampeople.com", "tel:+31612345678"
	e.Subscribe("ucc_app01", busy, other)
	e.Subscribe("ucc_app02", busy)

	var rows []worker.AgentRow
	var mark uint64
	provtest.Eventually(t, "both agents listed, one with two UCCs", func() bool {
		rows, mark = e.Worker.AgentRows(nil)
		r, _ := rowOf(rows, schemas.Key(busy))
		return len(rows) == 2 && r.UCCs == 2
	})
	r, _ := rowOf(rows, schemas.Key(busy))
	if r.URI != busy || r.Source != schemas.SourceAttendant || r.State != schemas.StateActive || r.UCCs != 2 || r.Presence != nil {
		t.Fatalf("row of %s: %+v; want attendant, active, 2 UCCs, no presence yet", busy, r)
	}
	if r, _ := rowOf(rows, schemas.Key(other)); r.Source != schemas.SourceNone || r.State != schemas.StateUnsupported || r.UCCs != 1 {
		t.Fatalf("row of %s: %+v; want no source, unsupported, 1 UCC", other, r)
	}

	changed := e.Worker.AgentsChanged(mark)
	if _, err := e.Client.Attendant(e.Ctx(), schemas.Key(busy), schemas.AttendantInput{Availability: "Busy", Activity: "InACall"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled after an attendant input")
	}
	var keys []string
	provtest.Eventually(t, "the input named as a change, the row Busy", func() bool {
		var ok bool
		keys, _, ok = e.Worker.AgentChanges(mark)
		if !ok || !slices.Contains(keys, schemas.Key(busy)) {
			return false
		}
		rows, _ := e.Worker.AgentRows([]string{schemas.Key(busy)})
		return len(rows) == 1 && rows[0].Presence != nil && rows[0].Presence.Availability == schemas.Busy && rows[0].Seq > 0
	})

	_, mark = e.Worker.AgentRows(nil)
	if _, err := e.Client.Unsubscribe(e.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{other}}); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "the agent no UCC wants named and Gone", func() bool {
		keys, _, _ := e.Worker.AgentChanges(mark)
		if !slices.Contains(keys, schemas.Key(other)) {
			return false
		}
		rows, _ := e.Worker.AgentRows([]string{schemas.Key(other)})
		return rows[0].Gone && rows[0].URI == ""
	})
	if rows, _ := e.Worker.AgentRows(nil); len(rows) != 1 {
		t.Fatalf("every row after the unsubscribe: %+v; want one", rows)
	}
}

// TestAgentChangesTellAReaderThatFellBehind: a reader more changes behind
// than the worker keeps is told to read every row again, rather than given
// part of them; so is one with a mark the worker never gave.
func TestAgentChangesTellAReaderThatFellBehind(t *testing.T) {
	e := startQueue(t, bus.InputQueueOptions{})
	_, mark := e.Worker.AgentRows(nil)
	if _, _, ok := e.Worker.AgentChanges(mark + 1); ok {
		t.Fatal("a mark from the future was taken")
	}
	var uris []string
	for i := range 1100 {
		uris = append(uris, fmt.Sprintf("sip:behind%04d@workstreampeople.com", i))
	}
	// Each interest is a change: four UCCs of 1,100 agents are past the
	// 4,096 changes kept.
	for _, ucc := range []string{"ucc_app01", "ucc_app02", "ucc_app03", "ucc_app04"} {
		e.Subscribe(ucc, uris...)
	}
	provtest.Eventually(t, "the reader told to read everything again", func() bool {
		_, _, ok := e.Worker.AgentChanges(mark)
		return !ok
	})
	rows, next := e.Worker.AgentRows(nil)
	if len(rows) != len(uris) {
		t.Fatalf("%d rows; want %d", len(rows), len(uris))
	}
	if _, got, ok := e.Worker.AgentChanges(next); !ok || got < next {
		t.Fatalf("from the new mark: ok %v, next %d < %d", ok, got, next)
	}
}
