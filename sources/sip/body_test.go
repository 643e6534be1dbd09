package sip

import (
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

var now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func pidfDoc(basic, person string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:user1@domain.com">
  <tuple id="t1"><status><basic>` + basic + `</basic></status></tuple>
  <dm:person id="p1">` + person + `</dm:person>
</presence>`
}

const categoriesDoc = `<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:user1@domain.com">
  <category name="contactCard" instance="0"><contactCard/></category>
  <category name="state" instance="1" publishTime="2026-11-24T10:00:00Z">
    <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="deviceState">
      <availability>3500</availability><device>mobile</device>
    </state>
  </category>
  <category name="state" instance="2" publishTime="2026-11-24T10:00:00Z">
    <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" manual="false" xsi:type="aggregateState">
      <availability>15500</availability><activity token="out-of-office"/><device>computer</device>
    </state>
  </category>
</categories>`

func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		want                    schemas.Presence
	}{
		{"open", contentPIDF, pidfDoc("open", ""),
			schemas.Presence{Availability: schemas.Available, AvailabilityValue: 3500, Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
		{"closed", contentPIDF, pidfDoc("closed", "<rpid:activities><rpid:on-the-phone/></rpid:activities>"),
			schemas.Presence{Availability: schemas.Offline, AvailabilityValue: 18500}},
		{"on the phone", contentPIDF + "; charset=UTF-8", pidfDoc("open", "<rpid:activities><rpid:on-the-phone/></rpid:activities>"),
			schemas.Presence{Availability: schemas.Busy, AvailabilityValue: 6500, Activity: "on-the-phone", Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
		{"away and idle", contentPIDF, pidfDoc("open", "<rpid:activities><rpid:away/></rpid:activities><rpid:user-input>idle</rpid:user-input>"),
			schemas.Presence{Availability: schemas.Away, AvailabilityValue: 15500, Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
		{"available and idle", contentPIDF, pidfDoc("open", "<rpid:user-input>idle</rpid:user-input>"),
			schemas.Presence{Availability: schemas.AvailableIdle, AvailabilityValue: 5000, Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
		{"vacation", contentPIDF, pidfDoc("open", "<rpid:activities><rpid:vacation/></rpid:activities>"),
			schemas.Presence{Availability: schemas.Away, AvailabilityValue: 15500, Activity: "out-of-office", Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
		{"basic ? (baresip before it knows)", contentPIDF, pidfDoc("?", ""), schemas.Presence{Availability: schemas.Unknown}},
		{"basic unknown", contentPIDF, pidfDoc("unknown", "<rpid:activities><rpid:away/></rpid:activities>"), schemas.Presence{Availability: schemas.Unknown}},
		{"no tuple", contentPIDF, `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>`, schemas.Presence{Availability: schemas.Unknown}},
		{"one tuple closed, one unknown", contentPIDF, strings.Replace(pidfDoc("closed", ""), "</presence>",
			`<tuple id="t2"><status><basic>?</basic></status></tuple></presence>`, 1), schemas.Presence{Availability: schemas.Offline, AvailabilityValue: 18500}},
		{"categories: the aggregate state wins", contentCategories, categoriesDoc,
			schemas.Presence{Availability: schemas.Away, AvailabilityValue: 15500, Activity: "out-of-office", Device: "Computer",
				SourceNetwork: "SameEnterprise", Modalities: schemas.Modalities{Audio: true, Video: true, Text: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBody(tc.contentType, []byte(tc.body), now)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Source, tc.want.ObservedAt = schemas.SourceSIP, now
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseBodyRefusals(t *testing.T) {
	for _, tc := range []struct{ name, contentType, body, want string }{
		{"other type", "text/plain", "hello", "neither"},
		{"broken XML", contentPIDF, "<presence><tuple>", "pidf"},
		{"no state category", contentCategories, `<categories><category name="note"/></categories>`, "no presence state"},
		{"too large", contentPIDF, "<presence>" + strings.Repeat(" ", maxBodyBytes) + "</presence>", "at most"},
		{"external entity", contentPIDF, `<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><presence>&x;</presence>`, "pidf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseBody(tc.contentType, []byte(tc.body), now); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one saying %q", err, tc.want)
			}
		})
	}
}

// checkParsed is what any body that parses must give.
func checkParsed(t *testing.T, p schemas.Presence, err error) {
	if err != nil {
		return
	}
	if p.Source != schemas.SourceSIP || !p.ObservedAt.Equal(now) {
		t.Fatalf("presence without source or time: %+v", p)
	}
	if p.AvailabilityValue < 0 || schemas.AvailabilityOf(p.AvailabilityValue) != p.Availability {
		t.Fatalf("availability %s does not match value %d", p.Availability, p.AvailabilityValue)
	}
}

func FuzzParsePIDF(f *testing.F) {
	f.Add(pidfDoc("open", "<rpid:activities><rpid:on-the-phone/></rpid:activities>"))
	f.Add(pidfDoc("closed", ""))
	f.Add(pidfDoc("open", "<rpid:user-input>idle</rpid:user-input><rpid:activities><rpid:away/><rpid:vacation/></rpid:activities>"))
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := parseBody(contentPIDF, []byte(body), now)
		checkParsed(t, p, err)
	})
}

func FuzzParseCategories(f *testing.F) {
	f.Add(categoriesDoc)
	f.Add(`<categories><category name="state"><state><availability>-1</availability></state></category></categories>`)
	f.Add(`<categories><category name="state"><state><availability>99999999999999999999</availability></state></category></categories>`)
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := parseBody(contentCategories, []byte(body), now)
		checkParsed(t, p, err)
	})
}

func BenchmarkParsePIDF(b *testing.B) {
	body := []byte(pidfDoc("open", "<rpid:activities><rpid:on-the-phone/></rpid:activities>"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseBody(contentPIDF, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCategories(b *testing.B) {
	body := []byte(categoriesDoc)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseBody(contentCategories, body, now); err != nil {
			b.Fatal(err)
		}
	}
}
