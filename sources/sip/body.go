package sip

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

// Body types a presence NOTIFY carries, and what SUBSCRIBE accepts.
const (
	contentPIDF       = "application/pidf+xml"
	contentCategories = "application/msrtc-event-categories+xml"
	acceptBodies      = contentPIDF + ", " + contentCategories
)

// maxBodyBytes bounds what the parsers read: a presence document is small.
const maxBodyBytes = 64 << 10

// errNoState is a body that tells nothing about availability (a categories
// document without a state category); what is known stays.
var errNoState = errors.New("no presence state in the body")

// parseBody maps a NOTIFY body to presence (docs/product.md, SIP), by content type.
func parseBody(contentType string, body []byte, now time.Time) (schemas.Presence, error) {
	if len(body) > maxBodyBytes {
		return schemas.Presence{}, fmt.Errorf("body of %d bytes; at most %d", len(body), maxBodyBytes)
	}
	mediaType, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(contentType)), ";")
	var p schemas.Presence
	var err error
	switch strings.TrimSpace(mediaType) {
	case contentPIDF:
		p, err = parsePIDF(body)
	case contentCategories:
		p, err = parseCategories(body)
	default:
		return schemas.Presence{}, fmt.Errorf("content type %q is neither %s nor %s", contentType, contentPIDF, contentCategories)
	}
	p.Source, p.ObservedAt = schemas.SourceSIP, now.UTC()
	return p, err
}

// decode reads XML without fetching or expanding anything external.
func decode(body []byte, v any) error {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	return dec.Decode(v)
}

// pidf is RFC 3863 with the RPID extension (RFC 4480). encoding/xml matches
// local names in any namespace, so prefixes do not matter.
type pidf struct {
	XMLName xml.Name `xml:"presence"`
	Tuples  []struct {
		Basic string `xml:"status>basic"`
	} `xml:"tuple"`
	Persons []struct {
		Activities struct {
			Items []struct{ XMLName xml.Name } `xml:",any"`
		} `xml:"activities"`
		UserInput string `xml:"user-input"`
	} `xml:"person"`
}

// rpidActivities maps RFC 4480 activities to an availability and
// the MS-PRES activity token a UCC knows.
var rpidActivities = map[string]struct {
	availability schemas.Availability
	token        string
}{
	"on-the-phone":      {schemas.Busy, "on-the-phone"},
	"busy":              {schemas.Busy, ""},
	"meeting":           {schemas.Busy, "in-a-meeting"},
	"appointment":       {schemas.Busy, "in-a-meeting"},
	"presentation":      {schemas.DoNotDisturb, "in-a-conference"},
	"performance":       {schemas.DoNotDisturb, ""},
	"away":              {schemas.Away, ""},
	"lunch":             {schemas.BeRightBack, ""},
	"breakfast":         {schemas.BeRightBack, ""},
	"dinner":            {schemas.BeRightBack, ""},
	"meal":              {schemas.BeRightBack, ""},
	"steering":          {schemas.Away, ""},
	"travel":            {schemas.Away, ""},
	"sleeping":          {schemas.Away, "off-work"},
	"vacation":          {schemas.Away, "out-of-office"},
	"holiday":           {schemas.Away, "out-of-office"},
	"permanent-absence": {schemas.Offline, "out-of-office"},
}

func parsePIDF(body []byte) (schemas.Presence, error) {
	var doc pidf
	if err := decode(body, &doc); err != nil {
		return schemas.Presence{}, fmt.Errorf("pidf: %w", err)
	}
	open, known := false, false
	for _, t := range doc.Tuples {
		switch strings.ToLower(strings.TrimSpace(t.Basic)) {
		case "open":
			open, known = true, true
		case "closed":
			known = true
		}
	}
	p := schemas.Presence{Availability: schemas.Offline}
	switch {
	case !known:
		// RFC 3863's basic is open or closed; anything else (baresip's
		// "?" before it knows, "unknown" from a fresh one), or no basic at
		// all, says nothing of the user: Unknown, never Offline.
		p.Availability = schemas.Unknown
	case open:
		p.Availability = schemas.Available
		for _, person := range doc.Persons {
			for _, a := range person.Activities.Items {
				if m, ok := rpidActivities[a.XMLName.Local]; ok {
					p.Availability, p.Activity = m.availability, m.token
				}
			}
			if strings.EqualFold(strings.TrimSpace(person.UserInput), "idle") {
				p.Availability = idle(p.Availability)
			}
		}
	}
	p.AvailabilityValue = p.Availability.Value()
	p.Modalities = modalitiesOf(p.Availability)
	return p, nil
}

func idle(a schemas.Availability) schemas.Availability {
	switch a {
	case schemas.Available:
		return schemas.AvailableIdle
	case schemas.Busy:
		return schemas.BusyIdle
	}
	return a
}

func modalitiesOf(a schemas.Availability) schemas.Modalities {
	on := a != schemas.Offline && a != schemas.Unknown
	return schemas.Modalities{Audio: on, Video: on, Text: on}
}
