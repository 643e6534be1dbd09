package siptest

import (
	"encoding/xml"
	"strings"
)

// PIDF returns a PIDF document (RFC 3863) for entity (a presentity URI) with
// basic status basic ("open" or "closed"), one RPID activity (RFC 4480, such
// as "on-the-phone", "busy", "away", "meeting"; "" for none) on the person
// element, and a note ("" for none).
func PIDF(entity, basic, activity, note string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="urn:ietf:params:xml:ns:pidf"` +
		` xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"` +
		` xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="` + escape(entity) + `">` + "\n")
	b.WriteString(`  <tuple id="t1"><status><basic>` + escape(basic) + `</basic></status></tuple>` + "\n")
	if activity != "" || note != "" {
		b.WriteString(`  <dm:person id="p1">`)
		if activity != "" {
			b.WriteString(`<rpid:activities><rpid:` + escape(activity) + `/></rpid:activities>`)
		}
		if note != "" {
			b.WriteString(`<dm:note>` + escape(note) + `</dm:note>`)
		}
		b.WriteString("</dm:person>\n")
	}
	b.WriteString("</presence>\n")
	return b.String()
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
