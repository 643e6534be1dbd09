package schemas_test

import (
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/schemas"
)

func TestCheckText(t *testing.T) {
	for _, ok := range []string{"", "ucc_app01", "In a call", "Jürgen Ødegård", "会議中", "tab-free \u00a0 nbsp", "emoji 📞"} {
		if err := schemas.CheckText("f", ok); err != nil {
			t.Errorf("CheckText(%q): %v; want accepted", ok, err)
		}
	}
	for in, want := range map[string]string{
		"a\x00b":      "f contains U+0000, a control character",
		"a\tb":        "U+0009, a control character",
		"a\u0085b":    "U+0085, a control character",
		"a\u200bb":    "U+200B, an invisible format character",
		"a\u202eb":    "U+202E, an invisible format character",
		"\ufeffa":     "U+FEFF",
		"a\u2029b":    "U+2029, a line or paragraph separator",
		"a\xc3":       "f is not valid UTF-8",
		"\U000E0041x": "U+E0041", // a tag character, Cf outside the BMP
	} {
		err := schemas.CheckText("f", in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckText(%q) = %v; want %q", in, err, want)
		}
	}
}
