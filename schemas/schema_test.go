package schemas_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/schemas/schematest"
)

// schemaFiles is every message of docs/contract.md; a file added or removed
// must be added here too, with its Go type in TestSchemasMatchGoTypes.
var schemaFiles = []string{
	"agents-reply.schema.json",
	"attendant-input.schema.json",
	"call.schema.json",
	"claim.schema.json",
	"dialog.schema.json",
	"error-reply.schema.json",
	"event.schema.json",
	"explain-request.schema.json",
	"explanation.schema.json",
	"get-request.schema.json",
	"input-reply.schema.json",
	"interest.schema.json",
	"presence.schema.json",
	"pstn-input.schema.json",
	"state-entry.schema.json",
	"status.schema.json",
	"subscribe-request.schema.json",
	"unsubscribe-request.schema.json",
	"worker.schema.json",
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return data
}

func TestSchemasCompile(t *testing.T) {
	v := schematest.Validator(t)
	if got := v.Files(); !slices.Equal(got, schemaFiles) {
		t.Fatalf("compiled schemas %v, want %v", got, schemaFiles)
	}
	embedded, err := fs.Glob(schemas.JSONSchemas, "json/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range embedded {
		if !slices.Contains(schemaFiles, path.Base(f)) {
			t.Errorf("embedded %s is not a schema of the list", f)
		}
		data, _ := fs.ReadFile(schemas.JSONSchemas, f)
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema is %v, want draft 2020-12", f, doc["$schema"])
		}
		if doc["title"] == nil || doc["description"] == nil {
			t.Errorf("%s: has no title or description", f)
		}
	}
}

var (
	observed = time.Date(2026, 11, 24, 10, 0, 0, 123000000, time.UTC)
	away     = schemas.Presence{
		Availability: schemas.Away, AvailabilityValue: 15500, Activity: "", Device: "Computer",
		SourceNetwork: "SameEnterprise", Modalities: schemas.Modalities{Audio: true, Video: true, Text: true},
		Source: schemas.SourceSIP, ObservedAt: observed,
	}
	busy = schemas.Presence{
		Availability: schemas.Busy, AvailabilityValue: 6500, Activity: "InACall",
		Modalities: schemas.Modalities{Audio: true}, Source: schemas.SourcePSTN,
		ObservedAt: observed.Add(time.Minute).In(time.FixedZone("CET", 3600)),
	}
	key1 = schemas.Key("sip:user1@domain.com")
)

