package siptest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/testca"
)

// optionsOverTLS sends OPTIONS on a new TLS connection and returns the
// answer's status.
func optionsOverTLS(addr string, conf *tls.Config) (int, error) {
	conn, err := tls.DialWithDialer(&tlsDialer, "tcp", addr, conf)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := newRequest("OPTIONS", "sip:"+addr, []header{
		{"Via", fmt.Sprintf("SIP/2.0/TLS %s;branch=z9hG4bK%s", conn.LocalAddr(), randomToken())},
		{"From", "<sip:probe@siptest>;tag=" + randomToken()},
		{"To", "<sip:" + addr + ">"},
		{"Call-ID", randomToken()},
		{"CSeq", "1 OPTIONS"},
		{"Max-Forwards", "70"},
	}, "")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return 0, err
	}
	resp, err := readMessage(bufio.NewReader(conn))
	if err != nil {
		return 0, err
	}
	return resp.status, nil
}

var tlsDialer = net.Dialer{Timeout: 5 * time.Second}

func TestKamailioTLSListener(t *testing.T) {
	ca := testca.New(t, "siptest")
	cert, key := ca.Issue("kamailio", "127.0.0.1")
	k := StartKamailio(t, KamailioOptions{TLS: &KamailioTLS{CertFile: cert, KeyFile: key, CAFile: ca.File, RequireClientCert: true}})
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	clientCert, clientKey := ca.Issue("client")
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := optionsOverTLS(k.TLSAddr(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}); err != nil || status != 200 {
		t.Fatalf("OPTIONS over TLS with a client certificate: %d, %v; want 200", status, err)
	}
	if status, err := optionsOverTLS(k.TLSAddr(), &tls.Config{RootCAs: roots}); err == nil {
		t.Fatalf("OPTIONS over TLS without a client certificate: %d; want the handshake refused", status)
	}
}
