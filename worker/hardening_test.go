package worker_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// refused sends a raw request or input and returns its error, checking the
// micro service error headers that come with it.
func refused(t *testing.T, env *provtest.Env, subject, body string) *schemas.Error {
	t.Helper()
	msg := rawRequest(t, env, subject, []byte(body))
	var rep schemas.ErrorReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error == nil || rep.Error.Message == "" {
		t.Fatalf("%s %s: reply %s; want an error with a message", subject, body, msg.Data)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "400" || msg.Header.Get("Nats-Service-Error") == "" {
		t.Fatalf("%s %s: headers %v; want Nats-Service-Error-Code 400 and Nats-Service-Error", subject, body, msg.Header)
	}
	return rep.Error
}

// Text fields refuse the characters that make two strings print alike or a
// line read otherwise: control, format (zero-width, bidi) and separators.
func TestTextFieldsRefuseHiddenCharacters(t *testing.T) {
	env := startAll(t, provtest.Config())
	attendantKey, pstnKey := keyOf("sip:agent@workstreampeople.com"), keyOf("tel:+31612345678")
	for _, tc := range []struct {
		name, subject, body, code, names string
	}{
		{"ucc with a right-to-left override", schemas.SubjectSubscribe, `{"ucc": "ucc_\u202eapp01", "agents": []}`, schemas.CodeBadRequest, "ucc contains U+202E"},
		{"ucc with a new line", schemas.SubjectUnsub, `{"ucc": "ucc\napp01", "uris": []}`, schemas.CodeBadRequest, "ucc contains U+000A"},
		{"activity with a right-to-left override", schemas.AttendantPrefix + attendantKey, `{"availability": "Busy", "activity": "InACall\u202e"}`, schemas.CodeInvalidInput, "activity contains U+202E"},
		{"device with a zero-width space", schemas.AttendantPrefix + attendantKey, `{"availability": "Busy", "device": "Comp\u200buter"}`, schemas.CodeInvalidInput, "device contains U+200B"},
		{"call_id with a control character", schemas.PSTNPrefix + pstnKey, `{"ucc": "u", "call_id": "c\u0007", "state": "connected"}`, schemas.CodeInvalidInput, "call_id contains U+0007"},
		{"pstn ucc with a byte order mark", schemas.PSTNPrefix + pstnKey, `{"ucc": "\ufeffu", "call_id": "c", "state": "connected"}`, schemas.CodeInvalidInput, "ucc contains U+FEFF"},
		{"attendant body not JSON", schemas.AttendantPrefix + attendantKey, `{"availability": `, schemas.CodeBadRequest, "is not the JSON"},
		{"pstn body not JSON", schemas.PSTNPrefix + pstnKey, `[1, 2`, schemas.CodeBadRequest, "is not the JSON"},
		{"pstn body of the wrong shape", schemas.PSTNPrefix + pstnKey, `{"ucc": 7}`, schemas.CodeBadRequest, "is not the JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := refused(t, env, tc.subject, tc.body)
			if e.Code != tc.code || !strings.Contains(e.Message, tc.names) {
				t.Fatalf("error %+v; want %s naming %q", e, tc.code, tc.names)
			}
		})
	}

	rep, err := env.Client.Subscribe(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{
		{URI: "sip:agent\u200b1@anywhere.now"},
		{URI: "sip:agent2@anywhere.now", TeamsUPN: "agent2@contoso.com\u202e"},
		{URI: "sip:agent3@anywhere.now"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{schemas.CodeInvalidURI, schemas.CodeInvalidUPN, ""}
	for i, r := range rep.Agents {
		got := ""
		if r.Error != nil {
			got = r.Error.Code
		}
		if got != want[i] {
			t.Errorf("entry %d (%q): error %+v; want %q", i, r.URI, r.Error, want[i])
		}
	}
}

// The Kelvin sign is not k: two agents, two keys, two interests.
func TestKelvinSignIsAnotherAgent(t *testing.T) {
	env := startAll(t, provtest.Config())
	rep := env.Subscribe("ucc_app01", "sip:agent@kelvin.example", "sip:agent@\u212Aelvin.example")
	if rep.Agents[0].Key == rep.Agents[1].Key {
		t.Fatalf("one key for both: %+v", rep.Agents)
	}
	provtest.Eventually(t, "two agents", func() bool {
		st, err := env.Client.Status(env.Ctx())
		return err == nil && st.Agents == 2
	})
}

// A sync must say which agents stay: without the field it is refused and
// changes nothing; an explicit empty list clears.
func TestSyncNeedsItsAgents(t *testing.T) {
	env := startAll(t, provtest.Config())
	env.Subscribe("ucc_app01", "sip:a@anywhere.now", "sip:b@anywhere.now")
	held := func() int {
		keys, err := env.Stores.Interest.AgentsOf(env.Ctx(), schemas.Key("ucc_app01"))
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	for _, body := range []string{`{"ucc": "ucc_app01"}`, `{"ucc": "ucc_app01", "agents": null}`} {
		if e := refused(t, env, schemas.SubjectSync, body); e.Code != schemas.CodeBadRequest || !strings.Contains(e.Message, "agents") {
			t.Fatalf("sync %s: %+v; want bad_request naming agents", body, e)
		}
	}
	if n := held(); n != 2 {
		t.Fatalf("a refused sync left %d agents; want the 2 subscribed", n)
	}
	if _, err := env.Client.Sync(env.Ctx(), schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{}}); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != 0 {
		t.Fatalf("a sync with [] left %d agents; want none", n)
	}
}
