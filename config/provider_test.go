package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/config"
)

func patterns(p config.AttendantSource) []string {
	var out []string
	for _, re := range p.Patterns {
		out = append(out, re.String())
	}
	return out
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// The example Config.xml of the product's manual (config/testdata/README.md).
func TestParseSpecExample(t *testing.T) {
	p, _, err := config.Load("testdata/spec-example.xml")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "maxPresenceSubscriptionsPerSecond", p.MaxSubscriptionsPerSecond, 15)
	equal(t, "failedPresenceSubscriptionsResubscribeDelay", p.FailedResubscribeDelay, 15*time.Second)
	equal(t, "MaxFailedPresenceSubscriptionsResubscribeDelay (default)", p.MaxFailedResubscribeDelay, 28800*time.Second)
	equal(t, "maxFailedPresenceSubscriptionsPerUri", p.MaxFailuresPerURI, 3)

	equal(t, "UcmaPresenceSource", p.SIP, config.SIPSource{
		Enabled:             true,
		ApplicationID:       "urn:application:ucc_presenceprovider01",
		Dialect:             config.DialectRFC,
		Transport:           "tcp",
		SubscriptionExpires: config.DefaultSubscriptionExpires,
		Listen:              "",
		Application:         config.Endpoint{URI: "sip:ucc_presenceprovider01@sipdomain.com"},
		User:                &config.Endpoint{URI: "sip:demo_user@sipdomain.com", PoolFQDN: ""},
	})
	equal(t, "PstnPresenceSource", p.PSTN, config.PSTNSource{Enabled: true, MaxCallDuration: 4 * time.Hour})
	equal(t, "AttendantServiceSource.Enabled", p.Attendant.Enabled, false)
	equal(t, "AttendantServiceSource patterns", patterns(p.Attendant), []string{"domain.com", "domain2.com"})
	equal(t, "MsGraphPresenceSource", p.Graph, config.GraphSource{
		Enabled:        true,
		RequestsPer30s: 1500,
		BudgetPercent:  80,
		MinCycle:       time.Second,
		Accounts: []config.GraphAccount{{
			ID:              "my-presence-account1",
			TenantID:        "4119dd4d-e455-4535-9d45-b3535f584cad",
			ClientID:        "my-presence-account1",
			ClientSecretEnv: "PRESENCE_GRAPH_CLIENT_SECRET",
		}},
	})
}

func TestParseDefaults(t *testing.T) {
	p, _, err := config.Load("testdata/minimal.xml")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Provider{
		MaxSubscriptionsPerSecond: 15,
		FailedResubscribeDelay:    900 * time.Second,
		MaxFailedResubscribeDelay: 28800 * time.Second,
		MaxFailuresPerURI:         3,
		SIP:                       config.SIPSource{Dialect: config.DialectRFC, Transport: "tcp", SubscriptionExpires: config.DefaultSubscriptionExpires},
		// A file without a PstnPresenceSource element does not enable it.
		PSTN:  config.PSTNSource{Enabled: false, MaxCallDuration: 4 * time.Hour},
		Graph: config.GraphSource{RequestsPer30s: 1500, BudgetPercent: 80, MinCycle: time.Second},
	}
	equal(t, "Provider", p, want)

	d := config.Default()
	want.PSTN.Enabled = true
	equal(t, "Default()", d, want)
	equal(t, "constants", []any{config.DefaultMaxSubscriptionsPerSecond, config.DefaultFailedResubscribeDelay,
		config.DefaultMaxFailedResubscribeDelay, config.DefaultMaxFailuresPerURI, config.DefaultMaxCallDuration,
		config.DefaultClientSecretEnv, config.DefaultSIPTransport},
		[]any{15, 900 * time.Second, 28800 * time.Second, 3, 4 * time.Hour, "PRESENCE_GRAPH_CLIENT_SECRET", "tcp"})

	// Empty attributes take the defaults; sources present but disabled.
	p, _, err = config.Parse([]byte(`<PresenceProvider maxPresenceSubscriptionsPerSecond="" failedPresenceSubscriptionsResubscribeDelay="">
		<UcmaPresenceSource enabled="false" />
		<PstnPresenceSource />
		<AttendantServiceSource enabled="false" />
		<MsGraphPresenceSource enabled="false" />
	</PresenceProvider>`))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "root PresenceProvider", p, func() config.Provider { w := want; w.PSTN.Enabled = false; return w }())
}

