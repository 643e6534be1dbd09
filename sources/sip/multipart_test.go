package sip

import (
	"strings"
	"testing"
)

// crlf gives a sample the CRLF line ends SIP bodies have on the wire.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// rfc4662Type and rfc4662Body are modelled on the first NOTIFY of RFC 4662
// section 5 (example, full state of adam-friends): the RLMI root named by
// start with bracketed Content-IDs, two PIDF parts, a resource with no
// instance yet.
const rfc4662Type = `multipart/related;type="application/rlmi+xml";start="<nXYxAE@pres.vancouver.example.com>";boundary="50UBfW7LSCVLtggUPe5z"`

const rfc4662Body = `--50UBfW7LSCVLtggUPe5z
Content-Transfer-Encoding: binary
Content-ID: <nXYxAE@pres.vancouver.example.com>
Content-Type: application/rlmi+xml;charset="UTF-8"

<?xml version="1.0" encoding="UTF-8"?>
<list xmlns="urn:ietf:params:xml:ns:rlmi"
      uri="sip:adam-friends@pres.vancouver.example.com"
      version="1" fullState="true">
  <name xml:lang="en">Buddy List at COM</name>
  <resource uri="sip:bob@vancouver.example.com">
    <name>Bob Smith</name>
    <instance id="juwigmtboe" state="active" cid="bUZBsM@pres.vancouver.example.com"/>
  </resource>
  <resource uri="sip:dave@vancouver.example.com">
    <name>Dave Jones</name>
    <instance id="hqzsuxtfyq" state="active" cid="ZvSvkz@pres.vancouver.example.com"/>
  </resource>
  <resource uri="sip:ed@dallas.example.net">
    <name>Ed at NET</name>
  </resource>
</list>

--50UBfW7LSCVLtggUPe5z
Content-Transfer-Encoding: binary
Content-ID: <bUZBsM@pres.vancouver.example.com>
Content-Type: application/pidf+xml;charset="UTF-8"

<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@vancouver.example.com">
  <tuple id="sg89ae"><status><basic>open</basic></status></tuple>
</presence>

--50UBfW7LSCVLtggUPe5z
Content-Transfer-Encoding: binary
Content-ID: <ZvSvkz@pres.vancouver.example.com>
Content-Type: application/pidf+xml;charset="UTF-8"

<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:dave@vancouver.example.com">
  <tuple id="slie74"><status><basic>closed</basic></status></tuple>
</presence>

--50UBfW7LSCVLtggUPe5z--
`

// msSIPType and msSIPBody have the shape of the piggybacked first state of
// [MS-SIP] 3.3.5.1 (and example 4.3): start=resourceList, a bare
// Content-ID, cid naming the contact's part; the contact's part is the
// categories document of [MS-PRES] sends to a category subscription in
// place of [MS-SIP]'s legacy text/xml+msrtc.pidf.
const msSIPType = `multipart/related; type="application/rlmi+xml";start=resourceList; boundary=50UBfW7LSCVLtggUPe5z`

const msSIPBody = `--50UBfW7LSCVLtggUPe5z
Content-Transfer-Encoding: binary
Content-ID: resourceList
Content-Type: application/rlmi+xml

<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:watcher@tradewind.com" version="1" fullState="true" >
  <resource uri="sip:contact1@tradewind.com" >
    <instance id="0" state="active" cid="contact1@tradewind.com" />
  </resource>
  <resource uri="sip:contact2@tradewind.com" >
    <instance id="0" state="resubscribe" poolFqdn="pool2.tradewind.com" />
  </resource>
  <resource uri="sip:contact3@tradewind.com" >
    <instance id="0" state="resubscribe" />
  </resource>
  <resource uri="sip:nobody@tradewind.com" >
    <instance id="0" state="terminated" reason="noresource" />
  </resource>
</list>
--50UBfW7LSCVLtggUPe5z
Content-Transfer-Encoding: binary
Content-ID: <contact1@tradewind.com>
Content-Type: application/msrtc-event-categories+xml

<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:contact1@tradewind.com"><category name="state" instance="1"><state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="aggregateState"><availability>6500</availability><activity token="on-the-phone"/></state></category></categories>
--50UBfW7LSCVLtggUPe5z--
`

