package sip

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/contactcenter/presence-provider/schemas"
)

// categoriesXML is one presentity's category instances, the
// application/msrtc-event-categories+xml body of [MS-PRES] (schema
// http://schemas.microsoft.com/2006/09/sip/categories): the root names the
// presentity in uri, each category carries a name and an instance.
// encoding/xml matches local names in any namespace, so prefixes do not
// matter.
type categoriesXML struct {
	XMLName    xml.Name `xml:"categories"`
	URI        string   `xml:"uri,attr"`
	Categories []struct {
		Name  string       `xml:"name,attr"`
		State []stateValue `xml:"state"`
	} `xml:"category"`
}

// stateValue is a state category instance ([MS-PRES], schema
// http://schemas.microsoft.com/2006/09/sip/state): xsi:type says which
// (aggregateState, userState, machineState, ...), availability is the
// number, activity token the activity, device where it was published.
type stateValue struct {
	Type         string `xml:"type,attr"`
	Availability string `xml:"availability"`
	Activity     struct {
		Token string `xml:"token,attr"`
	} `xml:"activity"`
	Device string `xml:"device"`
}

// aggregateStateType is the xsi:type of the state the pool aggregates from
// all the presentity's endpoints: the one a watcher sees as the user's.
const aggregateStateType = "aggregateState"

// sameEnterprise is the source network of a presentity whose pool is the
// provider's own deployment, as the manual's log line shows it: a trusted
// application watches the users of its own topology.
const sameEnterprise = "SameEnterprise"

// categoryUpdate is what one categories document tells of its presentity.
type categoryUpdate struct {
	// URI is the presentity, as the document names it (empty if it does not).
	URI string
	// HasState is false for a document without a usable state category:
	// what is known of the presentity stays, nothing is guessed.
	HasState bool
	Presence schemas.Presence
}

// parseCategoryDocument reads a categories document: the aggregate state
// gives the presence; another state instance stands in only when the
// document has no aggregate one.
func parseCategoryDocument(body []byte) (categoryUpdate, error) {
	var doc categoriesXML
	if err := decode(body, &doc); err != nil {
		return categoryUpdate{}, fmt.Errorf("categories: %w", err)
	}
	u := categoryUpdate{URI: strings.TrimSpace(doc.URI)}
	aggregate := false
	for _, c := range doc.Categories {
		if c.Name != "state" {
			continue
		}
		for _, st := range c.State {
			value, err := strconv.Atoi(strings.TrimSpace(st.Availability))
			if err != nil || value < 0 {
				// No number (a state holding only a note or a calendar
				// entry) says nothing about availability.
				continue
			}
			isAggregate := localName(st.Type) == aggregateStateType
			if u.HasState && (aggregate || !isAggregate) {
				continue
			}
			u.HasState, aggregate = true, isAggregate
			u.Presence = stateToPresence(value, st)
		}
	}
	return u, nil
}

// stateToPresence maps a state instance by the published availability
// ranges (schemas.AvailabilityOf): below 4500 Available, 4500-5999
// AvailableIdle, 6000-7499 Busy, 7500-8999 BusyIdle, 9000-11999
// DoNotDisturb, 12000-14999 BeRightBack, 15000-17999 Away, 18000 and above
// Offline. The number itself is kept, as the manual's logs show it.
func stateToPresence(value int, st stateValue) schemas.Presence {
	p := schemas.Presence{
		Availability:      schemas.AvailabilityOf(value),
		AvailabilityValue: value,
		Activity:          strings.TrimSpace(st.Activity.Token),
		Device:            deviceName(st.Device),
		SourceNetwork:     sameEnterprise,
	}
	p.Modalities = modalitiesOf(p.Availability)
	return p
}

// parseCategories is a categories document as one NOTIFY's presence.
func parseCategories(body []byte) (schemas.Presence, error) {
	u, err := parseCategoryDocument(body)
	if err != nil {
		return schemas.Presence{}, err
	}
	if !u.HasState {
		return schemas.Presence{}, errNoState
	}
	return u.Presence, nil
}

// localName drops an XML prefix: xsi:type values may carry one.
func localName(qualified string) string {
	_, local, found := strings.Cut(strings.TrimSpace(qualified), ":")
	if !found {
		return strings.TrimSpace(qualified)
	}
	return local
}

// deviceName gives MS-PRES device tokens the spelling UCCs log (Computer).
func deviceName(d string) string {
	d = strings.TrimSpace(d)
	if d == "" {
		return ""
	}
	first, size := utf8.DecodeRuneInString(d)
	return string(unicode.ToUpper(first)) + strings.ToLower(d[size:])
}
