package sip

import (
	"crypto/tls"

	"github.com/rs/zerolog"
)

// trustedApplication is cfg as a trusted application of Skype for Business
// Server uses it: the pool treats the application's connections as
// authenticated (mutual TLS or a trusted host), so nothing registers or
// answers a challenge, and the user endpoint is dropped with one warning:
// it served the hybrid Skype for Business Online, which Microsoft retired.
func trustedApplication(cfg Config, log zerolog.Logger) Config {
	if cfg.User != nil {
		log.Warn().Str("source", "sip").Str("uri", cfg.User.URI).
			Msg("UserEndpoint ignored: Dialect mssip is a trusted application, and the user endpoint (hybrid, Skype for Business Online) is retired by Microsoft")
		cfg.User = nil
	}
	cfg.Application.Register = false
	cfg.Application.Password = ""
	return cfg
}

// listenerTLS is what the TLS listener serves: this stack's certificate and,
// for a trusted application, the demand for a client certificate that the
// CA vouches for, since only the pool may send it NOTIFYs.
func (s *Source) listenerTLS() *tls.Config {
	conf := &tls.Config{Certificates: s.cfg.TLS.Certificates, MinVersion: tls.VersionTLS12}
	if s.cfg.MSSIP {
		// nil ClientCAs verifies against the system's roots, as RootCAs does.
		conf.ClientAuth, conf.ClientCAs = tls.RequireAndVerifyClientCert, s.cfg.TLS.RootCAs
	}
	return conf
}