func TestParseListNotificationRFC4662(t *testing.T) {
	for name, body := range map[string]string{"CRLF": crlf(rfc4662Body), "LF": rfc4662Body} {
		t.Run(name, func(t *testing.T) {
			n, err := parseListNotification(rfc4662Type, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			l := n.List
			if l.URI != "sip:adam-friends@pres.vancouver.example.com" || l.Version != 1 || !l.FullState || len(l.Resources) != 3 {
				t.Fatalf("list %+v", l)
			}
			if len(n.Parts.Parts) != 3 || n.Parts.Root.ContentID != "nXYxAE@pres.vancouver.example.com" {
				t.Fatalf("parts %+v", n.Parts)
			}
			if ed := l.Resources[2]; ed.URI != "sip:ed@dallas.example.net" || len(ed.Instances) != 0 {
				t.Fatalf("ed %+v; want no instance", ed)
			}
			want := map[string]string{"sip:bob@vancouver.example.com": "open", "sip:dave@vancouver.example.com": "closed"}
			for _, r := range l.Resources[:2] {
				in := r.Instances[0]
				if in.State != instanceActive {
					t.Fatalf("%s: state %q", r.URI, in.State)
				}
				part, ok := n.stateOf(in)
				if !ok || mediaType(part.ContentType) != contentPIDF {
					t.Fatalf("%s: part %+v, %v", r.URI, part, ok)
				}
				body := string(part.Body)
				if !strings.Contains(body, `entity="`+r.URI+`"`) || !strings.Contains(body, "<basic>"+want[r.URI]+"</basic>") {
					t.Fatalf("%s: the part of another resource:\n%s", r.URI, body)
				}
			}
		})
	}
}

func TestParseListNotificationMSSIP(t *testing.T) {
	n, err := parseListNotification(msSIPType, []byte(crlf(msSIPBody)))
	if err != nil {
		t.Fatal(err)
	}
	if n.List.URI != "sip:watcher@tradewind.com" || n.Parts.Root.ContentID != "resourceList" {
		t.Fatalf("list %+v, root %q", n.List, n.Parts.Root.ContentID)
	}
	want := []rlmiResource{
		{URI: "sip:contact1@tradewind.com", Instances: []rlmiInstance{{ID: "0", State: instanceActive, CID: "contact1@tradewind.com"}}},
		{URI: "sip:contact2@tradewind.com", Instances: []rlmiInstance{{ID: "0", State: instanceResubscribe, PoolFQDN: "pool2.tradewind.com"}}},
		{URI: "sip:contact3@tradewind.com", Instances: []rlmiInstance{{ID: "0", State: instanceResubscribe}}},
		{URI: "sip:nobody@tradewind.com", Instances: []rlmiInstance{{ID: "0", State: instanceTerminated, Reason: "noresource"}}},
	}
	if len(n.List.Resources) != len(want) {
		t.Fatalf("resources %+v", n.List.Resources)
	}
	for i, r := range n.List.Resources {
		if r.URI != want[i].URI || len(r.Instances) != 1 || r.Instances[0] != want[i].Instances[0] {
			t.Errorf("resource %d: %+v; want %+v", i, r, want[i])
		}
	}
	part, ok := n.stateOf(n.List.Resources[0].Instances[0])
	if !ok {
		t.Fatal("no part for contact1")
	}
	u, err := parseCategoryDocument(part.Body)
	if err != nil || u.URI != "sip:contact1@tradewind.com" || u.Presence.AvailabilityValue != 6500 || u.Presence.Activity != "on-the-phone" {
		t.Fatalf("contact1: %+v, %v", u, err)
	}
	if _, ok := n.stateOf(n.List.Resources[1].Instances[0]); ok {
		t.Fatal("a resubscribe instance without cid has a part")
	}
}

// The first part is the root when start is absent (RFC 2387 section 3.2).
func TestParseMultipartRelatedWithoutStart(t *testing.T) {
	ct := strings.Replace(rfc4662Type, `start="<nXYxAE@pres.vancouver.example.com>";`, "", 1)
	b, err := parseMultipartRelated(ct, []byte(crlf(rfc4662Body)))
	if err != nil || b.Root.ContentID != "nXYxAE@pres.vancouver.example.com" || b.Type != contentRLMI {
		t.Fatalf("%+v, %v", b.Root, err)
	}
}

func TestParseListNotificationRefusals(t *testing.T) {
	body := crlf(rfc4662Body)
	list := func(attrs string) string {
		return crlf(strings.Replace(rfc4662Body, `uri="sip:adam-friends@pres.vancouver.example.com"
      version="1" fullState="true"`, attrs, 1))
	}
	for _, tc := range []struct{ name, contentType, body, want string }{
		{"not multipart", "application/rlmi+xml", body, "is not multipart/related"},
		{"multipart/mixed", strings.Replace(rfc4662Type, "related", "mixed", 1), body, "is not multipart/related"},
		{"no boundary", `multipart/related;type="application/rlmi+xml"`, body, "has no boundary"},
		{"broken content type", `multipart/related;boundary="x`, body, "content type"},
		{"start names no part", strings.Replace(rfc4662Type, "nXYxAE", "other", 1), body, `no part has the start Content-ID "other@pres.vancouver.example.com"`},
		{"type says another root", strings.Replace(rfc4662Type, "application/rlmi+xml", "application/pidf+xml", 1), body, "the type parameter says"},
		{"root is not RLMI", strings.Replace(rfc4662Type, `type="application/rlmi+xml";`, "", 1) + "", strings.Replace(body, "application/rlmi+xml", "application/xml", 1), "not application/rlmi+xml"},
		{"base64 part", rfc4662Type, strings.Replace(body, "Content-Transfer-Encoding: binary", "Content-Transfer-Encoding: base64", 1), `Content-Transfer-Encoding "base64"`},
		{"cut short", rfc4662Type, body[:len(body)/2], "multipart: part"},
		{"no parts", rfc4662Type, "--50UBfW7LSCVLtggUPe5z--\r\n", "no parts"},
		{"too large", rfc4662Type, body + strings.Repeat(" ", maxListBodyBytes), "at most"},
		{"list without uri", rfc4662Type, list(`version="1" fullState="true"`), "list has no uri"},
		{"list without version", rfc4662Type, list(`uri="sip:l@example.com" fullState="true"`), `version "" is not`},
		{"negative version", rfc4662Type, list(`uri="sip:l@example.com" version="-1" fullState="true"`), `version "-1" is not`},
		{"fullState not a boolean", rfc4662Type, list(`uri="sip:l@example.com" version="2" fullState="yes"`), `fullState "yes"`},
		{"resource without uri", rfc4662Type, strings.Replace(body, `<resource uri="sip:dave@vancouver.example.com">`, "<resource>", 1), "resource 2 has no uri"},
		{"broken RLMI", rfc4662Type, strings.Replace(body, "</list>", "", 1), "rlmi: "},
		{"external entity", rfc4662Type, crlf(strings.Replace(strings.Replace(rfc4662Body, `<?xml version="1.0" encoding="UTF-8"?>
<list`, `<!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]><list`, 1), "Buddy List at COM", "&x;", 1)), "rlmi: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseListNotification(tc.contentType, []byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one saying %q", err, tc.want)
			}
		})
	}
}

func FuzzParseListNotification(f *testing.F) {
	f.Add(rfc4662Type, crlf(rfc4662Body))
	f.Add(msSIPType, crlf(msSIPBody))
	f.Fuzz(func(t *testing.T, contentType, body string) {
		n, err := parseListNotification(contentType, []byte(body))
		if err != nil {
			return
		}
		if n.List.URI == "" || len(n.Parts.Parts) == 0 || mediaType(n.Parts.Root.ContentType) != contentRLMI {
			t.Fatalf("accepted without a list URI or an RLMI root: %+v", n)
		}
	})
}
