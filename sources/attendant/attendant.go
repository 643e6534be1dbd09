// Package attendant is the AttendantService source: presence pushed by
// third-party clients (Snapper-like) for agents that a Match pattern covers.
// It holds no upstream subscription; inputs become presence as they arrive,
// even for agents no UCC subscribes yet.
package attendant

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// MaxFieldBytes bounds the free-text fields of an input.
const MaxFieldBytes = 256

// Source turns attendant inputs into presence.
type Source struct {
	clock    clockwork.Clock
	patterns []*regexp.Regexp
}

// New returns the attendant source for the agents that one of the Match
// patterns finds in their URI.
func New(clock clockwork.Clock, patterns []*regexp.Regexp) *Source {
	return &Source{clock: clock, patterns: patterns}
}

// Serves an agent when a pattern matches within its whole URI, scheme
// included.
func (s *Source) Serves(uri schemas.AgentURI, _ string) bool {
	return s.match(uri) != nil
}

// Why names the pattern that matched.
func (s *Source) Why(uri schemas.AgentURI, _ string) string {
	if re := s.match(uri); re != nil {
		return fmt.Sprintf("pattern `%s` matched", re)
	}
	return "no pattern matched"
}

func (s *Source) match(uri schemas.AgentURI) *regexp.Regexp {
	for _, re := range s.patterns {
		if re.MatchString(uri.URI) {
			return re
		}
	}
	return nil
}

// Subscribe has nothing to do upstream: presence arrives as inputs.
func (*Source) Subscribe(context.Context, sources.Agent) error { return nil }

// Unsubscribe has nothing to end upstream.
func (*Source) Unsubscribe(context.Context, sources.Agent) error { return nil }

// Health is always good: the source depends on nothing. Its detail says
// which agents it serves, so that a status explains its row.
func (s *Source) Health() sources.Health {
	patterns := make([]string, len(s.patterns))
	for i, re := range s.patterns {
		patterns[i] = "`" + re.String() + "`"
	}
	return sources.Health{Healthy: true, Detail: "fed by inputs, for the URIs that match " + strings.Join(patterns, ", ")}
}

// Input validates an input and returns the presence it describes.
func (s *Source) Input(_ context.Context, _ sources.Agent, body []byte) (schemas.Presence, error) {
	var in schemas.AttendantInput
	if err := json.Unmarshal(body, &in); err != nil {
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeBadRequest, Message: "attendant input is not the JSON of docs/contract.md, Inputs: " + err.Error()}
	}
	availability, ok := schemas.ParseAvailability(in.Availability)
	if !ok {
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("availability %q is not one of %s", in.Availability, availabilityList())}
	}
	value := in.AvailabilityValue
	switch {
	case value == 0:
		value = availability.Value()
	case schemas.AvailabilityOf(value) != availability:
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("availability_value %d is %s, not %s", value, schemas.AvailabilityOf(value), availability)}
	}
	if len(in.Activity) > MaxFieldBytes || len(in.Device) > MaxFieldBytes {
		return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput,
			Message: fmt.Sprintf("activity and device are at most %d bytes", MaxFieldBytes)}
	}
	for _, f := range [][2]string{{"activity", in.Activity}, {"device", in.Device}} {
		if err := schemas.CheckText(f[0], f[1]); err != nil {
			return schemas.Presence{}, &schemas.Error{Code: schemas.CodeInvalidInput, Message: err.Error()}
		}
	}
	return schemas.Presence{
		Availability:      availability,
		AvailabilityValue: value,
		Activity:          in.Activity,
		Device:            in.Device,
		Modalities:        modalitiesOf(availability),
		Source:            schemas.SourceAttendant,
		ObservedAt:        s.clock.Now().UTC(),
	}, nil
}

// modalitiesOf says an agent who is signed in can take every modality; the
// AttendantService reports no finer detail.
func modalitiesOf(a schemas.Availability) schemas.Modalities {
	on := a != schemas.Offline && a != schemas.Unknown
	return schemas.Modalities{Audio: on, Video: on, Text: on}
}

// availabilityList names the availabilities an input may give.
func availabilityList() string {
	var names []string
	for _, b := range schemas.Availabilities() {
		names = append(names, string(b.Name))
	}
	return strings.Join(names, ", ")
}
