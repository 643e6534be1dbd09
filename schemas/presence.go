package schemas

import "time"

// Availability is an availability name (docs/contract.md, Presence).
type Availability string

const (
	Available     Availability = "Available"
	AvailableIdle Availability = "AvailableIdle"
	Busy          Availability = "Busy"
	BusyIdle      Availability = "BusyIdle"
	DoNotDisturb  Availability = "DoNotDisturb"
	BeRightBack   Availability = "BeRightBack"
	Away          Availability = "Away"
	Offline       Availability = "Offline"
	Unknown       Availability = "Unknown"
)

// availabilityBands are the Skype for Business scale: each name owns the values
// from its floor up to the next floor; value is what a source with no number uses.
var availabilityBands = []struct {
	name  Availability
	floor int
	value int
}{
	{Available, 0, 3500},
	{AvailableIdle, 4500, 5000},
	{Busy, 6000, 6500},
	{BusyIdle, 7500, 7500},
	{DoNotDisturb, 9000, 9500},
	{BeRightBack, 12000, 12500},
	{Away, 15000, 15500},
	{Offline, 18000, 18500},
}

// AvailabilityBand is an availability name and the numbers it owns on the
// Skype for Business scale.
type AvailabilityBand struct {
	Name Availability
	// From and To bound the numbers the name owns, To 0 meaning no bound
	// (Unknown owns only 0); Value is what a source with no number uses.
	From, To, Value int
}

// Availabilities lists every availability name in the order of the scale,
// Unknown last: what an input may give.
func Availabilities() []AvailabilityBand {
	out := make([]AvailabilityBand, 0, len(availabilityBands)+1)
	for i, b := range availabilityBands {
		band := AvailabilityBand{Name: b.name, From: b.floor, Value: b.value}
		if i+1 < len(availabilityBands) {
			band.To = availabilityBands[i+1].floor - 1
		}
		out = append(out, band)
	}
	return append(out, AvailabilityBand{Name: Unknown})
}

// ParseAvailability accepts an availability name, case-insensitively.
func ParseAvailability(s string) (Availability, bool) {
	for _, b := range availabilityBands {
		if equalFoldASCII(s, string(b.name)) {
			return b.name, true
		}
	}
	if equalFoldASCII(s, string(Unknown)) {
		return Unknown, true
	}
	return "", false
}

// Value is the number a source with no number of its own reports.
func (a Availability) Value() int {
	for _, b := range availabilityBands {
		if b.name == a {
			return b.value
		}
	}
	return 0
}

// AvailabilityOf names the band a Skype for Business number falls in.
func AvailabilityOf(value int) Availability {
	if value <= 0 {
		return Unknown
	}
	name := Unknown
	for _, b := range availabilityBands {
		if value >= b.floor {
			name = b.name
		}
	}
	return name
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// Modalities says what the agent can take.
type Modalities struct {
	Audio bool `json:"audio"`
	Video bool `json:"video"`
	Text  bool `json:"text"`
}

// Presence is one agent's presence as a source observed it.
type Presence struct {
	Availability      Availability `json:"availability"`
	AvailabilityValue int          `json:"availability_value"`
	Activity          string       `json:"activity"`
	Device            string       `json:"device"`
	SourceNetwork     string       `json:"source_network"`
	Modalities        Modalities   `json:"modalities"`
	Source            string       `json:"source"`
	ObservedAt        time.Time    `json:"observed_at"`
}

// SameAs reports whether two presences differ only in when they were observed:
// an event is published only when something else changed (docs/contract.md,
// Presence events).
func (p Presence) SameAs(q Presence) bool {
	p.ObservedAt, q.ObservedAt = time.Time{}, time.Time{}
	return p == q
}

// Event is a presence change of one agent, published on presence.<key> and
// kept as the agent's entry in presence_state.
type Event struct {
	URI string `json:"uri"`
	Key string `json:"key"`
	// Seq is the revision of the agent's entry in presence_state. The stored
	// entry cannot know its own revision, so readers fill it in.
	Seq      uint64    `json:"seq,omitempty"`
	Presence Presence  `json:"presence"`
	Previous *Presence `json:"previous"`
	// InputSeq is the presence_inputs stream sequence of the last input
	// applied to the agent, kept in the stored entry only: an input at or
	// below it was applied already. Events carry none.
	InputSeq uint64 `json:"input_seq,omitempty"`
}
