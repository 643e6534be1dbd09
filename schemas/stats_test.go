package schemas_test

import (
	"encoding/json"
	"testing"

	"github.com/contactcenter/presence-provider/schemas"
)

func TestStatsText(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stats map[string]any
		want  string
	}{
		{"sip", map[string]any{"dialogs": 2, "waiting_for_endpoint": 1, "application_dialogs": 2, "user_dialogs": 0},
			"2 dialogs, 2 on the application endpoint, 0 on the user endpoint, 1 agents waiting for an endpoint"},
		{"graph", map[string]any{"users_missing_from_answers": 0, "accounts": []map[string]any{
			{"id": "acc1", "tenant": "t-1", "agents": 15000, "cycle_ms": int64(1200), "requests_last_30s": 3, "budget_per_30s": 1500, "requests_total": 1234567, "failures": 0},
			{"id": "acc2", "tenant": "t-2", "agents": 0, "failures": 3, "paused_ms": 2500},
		}}, "account acc1: 15000 agents, last cycle 1200 ms, 3 requests in the last 30 s, of a budget of 1500, 1234567 requests in all, 0 failed cycles, tenant t-1, " +
			"account acc2: 0 agents, 3 failed cycles, paused for 2500 ms more (429), tenant t-2, 0 users missing from Graph's answers"},
		{"unknown figure", map[string]any{"queue_depth": 7}, "queue depth 7"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := schemas.StatsText(tc.stats); got != tc.want {
				t.Errorf("StatsText:\n got %q\nwant %q", got, tc.want)
			}
			// What presencectl decodes from a status reply reads the same.
			data, err := json.Marshal(tc.stats)
			if err != nil {
				t.Fatal(err)
			}
			var decoded map[string]any
			if err := json.Unmarshal(data, &decoded); err != nil {
				t.Fatal(err)
			}
			if got := schemas.StatsText(decoded); got != tc.want {
				t.Errorf("StatsText of the decoded reply:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSourceTextExplainsEveryEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    schemas.SourceStatus
		want string
	}{
		{schemas.SourceNone, schemas.SourceStatus{}, "agents no enabled source serves (state unsupported)"},
		{schemas.SourceGraph, schemas.SourceStatus{}, "off: Config.xml does not enable it"},
		{schemas.SourceSIP, schemas.SourceStatus{Enabled: true, Detail: "application sip:a@b: answers OPTIONS", Stats: map[string]any{"dialogs": 1}},
			"application sip:a@b: answers OPTIONS; 1 dialogs"},
		{schemas.SourceAttendant, schemas.SourceStatus{Enabled: true, Healthy: true}, ""},
	} {
		if got := schemas.SourceText(tc.name, tc.s); got != tc.want {
			t.Errorf("SourceText(%s, %+v) = %q; want %q", tc.name, tc.s, got, tc.want)
		}
	}
}
