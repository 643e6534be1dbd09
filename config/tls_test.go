package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/testca"
)

// A tls UcmaPresenceSource loads its certificate, key and CA at Parse, so a
// broken file stops start-up with one line rather than failing at the first
// SUBSCRIBE.
func TestParseTLS(t *testing.T) {
	ca := testca.New(t, "ca")
	cert, key := ca.Issue("provider", "127.0.0.1")
	_, otherKey := ca.Issue("other")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tls := func(attrs string) string { return wrap("", sip(`TRANSPORT="TLS" `+attrs, app)) }

	p, _, err := config.Parse([]byte(tls(`TLSCAFILE="` + ca.File + `" tlscertfile="` + cert + `" TlsKeyFile="` + key + `" TlsServerName="pool.sipdomain.com"`)))
	if err != nil {
		t.Fatal(err)
	}
	c := p.SIP.TLS
	if p.SIP.Transport != "tls" || c == nil || len(c.Certificates) != 1 || c.RootCAs == nil || c.ServerName != "pool.sipdomain.com" {
		t.Fatalf("SIP %+v; want tls with the certificate, the CA and the server name", p.SIP)
	}
	if p.SIP.TLSCAFile != ca.File || p.SIP.TLSCertFile != cert || p.SIP.TLSKeyFile != key {
		t.Fatalf("file names %q %q %q", p.SIP.TLSCAFile, p.SIP.TLSCertFile, p.SIP.TLSKeyFile)
	}

	p, _, err = config.Parse([]byte(tls(`TlsCertFile="` + cert + `" TlsKeyFile="` + key + `"`)))
	if err != nil || p.SIP.TLS.RootCAs != nil {
		t.Fatalf("without TlsCAFile: %v, roots %v; want the system's roots (nil)", err, p.SIP.TLS)
	}

	disabled := wrap("", `<UcmaPresenceSource enabled="false" Transport="tls">`+app+`</UcmaPresenceSource>`)
	if p, _, err = config.Parse([]byte(disabled)); err != nil || p.SIP.TLS != nil {
		t.Fatalf("a disabled tls source: %v, %+v; want no files asked for", err, p.SIP.TLS)
	}

	for _, tt := range []struct {
		name, attrs, attribute, rule string
	}{
		{"key of another certificate", `TlsCertFile="` + cert + `" TlsKeyFile="` + otherKey + `"`, "TlsKeyFile", "is not the key of TlsCertFile"},
		{"certificate file not PEM", `TlsCertFile="` + notPEM + `" TlsKeyFile="` + key + `"`, "TlsCertFile", "holds no PEM certificate"},
		{"key file not PEM", `TlsCertFile="` + cert + `" TlsKeyFile="` + notPEM + `"`, "TlsKeyFile", "is not the key of TlsCertFile"},
		{"CA file not PEM", `TlsCAFile="` + notPEM + `" TlsCertFile="` + cert + `" TlsKeyFile="` + key + `"`, "TlsCAFile", "holds no PEM certificate"},
		{"CA file missing", `TlsCAFile="/nonexistent/ca.pem" TlsCertFile="` + cert + `" TlsKeyFile="` + key + `"`, "TlsCAFile", "cannot read"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := config.Parse([]byte(tls(tt.attrs)))
			var re *config.RuleError
			if !errors.As(err, &re) || re.Element != ucma || re.Attribute != tt.attribute || !strings.Contains(re.Rule, tt.rule) {
				t.Fatalf("error %v; want %s, attribute %s: %s", err, ucma, tt.attribute, tt.rule)
			}
		})
	}
}
