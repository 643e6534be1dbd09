package schemas_test

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contactcenter/presence-provider/schemas"
)

func TestParseURIAccepts(t *testing.T) {
	long := "sip:u@" + strings.Repeat("h", schemas.MaxURIBytes-len("sip:u@"))
	tests := []struct {
		rule, in, want string
		pstn           bool
	}{
		{"as is", "sip:user1@domain.com", "sip:user1@domain.com", false},
		{"trim spaces", "  sip:user1@domain.com  ", "sip:user1@domain.com", false},
		{"trim tabs and new lines", "\t\r\nsip:user1@domain.com\r\n", "sip:user1@domain.com", false},
		{"scheme upper case", "SIP:user1@domain.com", "sip:user1@domain.com", false},
		{"scheme mixed case", "sIp:user1@domain.com", "sip:user1@domain.com", false},
		{"sips is sip", "sips:user1@domain.com", "sip:user1@domain.com", false},
		{"sips upper case", "SIPS:user1@domain.com", "sip:user1@domain.com", false},
		{"bare user@host is sip", "user1@domain.com", "sip:user1@domain.com", false},
		{"bare user@host trimmed and lowered", " User1@Domain.com ", "sip:user1@domain.com", false},
		{"bare user@host:port", "user1@domain.com:5060", "sip:user1@domain.com:5060", false},
		{"bare +number is tel", "+31612345678", "tel:+31612345678", true},
		{"bare +number with separators", "+31 (6) 1234-56.78", "tel:+31612345678", true},
		{"lower-case user@host", "sip:User1@Domain.COM", "sip:user1@domain.com", false},
		{"drop parameters", "sip:user1@domain.com;transport=tls;maddr=1.2.3.4", "sip:user1@domain.com", false},
		{"drop headers", "sip:user1@domain.com?subject=hello&priority=urgent", "sip:user1@domain.com", false},
		{"drop parameters and headers", "sip:user1@domain.com;transport=tcp?subject=x", "sip:user1@domain.com", false},
		{"keep port", "sip:user1@domain.com:5061", "sip:user1@domain.com:5061", false},
		{"keep port, drop parameters", "sips:User1@Domain.com:5061;transport=tls", "sip:user1@domain.com:5061", false},
		{"tel", "tel:+31612345678", "tel:+31612345678", true},
		{"tel scheme upper case", "TEL:+31612345678", "tel:+31612345678", true},
		{"tel drops spaces", "tel:+31 6 12345678", "tel:+31612345678", true},
		{"tel drops dashes and dots", "tel:+31-6-1234.5678", "tel:+31612345678", true},
		{"tel drops parentheses", "tel:+1 (555) 123-4567", "tel:+15551234567", true},
		{"tel one digit", "tel:+1", "tel:+1", true},
		{"tel fifteen digits", "tel:+123456789012345", "tel:+123456789012345", true},
		{"sip user=phone is PSTN", "sip:+31612345678@domain.com;user=phone", "sip:+31612345678@domain.com", true},
		{"sips user=phone is PSTN", "SIPS:+31612345678@Domain.com;transport=tls;user=phone", "sip:+31612345678@domain.com", true},
		{"user=phone any case", "sip:+31612345678@domain.com;User=Phone", "sip:+31612345678@domain.com", true},
		{"user=phone before headers", "sip:+31612345678@domain.com;user=phone?x=y", "sip:+31612345678@domain.com", true},
		{"E.164 without user=phone is not PSTN", "sip:+31612345678@domain.com", "sip:+31612345678@domain.com", false},
		{"user=phone without + is not PSTN", "sip:31612345678@domain.com;user=phone", "sip:31612345678@domain.com", false},
		{"user=phone, name user is not PSTN", "sip:user1@domain.com;user=phone", "sip:user1@domain.com", false},
		{"user=phone, 16 digits is not PSTN", "sip:+1234567890123456@domain.com;user=phone", "sip:+1234567890123456@domain.com", false},
		{"user=ip is not PSTN", "sip:+31612345678@domain.com;user=ip", "sip:+31612345678@domain.com", false},
		{"exactly 512 bytes", long, long, false},
		{"512 bytes after trimming", "  " + long + "  ", long, false},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			got, err := schemas.ParseURI(tt.in)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if got.URI != tt.want || got.PSTN != tt.pstn {
				t.Errorf("ParseURI(%q) = %q PSTN %v, want %q PSTN %v", tt.in, got.URI, got.PSTN, tt.want, tt.pstn)
			}
			if got.Key() != schemas.Key(tt.want) {
				t.Errorf("Key %q, want Key(%q)", got.Key(), tt.want)
			}
		})
	}
}

