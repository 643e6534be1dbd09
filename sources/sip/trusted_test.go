package sip_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/sources/sip"
)

// runSource starts a source that is never handed an agent: its listener is
// what the test looks at.
func runSource(t *testing.T, cfg sip.Config, logs *provtest.Logs) *sip.Source {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	src, err := sip.New(cfg, clockwork.NewRealClock(), nil, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return src
}

// options sends one OPTIONS over a TLS connection made with conf and
// returns the status line of the answer, or the error that stopped it.
func options(addr string, conf *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	host := c.LocalAddr().String()
	req := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + host + ";branch=z9hG4bK-trusted-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:pool@example.com>;tag=1\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: trusted-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// A trusted application's listener takes the pool's connections only with
// a client certificate the CA vouches for ([MS-SIP] 3.3: the pool and the
// application authenticate each other with mutual TLS); in rfc it asks
// none, as Kamailio's NOTIFY connections need.
func TestTrustedApplicationListenerDemandsClientCertificate(t *testing.T) {
	ca, other := testca.New(t, "test-ca"), testca.New(t, "other-ca")
	cert, key := ca.Issue("provider", "127.0.0.1")
	poolCert, poolKey := ca.Issue("pool", "pool.example.com")
	strangerCert, strangerKey := other.Issue("stranger", "pool.example.com")
	pool := clientTLS(t, ca.File, poolCert, poolKey)
	stranger := clientTLS(t, ca.File, strangerCert, strangerKey)
	anonymous := clientTLS(t, ca.File, "", "")
	down := "127.0.0.1:" + strconv.Itoa(freeport.T(t))

	for _, tc := range []struct {
		name   string
		mssip  bool
		client *tls.Config
		want   string
	}{
		{"mssip, the pool's certificate", true, pool, "SIP/2.0 200 OK"},
		{"mssip, no certificate", true, anonymous, ""},
		{"mssip, a certificate of another CA", true, stranger, ""},
		{"rfc, no certificate", false, anonymous, "SIP/2.0 200 OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs provtest.Logs
			src := runSource(t, sip.Config{Transport: "tls", MSSIP: tc.mssip, TLS: tlsConfig(t, ca.File, cert, key),
				Application: appEndpoint(down)}, &logs)
			got, err := options(src.Addr(), tc.client)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("OPTIONS: %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("OPTIONS answered %q; want the connection refused", got)
			}
		})
	}
}

// With mssip a configured user endpoint is named once at start as retired
// and never used; the application endpoint does not register even when
// asked to, as a trusted server is not challenged.
func TestTrustedApplicationDropsUserEndpoint(t *testing.T) {
	var logs provtest.Logs
	down := "127.0.0.1:" + strconv.Itoa(freeport.T(t))
	app := appEndpoint(down)
	app.Register, app.Password = true, "secret"
	src := runSource(t, sip.Config{Transport: "tcp", MSSIP: true, Application: app,
		User: &sip.Endpoint{Name: "user", URI: "sip:user@example.com", Pool: down, Register: true}}, &logs)
	endpoints := src.Endpoints()
	if len(endpoints) != 1 || endpoints[0].Name != "application" {
		t.Fatalf("endpoints %+v; want the application endpoint alone", endpoints)
	}
	if n := strings.Count(logs.String(), "retired by Microsoft"); n != 1 {
		t.Fatalf("%d warnings about the user endpoint; want 1:\n%s", n, logs.String())
	}
	provtest.Eventually(t, "the endpoint checked", func() bool { return !strings.Contains(src.Health().Detail, "not checked yet") })
	if detail := src.Health().Detail; strings.Contains(strings.ToLower(detail), "regist") {
		t.Fatalf("health %q; want OPTIONS checks, no REGISTER", detail)
	}
	if strings.Contains(logs.String(), "secret") {
		t.Fatalf("the password is in the logs:\n%s", logs.String())
	}
}

// clientTLS is the pool's side of mutual TLS: it trusts caFile and shows
// the certificate given (none when certFile is empty).
func clientTLS(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{ServerName: "127.0.0.1", RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	conf.RootCAs.AppendCertsFromPEM(pem)
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf
}
