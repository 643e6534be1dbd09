package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
)

// runServer starts a real nats-server on a free loopback port.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// connect joins ns as a client with the given credentials; it returns the
// error of AuthOptions or of the connection.
func connect(t *testing.T, ns *server.Server, a config.NATSAuth) error {
	t.Helper()
	opts, err := client.AuthOptions(a)
	if err != nil {
		return err
	}
	conn, err := bus.Connect(ns.ClientURL(), nil, "auth-test", zerolog.Nop(), append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A round trip proves the server accepted the connection.
	return conn.NC.Flush()
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantRefused(t *testing.T, what string, err error, mentions string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: connected", what)
	} else if !strings.Contains(err.Error(), mentions) {
		t.Errorf("%s: %v; want an error mentioning %q", what, err, mentions)
	}
}

func TestUserPassword(t *testing.T) {
	ns := runServer(t, &server.Options{Users: []*server.User{{Username: "ucc", Password: "pw-ucc"}}})
	if err := connect(t, ns, config.NATSAuth{User: "ucc", Password: "pw-ucc"}); err != nil {
		t.Fatal(err)
	}
	err := connect(t, ns, config.NATSAuth{User: "ucc", Password: "wrong"})
	wantRefused(t, "wrong password", err, "Authorization Violation")
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
	wantRefused(t, "anonymous", connect(t, ns, config.NATSAuth{}), "Authorization Violation")
}

func TestNKeySeedFile(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	ns := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err := connect(t, ns, config.NATSAuth{NKeyFile: writeFile(t, "user.nk", seed)}); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	wantRefused(t, "an unknown nkey", connect(t, ns, config.NATSAuth{NKeyFile: writeFile(t, "other.nk", otherSeed)}), "Authorization Violation")
	wantRefused(t, "a missing seed file", connect(t, ns, config.NATSAuth{NKeyFile: filepath.Join(t.TempDir(), "none.nk")}), "PRESENCE_NATS_NKEY")
}

// TestCredsFile runs the decentralized JWT model: an operator, an account
// signed by it, a user signed by the account, all made here.
func TestCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	operatorClaims.Name = "presence-test"
	if _, err := operatorClaims.Encode(operator); err != nil {
		t.Fatal(err)
	}

	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPub)
	accountClaims.Name = "PRESENCE"
	accountJWT, err := accountClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accountPub, accountJWT); err != nil {
		t.Fatal(err)
	}
	ns := runServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{operatorClaims}, AccountResolver: resolver})

	creds := func(signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		userClaims := jwt.NewUserClaims(userPub)
		userClaims.Name = "ucc"
		userClaims.IssuerAccount = accountPub
		userJWT, err := userClaims.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		file, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, "user.creds", file)
	}
	if err := connect(t, ns, config.NATSAuth{CredsFile: creds(account)}); err != nil {
		t.Fatal(err)
	}
	stranger, _ := nkeys.CreateAccount()
	wantRefused(t, "a user signed by another account", connect(t, ns, config.NATSAuth{CredsFile: creds(stranger)}), "Authorization Violation")
	wantRefused(t, "a missing creds file", connect(t, ns, config.NATSAuth{CredsFile: filepath.Join(t.TempDir(), "none.creds")}), "PRESENCE_NATS_CREDS")
}

// pki is a CA made by the test and what it signs.
type pki struct {
	t      *testing.T
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "presence test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	caFile := writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return &pki{t: t, cert: cert, key: key, caFile: caFile}
}

// issue signs a certificate for 127.0.0.1 usable by a server and a client,
// and returns its certificate and key files.
func (p *pki) issue(name string) (certFile, keyFile string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return writeFile(p.t, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		writeFile(p.t, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func tlsServer(t *testing.T, ca *pki, mutual bool) *server.Server {
	t.Helper()
	certFile, keyFile := ca.issue("server")
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: ca.caFile, Verify: mutual})
	if err != nil {
		t.Fatal(err)
	}
	return runServer(t, &server.Options{TLSConfig: cfg, TLSVerify: mutual, TLSTimeout: 5})
}

func TestTLSVerifiesTheServer(t *testing.T) {
	ca := newPKI(t)
	ns := tlsServer(t, ca, false)
	if err := connect(t, ns, config.NATSAuth{TLSCA: ca.caFile}); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	wantRefused(t, "a server certificate from another CA", connect(t, ns, config.NATSAuth{TLSCA: other.caFile}), "certificate signed by unknown authority")
	wantRefused(t, "a CA file without a certificate", connect(t, ns, config.NATSAuth{TLSCA: writeFile(t, "empty.pem", []byte("no"))}), "PRESENCE_NATS_TLS_CA")
}

func TestMutualTLS(t *testing.T) {
	ca := newPKI(t)
	ns := tlsServer(t, ca, true)
	certFile, keyFile := ca.issue("client")
	if err := connect(t, ns, config.NATSAuth{TLSCA: ca.caFile, TLSCert: certFile, TLSKey: keyFile}); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, ns, config.NATSAuth{TLSCA: ca.caFile}); err == nil {
		t.Error("a client without a certificate connected to a server that requires one")
	}
	strangerCert, strangerKey := newPKI(t).issue("stranger")
	if err := connect(t, ns, config.NATSAuth{TLSCA: ca.caFile, TLSCert: strangerCert, TLSKey: strangerKey}); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
	wantRefused(t, "a key that does not match", connect(t, ns, config.NATSAuth{TLSCA: ca.caFile, TLSCert: certFile, TLSKey: strangerKey}),
		"PRESENCE_NATS_TLS_CERT")
}

// TestEmbeddedServerWithTLSFromConfigFile loads a nats-server file that
// asks for mutual TLS into the embedded server: the provider's own
// in-process connection runs TLS with its certificate like any client (the
// server makes TLS optional in-process only), and a client without a
// certificate is refused.
func TestEmbeddedServerWithTLSFromConfigFile(t *testing.T) {
	ca := newPKI(t)
	serverCert, serverKey := ca.issue("server")
	conf := writeFile(t, "nats.conf", []byte(fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n",
		serverCert, serverKey, ca.caFile)))
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), ConfigFile: conf}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	workerCert, workerKey := ca.issue("worker")
	opts, err := client.AuthOptions(config.NATSAuth{TLSCA: ca.caFile, TLSCert: workerCert, TLSKey: workerKey})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := bus.Connect("", ns.Server, "worker", zerolog.Nop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if state, err := conn.NC.TLSConnectionState(); err != nil || len(state.PeerCertificates) == 0 {
		t.Errorf("the in-process connection does not run TLS: %v", err)
	}
	if err := connect(t, ns.Server, config.NATSAuth{TLSCA: ca.caFile}); err == nil {
		t.Error("a client without a certificate joined the embedded server")
	}
}
