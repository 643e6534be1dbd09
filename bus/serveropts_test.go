package bus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
)

// setExampleSecrets sets the variables examples/nats-auth.conf and
// examples/nats-cluster.conf read.
func setExampleSecrets(t *testing.T) {
	t.Helper()
	for _, v := range []string{"WORKER_PASSWORD", "UCC_PASSWORD", "SOURCE_PASSWORD", "OPERATOR_PASSWORD", "ROUTE_PASSWORD"} {
		t.Setenv(v, strings.ToLower(v)+"-secret")
	}
}

func TestExposedServerWithoutAuthenticationRefused(t *testing.T) {
	tests := []struct {
		name     string
		opts     EmbeddedOptions
		mentions string
	}{
		{"every address", EmbeddedOptions{Listen: "0.0.0.0:4222"}, "listen on 0.0.0.0:4222 with no authentication"},
		{"no host", EmbeddedOptions{Listen: ":4222"}, "with no authentication"},
		{"routes on loopback", EmbeddedOptions{Listen: "127.0.0.1:4222", Cluster: ClusterOptions{Listen: "127.0.0.1:6222"}}, "no route authorization"},
		{"users but open routes", EmbeddedOptions{Listen: "0.0.0.0:4222", ConfigFile: "../examples/nats-auth.conf",
			Cluster: ClusterOptions{Listen: "0.0.0.0:6222"}}, "no route authorization"},
	}
	setExampleSecrets(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := serverOptions(tt.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.mentions) || !strings.Contains(msg, "PRESENCE_INSECURE=true") ||
				!strings.Contains(msg, "PRESENCE_NATS_CONFIG") || strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line saying what is open and how to fix it", msg)
			}
			tt.opts.Insecure = true
			if _, err := serverOptions(tt.opts); err != nil {
				t.Errorf("with Insecure: %v", err)
			}
		})
	}
	for _, ok := range []EmbeddedOptions{
		{Listen: "127.0.0.1:4222"}, {Listen: "localhost:4222"}, {Listen: "[::1]:4222"},
		{Listen: "0.0.0.0:4222", ConfigFile: "../examples/nats-auth.conf"},
		{Listen: "0.0.0.0:4222", ConfigFile: "../examples/nats-cluster.conf", Cluster: ClusterOptions{Listen: "0.0.0.0:6222"}},
	} {
		if _, err := serverOptions(ok); err != nil {
			t.Errorf("%+v refused: %v", ok, err)
		}
	}
}

// The configuration file wins for what it sets; the provider's settings fill
// in the rest, and routes written without credentials present the cluster's.
func TestConfigFilePrecedence(t *testing.T) {
	setExampleSecrets(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "nats.conf")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := EmbeddedOptions{Listen: "127.0.0.1:4999", DataDir: "/from/env", Name: "env-name",
		Cluster: ClusterOptions{Name: "presence", Listen: "127.0.0.1:6999", Routes: "nats-route://127.0.0.1:7001,nats-route://u:p@127.0.0.1:7002"}}

	// nats-server reads an include relative to the including file.
	rel, err := filepath.Rel(dir, absExample(t, "nats-cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	write(`include ` + rel)
	base.ConfigFile = file
	o, err := serverOptions(base)
	if err != nil {
		t.Fatal(err)
	}
	if o.Host != "127.0.0.1" || o.Port != 4999 || o.StoreDir != "/from/env" || o.ServerName != "env-name" ||
		o.Cluster.Port != 6999 || o.Cluster.Name != "presence" || !o.JetStream || o.MaxPayload != MaxPayload {
		t.Errorf("a file that sets none of them: %+v", o)
	}
	if len(o.Users) != 4 || o.Cluster.Username != "route" {
		t.Errorf("users %d, route user %q; want the example's", len(o.Users), o.Cluster.Username)
	}
	if len(o.Routes) != 2 || o.Routes[0].User.String() != "route:route_password-secret" || o.Routes[1].User.String() != "u:p" {
		t.Errorf("routes %v; want the cluster's credentials on the first only", o.Routes)
	}

	write(`port: 5111
server_name: file-name
max_payload: 1024
jetstream { store_dir: "/from/file" }
cluster { name: filecluster, listen: "127.0.0.1:6111", routes: ["nats-route://127.0.0.1:7111"] }
`)
	base.Insecure = true
	if o, err = serverOptions(base); err != nil {
		t.Fatal(err)
	}
	if o.Host != "127.0.0.1" || o.Port != 5111 || o.StoreDir != "/from/file" || o.ServerName != "file-name" || o.MaxPayload != 1024 ||
		o.Cluster.Port != 6111 || o.Cluster.Name != "filecluster" || len(o.Routes) != 1 || o.Routes[0].Port() != "7111" {
		t.Errorf("a file that sets them: %+v", o)
	}

	os.Unsetenv("UCC_PASSWORD")
	base.ConfigFile = "../examples/nats-auth.conf"
	if _, err := serverOptions(base); err == nil || !strings.Contains(err.Error(), "UCC_PASSWORD") || !strings.Contains(err.Error(), "PRESENCE_NATS_CONFIG") {
		t.Errorf("a secret unset: %v; want an error naming it", err)
	}
}

func absExample(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The provider's own connection to an embedded server with users needs
// credentials like any client's, and is told so without them.
func TestEmbeddedServerWithUsersNeedsTheWorkersCredentials(t *testing.T) {
	setExampleSecrets(t)
	ns, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), ConfigFile: "../examples/nats-auth.conf"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
	})
	if _, err := Connect("", ns.Server, "no credentials", zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "PRESENCE_NATS_USER") {
		t.Fatalf("connect without credentials: %v; want an error saying which variables to set", err)
	}
	opts, err := client.AuthOptions(config.NATSAuth{User: "worker", Password: config.Secret(os.Getenv("WORKER_PASSWORD"))})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Connect("", ns.Server, "worker", zerolog.Nop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// The example's secrets may be bcrypt hashes: the server keeps the hash,
// the worker still sends its password.
func TestExampleUsersWithBcryptHashes(t *testing.T) {
	setExampleSecrets(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("worker-plain-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WORKER_PASSWORD", string(hash))
	ns, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), ConfigFile: "../examples/nats-auth.conf"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
	})
	opts, err := client.AuthOptions(config.NATSAuth{User: "worker", Password: "worker-plain-secret"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Connect("", ns.Server, "worker", zerolog.Nop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// The embedded server syncs each JetStream write before acknowledging it
// unless told otherwise (an OS crash must not lose what was acknowledged);
// an interval trades that back, and a configuration file's sync_interval
// wins over both.
func TestEmbeddedServerSyncsBeforeItAcknowledges(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("jetstream { sync_interval: 30s }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		opts       EmbeddedOptions
		always     bool
		background time.Duration
	}{
		{"default", EmbeddedOptions{}, true, 2 * time.Minute},
		{"an interval", EmbeddedOptions{SyncInterval: 2 * time.Minute}, false, 2 * time.Minute},
		{"the configuration file's", EmbeddedOptions{ConfigFile: conf}, false, 30 * time.Second},
		{"the configuration file's over an interval", EmbeddedOptions{ConfigFile: conf, SyncInterval: time.Hour}, false, 30 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Listen, tt.opts.DataDir = "127.0.0.1:0", t.TempDir()
			ns, err := StartEmbedded(tt.opts, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Shutdown()
			js := ns.JetStreamConfig()
			if js == nil || js.SyncAlways != tt.always || js.SyncInterval != tt.background {
				t.Fatalf("JetStream config %+v; want sync always %v, background sync every %s", js, tt.always, tt.background)
			}
		})
	}
}
