package main_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/contactcenter/presence-provider/config"
)

// envNames are the variables presenced reads: the envconfig tags of
// config.Process, and of the structs it embeds.
func envNames() map[string]bool {
	names := map[string]bool{}
	var add func(typ reflect.Type)
	add = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				add(f.Type)
			} else if tag := f.Tag.Get("envconfig"); tag != "" {
				names[tag] = true
			}
		}
	}
	add(reflect.TypeFor[config.Process]())
	return names
}

// composeSecrets are what an operator exports before `docker compose up`.
var composeSecrets = map[string]string{"WORKER_PASSWORD": "compose-w", "UCC_PASSWORD": "compose-u",
	"SOURCE_PASSWORD": "compose-s", "OPERATOR_PASSWORD": "compose-o", "ROUTE_PASSWORD": "compose-r"}

// mounted is the host file behind a path inside a service's container.
func mounted(svc types.ServiceConfig, inside string) string {
	for _, v := range svc.Volumes {
		if rel, ok := strings.CutPrefix(inside, v.Target+"/"); ok {
			return filepath.Join(v.Source, rel)
		}
	}
	return ""
}

// flagValue is the argument after name in a command line.
func flagValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// TestComposeFileAgreesWithTheCode parses docker-compose.yml as Compose
// does (no Docker engine runs here) and checks it against the code's own
// configuration: the variables exist, the Config.xml it mounts is valid and
// points at the compose Kamailio, the workers reach every NATS node as the
// worker user of the nodes' configuration file, and the NATS nodes route to
// each other with route authorization. Every service restarts unless
// stopped; the NATS nodes have a health check on the monitoring port they
// open, and the workers wait for it.
func TestComposeFileAgreesWithTheCode(t *testing.T) {
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "../..",
		ConfigFiles: []types.ConfigFile{{Filename: "../../docker-compose.yml"}},
		Environment: composeSecrets,
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

	for name, svc := range project.Services {
		if svc.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q; want %s", name, svc.Restart, types.RestartPolicyUnlessStopped)
		}
	}

	users := map[string]string{} // the user and password every node accepts
	for i, name := range nats {
		svc := project.Services[name]
		args := []string(svc.Command)
		monitor := flagValue(args, "-m")
		if hc := svc.HealthCheck; monitor == "" || hc == nil || !slices.ContainsFunc(hc.Test, func(arg string) bool {
			return strings.HasPrefix(arg, "http://127.0.0.1:"+monitor+"/healthz")
		}) {
			t.Errorf("%s: no health check on the /healthz of its monitoring port (-m %q): %+v", name, monitor, svc.HealthCheck)
		}
		if !slices.Contains(args, "-js") || flagValue(args, "--cluster_name") != "presence" {
			t.Errorf("%s is not a JetStream node of cluster presence: %v", name, args)
		}
		cluster, err := url.Parse(flagValue(args, "--cluster"))
		if err != nil || cluster.User == nil {
			t.Fatalf("%s: --cluster %q has no route authorization", name, flagValue(args, "--cluster"))
		}
		routes := server.RoutesFromStr(flagValue(args, "--routes"))
		for _, other := range nats {
			found := false
			for _, r := range routes {
				found = found || r.Host == other+":6222" && r.User.String() == cluster.User.String()
			}
			if other != name && !found {
				t.Errorf("%s has no route to %s with the route user: %v", name, other, flagValue(args, "--routes"))
			}
		}

		// The users it loads, with the secrets its container gets.
		conf := mounted(svc, flagValue(args, "-c"))
		if conf == "" {
			t.Fatalf("%s: -c %q is not in a mounted volume", name, flagValue(args, "-c"))
		}
		for k, v := range svc.Environment {
			if v != nil {
				t.Setenv(k, *v)
			}
		}
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		nodeUsers := map[string]string{}
		for _, u := range opts.Users {
			nodeUsers[u.Username] = u.Password
		}
		if i > 0 && !maps.Equal(nodeUsers, users) {
			t.Errorf("%s has users of its own", name)
		}
		users = nodeUsers
	}

	ids := map[string]bool{}
	for _, name := range workers {
		svc := project.Services[name]
		if svc.Build == nil || svc.Build.Target != "presenced" {
			t.Errorf("%s is not built from the Dockerfile's presenced target", name)
		}
		for _, n := range nats {
			if svc.DependsOn[n].Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy: %+v", name, n, svc.DependsOn[n])
			}
		}
		if _, ok := svc.DependsOn["kamailio"]; !ok {
			t.Errorf("%s does not start after kamailio", name)
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
		if password, ok := users[env["PRESENCE_NATS_USER"]]; !ok || env["PRESENCE_NATS_USER"] != "worker" || password != env["PRESENCE_NATS_PASSWORD"] {
			t.Errorf("%s does not join NATS as its worker user", name)
		}
		for _, n := range nats {
			if !strings.Contains(env["PRESENCE_NATS_URL"], "nats://"+n+":4222") {
				t.Errorf("%s does not reach %s: PRESENCE_NATS_URL=%q", name, n, env["PRESENCE_NATS_URL"])
			}
		}
		if host, _, err := net.SplitHostPort(env["PRESENCE_HTTP_LISTEN"]); err != nil || host != "0.0.0.0" {
			t.Errorf("%s: PRESENCE_HTTP_LISTEN=%q; want every address, for the health check inside and Prometheus outside", name, env["PRESENCE_HTTP_LISTEN"])
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
		cfgFile := mounted(svc, env["PRESENCE_CONFIG"])
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

// TestDockerfileChecksHealth: the presenced image checks its own readiness
// with the binary it runs, as distroless has no HTTP client (the tour test
// runs presenced -healthcheck for real).
func TestDockerfileChecksHealth(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stage, check string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 4 && fields[0] == "FROM" && strings.EqualFold(fields[2], "AS"):
			stage = fields[3]
		case len(fields) > 0 && fields[0] == "HEALTHCHECK" && stage == "presenced":
			check = line
		}
	}
	if _, cmd, ok := strings.Cut(check, " CMD "); !ok || strings.TrimSpace(cmd) != `["/usr/local/bin/presenced", "-healthcheck"]` {
		t.Fatalf("the presenced stage's HEALTHCHECK is %q; want CMD [\"/usr/local/bin/presenced\", \"-healthcheck\"]", check)
	}
}
