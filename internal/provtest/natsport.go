package provtest

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/freeport"
)

// NATS is a NATS server with JetStream, as an external nats-server, that a
// test stops and starts again on the same port and store.
type NATS struct {
	t      testing.TB
	listen string
	dir    string
	ns     *bus.Embedded
}

// StartNATS starts a NATS server on a free port with a file store.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, listen: freeport.Addr(t), dir: t.TempDir()}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// Start starts the server again after Stop.
func (n *NATS) Start() {
	n.t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: n.listen, DataDir: n.dir}, zerolog.Nop())
	if err != nil {
		n.t.Fatal(err)
	}
	n.ns = ns
}

// Stop shuts the server down; its store stays for Start.
func (n *NATS) Stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns = nil
	}
}

// Restart stops the server and starts it again at once.
func (n *NATS) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
}

// URL is the server's client URL.
func (n *NATS) URL() string { return "nats://" + n.listen }