func TestParseOddCase(t *testing.T) {
	p, _, err := config.Load("testdata/odd-case.xml")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "MAXPRESENCESUBSCRIPTIONSPERSECOND", p.MaxSubscriptionsPerSecond, 20)
	equal(t, "FailedPresenceSubscriptionsResubscribeDelay", p.FailedResubscribeDelay, time.Minute)
	equal(t, "maxfailedpresencesubscriptionsresubscribedelay", p.MaxFailedResubscribeDelay, 10*time.Minute)
	equal(t, "MaxFailedPresenceSubscriptionsPerUri", p.MaxFailuresPerURI, 0)
	equal(t, "UCMAPRESENCESOURCE", p.SIP, config.SIPSource{
		Enabled:             true,
		ApplicationID:       "urn:application:odd",
		Dialect:             config.DialectRFC,
		Transport:           "tcp",
		SubscriptionExpires: config.DefaultSubscriptionExpires,
		Listen:              "0.0.0.0:5061",
		Application:         config.Endpoint{URI: "sip:app@sipdomain.com", PoolFQDN: "pool.sipdomain.com:5061", Register: true},
		User:                &config.Endpoint{URI: "sip:demo_user@sipdomain.com", PoolFQDN: "pool.sipdomain.com"},
	})
	equal(t, "pstnpresencesource", p.PSTN, config.PSTNSource{Enabled: true, MaxCallDuration: time.Minute})
	equal(t, "AttendantServiceSource.Enabled", p.Attendant.Enabled, true)
	equal(t, "MATCH PATTERN", patterns(p.Attendant), []string{`^sip:.*@attendant\.example$`})
	if !p.Attendant.Patterns[0].MatchString("sip:x@attendant.example") {
		t.Error("pattern does not match")
	}
	equal(t, "MsGraphPresenceSource", p.Graph, config.GraphSource{
		Enabled: true, RequestsPer30s: 100, BudgetPercent: 80, MinCycle: 5 * time.Second,
		Accounts: []config.GraphAccount{
			{ID: "acc1", TenantID: "tenant-1", ClientID: "client-1", ClientSecretEnv: "MY_GRAPH_SECRET", CertificateFile: "/etc/presence/acc1.pem"},
			{ID: "acc2", TenantID: "tenant-2", ClientID: "acc2", ClientSecretEnv: "PRESENCE_GRAPH_CLIENT_SECRET"},
		},
	})
}

func TestLoadExampleConfig(t *testing.T) {
	p, _, err := config.Load("../examples/Config.xml")
	if err != nil {
		t.Fatal(err)
	}
	// A first start with it needs no server: SIP and Teams are there, off.
	if p.SIP.Enabled || !p.PSTN.Enabled || !p.Attendant.Enabled || p.Graph.Enabled {
		t.Errorf("examples/Config.xml enables the attendant and PSTN sources only; got %+v", p)
	}
	equal(t, "Listen", p.SIP.Listen, "127.0.0.1:5070")
	equal(t, "Application", p.SIP.Application, config.Endpoint{URI: "sip:ucc_presenceprovider01@sipdomain.com", PoolFQDN: "127.0.0.1:5060"})
	equal(t, "patterns", patterns(p.Attendant), []string{`attendant\.example$`, `domain2\.com$`})
	equal(t, "accounts", len(p.Graph.Accounts), 1)

	sip, _, err := config.Load("../examples/Config-sip.xml")
	if err != nil {
		t.Fatal(err)
	}
	if !sip.SIP.Enabled || !sip.PSTN.Enabled || !sip.Attendant.Enabled || sip.Graph.Enabled {
		t.Errorf("examples/Config-sip.xml enables SIP, attendant and PSTN; got %+v", sip)
	}
	equal(t, "SIP Application", sip.SIP.Application, p.SIP.Application)
}

