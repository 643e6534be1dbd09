package provtest

import (
	"fmt"
	"os"
	"path/filepath"
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
	config string // a nats-server configuration file, or none
	ns     *bus.Embedded
}

// StartNATS starts a NATS server on a free port with a file store.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return StartNATSWith(t, "")
}

// StartNATSWith starts a NATS server on a free port with a file store and
// the nats-server configuration file config (users, for one).
func StartNATSWith(t testing.TB, config string) *NATS {
	t.Helper()
	n := &NATS{t: t, listen: freeport.Addr(t), dir: t.TempDir(), config: config}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// RestartWith stops the server and starts it again at once with another
// configuration file, as an operator changing passwords would.
func (n *NATS) RestartWith(config string) {
	n.t.Helper()
	n.Stop()
	n.config = config
	n.Start()
}

// Start starts the server again after Stop.
func (n *NATS) Start() {
	n.t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: n.listen, DataDir: n.dir, ConfigFile: n.config}, zerolog.Nop())
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

// RotatingUser is the user of RotatingUserConfig whose password a test
// changes.
const RotatingUser = "rotating"

// RotatingUserConfig writes a nats-server configuration file whose user
// RotatingUser has the password password, for tests that rotate it.
// Connections without credentials are another user, so that the provider
// and the test's own connections go on through the rotation.
func RotatingUserConfig(t testing.TB, password string) string {
	t.Helper()
	conf := fmt.Sprintf(`authorization { users = [ { user: anyone, password: "pw-anyone" }, { user: %s, password: %q } ] }
no_auth_user: anyone
`, RotatingUser, password)
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
