package bus

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// serverOptions are the embedded server's options. A nats-server
// configuration file (EmbeddedOptions.ConfigFile) comes first: whatever it
// sets wins. The provider's own settings fill in what it leaves out, each on
// its own: the listen host, the listen port, the store folder, the server
// name, the cluster name, the cluster listen address and the routes.
// JetStream is always on: the provider keeps its state there.
func serverOptions(o EmbeddedOptions) (*server.Options, error) {
	sopts := &server.Options{}
	if o.ConfigFile != "" {
		loaded, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("bus: PRESENCE_NATS_CONFIG: %w", err)
		}
		sopts = loaded
	}
	host, port, err := hostPort(o.Listen, "listen")
	if err != nil {
		return nil, err
	}
	if sopts.Host == "" {
		sopts.Host = host
	}
	if sopts.Port == 0 {
		sopts.Port = port
	}
	if sopts.ServerName == "" {
		sopts.ServerName = o.Name
	}
	if sopts.ServerName == "" {
		sopts.ServerName = "presence-embedded"
	}
	if sopts.StoreDir == "" {
		sopts.StoreDir = o.DataDir
	}
	if sopts.MaxPayload == 0 {
		sopts.MaxPayload = MaxPayload
	}
	sopts.JetStream = true
	sopts.NoSigs = true
	// nats-server acknowledges a JetStream write once it is in the OS's page
	// cache and syncs every two minutes: an OS crash or a power cut then
	// loses acknowledged writes (an interest answered ok, an input answered
	// stored, a claim), silently. So the provider's default syncs each write
	// before the acknowledgement. A bounded group commit is not on offer:
	// nats-server's interval sync runs beside the acknowledgements, never
	// before them, so any interval acknowledges writes that a crash loses;
	// "always" is the only setting under which acknowledged means on disk.
	// In a cluster nats-server syncs each node's Raft log instead, so an
	// acknowledged write is on the disk of a majority. The cost is in
	// BENCHMARKS.md (Durability); SyncInterval trades it back.
	if !sopts.SyncAlways && sopts.SyncInterval == 0 { // not set by the configuration file
		if o.SyncInterval == 0 {
			sopts.SyncAlways = true
		} else {
			sopts.SyncInterval = o.SyncInterval
		}
	}

	if sopts.Cluster.Port == 0 && o.Cluster.Listen != "" {
		if sopts.Cluster.Host, sopts.Cluster.Port, err = hostPort(o.Cluster.Listen, "cluster listen"); err != nil {
			return nil, err
		}
	}
	if sopts.Cluster.Name == "" && sopts.Cluster.Port != 0 {
		sopts.Cluster.Name = o.Cluster.Name
	}
	if len(sopts.Routes) == 0 && o.Cluster.Routes != "" {
		sopts.Routes = server.RoutesFromStr(o.Cluster.Routes)
	}
	// A route named without credentials presents the cluster's own: the
	// nodes of one cluster share its authorization, and the password then
	// stays out of PRESENCE_CLUSTER_ROUTES.
	if sopts.Cluster.Username != "" {
		for _, r := range sopts.Routes {
			if r.User == nil {
				r.User = url.UserPassword(sopts.Cluster.Username, sopts.Cluster.Password)
			}
		}
	}
	if !o.Insecure {
		if err := checkExposure(sopts); err != nil {
			return nil, err
		}
	}
	return sopts, nil
}

// checkExposure refuses a server that anyone who reaches it may use: a
// client port beyond loopback, or cluster routes, without authentication.
func checkExposure(o *server.Options) error {
	if !isLoopback(o.Host) && !clientAuthConfigured(o) {
		return fmt.Errorf("bus: the embedded NATS server would listen on %s with no authentication, so anyone who reaches it could forge presence; "+
			"give it users with PRESENCE_NATS_CONFIG (see examples/nats-auth.conf), listen on loopback (PRESENCE_EMBEDDED_LISTEN=127.0.0.1:4222), "+
			"or accept the risk with PRESENCE_INSECURE=true", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	}
	if o.Cluster.Port != 0 && !routeAuthConfigured(o) {
		return fmt.Errorf("bus: the embedded NATS server would open cluster routes on %s with no route authorization, so anyone who reaches them could join the cluster; "+
			"set a cluster authorization with PRESENCE_NATS_CONFIG (see examples/nats-cluster.conf), or accept the risk with PRESENCE_INSECURE=true",
			net.JoinHostPort(o.Cluster.Host, strconv.Itoa(o.Cluster.Port)))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func clientAuthConfigured(o *server.Options) bool {
	return len(o.Users) > 0 || len(o.Nkeys) > 0 || o.Username != "" || o.Authorization != "" ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.AuthCallout != nil ||
		o.TLSVerify
}

func routeAuthConfigured(o *server.Options) bool {
	return o.Cluster.Username != "" ||
		o.Cluster.TLSConfig != nil && o.Cluster.TLSConfig.ClientAuth == tls.RequireAndVerifyClientCert
}

func hostPort(addr, what string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s port %q: %w", what, portText, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
