package pstn_test

import (
	"regexp"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/pstn"
)

// BenchmarkInputRoundTrip measures one input, request to reply, through a
// provider on a real embedded NATS, each input turning its agent Busy or
// Available: an attendant input stores the presence only; a PSTN input
// first writes or deletes its call in presence_calls. The difference is
// what keeping calls in KV costs.
func BenchmarkInputRoundTrip(b *testing.B) {
	env := provtest.StartParts(b, provtest.Server(b), provtest.Config(), clockwork.NewRealClock(), func(p provtest.Parts) {
		p.Worker.AddSource(schemas.SourceAttendant, attendant.New(p.Clock, []*regexp.Regexp{regexp.MustCompile(`@attendant\.example$`)}))
		p.Worker.AddSource(schemas.SourcePSTN, pstn.New(p.Calls, maxCall, p.Clock, p.Worker, p.Log))
	})
	b.Run("attendant", func(b *testing.B) {
		key := schemas.Key("sip:agent1@attendant.example")
		for i := 0; b.Loop(); i++ {
			in := schemas.AttendantInput{Availability: "Busy"}
			if i%2 == 1 {
				in.Availability = "Available"
			}
			if rep, err := env.Client.Attendant(env.Ctx(), key, in); err != nil || !rep.OK {
				b.Fatalf("%+v, %v", rep, err)
			}
		}
	})
	b.Run("pstn", func(b *testing.B) {
		key := schemas.Key(phone)
		for i := 0; b.Loop(); i++ {
			in := schemas.PSTNInput{UCC: "ucc_app01", CallID: "c1", State: schemas.CallConnected}
			if i%2 == 1 {
				in.State = schemas.CallEnded
			}
			if rep, err := env.Client.PSTN(env.Ctx(), key, in); err != nil || !rep.OK {
				b.Fatalf("%+v, %v", rep, err)
			}
		}
	})
}
