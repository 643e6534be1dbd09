package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

func TestExplainAndHistoryForAPerson(t *testing.T) {
	env := start(t)
	const agent = "sip:explained@attendant.example"
	for _, args := range [][]string{
		{"subscribe", "-ucc", "ucc_app01", "-lease", "300", agent},
		{"subscribe", "-ucc", "ucc_app02", agent},
		{"attendant", agent, "Available"},
		{"attendant", "-activity", "InACall", agent, "Busy"},
	} {
		if code, _, errs := ctl(t, env, args...); code != exitOK {
			t.Fatalf("presencectl %v: exit %d, %s", args, code, errs)
		}
	}
	var out string
	provtest.Eventually(t, "both changes explained", func() bool {
		var code int
		var errs string
		code, out, errs = ctl(t, env, "explain", agent)
		if code != exitOK {
			t.Fatalf("explain: exit %d, %s", code, errs)
		}
		return strings.Contains(out, "last changes (2,")
	})
	for _, want := range []string{
		"agent " + agent,
		"route attendant (attendant: pattern `@attendant\\.example$` matched)",
		"presence Busy (6500) InACall seq=",
		"interests (2) ucc_app01 since ", ", lease 300s, ends ",
		"ucc_app02 since ", ", no lease",
		"claim none",
		"upstream none",
		"note fed by inputs on presence.in.attendant.",
		"answered by worker worker-a",
		"none -> Available (3500) source=attendant",
		"Available (3500) -> Busy (6500) InACall source=attendant",
	} {
		// Columns are padded to the widest: compare with single spaces.
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("explain printed\n%s\nwithout %q", out, want)
		}
	}
	code, out, _ := ctl(t, env, "explain", "-json", agent)
	var ex schemas.Explanation
	if err := json.Unmarshal([]byte(out), &ex); code != exitOK || err != nil || len(ex.Changes) != 2 || len(ex.Interests) != 2 {
		t.Fatalf("explain -json: exit %d, %v: %s", code, err, out)
	}
	if code, _, errs := ctl(t, env, "explain", "sip:@attendant.example"); code != exitFailed ||
		!strings.Contains(errs, "presencectl explain: bad_request: ") || !strings.Contains(errs, "it has no user") {
		t.Errorf("explain of a bad URI: exit %d, stderr %q; want bad_request naming the rule", code, errs)
	}

	first := ex.Changes[0].Event.Seq
	for _, tc := range []struct {
		args  []string
		lines int
	}{
		{[]string{"history", agent}, 2},
		{[]string{"history", "-since", "1h", agent}, 2},
		{[]string{"history", agent, "-after", fmt.Sprint(first)}, 1},
	} {
		code, out, errs := ctl(t, env, tc.args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != exitOK || len(lines) != tc.lines || !strings.HasSuffix(strings.Join(strings.Fields(lines[len(lines)-1]), " "), "Available (3500) -> Busy (6500) InACall source=attendant") {
			t.Errorf("presencectl %v: exit %d, %q, stderr %q; want %d lines ending with the Busy change", tc.args, code, out, errs, tc.lines)
		}
	}
	// The changes were all stored before this instant.
	if code, out, _ := ctl(t, env, "history", "-since", "1ns", agent); code != exitOK || out != "no changes kept\n" {
		t.Errorf("history -since 1ns: exit %d, %q; want none", code, out)
	}
	code, out, _ = ctl(t, env, "history", "-json", agent)
	var changes []schemas.HistoryEntry
	if err := json.Unmarshal([]byte(out), &changes); code != exitOK || err != nil || len(changes) != 2 || changes[1].Event.Seq <= first {
		t.Errorf("history -json: exit %d, %v: %s", code, err, out)
	}
}
