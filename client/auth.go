package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/config"
)

// AuthOptions turn the client's credentials (the PRESENCE_NATS_* variables,
// config.LoadNATSAuth) into connection options: the one place where
// presenced, presencectl and Go UCCs learn how to authenticate. Files are
// read now, so that a wrong path stops start-up naming its variable.
func AuthOptions(a config.NATSAuth) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		if _, err := os.Stat(a.CredsFile); err != nil {
			return nil, fmt.Errorf("client: PRESENCE_NATS_CREDS: %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: PRESENCE_NATS_NKEY: %w", err)
		}
		opts = append(opts, opt)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, string(a.Password)))
	}
	if a.TLSCA == "" && a.TLSCert == "" {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.TLSCA != "" {
		pem, err := os.ReadFile(a.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("client: PRESENCE_NATS_TLS_CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: PRESENCE_NATS_TLS_CA %s: %w", a.TLSCA, errNoCertificate)
		}
	}
	if a.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("client: PRESENCE_NATS_TLS_CERT/PRESENCE_NATS_TLS_KEY: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return append(opts, nats.Secure(cfg)), nil
}

var errNoCertificate = errors.New("no PEM certificate in the file")