func TestParseURIRejects(t *testing.T) {
	tests := []struct {
		rule, in, message string
	}{
		{"empty", "", "empty"},
		{"only white space", " \t ", "empty"},
		{"other scheme mailto", "mailto:user1@domain.com", `scheme "mailto"`},
		{"other scheme http", "http://domain.com/user1", `scheme "http"`},
		{"other scheme h323", "H323:user1@domain.com", `scheme "h323"`},
		{"no scheme and no @", "user1", "scheme"},
		{"sip without host", "sip:user1", "no host"},
		{"sip with empty host", "sip:user1@", "no host"},
		{"sip host only parameters", "sip:user1@;transport=tcp", "no host"},
		{"sip without anything", "sip:", "no host"},
		{"sip without user", "sip:@domain.com", "no user"},
		{"bare without user", "@domain.com", "no user"},
		{"white space inside", "sip:user 1@domain.com", "white space"},
		{"angle brackets", "<sip:user1@domain.com>", "scheme"},
		{"angle bracket inside", "sip:user1@domain.com>", "<>"},
		{"tel without +", "tel:31612345678", "E.164"},
		{"tel + only", "tel:+", "E.164"},
		{"bare + only", "+", "E.164"},
		{"tel 16 digits", "tel:+1234567890123456", "E.164"},
		{"bare 16 digits", "+1234567890123456", "E.164"},
		{"tel with letters", "tel:+3161234567a", "E.164"},
		{"tel with slash", "tel:+31/612345678", "E.164"},
		{"tel empty", "tel:", "E.164"},
		{"over 512 bytes", "sip:u@" + strings.Repeat("h", schemas.MaxURIBytes-len("sip:u@")+1), "longer than 512 bytes"},
		{"far over 512 bytes", strings.Repeat("x", 10000), "longer than 512 bytes"},
		{"NUL", "sip:user1\x00@domain.com", "control character"},
		{"new line inside", "sip:user1@domain.com\r\nVia: evil", "control character"},
		{"DEL", "sip:user1@domain.com\x7f", "control character"},
		{"C1 control", "sip:user1@domain.com\u0085x", "control character"},
		{"escape in tel", "tel:+316\x1b12", "control character"},
		{"zero-width space", "sip:agent\u200b1@domain.com", "U+200B, an invisible format character"},
		{"right-to-left override", "sip:\u202eagent1@domain.com", "U+202E"},
		{"left-to-right mark in the host", "sip:agent1@domain\u200e.com", "U+200E"},
		{"byte order mark first", "\ufeffsip:agent1@domain.com", "U+FEFF"},
		{"soft hyphen", "sip:agent\u00ad1@domain.com", "U+00AD"},
		{"format character in a parameter", "sip:agent1@domain.com;x=\u2066", "U+2066"},
		{"format character in tel", "tel:+3161234\u200d5678", "U+200D"},
		{"line separator", "sip:agent1@domain.com\u2028x", "U+2028, a line or paragraph separator"},
		{"invalid UTF-8", "sip:agent\xff@domain.com", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			got, err := schemas.ParseURI(tt.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %+v, want invalid_uri", tt.in, got)
			}
			var e *schemas.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *schemas.Error", err, err)
			}
			if e.Code != schemas.CodeInvalidURI {
				t.Errorf("code %q, want %q", e.Code, schemas.CodeInvalidURI)
			}
			if !strings.Contains(e.Message, tt.message) {
				t.Errorf("message %q does not name the problem (%q)", e.Message, tt.message)
			}
			if len(e.Message) > 200 {
				t.Errorf("message of %d bytes: the URI is not truncated", len(e.Message))
			}
			if got != (schemas.AgentURI{}) {
				t.Errorf("rejection returned %+v", got)
			}
		})
	}
}

func TestKeyOfContractExample(t *testing.T) {
	const want = "c2lwOnVzZXIxQGRvbWFpbi5jb20"
	if got := schemas.Key("sip:user1@domain.com"); got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	for _, in := range []string{"sip:user1@domain.com", " SIPS:User1@DOMAIN.com;transport=tls ", "user1@domain.com"} {
		u, err := schemas.ParseURI(in)
		if err != nil {
			t.Fatal(err)
		}
		if u.Key() != want {
			t.Errorf("ParseURI(%q).Key() = %q, want %q", in, u.Key(), want)
		}
	}
	if got := schemas.EventSubject(want); got != "presence."+want {
		t.Errorf("EventSubject = %q", got)
	}
}

