package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/config"
)

// Every name of the known files is read: no warning.
func TestKnownFilesHaveNoWarnings(t *testing.T) {
	for _, file := range []string{"testdata/spec-example.xml", "testdata/odd-case.xml", "testdata/minimal.xml", "../examples/Config.xml", "../examples/Config-sip.xml"} {
		_, warnings, err := config.Load(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(warnings) != 0 {
			t.Errorf("%s: warnings %v", file, warnings)
		}
	}
}

func TestUnknownNamesAreWarnedAndIgnored(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []config.Warning
	}{
		{"attribute typo", wrap(`maxPresenceSubscriptionPerSecond="40"`, ""),
			[]config.Warning{{Element: pp, Attribute: "maxPresenceSubscriptionPerSecond", Suggestion: "maxPresenceSubscriptionsPerSecond"}}},
		{"attribute typo in another case", wrap(`MAXFAILEDPRESENCESUBSCRIPTIONSPERURL="5"`, ""),
			[]config.Warning{{Element: pp, Attribute: "MAXFAILEDPRESENCESUBSCRIPTIONSPERURL", Suggestion: "maxFailedPresenceSubscriptionsPerUri"}}},
		{"element typo", wrap("", `<PstnPresenceSorce enabled="true" />`),
			[]config.Warning{{Element: pp + "/PstnPresenceSorce", Suggestion: "PstnPresenceSource"}}},
		{"nested attribute typo", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts><Account Id="a" TenantId="t" ClientSecretEnvv="X" /></Accounts></MsGraphPresenceSource>`),
			[]config.Warning{{Element: acct, Attribute: "ClientSecretEnvv", Suggestion: "ClientSecretEnv"}}},
		{"nested element typo", wrap("", sip("", app+`<UserEndpiont UserUri="sip:u@d.com" />`)),
			[]config.Warning{{Element: ucma + "/UserEndpiont", Suggestion: "UserEndpoint"}}},
		{"unknown, nothing close", wrap(`colour="blue"`, `<Extras><More a="1" /></Extras>`),
			[]config.Warning{{Element: pp, Attribute: "colour"}, {Element: pp + "/Extras"}}},
		{"in the file's order", wrap(`zeta="1" alpha="2"`, `<Zeta /><Alpha />`),
			[]config.Warning{{Element: pp, Attribute: "zeta"}, {Element: pp, Attribute: "alpha"}, {Element: pp + "/Zeta"}, {Element: pp + "/Alpha"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, warnings, err := config.Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("the file no longer loads: %v", err)
			}
			equal(t, "warnings", warnings, tt.want)
			if p.MaxSubscriptionsPerSecond != config.DefaultMaxSubscriptionsPerSecond || p.PSTN.Enabled {
				t.Errorf("an unknown name was read: %+v", p)
			}
		})
	}
}

func TestWarningLine(t *testing.T) {
	for _, tt := range []struct {
		w    config.Warning
		want string
	}{
		{config.Warning{Element: pp, Attribute: "maxPresenceSubscriptionPerSecond", Suggestion: "maxPresenceSubscriptionsPerSecond"},
			"config: element config/PresenceProvider, attribute maxPresenceSubscriptionPerSecond is unknown and ignored; did you mean maxPresenceSubscriptionsPerSecond?"},
		{config.Warning{Element: pp + "/Extras"}, "config: element config/PresenceProvider/Extras is unknown and ignored"},
	} {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// deepFile is a document of about size bytes, nested as deep as it goes.
func deepFile(size int) []byte {
	n := size / 7
	return []byte(strings.Repeat("<a>", n) + strings.Repeat("</a>", n))
}

// allocated is the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A 200 KB file nested 30,000 deep is refused at the depth bound, for little
// memory: element paths kept on every node would cost gigabytes here.
func TestDeepFileIsRefusedCheaply(t *testing.T) {
	doc := deepFile(200 << 10)
	var err error
	bytes := allocated(func() { _, _, err = config.Parse(doc) })
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 64 levels") || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("error %v; want the depth bound named", err)
	}
	if bytes > 1<<20 {
		t.Errorf("refusing the deep file allocated %d bytes; want under 1 MiB", bytes)
	}
}

// wideFile is a document of about size bytes of elements 60 deep, each
// holding an attribute, and one typo at the end.
func wideFile(size int) []byte {
	var b strings.Builder
	b.WriteString(`<config><PresenceProvider>`)
	for b.Len() < size {
		b.WriteString(`<Other>` + strings.Repeat(`<deeper x="1">`, 57) + strings.Repeat(`</deeper>`, 57) + `</Other>`)
	}
	b.WriteString(`<PstnPresenceSource enabld="true" /></PresenceProvider></config>`)
	return []byte(b.String())
}

// Within the bounds, memory grows with the file: four times the file, about
// four times the memory.
func TestLargeFileAllocatesLinearly(t *testing.T) {
	parse := func(doc []byte) uint64 {
		var warnings []config.Warning
		var err error
		bytes := allocated(func() { _, warnings, err = config.Parse(doc) })
		if err != nil {
			t.Fatal(err)
		}
		if last := warnings[len(warnings)-1]; last.Attribute != "enabld" || last.Suggestion != "enabled" {
			t.Errorf("last warning %+v; want enabld, did you mean enabled", last)
		}
		return bytes
	}
	small, large := parse(wideFile(100<<10)), parse(wideFile(400<<10))
	t.Logf("100 KB: %d bytes allocated, 400 KB: %d", small, large)
	if large > 5*small {
		t.Errorf("4 times the file took %.1f times the memory", float64(large)/float64(small))
	}
}

func TestOversizedFileIsRefused(t *testing.T) {
	big := append([]byte(wrap("", "")), make([]byte, config.MaxFileSize)...)
	if _, _, err := config.Parse(big); err == nil || !strings.Contains(err.Error(), "too big") {
		t.Fatalf("Parse of %d bytes: %v", len(big), err)
	}
	file := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(file, big, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := config.Load(file)
	if err == nil || !strings.Contains(err.Error(), "too big") {
		t.Fatalf("Load of %d bytes: %v", len(big), err)
	}
	var re *config.RuleError
	if errors.As(err, &re) {
		t.Errorf("a size error is not a rule of an element: %v", err)
	}
}

func BenchmarkParseDeepFile(b *testing.B) {
	doc := deepFile(200 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_, _, _ = config.Parse(doc)
	}
}

func BenchmarkParseSpecExample(b *testing.B) {
	doc, err := os.ReadFile("testdata/spec-example.xml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, _, err := config.Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}