func TestSchemasAcceptGoValues(t *testing.T) {
	v := schematest.Validator(t)
	prev := away
	tests := []struct {
		name, schema string
		value        any
	}{
		{"presence", "presence", away},
		{"presence zero time, Unknown", "presence", schemas.Presence{Availability: schemas.Unknown, Source: schemas.SourceGraph}},
		{"event with previous", "event", schemas.Event{URI: "sip:user1@domain.com", Key: key1, Seq: 17, Presence: busy, Previous: &prev}},
		{"event without previous", "event", schemas.Event{URI: "tel:+31612345678", Key: schemas.Key("tel:+31612345678"), Seq: 1, Presence: busy}},
		{"state entry with previous", "state-entry", schemas.Event{URI: "sip:user1@domain.com", Key: key1, Presence: busy, Previous: &prev}},
		{"state entry without previous", "state-entry", schemas.Event{URI: "sip:user1@domain.com:5061", Key: key1, Presence: away}},
		{"subscribe", "subscribe-request", schemas.SubscribeRequest{UCC: "ucc_app01",
			Agents: []schemas.AgentRef{{URI: "sip:user1@domain.com", TeamsUPN: "user1@contoso.com"}, {URI: "+31612345678"}}, LeaseS: 60}},
		{"subscribe no agents", "subscribe-request", schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{}}},
		{"unsubscribe", "unsubscribe-request", schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{"sip:user1@domain.com"}}},
		{"get", "get-request", schemas.GetRequest{URIs: []string{"sip:user1@domain.com", "bogus"}}},
		{"agents reply", "agents-reply", schemas.AgentsReply{Agents: []schemas.AgentResult{
			{URI: "sip:user1@domain.com", Key: key1, Subject: schemas.EventSubject(key1), Source: schemas.SourceSIP,
				State: schemas.StateActive, Presence: &prev},
			{URI: "mailto:x", Error: &schemas.Error{Code: schemas.CodeInvalidURI, Message: `uri "mailto:x": scheme "mailto" is not sip, sips or tel`}},
			{URI: "sip:user2@domain.com", Key: schemas.Key("sip:user2@domain.com"), Subject: schemas.EventSubject(schemas.Key("sip:user2@domain.com")),
				Source: schemas.SourceNone, State: schemas.StateUnsupported},
			{URI: "sip:user3@domain.com", Key: schemas.Key("sip:user3@domain.com"), Source: schemas.SourceGraph},
		}}},
		{"agents reply empty", "agents-reply", schemas.AgentsReply{Agents: []schemas.AgentResult{}}},
		{"error reply", "error-reply", schemas.ErrorReply{Error: &schemas.Error{Code: schemas.CodeBadRequest, Message: "no ucc"}}},
		{"attendant input", "attendant-input", schemas.AttendantInput{Availability: "Busy", Activity: "InACall", Device: "Computer"}},
		{"attendant input value", "attendant-input", schemas.AttendantInput{Availability: "DoNotDisturb", AvailabilityValue: 9000}},
		{"pstn input", "pstn-input", schemas.PSTNInput{UCC: "ucc_app01", CallID: "c-123", State: schemas.CallConnected}},
		{"input reply ok", "input-reply", schemas.InputReply{OK: true, Seq: 18}},
		{"input reply error", "input-reply", schemas.InputReply{Error: &schemas.Error{Code: schemas.CodeNotAttendantAgent, Message: "no pattern matches"}}},
		{"interest", "interest", schemas.Interest{UCC: "ucc_app01", URI: "sip:+31612345678@domain.com", TeamsUPN: "u@contoso.com",
			LeaseS: 30, At: observed, PSTN: true}},
		{"interest minimal", "interest", schemas.Interest{UCC: "ucc_app01", URI: "tel:+1", At: observed}},
		{"claim", "claim", schemas.Claim{Worker: "host.example-1234", Source: schemas.SourceSIP, Endpoint: "sip:app@domain.com",
			Since: observed, State: schemas.StateRetrying, Failures: 2, Reason: "408 Request Timeout"}},
		{"claim minimal", "claim", schemas.Claim{Worker: "w1", Source: schemas.SourceAttendant, Since: observed, State: schemas.StateActive}},
		{"worker", "worker", schemas.WorkerInfo{ID: "w1", Started: observed, Instance: "8f14e45fceea167a", Host: "node1.example.com", PID: 4242}},
		{"call", "call", schemas.Call{UCC: "ucc_app01", CallID: "c-123", Connected: observed}},
		{"dialog", "dialog", schemas.Dialog{Endpoint: "application", CallID: "a84b4c76e66710", LocalTag: "1928301774",
			RemoteTag: "a6c85cf", Target: "sip:presence@10.0.0.5:5060;transport=udp",
			RouteSet: []string{"sip:proxy.example.com;lr"}, CSeq: 117, Expires: observed, AskedS: 3600}},
		{"explain", "explain-request", schemas.ExplainRequest{URI: "sip:user1@domain.com"}},
		{"explanation", "explanation", schemas.Explanation{URI: "sip:user1@domain.com", Key: key1, Subject: schemas.EventSubject(key1),
			Worker: "w1", Route: schemas.Route{Source: schemas.SourceSIP, Rule: "sip: URI"},
			Interests: []schemas.Interest{{UCC: "ucc_app01", URI: "sip:user1@domain.com", LeaseS: 300, At: observed}},
			Claim:     &schemas.Claim{Worker: "w2", Source: schemas.SourceSIP, Since: observed, State: schemas.StateActive},
			Upstream: &schemas.Upstream{Worker: "w2", Source: schemas.SourceSIP, State: schemas.StateRetrying, Failures: 1,
				NextRetry: &observed, LastError: "503 Service Unavailable", LastErrorAt: &observed,
				SIP: &schemas.SIPUpstream{Endpoint: "application", CallID: "a84b4c76e66710", Expires: &observed}},
			Presence: &prev, Seq: 17,
			Changes: []schemas.HistoryEntry{{At: observed, Event: schemas.Event{URI: "sip:user1@domain.com", Key: key1, Seq: 17, Presence: away}}},
			Notes:   []string{"history is off"}}},
		{"explanation unknown agent", "explanation", schemas.Explanation{URI: "tel:+1", Key: schemas.Key("tel:+1"),
			Subject: schemas.EventSubject(schemas.Key("tel:+1")), Worker: "w1", Route: schemas.Route{Source: schemas.SourceNone},
			Interests: []schemas.Interest{}, Changes: []schemas.HistoryEntry{}}},
		{"explanation graph", "explanation", schemas.Explanation{URI: "sip:user1@domain.com", Key: key1, Subject: schemas.EventSubject(key1),
			Worker: "w1", Route: schemas.Route{Source: schemas.SourceGraph, Rule: "teams_upn"}, Interests: []schemas.Interest{},
			Upstream: &schemas.Upstream{Worker: "w1", Source: schemas.SourceGraph, State: schemas.StateActive,
				Graph: &schemas.GraphUpstream{Account: "main", UserID: "0b7c", LastPoll: &observed}},
			Changes: []schemas.HistoryEntry{}}},
		{"status", "status", schemas.Status{Worker: "w1",
			Workers: []schemas.WorkerInfo{{ID: "w1", Started: observed}, {ID: "w2", Started: observed}},
			Agents:  3, Interests: 4, Queued: 1,
			Sources: map[string]schemas.SourceStatus{
				schemas.SourceSIP: {Enabled: true, Healthy: false, Detail: "registrar unreachable",
					States: map[schemas.State]int{schemas.StateRetrying: 1, schemas.StatePending: 1}},
				schemas.SourceGraph:     {Enabled: true, Healthy: true, States: map[schemas.State]int{}, Stats: map[string]any{"budget": 1500, "cycle_s": 10.5}},
				schemas.SourcePSTN:      {Enabled: true, Healthy: true, States: map[schemas.State]int{schemas.StateActive: 1}},
				schemas.SourceAttendant: {States: map[schemas.State]int{}},
				schemas.SourceNone:      {States: map[schemas.State]int{schemas.StateUnsupported: 0}},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.Validate(t, tt.schema, mustJSON(t, tt.value))
		})
	}
}