// docs/contract.md, Agent URIs rejects a URI over 512 bytes; a normalised URI
// must therefore never be longer, or it would not parse again.
func TestParseURINormalisedWithin512Bytes(t *testing.T) {
	for _, in := range []string{
		// A bare user@host of 510 bytes gains "sip:".
		"u@" + strings.Repeat("h", schemas.MaxURIBytes-2),
		// Lower-casing U+023A (2 bytes) gives U+2C65 (3 bytes).
		"sip:u@\u023a" + strings.Repeat("h", schemas.MaxURIBytes-len("sip:u@")-2),
	} {
		u, err := schemas.ParseURI(in)
		if err == nil && len(u.URI) > schemas.MaxURIBytes {
			t.Fatalf("uri.go ParseURI checks the 512-byte limit on the input, not the normalised URI: "+
				"a %d-byte input gives a %d-byte URI that ParseURI itself rejects", len(in), len(u.URI))
		}
	}
}

// White space inside a URI is refused, and normalising is idempotent; a
// non-ASCII space (U+00A0, U+2003...) slips through both.
func TestParseURIUnicodeWhiteSpace(t *testing.T) {
	for _, in := range []string{"sip:user1@domain.com\u00a0;transport=tcp", "sip:user\u00a01@domain.com", "sip:user1@dom\u2003ain.com"} {
		u, err := schemas.ParseURI(in)
		if err == nil {
			again, _ := schemas.ParseURI(u.URI)
			t.Fatalf("uri.go parseSIP refuses only ASCII space and tab: ParseURI(%q) = %q (re-parses to %q), want invalid_uri",
				in, u.URI, again.URI)
		}
	}
}

// Case folding is ASCII only: Unicode would fold the Kelvin sign U+212A to
// "k" (and the long s U+017F to "s" in EqualFold), merging two different
// agents into one key.
func TestParseURIFoldsASCIIOnly(t *testing.T) {
	for _, tt := range []struct{ in, want, ascii string }{
		{"sip:agent@\u212Aelvin.example", "sip:agent@\u212Aelvin.example", "sip:agent@kelvin.example"},
		{"SIP:Agent@\u212AELVIN.example", "sip:agent@\u212Aelvin.example", "sip:agent@kelvin.example"},
		{"sip:\u00c4gent@example.com", "sip:\u00c4gent@example.com", "sip:\u00e4gent@example.com"},
	} {
		u, err := schemas.ParseURI(tt.in)
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", tt.in, err)
		}
		other, _ := schemas.ParseURI(tt.ascii)
		if u.URI != tt.want || u.Key() == other.Key() {
			t.Fatalf("ParseURI(%q) = %q; want %q, another agent than %q", tt.in, u.URI, tt.want, other.URI)
		}
	}
	if u, _ := schemas.ParseURI("sip:+31612345678@domain.com;u\u017Fer=phone"); u.PSTN {
		t.Fatal("u\u017Fer=phone is taken for user=phone")
	}
}

// ;user=phone is a URI parameter; after '?' it is part of a header.
func TestParseURIUserPhoneInHeaders(t *testing.T) {
	u, err := schemas.ParseURI("sip:+31612345678@domain.com?x=y;user=phone")
	if err != nil {
		t.Fatal(err)
	}
	if u.PSTN {
		t.Fatalf("uri.go parseSIP cuts at ';' before '?': ;user=phone inside the headers makes %q PSTN", u.URI)
	}
}

