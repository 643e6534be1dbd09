package sip_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// serverName is the only name in Kamailio's certificate: the provider
// reaches it at 127.0.0.1, so only TlsServerName makes it verify.
const serverName = "presence.example.com"

// tlsConfig is what config builds from TlsCAFile, TlsCertFile, TlsKeyFile
// and TlsServerName.
func tlsConfig(t testing.TB, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: serverName}
}

// kamailioTLS starts Kamailio with a TLS listener whose certificate ca
// signs; it verifies its peers with trust, and asks clients for a
// certificate (mutual TLS).
func kamailioTLS(t *testing.T, ca, trust *testca.CA) *siptest.Kamailio {
	cert, key := ca.Issue("kamailio", serverName)
	return siptest.StartKamailio(t, siptest.KamailioOptions{TLS: &siptest.KamailioTLS{
		CertFile: cert, KeyFile: key, CAFile: trust.File, RequireClientCert: true}})
}

// Subscribe, PUBLISH and event over TLS both ways: SUBSCRIBE on the
// provider's connection with its client certificate, NOTIFYs on the
// connection Kamailio opens to the sips: Contact, which Kamailio accepts
// only with a certificate from the test's CA.
func TestPresenceFromKamailioOverTLS(t *testing.T) {
	ca := testca.New(t, "test-ca")
	k := kamailioTLS(t, ca, ca)
	cert, key := ca.Issue("provider", "127.0.0.1")
	env, src := provider(t, sip.Config{Transport: "tls", TLS: tlsConfig(t, ca.File, cert, key),
		Application: appEndpoint(k.TLSAddr())}, nil)
	const agent = "sip:agent1@example.com"
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	subs := k.Subscriptions(t)
	if len(subs) != 1 || !strings.HasPrefix(subs[0].Contact, "sips:") {
		t.Fatalf("Kamailio holds %+v; want one subscription with a sips: Contact", subs)
	}
	k.Publish(t, agent, siptest.PIDF(agent, "open", "on-the-phone", ""), 60)
	if ev := waitEvent(t, evs, 1, schemas.Busy); ev.Presence.Activity != "on-the-phone" {
		t.Fatalf("event %+v; want on-the-phone", ev)
	}
	// Kamailio sent the NOTIFYs on a TLS connection of its own to the
	// listener (as over TCP), which it accepted only with our certificate.
	_, listenPort, _ := net.SplitHostPort(src.Addr())
	toListener := false
	for _, c := range k.Connections(t) {
		toListener = toListener || (c.Type == "TLS" && strconv.Itoa(c.SrcPort) == listenPort)
	}
	if !toListener {
		t.Fatalf("Kamailio holds no TLS connection to the listener %s: %+v", src.Addr(), k.Connections(t))
	}
	log := k.Log()
	if !strings.Contains(log, "siptest: tls SUBSCRIBE") || strings.Contains(log, "siptest: tcp SUBSCRIBE") || strings.Contains(log, "siptest: udp SUBSCRIBE") {
		t.Fatalf("the SUBSCRIBE did not come over TLS alone:\n%s", log)
	}
}

// A server certificate from a CA the provider does not trust ends the
// attempt before any SIP is sent; it counts as a failure, with a reason
// that says so.
func TestUntrustedServerCertificateFails(t *testing.T) {
	ours, other := testca.New(t, "test-ca"), testca.New(t, "other-ca")
	k := kamailioTLS(t, other, ours)
	cert, key := ours.Issue("provider", "127.0.0.1")
	env, src := provider(t, sip.Config{Transport: "tls", TLS: tlsConfig(t, ours.File, cert, key), RequestTimeout: 2 * time.Second,
		Application: appEndpoint(k.TLSAddr())}, func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	const agent = "sip:agent1@example.com"
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "a counted failure naming the certificate", func() bool {
		c := claimOf(t, env, agent)
		return c.State == schemas.StateRetrying && c.Failures == 1 && strings.Contains(c.Reason, "TLS certificate not trusted")
	})
	if logs := env.Logs.String(); !strings.Contains(logs, "certificate signed by unknown authority") {
		t.Fatalf("no log line says why:\n%s", logs)
	}
	provtest.Eventually(t, "endpoint down with the reason", func() bool {
		h := src.Health()
		return !h.Healthy && strings.Contains(h.Detail, "not trusted")
	})
	if strings.Contains(k.Log(), "SUBSCRIBE") {
		t.Fatalf("a SUBSCRIBE reached the untrusted server:\n%s", k.Log())
	}
}

// Transport tls without a certificate is refused, never run as TCP.
func TestTLSWithoutCertificateIsRefused(t *testing.T) {
	for name, conf := range map[string]*tls.Config{"no TLS settings": nil, "no certificate": {ServerName: serverName}} {
		_, err := sip.New(sip.Config{Transport: "tls", TLS: conf, Listen: "127.0.0.1:0", Application: appEndpoint("127.0.0.1:5061")},
			nil, nil, zerolog.Nop())
		if err == nil || !strings.Contains(err.Error(), "transport tls needs a certificate") {
			t.Fatalf("%s: %v; want a refusal", name, err)
		}
	}
}