func TestLoadMissingFile(t *testing.T) {
	if _, _, err := config.Load("testdata/no-such-file.xml"); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestParseNotConfig(t *testing.T) {
	for _, in := range []string{
		"",
		"this is not XML",
		"{\"PresenceProvider\": {}}",
		"<config><PresenceProvider></config>",
		"<config><PresenceProvider>",
		"<config/><config/>",
	} {
		_, _, err := config.Parse([]byte(in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "config: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): %q is not one config: line", in, err)
		}
	}
}

// wrap puts a PresenceProvider element with the given attributes and
// content in a Config.xml document.
func wrap(attrs, inner string) string {
	return `<?xml version="1.0" encoding="utf-8"?><config version="1.5"><License>license.key</License>` +
		`<PresenceProvider ` + attrs + `>` + inner + `</PresenceProvider></config>`
}

const (
	pp    = "config/PresenceProvider"
	ucma  = pp + "/UcmaPresenceSource"
	att   = pp + "/AttendantServiceSource"
	graph = pp + "/MsGraphPresenceSource"
	acct  = graph + "/Accounts/Account"
	app   = `<ApplicationEndpoint OwnerUri="sip:app@sipdomain.com" />`
)

// sip is an enabled UcmaPresenceSource with the given extra attributes.
func sip(attrs, inner string) string {
	return `<UcmaPresenceSource enabled="true" ApplicationId="urn:application:x" ` + attrs + `>` + inner + `</UcmaPresenceSource>`
}

func TestParseBrokenRules(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		element   string
		attribute string
		rule      string
	}{
		{"no PresenceProvider element", `<config><License>x</License></config>`, "config", "", "no PresenceProvider element"},
		{"two UcmaPresenceSource", wrap("", sip("", app)+sip("", app)), pp, "", "more than one UcmaPresenceSource"},

		{"no ApplicationId when enabled", wrap("", `<UcmaPresenceSource enabled="true">`+app+`</UcmaPresenceSource>`), ucma, "ApplicationId", "mandatory"},
		{"empty ApplicationId when enabled", wrap("", `<UcmaPresenceSource enabled="true" ApplicationId=" ">`+app+`</UcmaPresenceSource>`), ucma, "ApplicationId", "mandatory"},
		{"zero ApplicationEndpoint", wrap("", sip("", "")), ucma, "", "exactly one ApplicationEndpoint"},
		{"two ApplicationEndpoint", wrap("", sip("", app+app)), ucma, "", "exactly one ApplicationEndpoint"},
		{"two ApplicationEndpoint, disabled", wrap("", `<UcmaPresenceSource enabled="false">`+app+app+`</UcmaPresenceSource>`), ucma, "", "exactly one ApplicationEndpoint"},
		{"two UserEndpoint", wrap("", sip("", app+`<UserEndpoint UserUri="sip:u1@d.com" /><UserEndpoint UserUri="sip:u2@d.com" />`)), ucma, "", "at most one UserEndpoint"},
		{"no OwnerUri", wrap("", sip("", `<ApplicationEndpoint />`)), ucma + "/ApplicationEndpoint", "OwnerUri", "mandatory"},
		{"OwnerUri not sip", wrap("", sip("", `<ApplicationEndpoint OwnerUri="tel:+31612345678" />`)), ucma + "/ApplicationEndpoint", "OwnerUri", "not a sip URI"},
		{"UserUri not a URI", wrap("", sip("", app+`<UserEndpoint UserUri="sip:nobody" />`)), ucma + "/UserEndpoint", "UserUri", "not a sip URI"},
		{"bad PoolFqdn", wrap("", sip("", `<ApplicationEndpoint OwnerUri="sip:a@b.com" PoolFqdn="pool:a:b" />`)), ucma + "/ApplicationEndpoint", "PoolFqdn", "host or host:port"},
		{"PoolFqdn port out of range", wrap("", sip("", app+`<UserEndpoint UserUri="sip:u@d.com" PoolFqdn="pool.d.com:65536" />`)), ucma + "/UserEndpoint", "PoolFqdn", "host or host:port"},
		{"PoolFqdn with a path", wrap("", sip("", `<ApplicationEndpoint OwnerUri="sip:a@b.com" PoolFqdn="https://pool/x" />`)), ucma + "/ApplicationEndpoint", "PoolFqdn", "host or host:port"},
		{"bad Transport", wrap("", sip(`Transport="sctp"`, app)), ucma, "Transport", "not udp, tcp or tls"},
		{"unknown Dialect", wrap("", sip(`Dialect="lync2010"`, app)), ucma, "Dialect", `"lync2010" is not rfc or mssip`},
		{"unknown Dialect, disabled", wrap("", `<UcmaPresenceSource Dialect="ms-sip">`+app+`</UcmaPresenceSource>`), ucma, "Dialect", "not rfc or mssip"},
		{"batchSize with rfc", wrap("", sip(`batchSize="50"`, app)), ucma, "batchSize", "only used with Dialect mssip; Dialect is rfc"},
		{"batchSize 0", wrap("", sip(`Dialect="mssip" batchSize="0"`, app)), ucma, "batchSize", "out of range 1 to 1000"},
		{"Register with mssip", wrap("", sip(`Dialect="mssip"`, `<ApplicationEndpoint OwnerUri="sip:a@b.com" Register="true" />`)), ucma + "/ApplicationEndpoint", "Register", "does not register; Dialect is mssip"},
		{"Listen without port", wrap("", sip(`Listen="127.0.0.1"`, app)), ucma, "Listen", "host:port"},
		{"Listen with a bad port", wrap("", sip(`Listen="127.0.0.1:sip"`, app)), ucma, "Listen", "host:port"},
		{"Listen port out of range", wrap("", sip(`Listen="127.0.0.1:70000"`, app)), ucma, "Listen", "host:port"},
		{"enabled not a boolean", wrap("", `<UcmaPresenceSource enabled="yes" />`), ucma, "enabled", "not true or false"},
		{"TlsCAFile with tcp", wrap("", sip(`TlsCAFile="/etc/ca.pem"`, app)), ucma, "TlsCAFile", "only used with Transport tls; Transport is tcp"},
		{"TlsServerName with udp, disabled", wrap("", `<UcmaPresenceSource Transport="udp" TlsServerName="pool">`+app+`</UcmaPresenceSource>`), ucma, "TlsServerName", "only used with Transport tls"},
		{"tls without TlsCertFile", wrap("", sip(`Transport="tls" TlsKeyFile="/etc/key.pem"`, app)), ucma, "TlsCertFile", "mandatory with Transport tls"},
		{"tls without TlsKeyFile", wrap("", sip(`Transport="tls" TlsCertFile="/etc/cert.pem"`, app)), ucma, "TlsKeyFile", "mandatory with Transport tls"},
		{"TlsCertFile missing", wrap("", sip(`Transport="tls" TlsCertFile="/nonexistent/cert.pem" TlsKeyFile="/nonexistent/key.pem"`, app)), ucma, "TlsCertFile", `cannot read "/nonexistent/cert.pem": no such file or directory`},

		{"enabled AttendantServiceSource with no Match", wrap("", `<AttendantServiceSource enabled="true" />`), att, "", "one or more Match"},
		{"Match without pattern", wrap("", `<AttendantServiceSource enabled="true"><Match /></AttendantServiceSource>`), att + "/Match", "pattern", "mandatory"},
		{"invalid regex (", wrap("", `<AttendantServiceSource enabled="true"><Match pattern="(" /></AttendantServiceSource>`), att + "/Match", "pattern", "not a valid regular expression"},
		{"invalid regex in a disabled source", wrap("", `<AttendantServiceSource enabled="false"><Match pattern="a[" /></AttendantServiceSource>`), att + "/Match", "pattern", "not a valid regular expression"},
		{".NET lookahead", wrap("", `<AttendantServiceSource enabled="true"><Match pattern="ok" /><Match pattern="(?=x)domain" /></AttendantServiceSource>`), att + "/Match", "pattern", "not a valid regular expression"},
		{".NET lookbehind", wrap("", `<AttendantServiceSource enabled="true"><Match pattern="(?&lt;!x)domain" /></AttendantServiceSource>`), att + "/Match", "pattern", "not a valid regular expression"},

		{"maxPresenceSubscriptionsPerSecond 0", wrap(`maxPresenceSubscriptionsPerSecond="0"`, ""), pp, "maxPresenceSubscriptionsPerSecond", "out of range 1 to 10000"},
		{"maxPresenceSubscriptionsPerSecond too big", wrap(`maxPresenceSubscriptionsPerSecond="10001"`, ""), pp, "maxPresenceSubscriptionsPerSecond", "out of range"},
		{"maxPresenceSubscriptionsPerSecond not a number", wrap(`maxPresenceSubscriptionsPerSecond="fifteen"`, ""), pp, "maxPresenceSubscriptionsPerSecond", "not a whole number"},
		{"maxPresenceSubscriptionsPerSecond fraction", wrap(`maxPresenceSubscriptionsPerSecond="1.5"`, ""), pp, "maxPresenceSubscriptionsPerSecond", "not a whole number"},
		{"failed delay 0", wrap(`failedPresenceSubscriptionsResubscribeDelay="0"`, ""), pp, "failedPresenceSubscriptionsResubscribeDelay", "out of range"},
		{"failed delay negative", wrap(`failedPresenceSubscriptionsResubscribeDelay="-15"`, ""), pp, "failedPresenceSubscriptionsResubscribeDelay", "out of range"},
		{"failed delay with unit", wrap(`failedPresenceSubscriptionsResubscribeDelay="15s"`, ""), pp, "failedPresenceSubscriptionsResubscribeDelay", "not a whole number"},
		{"max delay over a week", wrap(`MaxFailedPresenceSubscriptionsResubscribeDelay="604801"`, ""), pp, "MaxFailedPresenceSubscriptionsResubscribeDelay", "out of range"},
		{"max delay less than first delay", wrap(`failedPresenceSubscriptionsResubscribeDelay="100" MaxFailedPresenceSubscriptionsResubscribeDelay="99"`, ""), pp, "MaxFailedPresenceSubscriptionsResubscribeDelay", "must not be less than failedPresenceSubscriptionsResubscribeDelay"},
		{"max failures negative", wrap(`maxFailedPresenceSubscriptionsPerUri="-1"`, ""), pp, "maxFailedPresenceSubscriptionsPerUri", "out of range 0 to 1000"},
		{"max failures too big", wrap(`maxFailedPresenceSubscriptionsPerUri="1001"`, ""), pp, "maxFailedPresenceSubscriptionsPerUri", "out of range"},
		{"maxCallDuration under a minute", wrap("", `<PstnPresenceSource enabled="true" maxCallDuration="59" />`), pp + "/PstnPresenceSource", "maxCallDuration", "out of range 60"},
		{"requestsPer30Seconds 0", wrap("", `<MsGraphPresenceSource requestsPer30Seconds="0" />`), graph, "requestsPer30Seconds", "out of range"},
		{"minCycleSeconds over a day", wrap("", `<MsGraphPresenceSource minCycleSeconds="86401" />`), graph, "minCycleSeconds", "out of range"},
		{"budgetPercent over 100", wrap("", `<MsGraphPresenceSource budgetPercent="101" />`), graph, "budgetPercent", "out of range"},

		{"Graph enabled without Accounts", wrap("", `<MsGraphPresenceSource enabled="true" />`), graph, "", "one or more Account"},
		{"Graph enabled with empty Accounts", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts /></MsGraphPresenceSource>`), graph, "", "one or more Account"},
		{"two Accounts elements", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts><Account Id="a" TenantId="t" /></Accounts><Accounts /></MsGraphPresenceSource>`), graph, "", "more than one Accounts"},
		{"account without TenantId", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts><Account Id="a" /></Accounts></MsGraphPresenceSource>`), acct, "TenantId", "mandatory"},
		{"account without Id", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts><Account TenantId="t" /></Accounts></MsGraphPresenceSource>`), acct, "Id", "mandatory"},
		{"duplicate account Id", wrap("", `<MsGraphPresenceSource enabled="true"><Accounts><Account Id="a" TenantId="t1" /><Account Id="a" TenantId="t2" /></Accounts></MsGraphPresenceSource>`), acct, "Id", "more than one Account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, err := config.Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", p)
			}
			var re *config.RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is %T, not *config.RuleError", err, err)
			}
			if re.Element != tt.element || re.Attribute != tt.attribute || !strings.Contains(re.Rule, tt.rule) {
				t.Errorf("RuleError{Element: %q, Attribute: %q, Rule: %q}, want %q, %q, a rule with %q",
					re.Element, re.Attribute, re.Rule, tt.element, tt.attribute, tt.rule)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.element) || !strings.Contains(msg, tt.attribute) || !strings.Contains(msg, re.Rule) {
				t.Errorf("error line %q does not name the element, the attribute and the rule", msg)
			}
			if !reflect.DeepEqual(p, config.Provider{}) {
				t.Errorf("a broken file gave settings %+v", p)
			}
		})
	}
}

