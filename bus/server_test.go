package bus_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
)

func TestOneEmbeddedServerPerDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	_, err = bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: dir}, zerolog.Nop())
	if err == nil {
		t.Fatal("a second server started on the same data directory")
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("refusal %q does not name the directory and the holder's pid", msg)
	}
	nc, err := nats.Connect(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Fatalf("the refused start disturbed the first server's JetStream: %v", err)
	}
	nc.Close()

	first.Shutdown()
	again, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatalf("after the first server shut down: %v", err)
	}
	again.Shutdown()
}

// TestListenAddressInUseFailsAtOnce: the error names the cause, which only
// the server's own start failure carries (waiting for readiness would end in
// "not ready within 30s").
func TestListenAddressInUseFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for name, opts := range map[string]bus.EmbeddedOptions{
		"client":  {Listen: addr},
		"cluster": {Listen: "127.0.0.1:0", Cluster: bus.ClusterOptions{Name: "c", Listen: addr, Routes: "nats-route://" + addr}, Insecure: true},
	} {
		t.Run(name, func(t *testing.T) {
			opts.DataDir = t.TempDir()
			ns, err := bus.StartEmbedded(opts, zerolog.Nop())
			if err == nil {
				ns.Shutdown()
				t.Fatalf("started on %s, which is in use", addr)
			}
			variable := map[string]string{"client": "PRESENCE_EMBEDDED_LISTEN", "cluster": "PRESENCE_CLUSTER_LISTEN"}[name]
			if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "set "+variable+" to a free address") {
				t.Fatalf("error %q does not say the address is in use and to change %s", err, variable)
			}
			// The data directory is free again for a retry.
			opts.Listen, opts.Cluster = "127.0.0.1:0", bus.ClusterOptions{}
			ns, err = bus.StartEmbedded(opts, zerolog.Nop())
			if err != nil {
				t.Fatalf("retry on the same data directory: %v", err)
			}
			ns.Shutdown()
		})
	}
}
