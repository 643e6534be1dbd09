package sip

import (
	"fmt"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/schemas"
)

// stateDoc is a categories document ([MS-PRES] categories schema)
// for presentity uri holding the given state category instances.
func stateDoc(uri string, states ...string) string {
	var b strings.Builder
	b.WriteString(`<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="` + uri + `">`)
	for i, st := range states {
		fmt.Fprintf(&b, `<category name="state" instance="%d" publishTime="2026-11-24T10:00:00Z" container="300" version="1" expireType="user">%s</category>`, i+1, st)
	}
	b.WriteString(`</categories>`)
	return b.String()
}

// state is a state instance value ([MS-PRES] state schema) of the
// xsi:type given, with an availability element (none when empty) and inner
// XML after it.
func state(xsiType, availability, inner string) string {
	a := ""
	if availability != "" {
		a = "<availability>" + availability + "</availability>"
	}
	return `<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" manual="false" xsi:type="` +
		xsiType + `">` + a + inner + `</state>`
}

var on = schemas.Modalities{Audio: true, Video: true, Text: true}

// The aggregate availability number by the published ranges, each edge on
// both sides; the number itself is kept.
func TestCategoriesAvailabilityRanges(t *testing.T) {
	for _, tc := range []struct {
		value int
		want  schemas.Availability
	}{
		{1, schemas.Available}, {3500, schemas.Available}, {4499, schemas.Available},
		{4500, schemas.AvailableIdle}, {5999, schemas.AvailableIdle},
		{6000, schemas.Busy}, {6500, schemas.Busy}, {7499, schemas.Busy},
		{7500, schemas.BusyIdle}, {8999, schemas.BusyIdle},
		{9000, schemas.DoNotDisturb}, {11999, schemas.DoNotDisturb},
		{12000, schemas.BeRightBack}, {14999, schemas.BeRightBack},
		{15000, schemas.Away}, {15500, schemas.Away}, {17999, schemas.Away},
		{18000, schemas.Offline}, {18500, schemas.Offline}, {1 << 30, schemas.Offline},
	} {
		u, err := parseCategoryDocument([]byte(stateDoc("sip:agent@contoso.com", state("aggregateState", fmt.Sprint(tc.value), ""))))
		if err != nil || !u.HasState {
			t.Fatalf("%d: %+v, %v", tc.value, u, err)
		}
		if u.Presence.Availability != tc.want || u.Presence.AvailabilityValue != tc.value {
			t.Errorf("%d: %s (value %d); want %s", tc.value, u.Presence.Availability, u.Presence.AvailabilityValue, tc.want)
		}
		if wantOn := tc.want != schemas.Offline; u.Presence.Modalities != (schemas.Modalities{Audio: wantOn, Video: wantOn, Text: wantOn}) {
			t.Errorf("%d: modalities %+v", tc.value, u.Presence.Modalities)
		}
	}
}

func TestParseCategoryDocument(t *testing.T) {
	const agent = "sip:agent@contoso.com"
	for _, tc := range []struct {
		name string
		doc  string
		want categoryUpdate
	}{
		{"the manual's log line: Away : 15500 : : Computer : SameEnterprise",
			stateDoc(agent, state("aggregateState", "15500", "<device>computer</device>")),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Away, AvailabilityValue: 15500,
				Device: "Computer", SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"on the phone",
			stateDoc(agent, state("aggregateState", "6500", `<activity token="on-the-phone"/><device>deskphone</device>`)),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500,
				Activity: "on-the-phone", Device: "Deskphone", SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"in a conference, do not disturb",
			stateDoc(agent, state("aggregateState", "9500", `<activity token="in-a-conference"/>`)),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.DoNotDisturb, AvailabilityValue: 9500,
				Activity: "in-a-conference", SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"in a meeting on a mobile",
			stateDoc(agent, state("aggregateState", "6500", `<activity token="in-a-meeting"/><device>mobile</device>`)),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500,
				Activity: "in-a-meeting", Device: "Mobile", SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"the aggregate state wins over a machine state before it",
			stateDoc(agent, state("machineState", "3500", "<device>web</device>"), state("aggregateState", "12500", `<activity token="off-work"/>`)),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.BeRightBack, AvailabilityValue: 12500,
				Activity: "off-work", SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"the aggregate state wins over a user state after it",
			stateDoc(agent, state("aggregateState", "3500", ""), state("userState", "9500", "")),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Available, AvailabilityValue: 3500,
				SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"a prefixed xsi:type is the aggregate state too",
			stateDoc(agent, state("userState", "3500", ""), strings.Replace(state("st:aggregateState", "18500", ""), "<state ", `<state xmlns:st="http://schemas.microsoft.com/2006/09/sip/state" `, 1)),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Offline, AvailabilityValue: 18500,
				SourceNetwork: "SameEnterprise"}}},
		{"without an aggregate state the first state stands in",
			stateDoc(agent, state("userState", "6500", ""), state("machineState", "3500", "")),
			categoryUpdate{URI: agent, HasState: true, Presence: schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500,
				SourceNetwork: "SameEnterprise", Modalities: on}}},
		{"a state without a number tells nothing",
			stateDoc(agent, state("calendarState", "", `<activity token="in-a-meeting"/>`)),
			categoryUpdate{URI: agent}},
		{"a state with a number that is none tells nothing",
			stateDoc(agent, state("aggregateState", "busy", ""), state("aggregateState", "-1", ""), state("aggregateState", "99999999999999999999", "")),
			categoryUpdate{URI: agent}},
		{"no state category: note and contact card only",
			`<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="` + agent + `"><category name="note" instance="0"><note/></category><category name="contactCard" instance="0"><contactCard/></category></categories>`,
			categoryUpdate{URI: agent}},
		{"a document that names no presentity",
			`<categories><category name="state"><state><availability>3500</availability></state></category></categories>`,
			categoryUpdate{HasState: true, Presence: schemas.Presence{Availability: schemas.Available, AvailabilityValue: 3500,
				SourceNetwork: "SameEnterprise", Modalities: on}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCategoryDocument([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// A document without a usable state is errNoState to a NOTIFY, whose
// dialog then keeps what it knows; broken XML is an error naming it.
func TestParseCategoriesWithoutState(t *testing.T) {
	if _, err := parseCategories([]byte(stateDoc("sip:a@b.com", state("calendarState", "", "")))); err != errNoState {
		t.Fatalf("error %v; want errNoState", err)
	}
	if _, err := parseCategoryDocument([]byte(`<categories><category name="state">`)); err == nil || !strings.HasPrefix(err.Error(), "categories: ") {
		t.Fatalf("error %v; want one naming the categories document", err)
	}
}
