package bus

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/config"
)

// Conn is a connection to NATS with JetStream.
type Conn struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	closed chan struct{} // closed once the connection is

	mu sync.Mutex
	// reconnected is closed, and replaced, each time the connection comes
	// back: what the server may have lost meanwhile (the consumers behind
	// KV watches) is made again at once rather than when nats.go notices.
	reconnected chan struct{}
	// refused is the error the server gave the attempts to reconnect (the
	// credentials refused), until the connection is back.
	refused error
}

// reconnectWait spaces the attempts to reach NATS again: short, so that
// watches and requests resume within about a second of the server
// answering; a try is one TCP connect.
const reconnectWait = 500 * time.Millisecond

// Reconnected returns a channel closed at the connection's next reconnect.
func (c *Conn) Reconnected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnected
}

func (c *Conn) signalReconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.reconnected)
	c.reconnected = make(chan struct{})
	c.refused = nil
}

// Refused is why the server refuses the connection while it is down (an
// authorization error), or nil: what a worker that cannot beat says.
func (c *Conn) Refused() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// refusedAgain records a refusal of a reconnect and reports whether it is
// new: a server that refuses the credentials refuses every attempt, twice
// a second, and one log line says it.
func (c *Conn) refusedAgain(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	again := c.refused != nil && c.refused.Error() == err.Error()
	c.refused = err
	return !again
}

// Connect joins NATS at url, or the embedded server ns without a socket
// when url is empty, with extra options such as client.AuthOptions' credentials.
// It reconnects for ever: a worker outlives NATS restarts, and a server that
// refuses its credentials for a while (nats.go would close the connection
// for good after the same authorization error twice).
func Connect(url string, ns *server.Server, name string, log zerolog.Logger, extra ...nats.Option) (*Conn, error) {
	c := &Conn{closed: make(chan struct{}), reconnected: make(chan struct{})}
	opts := []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() && !nc.IsDraining() {
				log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
			c.signalReconnect()
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if nc.IsClosed() || nc.IsDraining() {
				return // what a closing connection still reports is no fault
			}
			if sub == nil && nc.IsReconnecting() {
				if c.refusedAgain(err) {
					log.Error().Err(err).Msg("NATS refuses to take this process back; retrying until it does")
				}
				return
			}
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error")
		}),
	}
	inProcess := url == ""
	if inProcess {
		if ns == nil {
			return nil, fmt.Errorf("bus: no NATS url and no embedded server")
		}
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
	}
	// In process, a refused connection shows only as a closed pipe, after
	// the server's write deadline: say what is missing instead.
	const needCredentials = "the embedded server's configuration file asks for credentials: give presenced its worker user " +
		"with PRESENCE_NATS_USER and PRESENCE_NATS_PASSWORD (or PRESENCE_NATS_NKEY, PRESENCE_NATS_CREDS)"
	if inProcess && len(extra) == 0 && authRequired(ns) {
		return nil, fmt.Errorf("bus: %s", needCredentials)
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil && inProcess && authRequired(ns) {
		return nil, fmt.Errorf("bus: connect to the embedded server: %w; %s", err, needCredentials)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", config.RedactURLs(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	c.NC, c.JS = nc, js
	return c, nil
}

func authRequired(ns *server.Server) bool {
	v, err := ns.Varz(nil)
	return err == nil && v.AuthRequired
}

// drainTimeout bounds Close: a connection whose server is gone cannot drain.
const drainTimeout = 5 * time.Second

// Close delivers what is pending, then closes the connection, and returns
// once it is closed: a server shut down after Close no longer has clients.
func (c *Conn) Close() {
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
	select {
	case <-c.closed:
	case <-time.After(drainTimeout):
		c.NC.Close()
		<-c.closed
	}
}
