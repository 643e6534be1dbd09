// Package bus is the only code that touches NATS: the embedded server, the
// connection, the KV buckets and subjects of docs/contract.md, and the
// presence micro service.
package bus

import (
	"fmt"
	"os"
	"strings"
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
	// SyncInterval is how often the store is synced to disk; 0 syncs each
	// write before it is acknowledged (see serverOptions).
	SyncInterval time.Duration
}

// ClusterOptions are the embedded server's cluster settings.
type ClusterOptions struct {
	Name string
	// Listen is host:port for the other nodes' routes.
	Listen string
	// Routes are the other nodes, nats-route://host:port, comma-separated.
	Routes string
}

// readyTimeout bounds the embedded server's start when it neither gets ready
// nor reports why.
const readyTimeout = 30 * time.Second

// Embedded is the embedded NATS server and the data directory it holds.
type Embedded struct {
	*server.Server
	lock *os.File
}

// Shutdown stops the server, waits until its store is closed, and only then
// lets the data directory go.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	_ = e.lock.Close()
}

// StartEmbedded starts a NATS server with JetStream inside this process. It
// holds DataDir for this process until Shutdown, and fails at once when the
// server cannot start (an address in use, a store it cannot open).
func StartEmbedded(opts EmbeddedOptions, log zerolog.Logger) (*Embedded, error) {
	sopts, err := serverOptions(opts)
	if err != nil {
		return nil, err
	}
	lock, err := lockDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	serverLogger := log.With().Str("component", "nats-server").Logger()
	// The server reports a failed start (a listen address in use...) only
	// through Fatalf and then never gets ready: catch it to fail at once.
	fatal := make(chan string, 1)
	ns.SetLoggerV2(serverLog{log: serverLogger, fatal: fatal}, false, false, false)
	go ns.Start()
	e := &Embedded{Server: ns, lock: lock}
	failed := func(err error) (*Embedded, error) {
		e.Shutdown()
		return nil, err
	}
	deadline := time.Now().Add(readyTimeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			return failed(fmt.Errorf("bus: embedded server did not start: %s%s", msg, listenHint(msg, opts)))
		default:
		}
		if time.Now().After(deadline) {
			return failed(fmt.Errorf("bus: embedded server not ready within %s", readyTimeout))
		}
	}
	// From here on a fatal error is logged: nobody waits for it.
	ns.SetLoggerV2(serverLog{log: serverLogger}, false, false, false)
	return e, nil
}

// listenHint names the variable to change when the server could not listen
// on an address (nats-server says only which port); empty for other failures.
func listenHint(msg string, opts EmbeddedOptions) string {
	var variable string
	switch {
	case strings.HasPrefix(msg, "Error listening on port:"):
		variable = "PRESENCE_EMBEDDED_LISTEN"
	case strings.HasPrefix(msg, "Error listening on router port:"):
		variable = "PRESENCE_CLUSTER_LISTEN"
	default:
		return ""
	}
	hint := "; another presenced or NATS server may hold the address: stop it, or set " + variable + " to a free address"
	if opts.ConfigFile != "" {
		hint += " (or the listen address in PRESENCE_NATS_CONFIG, which wins)"
	}
	return hint
}

// serverLog hands the server's log lines to zerolog; while fatal is set, the
// first fatal error goes there instead, for StartEmbedded to return.
type serverLog struct {
	log   zerolog.Logger
	fatal chan<- string
}

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	select {
	case l.fatal <- msg:
	default:
		l.log.Error().Msg(msg)
	}
}

func (l serverLog) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l serverLog) Debugf(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
func (l serverLog) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
