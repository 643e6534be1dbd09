package pstn_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

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
	src := pstn.New(time.Hour, clock, nopSink{})
	agent := sources.Agent{URI: "tel:+31612345678", Key: schemas.Key("tel:+31612345678")}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := src.Input(agent, body)
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
