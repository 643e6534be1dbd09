package attendant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
)

// Whatever the body, an input is either a presence docs/contract.md allows or
// a contract error naming what is wrong; it never panics.
func FuzzAttendantInput(f *testing.F) {
	for _, s := range []string{
		`{"availability": "Busy", "activity": "InACall", "device": "Computer"}`,
		`{"availability": "away", "availability_value": 15500}`, `{"availability": "Unknown"}`,
		`{"availability": "Busy", "availability_value": 3500}`, `{"availability": "Lunch"}`,
		`{"availability": "Busy", "activity": "a\u202eb"}`, `{"availability": "Busy", "device": "\u200b"}`,
		`{"availability": `, `[]`, `null`, `{"availability": 7}`, "{\"availability\": \"Busy\", \"activity\": \"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	src := attendant.New(clockwork.NewFakeClock(), nil)
	agent := sources.Agent{URI: "sip:agent@attendant.example", Key: schemas.Key("sip:agent@attendant.example")}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := src.Input(context.Background(), agent, body)
		if err != nil {
			var e *schemas.Error
			if !errors.As(err, &e) || (e.Code != schemas.CodeBadRequest && e.Code != schemas.CodeInvalidInput) || e.Message == "" {
				t.Fatalf("Input(%q): error %#v is not bad_request or invalid_input with a message", body, err)
			}
			return
		}
		if got, ok := schemas.ParseAvailability(string(p.Availability)); !ok || got != p.Availability {
			t.Fatalf("Input(%q): availability %q", body, p.Availability)
		}
		if p.AvailabilityValue != p.Availability.Value() && schemas.AvailabilityOf(p.AvailabilityValue) != p.Availability {
			t.Fatalf("Input(%q): value %d outside %s", body, p.AvailabilityValue, p.Availability)
		}
		for field, text := range map[string]string{"activity": p.Activity, "device": p.Device} {
			if err := schemas.CheckText(field, text); err != nil || len(text) > attendant.MaxFieldBytes {
				t.Fatalf("Input(%q) accepted %s %q: %v", body, field, text, err)
			}
		}
		if p.Source != schemas.SourceAttendant {
			t.Fatalf("Input(%q): source %q", body, p.Source)
		}
	})
}