// Messages as UCCs and sources write them: the forms docs/contract.md shows,
// with optional fields left out and a field a newer writer adds.
func TestSchemasAcceptContractExamples(t *testing.T) {
	v := schematest.Validator(t)
	tests := []struct{ schema, doc string }{
		{"subscribe-request", `{"ucc": "ucc_app01", "agents": [{"uri": "sip:user1@domain.com", "teams_upn": "user1@contoso.com"}], "lease_s": 0}`},
		{"subscribe-request", `{"ucc": "ucc_app01", "agents": [{"uri": "sip:user1@domain.com"}], "future_field": 1}`},
		{"unsubscribe-request", `{"ucc": "ucc_app01", "uris": ["sip:user1@domain.com"]}`},
		{"get-request", `{"uris": ["sip:user1@domain.com"]}`},
		{"attendant-input", `{"availability": "Busy", "activity": "InACall", "device": "Computer"}`},
		{"pstn-input", `{"ucc": "ucc_app01", "call_id": "c-123", "state": "connected"}`},
		{"pstn-input", `{"ucc": "ucc_app01", "call_id": "c-123", "state": "ended"}`},
		{"input-reply", `{"ok": true, "seq": 18}`},
		{"error-reply", `{"error": {"code": "bad_request", "message": "request is not JSON"}}`},
		{"event", `{"uri": "sip:user1@domain.com", "key": "c2lwOnVzZXIxQGRvbWFpbi5jb20", "seq": 17,
			"presence": {"availability": "Away", "availability_value": 15500,
				"activity": "", "device": "Computer", "source_network": "SameEnterprise",
				"modalities": {"audio": true, "video": true, "text": true},
				"source": "sip", "observed_at": "2026-11-24T10:00:00.123Z"},
			"previous": null}`},
		{"agents-reply", `{"agents": [{"uri": "sip:user1@domain.com", "key": "c2lwOnVzZXIxQGRvbWFpbi5jb20",
			"subject": "presence.c2lwOnVzZXIxQGRvbWFpbi5jb20", "source": "sip", "state": "active", "presence": null}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) { v.Validate(t, tt.schema, []byte(tt.doc)) })
	}
}

// edit marshals v, applies change to its generic form and marshals it again.
func edit(t *testing.T, v any, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, v), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	return mustJSON(t, m)
}

func TestSchemasReject(t *testing.T) {
	v := schematest.Validator(t)
	prev := away
	ev := schemas.Event{URI: "sip:user1@domain.com", Key: key1, Seq: 17, Presence: busy, Previous: &prev}
	entry := schemas.Event{URI: "sip:user1@domain.com", Key: key1, Presence: busy}
	presence := func(m map[string]any) map[string]any { return m["presence"].(map[string]any) }
	manyAgents := schemas.SubscribeRequest{UCC: "u", Agents: make([]schemas.AgentRef, schemas.MaxAgentsPerRequest+1)}
	tests := []struct {
		name, schema string
		doc          []byte
	}{
		{"unknown availability", "event", edit(t, ev, func(m map[string]any) { presence(m)["availability"] = "Sleeping" })},
		{"availability in lower case", "event", edit(t, ev, func(m map[string]any) { presence(m)["availability"] = "away" })},
		{"negative availability value", "event", edit(t, ev, func(m map[string]any) { presence(m)["availability_value"] = -1 })},
		{"fractional availability value", "event", edit(t, ev, func(m map[string]any) { presence(m)["availability_value"] = 3500.5 })},
		{"seq 0", "event", edit(t, ev, func(m map[string]any) { m["seq"] = 0 })},
		{"seq absent", "event", mustJSON(t, schemas.Event{URI: "sip:user1@domain.com", Key: key1, Presence: busy})},
		{"seq a string", "event", edit(t, ev, func(m map[string]any) { m["seq"] = "17" })},
		{"stray field in event", "event", edit(t, ev, func(m map[string]any) { m["extra"] = true })},
		{"stray field in presence", "event", edit(t, ev, func(m map[string]any) { presence(m)["mood"] = "happy" })},
		{"stray field in modalities", "event", edit(t, ev, func(m map[string]any) {
			presence(m)["modalities"].(map[string]any)["fax"] = true
		})},
		{"previous absent", "event", edit(t, ev, func(m map[string]any) { delete(m, "previous") })},
		{"previous not a presence", "event", edit(t, ev, func(m map[string]any) { m["previous"] = map[string]any{} })},
		{"observed_at not a date-time", "event", edit(t, ev, func(m map[string]any) { presence(m)["observed_at"] = "yesterday" })},
		{"presence source none", "event", edit(t, ev, func(m map[string]any) { presence(m)["source"] = "none" })},
		{"uri not normalised", "event", edit(t, ev, func(m map[string]any) { m["uri"] = "user1@domain.com" })},
		{"uri with parameters", "event", edit(t, ev, func(m map[string]any) { m["uri"] = "sip:user1@domain.com;user=phone" })},
		{"key with padding", "event", edit(t, ev, func(m map[string]any) { m["key"] = key1 + "=" })},
		{"key with a dot", "event", edit(t, ev, func(m map[string]any) { m["key"] = "a.b" })},
		{"seq in a state entry", "state-entry", edit(t, entry, func(m map[string]any) { m["seq"] = 3 })},
		{"stray field in a state entry", "state-entry", edit(t, entry, func(m map[string]any) { m["extra"] = 1 })},
		{"subscribe without ucc", "subscribe-request", []byte(`{"agents": []}`)},
		{"subscribe with empty ucc", "subscribe-request", []byte(`{"ucc": "", "agents": []}`)},
		{"subscribe with agent without uri", "subscribe-request", []byte(`{"ucc": "u", "agents": [{"teams_upn": "a@b"}]}`)},
		{"subscribe with negative lease", "subscribe-request", []byte(`{"ucc": "u", "agents": [], "lease_s": -1}`)},
		{"subscribe with too many agents", "subscribe-request", mustJSON(t, manyAgents)},
		{"unsubscribe without uris", "unsubscribe-request", []byte(`{"ucc": "u"}`)},
		{"get with uris not strings", "get-request", []byte(`{"uris": [1]}`)},
		{"agents reply unknown state", "agents-reply", []byte(`{"agents": [{"uri": "sip:a@b", "state": "sleeping", "presence": null}]}`)},
		{"agents reply unknown source", "agents-reply", []byte(`{"agents": [{"uri": "sip:a@b", "source": "carrier_pigeon", "presence": null}]}`)},
		{"agents reply without presence", "agents-reply", []byte(`{"agents": [{"uri": "sip:a@b"}]}`)},
		{"agents reply unknown error code", "agents-reply", []byte(`{"agents": [{"uri": "x", "presence": null, "error": {"code": "oops", "message": "m"}}]}`)},
		{"agents reply error without message", "agents-reply", []byte(`{"agents": [{"uri": "x", "presence": null, "error": {"code": "invalid_uri"}}]}`)},
		{"agents reply stray field", "agents-reply", []byte(`{"agents": [{"uri": "sip:a@b", "presence": null, "extra": 1}]}`)},
		{"agents reply null agents", "agents-reply", mustJSON(t, schemas.AgentsReply{})},
		{"error reply with null error", "error-reply", mustJSON(t, schemas.ErrorReply{})},
		{"attendant input unknown availability", "attendant-input", []byte(`{"availability": "Sleeping"}`)},
		{"attendant input without availability", "attendant-input", []byte(`{"activity": "InACall"}`)},
		{"attendant input long device", "attendant-input", []byte(`{"availability": "Busy", "device": "` + strings.Repeat("d", 257) + `"}`)},
		{"attendant input activity with a right-to-left override", "attendant-input", []byte(`{"availability": "Busy", "activity": "InACall\u202e"}`)},
		{"attendant input device with a new line", "attendant-input", []byte(`{"availability": "Busy", "device": "a\nb"}`)},
		{"pstn input call id with a zero-width space", "pstn-input", []byte(`{"ucc": "u", "call_id": "c\u200b1", "state": "ended"}`)},
		{"subscribe ucc with a control character", "subscribe-request", []byte(`{"ucc": "u\u0007", "agents": []}`)},
		{"subscribe teams_upn with a byte order mark", "subscribe-request", []byte(`{"ucc": "u", "agents": [{"uri": "sip:a@b", "teams_upn": "\ufeffa@b"}]}`)},
		{"sync with null agents", "subscribe-request", []byte(`{"ucc": "u", "agents": null}`)},
		{"pstn input unknown state", "pstn-input", []byte(`{"ucc": "u", "call_id": "c", "state": "ringing"}`)},
		{"pstn input without call id", "pstn-input", []byte(`{"ucc": "u", "state": "ended"}`)},
		{"input reply empty", "input-reply", mustJSON(t, schemas.InputReply{})},
		{"input reply ok without seq", "input-reply", []byte(`{"ok": true}`)},
		{"input reply ok false", "input-reply", []byte(`{"ok": false, "seq": 1}`)},
		{"input reply ok and error", "input-reply", mustJSON(t, schemas.InputReply{OK: true, Seq: 2, Error: &schemas.Error{Code: "internal", Message: "m"}})},
		{"interest without at", "interest", []byte(`{"ucc": "u", "uri": "sip:a@b", "lease_s": 0}`)},
		{"interest uri not normalised", "interest", edit(t, schemas.Interest{UCC: "u", URI: "sip:a@b", At: observed}, func(m map[string]any) { m["uri"] = "SIP:A@B" })},
		{"interest tel too long", "interest", mustJSON(t, schemas.Interest{UCC: "u", URI: "tel:+1234567890123456", At: observed})},
		{"claim with bad worker id", "claim", mustJSON(t, schemas.Claim{Worker: "a..b", Source: "sip", Since: observed, State: schemas.StateActive})},
		{"claim without state", "claim", mustJSON(t, schemas.Claim{Worker: "w", Source: "sip", Since: observed})},
		{"claim stray field", "claim", edit(t, schemas.Claim{Worker: "w", Source: "sip", Since: observed, State: "active"}, func(m map[string]any) { m["x"] = 1 })},
		{"worker without started", "worker", []byte(`{"id": "w1"}`)},
		{"status with null workers", "status", mustJSON(t, schemas.Status{Worker: "w", Sources: map[string]schemas.SourceStatus{}})},
		{"status unknown source", "status", mustJSON(t, schemas.Status{Worker: "w", Workers: []schemas.WorkerInfo{},
			Sources: map[string]schemas.SourceStatus{"fax": {States: map[schemas.State]int{}}}})},
		{"status unknown state", "status", mustJSON(t, schemas.Status{Worker: "w", Workers: []schemas.WorkerInfo{},
			Sources: map[string]schemas.SourceStatus{"sip": {States: map[schemas.State]int{"sleeping": 1}}}})},
		{"status null states", "status", mustJSON(t, schemas.Status{Worker: "w", Workers: []schemas.WorkerInfo{},
			Sources: map[string]schemas.SourceStatus{"sip": {}}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Check(tt.schema, tt.doc)
			if err == nil {
				t.Errorf("%s accepted %s", tt.schema, tt.doc)
				return
			}
			t.Logf("rejected: %v", err)
		})
	}
}

func TestValidatorNamesSchemaAndError(t *testing.T) {
	v := schematest.Validator(t)
	rec := &recorder{TB: t}
	v.Validate(rec, "event.schema.json", []byte(`{"uri": "sip:a@b"}`))
	if !rec.failed || !strings.Contains(rec.msg, "event.schema.json") || !strings.Contains(rec.msg, "missing propert") {
		t.Errorf("failure message does not name the schema and the violation: failed=%v %q", rec.failed, rec.msg)
	}
	if err := v.Check("nope", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown schema: %v", err)
	}
	if err := v.Check("event", []byte(`{`)); err == nil {
		t.Errorf("bad JSON accepted")
	}
}

// recorder catches a failure instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
}

// TestSchemasMatchGoTypes compares each object of the schemas with its Go
// type: the same property names as the json tags, and required exactly the
// fields without omitempty (with the few exceptions docs/contract.md makes).
func TestSchemasMatchGoTypes(t *testing.T) {
	docs := map[string]map[string]any{}
	for _, name := range schemaFiles {
		data, err := fs.ReadFile(schemas.JSONSchemas, "json/"+name)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		docs[name] = doc
	}
	tests := []struct {
		file    string
		pointer []string // path from the document to the object schema
		typ     any
		// required adjusts the Go rule: + requires an omitempty field,
		// - makes a field without omitempty optional, ! drops a property.
		adjust []string
		// closed: additionalProperties false (a message the provider produces).
		closed bool
	}{
		{"presence.schema.json", nil, schemas.Presence{}, nil, true},
		{"presence.schema.json", []string{"$defs", "modalities"}, schemas.Modalities{}, nil, true},
		{"event.schema.json", nil, schemas.Event{}, []string{"+seq", "!input_seq"}, true},
		{"state-entry.schema.json", nil, schemas.Event{}, []string{"!seq"}, true},
		{"subscribe-request.schema.json", nil, schemas.SubscribeRequest{}, []string{"-lease_s"}, false},
		{"subscribe-request.schema.json", []string{"properties", "agents", "items"}, schemas.AgentRef{}, nil, false},
		{"unsubscribe-request.schema.json", nil, schemas.UnsubscribeRequest{}, nil, false},
		{"get-request.schema.json", nil, schemas.GetRequest{}, nil, false},
		{"agents-reply.schema.json", nil, schemas.AgentsReply{}, nil, true},
		{"agents-reply.schema.json", []string{"$defs", "agent_result"}, schemas.AgentResult{}, nil, true},
		{"error-reply.schema.json", nil, schemas.ErrorReply{}, nil, true},
		{"call.schema.json", nil, schemas.Call{}, nil, true},
		{"error-reply.schema.json", []string{"$defs", "error"}, schemas.Error{}, nil, true},
		{"attendant-input.schema.json", nil, schemas.AttendantInput{}, nil, false},
		{"pstn-input.schema.json", nil, schemas.PSTNInput{}, nil, false},
		// InputReply is either {ok, seq} or {error}: its oneOf says which are required.
		{"input-reply.schema.json", nil, schemas.InputReply{}, nil, true},
		{"interest.schema.json", nil, schemas.Interest{}, nil, true},
		{"claim.schema.json", nil, schemas.Claim{}, nil, true},
		{"worker.schema.json", nil, schemas.WorkerInfo{}, nil, true},
		{"dialog.schema.json", nil, schemas.Dialog{}, nil, true},
		{"status.schema.json", nil, schemas.Status{}, nil, true},
		{"explain-request.schema.json", nil, schemas.ExplainRequest{}, nil, false},
		{"explanation.schema.json", nil, schemas.Explanation{}, nil, true},
		{"explanation.schema.json", []string{"$defs", "route"}, schemas.Route{}, nil, true},
		{"explanation.schema.json", []string{"$defs", "upstream"}, schemas.Upstream{}, nil, true},
		{"explanation.schema.json", []string{"$defs", "sip"}, schemas.SIPUpstream{}, nil, true},
		{"explanation.schema.json", []string{"$defs", "graph"}, schemas.GraphUpstream{}, nil, true},
		{"explanation.schema.json", []string{"$defs", "history_entry"}, schemas.HistoryEntry{}, nil, true},
		{"status.schema.json", []string{"$defs", "source_status"}, schemas.SourceStatus{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+strings.Join(tt.pointer, "/"), func(t *testing.T) {
			obj := any(docs[tt.file])
			for _, p := range tt.pointer {
				obj = obj.(map[string]any)[p]
			}
			sch := obj.(map[string]any)
			var props, required []string
			for name := range sch["properties"].(map[string]any) {
				props = append(props, name)
			}
			if r, ok := sch["required"].([]any); ok {
				for _, name := range r {
					required = append(required, name.(string))
				}
			}
			wantProps, wantRequired := jsonFields(reflect.TypeOf(tt.typ))
			for _, a := range tt.adjust {
				name := a[1:]
				switch a[0] {
				case '+':
					wantRequired = append(wantRequired, name)
				case '-':
					wantRequired = slices.DeleteFunc(wantRequired, func(s string) bool { return s == name })
				case '!':
					wantProps = slices.DeleteFunc(wantProps, func(s string) bool { return s == name })
					wantRequired = slices.DeleteFunc(wantRequired, func(s string) bool { return s == name })
				}
			}
			sort.Strings(props)
			sort.Strings(required)
			sort.Strings(wantProps)
			sort.Strings(wantRequired)
			if !slices.Equal(props, wantProps) {
				t.Errorf("properties %v, Go type %T has %v", props, tt.typ, wantProps)
			}
			if !slices.Equal(required, wantRequired) {
				t.Errorf("required %v, want %v", required, wantRequired)
			}
			ap, set := sch["additionalProperties"]
			if tt.closed && ap != false {
				t.Errorf("additionalProperties is %v, want false: the provider produces this", ap)
			}
			if !tt.closed && set && ap != true {
				t.Errorf("additionalProperties is %v: a request's unknown fields are ignored", ap)
			}
		})
	}
}

// jsonFields lists the json names of a struct's fields, and those without omitempty.
func jsonFields(typ reflect.Type) (names, required []string) {
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if !strings.Contains(","+opts+",", ",omitempty,") {
			required = append(required, name)
		}
	}
	return names, required
}

// TestSchemaEnumsMatchGo checks that the enumerations of the schemas are the
// Go constants, no more and no less.
func TestSchemaEnumsMatchGo(t *testing.T) {
	read := func(file string, pointer ...string) []string {
		data, err := fs.ReadFile(schemas.JSONSchemas, "json/"+file)
		if err != nil {
			t.Fatal(err)
		}
		var obj any
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatal(err)
		}
		for _, p := range pointer {
			obj = obj.(map[string]any)[p]
		}
		var out []string
		for _, v := range obj.([]any) {
			out = append(out, v.(string))
		}
		sort.Strings(out)
		return out
	}
	sorted := func(s ...string) []string { sort.Strings(s); return s }
	tests := []struct {
		name      string
		got, want []string
	}{
		{"availability", read("presence.schema.json", "$defs", "availability", "enum"), sorted(
			string(schemas.Available), string(schemas.AvailableIdle), string(schemas.Busy), string(schemas.BusyIdle),
			string(schemas.DoNotDisturb), string(schemas.BeRightBack), string(schemas.Away), string(schemas.Offline), string(schemas.Unknown))},
		{"availabilities", read("presence.schema.json", "$defs", "availability", "enum"), sorted(availabilityNames()...)},
		{"source", read("presence.schema.json", "$defs", "source", "enum"), sorted(
			schemas.SourceGraph, schemas.SourceAttendant, schemas.SourcePSTN, schemas.SourceSIP, schemas.SourceNone)},
		{"presence source", read("presence.schema.json", "$defs", "presence_source", "enum"), sorted(
			schemas.SourceGraph, schemas.SourceAttendant, schemas.SourcePSTN, schemas.SourceSIP)},
		{"state", read("presence.schema.json", "$defs", "state", "enum"), sorted(
			string(schemas.StatePending), string(schemas.StateActive), string(schemas.StateRetrying),
			string(schemas.StateFailed), string(schemas.StateUnsupported))},
		{"error code", read("error-reply.schema.json", "$defs", "error_code", "enum"), sorted(
			schemas.CodeBadRequest, schemas.CodeInvalidURI, schemas.CodeInvalidUPN, schemas.CodeNotAttendantAgent,
			schemas.CodeNotPSTNAgent, schemas.CodeInvalidInput, schemas.CodeInternal, schemas.CodeOverloaded, schemas.CodeUnavailable)},
		{"call state", read("pstn-input.schema.json", "properties", "state", "enum"), sorted(schemas.CallConnected, schemas.CallEnded)},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s: schema has %v, Go has %v", tt.name, tt.got, tt.want)
		}
	}
}

func availabilityNames() []string {
	var names []string
	for _, b := range schemas.Availabilities() {
		names = append(names, string(b.Name))
	}
	return names
}

// TestAvailabilitiesFollowTheScale: each band starts where the one before
// ends, holds its default, and maps back to its name.
func TestAvailabilitiesFollowTheScale(t *testing.T) {
	bands := schemas.Availabilities()
	for i, b := range bands {
		if b.Name == schemas.Unknown {
			if i != len(bands)-1 || b.From != 0 || b.To != 0 || b.Value != 0 {
				t.Errorf("Unknown: %+v at %d of %d; want last, owning only 0", b, i, len(bands))
			}
			continue
		}
		if i > 0 && b.From != bands[i-1].To+1 {
			t.Errorf("%s starts at %d; the band before ends at %d", b.Name, b.From, bands[i-1].To)
		}
		if b.Value < b.From || b.To != 0 && b.Value > b.To || schemas.AvailabilityOf(b.Value) != b.Name || b.Name.Value() != b.Value {
			t.Errorf("%+v: its default is outside it or maps to %s", b, schemas.AvailabilityOf(b.Value))
		}
	}
}