var (
	kvKey   = regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)
	pstnSIP = regexp.MustCompile(`^sip:\+[0-9]{1,15}@`)
)

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"sip:user1@domain.com", "  SIPS:User1@Domain.COM:5061;transport=tls?subject=x ", "user1@domain.com",
		"+31 (6) 1234-5678", "tel:+31612345678", "sip:+31612345678@domain.com;user=phone", "tel:+", "mailto:a@b",
		"sip:", "sip:@h", "sip:u@", "", "\x00", "a@b:c", "sip:a:b@c", "a@b@c", "sip:ÄÖ@ÉX.com", "tel:+1;ext=2",
		"sip:a@b;user=phone?x", "sip:u@h\u0085", "SIP:U@H;USER=PHONE", "sip:a@\u212Aelvin", "sip:a\u200b@b", "sip:\u202eb@c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := schemas.ParseURI(raw)
		if err != nil {
			var e *schemas.Error
			if !errors.As(err, &e) || e.Code != schemas.CodeInvalidURI || e.Message == "" {
				t.Fatalf("ParseURI(%q): error %#v is not an invalid_uri *schemas.Error", raw, err)
			}
			return
		}
		if len(u.URI) > schemas.MaxURIBytes {
			t.Fatalf("ParseURI(%q) gave %d bytes (see TestParseURINormalisedWithin512Bytes)", raw, len(u.URI))
		}
		if !strings.HasPrefix(u.URI, "sip:") && !strings.HasPrefix(u.URI, "tel:") {
			t.Fatalf("ParseURI(%q) = %q: neither sip: nor tel:", raw, u.URI)
		}
		if err := schemas.CheckText("uri", u.URI); err != nil {
			t.Fatalf("ParseURI(%q) = %q: %v", raw, u.URI, err)
		}
		if strings.ContainsFunc(u.URI, func(r rune) bool { return r < utf8.RuneSelf && unicode.IsUpper(r) }) {
			t.Fatalf("ParseURI(%q) = %q holds an ASCII capital", raw, u.URI)
		}
		if strings.Count(u.URI, "\u212A") != strings.Count(raw, "\u212A") && strings.HasPrefix(u.URI, "sip:") && !strings.ContainsAny(raw, ";?") {
			t.Fatalf("ParseURI(%q) = %q folded the Kelvin sign", raw, u.URI)
		}
		if strings.HasPrefix(u.URI, "tel:") && !u.PSTN {
			t.Fatalf("ParseURI(%q) = %+v: a tel URI is PSTN", raw, u)
		}
		if strings.HasPrefix(u.URI, "sip:") && u.PSTN && !pstnSIP.MatchString(u.URI) {
			t.Fatalf("ParseURI(%q) = %+v: PSTN, but the user is not E.164", raw, u)
		}
		if strings.HasPrefix(u.URI, "sip:") && strings.ContainsAny(u.URI, ";?") {
			t.Fatalf("ParseURI(%q) = %q kept parameters or headers", raw, u.URI)
		}
		key := u.Key()
		if !kvKey.MatchString(key) {
			t.Fatalf("Key(%q) = %q is not a valid KV key", u.URI, key)
		}
		again, err := schemas.ParseURI(u.URI)
		if err != nil || again.URI != u.URI {
			if strings.IndexFunc(u.URI, unicode.IsSpace) >= 0 {
				t.Fatalf("ParseURI(%q) = %q holds white space (see TestParseURIUnicodeWhiteSpace)", raw, u.URI)
			}
			t.Fatalf("not idempotent: ParseURI(%q) = %q, ParseURI(%q) = %q, %v", raw, u.URI, u.URI, again.URI, err)
		}
		// The PSTN flag of sip:+E164@host;user=phone is lost with the
		// parameter; a tel URI keeps it.
		if again.PSTN != strings.HasPrefix(u.URI, "tel:") {
			t.Fatalf("ParseURI(%q).PSTN = %v", u.URI, again.PSTN)
		}
	})
}

func TestParseAvailability(t *testing.T) {
	names := []schemas.Availability{schemas.Available, schemas.AvailableIdle, schemas.Busy, schemas.BusyIdle,
		schemas.DoNotDisturb, schemas.BeRightBack, schemas.Away, schemas.Offline, schemas.Unknown}
	for _, name := range names {
		for _, in := range []string{string(name), strings.ToLower(string(name)), strings.ToUpper(string(name)), swapCase(string(name))} {
			got, ok := schemas.ParseAvailability(in)
			if !ok || got != name {
				t.Errorf("ParseAvailability(%q) = %q, %v; want %q", in, got, ok, name)
			}
		}
	}
	for _, in := range []string{"", "Avail", "Availablex", " Available", "Available ", "Do Not Disturb", "Be-Right-Back", "Online", "Awa\x19"} {
		if got, ok := schemas.ParseAvailability(in); ok {
			t.Errorf("ParseAvailability(%q) = %q, want refused", in, got)
		}
	}
}

func swapCase(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsUpper(r) {
			return unicode.ToLower(r)
		}
		return unicode.ToUpper(r)
	}, s)
}

