package client_test

import (
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/pstn"
)

// provider is a whole provider (embedded NATS on a free port, a worker on
// the real clock) that a test can stop and start again on the same port and
// store, as a restarted presenced would be.
type provider struct {
	t    testing.TB
	url  string
	dir  string
	ns   *bus.Embedded
	env  *provtest.Env
	port int
}

func startProvider(t testing.TB) *provider {
	t.Helper()
	port := freeport.T(t)
	p := &provider{t: t, dir: t.TempDir(), port: port, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	p.start()
	return p
}

// attendantAgents match the attendant source; tel: URIs are PSTN agents.
var attendantAgents = regexp.MustCompile(`@attendant\.example$`)

func (p *provider) start() {
	p.t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: fmt.Sprintf("127.0.0.1:%d", p.port), DataDir: p.dir}, zerolog.Nop())
	if err != nil {
		p.t.Fatal(err)
	}
	p.ns = ns
	p.t.Cleanup(ns.Shutdown)
	p.env = provtest.StartParts(p.t, ns.Server, provtest.Config(), clockwork.NewRealClock(), func(parts provtest.Parts) {
		parts.Worker.AddSource(schemas.SourceAttendant, attendant.New(parts.Clock, []*regexp.Regexp{attendantAgents}))
		parts.Worker.AddSource(schemas.SourcePSTN, pstn.New(parts.Calls, time.Hour, parts.Clock, parts.Worker, parts.Log))
	})
}

// stop ends the worker and then the server, as SIGTERM does presenced.
func (p *provider) stop() {
	p.env.Stop()
	p.ns.Shutdown()
}

// connect joins the provider as a UCC would, reconnecting quickly.
func (p *provider) connect() *nats.Conn {
	p.t.Helper()
	nc, err := nats.Connect(p.url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(nc.Close)
	return nc
}

// mainTB lets TestMain start a provider for the examples: provtest wants a
// testing.TB, and TestMain has none.
type mainTB struct {
	testing.TB
	cleanups []func()
	dirs     []string
}

func (m *mainTB) Helper()                   {}
func (m *mainTB) Failed() bool              { return false }
func (m *mainTB) Logf(string, ...any)       {}
func (m *mainTB) Cleanup(f func())          { m.cleanups = append(m.cleanups, f) }
func (m *mainTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (m *mainTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "client-example")
	if err != nil {
		panic(err)
	}
	m.dirs = append(m.dirs, d)
	return d
}

func (m *mainTB) close() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	for _, d := range m.dirs {
		_ = os.RemoveAll(d)
	}
}

// exampleURL is the provider the examples talk to.
var exampleURL string

func TestMain(m *testing.M) {
	tb := &mainTB{}
	p := startProvider(tb)
	exampleURL = p.url
	code := m.Run()
	tb.close()
	os.Exit(code)
}
