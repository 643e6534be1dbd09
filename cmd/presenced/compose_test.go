package main_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/contactcenter/presence-provider/config"
)

// envNames are the variables presenced reads: the envconfig tags of
// config.Process.
func envNames() map[string]bool {
	names := map[string]bool{}
	typ := reflect.TypeFor[config.Process]()
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("envconfig"); tag != "" {
			names[tag] = true
		}
	}
	return names
}

// TestComposeFileAgreesWithTheCode parses docker-compose.yml as Compose
// does (no Docker engine runs here) and checks it against the code's own
// configuration: the variables exist, the Config.xml it mounts is valid and
// points at the compose Kamailio, the workers reach every NATS node, and
// the NATS nodes route to each other.
func TestComposeFileAgreesWithTheCode(t *testing.T) {
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "../..",
		ConfigFiles: []types.ConfigFile{{Filename: "../../docker-compose.yml"}},
	}, func(o *loader.Options) { o.SetProjectName("presence", true) })
	if err != nil {
		t.Fatal(err)
	}
	known := envNames()
	var nats, workers []string
	for name, svc := range project.Services {
		switch {
		case strings.HasPrefix(name, "nats") && svc.Image != "":
			nats = append(nats, name)
		case strings.HasPrefix(name, "presenced"):
			workers = append(workers, name)
		}
	}
	slices.Sort(nats)
	slices.Sort(workers)
	if len(nats) != 3 || len(workers) != 3 {
		t.Fatalf("services: nats %v, workers %v; want three of each", nats, workers)
	}
	kamailio, ok := project.Services["kamailio"]
	if !ok || kamailio.Build == nil || kamailio.Build.Target != "kamailio" {
		t.Fatal("no kamailio service built from the Dockerfile's kamailio target")
	}

	for _, name := range nats {
		cmd := strings.Join(project.Services[name].Command, " ")
		for _, other := range nats {
			if other != name && !strings.Contains(cmd, "nats-route://"+other+":6222") {
				t.Errorf("%s has no route to %s: %s", name, other, cmd)
			}
		}
		if !strings.Contains(cmd, "-js") || !strings.Contains(cmd, "--cluster_name presence") {
			t.Errorf("%s is not a JetStream node of cluster presence: %s", name, cmd)
		}
	}

	ids := map[string]bool{}
	for _, name := range workers {
		svc := project.Services[name]
		if svc.Build == nil || svc.Build.Target != "presenced" {
			t.Errorf("%s is not built from the Dockerfile's presenced target", name)
		}
		env := map[string]string{}
		for k, v := range svc.Environment {
			if v != nil {
				env[k] = *v
			}
			if strings.HasPrefix(k, "PRESENCE_") && !known[k] {
				t.Errorf("%s sets %s, which presenced does not read", name, k)
			}
		}
		for _, n := range nats {
			if !strings.Contains(env["PRESENCE_NATS_URL"], "nats://"+n+":4222") {
				t.Errorf("%s does not reach %s: PRESENCE_NATS_URL=%q", name, n, env["PRESENCE_NATS_URL"])
			}
		}
		if env["PRESENCE_KV_REPLICAS"] != "3" {
			t.Errorf("%s: PRESENCE_KV_REPLICAS=%q; want 3 on the 3-node cluster", name, env["PRESENCE_KV_REPLICAS"])
		}
		if ids[env["PRESENCE_WORKER_ID"]] || env["PRESENCE_WORKER_ID"] == "" {
			t.Errorf("%s: worker id %q is empty or shared", name, env["PRESENCE_WORKER_ID"])
		}
		ids[env["PRESENCE_WORKER_ID"]] = true
		if host, _, _ := net.SplitHostPort(env["PRESENCE_SIP_LISTEN"]); host != name {
			t.Errorf("%s: PRESENCE_SIP_LISTEN=%q; want its own host name as Contact", name, env["PRESENCE_SIP_LISTEN"])
		}

		// The Config.xml it mounts: valid, and aimed at the compose Kamailio.
		var cfgFile string
		for _, v := range svc.Volumes {
			if rel, ok := strings.CutPrefix(env["PRESENCE_CONFIG"], v.Target+"/"); ok {
				cfgFile = filepath.Join(v.Source, rel)
			}
		}
		if cfgFile == "" {
			t.Fatalf("%s: PRESENCE_CONFIG=%q is not in a mounted volume", name, env["PRESENCE_CONFIG"])
		}
		p, _, err := config.Load(cfgFile)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pool := p.SIP.Application.PoolFQDN
		host, port, _ := net.SplitHostPort(pool)
		published := false
		for _, pc := range kamailio.Ports {
			published = published || fmt.Sprint(pc.Target) == port
		}
		if !p.SIP.Enabled || host != "kamailio" || !published {
			t.Errorf("%s: SIP pool %q is not the kamailio service's port", name, pool)
		}
		lease, err := time.ParseDuration(env["PRESENCE_WORKER_LEASE"])
		if err != nil || p.SIP.SubscriptionExpires >= lease {
			t.Errorf("%s: subscriptionExpires %s is not below the worker lease %q", name, p.SIP.SubscriptionExpires, env["PRESENCE_WORKER_LEASE"])
		}
	}
}
