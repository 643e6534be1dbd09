// Package bus is the only code that touches NATS: the embedded server, the
// connection, the contract's KV buckets and subjects, and the presence micro
// service.
package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// MaxPayload is the embedded server's largest message: a subscribe of
// 10,000 agents with Teams UPNs is over NATS's default of 1 MiB.
const MaxPayload = 8 << 20

// EmbeddedOptions configure the embedded server.
type EmbeddedOptions struct {
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen  string
	DataDir string
	// Name names this server; a cluster needs a distinct one per node.
	Name string
	// Cluster joins the embedded server to a NATS cluster when it has a
	// Listen address: three presenced processes make a 3-node JetStream
	// cluster with no other software.
	Cluster ClusterOptions
	// ConfigFile is a nats-server configuration file (users, permissions,
	// TLS, route authorization); see serverOptions for what wins.
	ConfigFile string
	// Insecure allows a listen address beyond loopback, or routes, with no
	// authentication.
	Insecure bool
}

// ClusterOptions are the embedded server's cluster settings.
type ClusterOptions struct {
	Name string
	// Listen is host:port for the other nodes' routes.
	Listen string
	// Routes are the other nodes, nats-route://host:port, comma-separated.
	Routes string
}

// StartEmbedded starts a NATS server with JetStream inside this process.
func StartEmbedded(opts EmbeddedOptions, log zerolog.Logger) (*server.Server, error) {
	sopts, err := serverOptions(opts)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	ns.SetLoggerV2(serverLog{log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded server not ready within 30s")
	}
	return ns, nil
}

// serverLog hands the server's log lines to zerolog.
type serverLog struct{ log zerolog.Logger }

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLog) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLog) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLog) Debugf(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
func (l serverLog) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