func TestRuleErrorLine(t *testing.T) {
	tests := []struct {
		err  config.RuleError
		want string
	}{
		{config.RuleError{Element: "config/PresenceProvider", Attribute: "maxPresenceSubscriptionsPerSecond", Rule: "0 is out of range 1 to 10000"},
			"config: element config/PresenceProvider, attribute maxPresenceSubscriptionsPerSecond: 0 is out of range 1 to 10000"},
		{config.RuleError{Element: "config/PresenceProvider/UcmaPresenceSource", Rule: "must contain exactly one ApplicationEndpoint element, has 0"},
			"config: element config/PresenceProvider/UcmaPresenceSource: must contain exactly one ApplicationEndpoint element, has 0"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// A listen address or pool may be an IPv6 literal, which needs brackets.
func TestParseIPv6HostPort(t *testing.T) {
	_, _, err := config.Parse([]byte(wrap("", sip(`Listen="[::1]:5070"`, `<ApplicationEndpoint OwnerUri="sip:a@b.com" PoolFqdn="[2001:db8::1]:5061" />`))))
	if err != nil {
		t.Fatalf("provider.go hostPort refuses a bracketed IPv6 host: SplitHostPort gives host %q, which holds ':' (%v)", "::1", err)
	}
}

// A PoolFqdn "host:" has an empty port: it is neither host nor host:port.
func TestParsePoolFqdnEmptyPort(t *testing.T) {
	p, _, err := config.Parse([]byte(wrap("", sip("", `<ApplicationEndpoint OwnerUri="sip:a@b.com" PoolFqdn="pool.b.com:" />`))))
	if err == nil {
		t.Fatalf("provider.go hostPort accepts PoolFqdn %q (empty port is taken as no port)", p.SIP.Application.PoolFQDN)
	}
}

// Attribute names are matched without regard to case, so two spellings of
// one name on an element say two things; the file must be refused, not read
// with whichever comes last. (Go's XML decoder does not refuse a duplicate
// attribute either, which XML forbids.)
func TestParseDuplicateAttribute(t *testing.T) {
	for _, attrs := range []string{
		`maxPresenceSubscriptionsPerSecond="15" MAXPRESENCESUBSCRIPTIONSPERSECOND="20"`,
		`maxPresenceSubscriptionsPerSecond="15" maxPresenceSubscriptionsPerSecond="20"`,
	} {
		p, _, err := config.Parse([]byte(wrap(attrs, "")))
		if err == nil {
			t.Fatalf("xmltree.go readTree keeps the last of duplicate attributes %s: maxPresenceSubscriptionsPerSecond = %d, want an error",
				attrs, p.MaxSubscriptionsPerSecond)
		}
	}
}

// The configuration line operators look for at start names every parameter
// as Config.xml does.
func TestProviderLogLine(t *testing.T) {
	p, _, err := config.Load("testdata/spec-example.xml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", p).Msg("PresenceProviderConfiguration")
	line := buf.String()
	for _, want := range []string{
		`"MaxFailedPresenceSubscriptionsPerUri":3`, `"FailedPresenceSubscriptionsResubscribeDelay":15`,
		`"MaxFailedPresenceSubscriptionsResubscribeDelay":28800`, `"MaxPresenceSubscriptionsPerSecond":15`,
		`"ApplicationId":"urn:application:ucc_presenceprovider01"`, `"uri":"sip:ucc_presenceprovider01@sipdomain.com"`,
		`"UserEndpoints":[{"uri":"sip:demo_user@sipdomain.com"`, `"Match":["domain.com","domain2.com"]`,
		`"ClientSecretEnv":"PRESENCE_GRAPH_CLIENT_SECRET"`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("not one line: %q", line)
	}
	_ = fmt.Sprint(p) // must not panic either
}

// batchSize sets the agents of one mssip batch; absent, the source's default.
func TestParseBatchSize(t *testing.T) {
	for attrs, want := range map[string]int{`Dialect="mssip"`: 0, `Dialect="mssip" BATCHSIZE="250"`: 250} {
		p, _, err := config.Parse([]byte(wrap("", sip(attrs, app))))
		if err != nil || p.SIP.BatchSize != want {
			t.Errorf("%s: batch size %d, %v; want %d", attrs, p.SIP.BatchSize, err, want)
		}
	}
}

// Dialect takes rfc (the default, as when absent or empty) or mssip, in
// any case.
func TestParseDialect(t *testing.T) {
	for attrs, want := range map[string]string{
		"":                config.DialectRFC,
		`Dialect=""`:      config.DialectRFC,
		`Dialect="rfc"`:   config.DialectRFC,
		`Dialect="mssip"`: config.DialectMSSIP,
		`dialect="MSSIP"`: config.DialectMSSIP,
		`Dialect="MsSip"`: config.DialectMSSIP,
	} {
		p, warnings, err := config.Parse([]byte(wrap("", sip(attrs, app))))
		if err != nil || len(warnings) != 0 || p.SIP.Dialect != want {
			t.Errorf("%s: dialect %q, warnings %v, error %v; want %q", attrs, p.SIP.Dialect, warnings, err, want)
		}
	}
}