func TestAvailabilityValue(t *testing.T) {
	tests := []struct {
		a    schemas.Availability
		want int
	}{
		{schemas.Available, 3500}, {schemas.AvailableIdle, 5000}, {schemas.Busy, 6500}, {schemas.BusyIdle, 7500},
		{schemas.DoNotDisturb, 9500}, {schemas.BeRightBack, 12500}, {schemas.Away, 15500}, {schemas.Offline, 18500},
		{schemas.Unknown, 0}, {"Sleeping", 0}, {"", 0},
	}
	for _, tt := range tests {
		if got := tt.a.Value(); got != tt.want {
			t.Errorf("%q.Value() = %d, want %d", tt.a, got, tt.want)
		}
		if tt.want != 0 && schemas.AvailabilityOf(tt.want) != tt.a {
			t.Errorf("AvailabilityOf(%q.Value()) = %q", tt.a, schemas.AvailabilityOf(tt.want))
		}
	}
}

func TestAvailabilityOf(t *testing.T) {
	tests := []struct {
		value int
		want  schemas.Availability
	}{
		{-1, schemas.Unknown},
		// 0 is both the floor of Available and Unknown's value; it reads as
		// Unknown, so that Unknown's own value round-trips.
		{0, schemas.Unknown},
		{1, schemas.Available},
		{4499, schemas.Available},
		{4500, schemas.AvailableIdle},
		{5999, schemas.AvailableIdle},
		{6000, schemas.Busy},
		{7499, schemas.Busy},
		{7500, schemas.BusyIdle},
		{8999, schemas.BusyIdle},
		{9000, schemas.DoNotDisturb},
		{11999, schemas.DoNotDisturb},
		{12000, schemas.BeRightBack},
		{14999, schemas.BeRightBack},
		{15000, schemas.Away},
		{17999, schemas.Away},
		{18000, schemas.Offline},
		{18500, schemas.Offline},
		{1 << 30, schemas.Offline},
	}
	for _, tt := range tests {
		if got := schemas.AvailabilityOf(tt.value); got != tt.want {
			t.Errorf("AvailabilityOf(%d) = %q, want %q", tt.value, got, tt.want)
		}
	}
}

func TestPresenceSameAs(t *testing.T) {
	base := schemas.Presence{
		Availability: schemas.Away, AvailabilityValue: 15500, Activity: "Away", Device: "Computer",
		SourceNetwork: "SameEnterprise", Modalities: schemas.Modalities{Audio: true, Video: true, Text: true},
		Source: schemas.SourceSIP, ObservedAt: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
	}
	later := base
	later.ObservedAt = base.ObservedAt.Add(time.Hour)
	if !base.SameAs(later) || !later.SameAs(base) {
		t.Error("presences that differ only in observed_at are not the same")
	}
	zone := base
	zone.ObservedAt = base.ObservedAt.In(time.FixedZone("X", 7200))
	if !base.SameAs(zone) {
		t.Error("the same instant in another zone is not the same")
	}
	if !base.SameAs(base) {
		t.Error("a presence is not the same as itself")
	}
	changes := map[string]func(p *schemas.Presence){
		"availability":       func(p *schemas.Presence) { p.Availability = schemas.Busy },
		"availability_value": func(p *schemas.Presence) { p.AvailabilityValue = 15501 },
		"activity":           func(p *schemas.Presence) { p.Activity = "InACall" },
		"device":             func(p *schemas.Presence) { p.Device = "Mobile" },
		"source_network":     func(p *schemas.Presence) { p.SourceNetwork = "Federated" },
		"modalities.audio":   func(p *schemas.Presence) { p.Modalities.Audio = false },
		"modalities.video":   func(p *schemas.Presence) { p.Modalities.Video = false },
		"modalities.text":    func(p *schemas.Presence) { p.Modalities.Text = false },
		"source":             func(p *schemas.Presence) { p.Source = schemas.SourceGraph },
	}
	for name, change := range changes {
		p := later
		change(&p)
		if base.SameAs(p) || p.SameAs(base) {
			t.Errorf("presences that differ in %s are the same", name)
		}
	}
	// Every field but observed_at must be in changes: a new field must be
	// compared too.
	fields, _ := jsonFields(reflect.TypeOf(base))
	modalities, _ := jsonFields(reflect.TypeOf(base.Modalities))
	if len(fields)-2+len(modalities) != len(changes) {
		t.Errorf("Presence has fields %v and modalities %v; changes covers %d", fields, modalities, len(changes))
	}
}
