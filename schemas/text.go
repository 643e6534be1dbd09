package schemas

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// CheckText is the rule every text field of a request or an input follows
// (ucc, teams_upn, activity, device, call_id, and URIs through ParseURI): it
// is valid UTF-8 and holds no character that is invisible or changes how
// the text around it reads. Those are the control characters (Cc), the
// format characters (Cf: zero-width space U+200B, the bidi controls such as
// right-to-left override U+202E, the byte order mark U+FEFF...) and the line
// and paragraph separators (Zl, Zp): with them two identifiers that print
// alike differ, and a log line or an operator's screen can be made to lie.
// The error names the field and the character; the caller gives it its code.
func CheckText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if hidden(r) {
			return fmt.Errorf("%s contains %U, %s", field, r, kindOf(r))
		}
	}
	return nil
}

func hidden(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

func kindOf(r rune) string {
	switch {
	case unicode.Is(unicode.Cc, r):
		return "a control character"
	case unicode.Is(unicode.Cf, r):
		return "an invisible format character"
	default:
		return "a line or paragraph separator"
	}
}

// ASCIILower lower-cases ASCII letters only. Unicode case mapping would fold
// other letters onto ASCII ones (the Kelvin sign U+212A becomes "k"), and
// so merge two different agents into one key.
func ASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// asciiEqualFold is strings.EqualFold for ASCII letters only.
func asciiEqualFold(a, b string) bool { return ASCIILower(a) == ASCIILower(b) }
