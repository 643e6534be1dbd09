// Command presenced is the Presence Provider daemon: one upstream presence
// subscription per agent for every UCC of the service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/graph"
	"github.com/contactcenter/presence-provider/sources/pstn"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "1.0.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "presenced:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	proc, err := config.LoadProcess()
	if err != nil {
		return err
	}
	level, _ := zerolog.ParseLevel(proc.LogLevel)
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()

	provider := config.Default()
	if proc.ConfigFile != "" {
		if provider, err = config.Load(proc.ConfigFile); err != nil {
			return err
		}
	}
	log.Info().Object("config", provider).Str("file", proc.ConfigFile).Msg("PresenceProviderConfiguration")
	log.Info().Object("process", proc).Msg("process configuration")
	if proc.Insecure {
		log.Warn().Msg("PRESENCE_INSECURE=true: the embedded NATS server may listen beyond loopback or open routes with no authentication; anyone who reaches it can forge presence")
	}

	var ns *server.Server
	if proc.NATSURL == "" {
		opts := bus.EmbeddedOptions{Listen: proc.EmbeddedListen, DataDir: proc.DataDir, Name: proc.ServerName,
			Cluster:    bus.ClusterOptions{Name: proc.ClusterName, Listen: proc.ClusterListen, Routes: proc.ClusterRoutes},
			ConfigFile: proc.NATSConfig, Insecure: proc.Insecure}
		if ns, err = bus.StartEmbedded(opts, log); err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
	}
	auth, err := bus.ClientOptions(proc.NATSAuth)
	if err != nil {
		return err
	}
	conn, err := bus.Connect(proc.NATSURL, ns, "presenced "+proc.WorkerID, log, auth...)
	if err != nil {
		return err
	}
	defer conn.Close()

	bucketCtx, cancelBuckets := context.WithTimeout(ctx, 2*time.Minute)
	stores, err := conn.Buckets(bucketCtx, bus.BucketOptions{Replicas: proc.KVReplicas, WorkerLease: proc.WorkerLease}, log)
	cancelBuckets()
	if err != nil {
		return err
	}
	clock := clockwork.NewRealClock()
	w := worker.New(workerConfig(proc, provider), stores, clock, log)
	if err := addSources(w, proc, provider, clock, log); err != nil {
		return err
	}

	// The worker and the service outlive the signal: Stop ends them in order,
	// and requests in hand finish rather than fail on a cancelled context.
	running := context.WithoutCancel(ctx)
	if err := w.Start(running); err != nil {
		return err
	}
	svc, err := conn.Serve(running, w, version, log)
	if err != nil {
		w.Stop()
		return err
	}
	ready := log.Info().Str("worker", proc.WorkerID).Str("version", version)
	if ns != nil {
		ready = ready.Str("embedded_nats", ns.ClientURL()).Str("data_dir", proc.DataDir)
	} else {
		ready = ready.Str("nats", conn.NC.ConnectedUrlRedacted())
	}
	ready.Msg("presence provider ready")

	<-ctx.Done()
	log.Info().Msg("shutting down: no new requests, handing agents over, ending upstream subscriptions, releasing claims")
	if err := svc.StopRequests(); err != nil {
		log.Warn().Err(err).Msg("presence service stop")
	}
	w.Stop()
	if err := svc.Stop(); err != nil {
		log.Warn().Err(err).Msg("presence inputs stop")
	}
	if err := conn.NC.FlushTimeout(5 * time.Second); err != nil {
		log.Warn().Err(err).Msg("flush")
	}
	return nil
}

func workerConfig(proc config.Process, p config.Provider) worker.Config {
	routes := sources.Routes{PSTN: p.PSTN.Enabled, SIP: p.SIP.Enabled, Graph: p.Graph.Enabled}
	if p.Attendant.Enabled {
		routes.AttendantPatterns = p.Attendant.Patterns
	}
	return worker.Config{
		ID:                     proc.WorkerID,
		SubscriptionsPerSecond: p.MaxSubscriptionsPerSecond,
		FirstRetry:             p.FailedResubscribeDelay,
		MaxRetry:               p.MaxFailedResubscribeDelay,
		MaxFailures:            p.MaxFailuresPerURI,
		Linger:                 proc.UnsubscribeLinger,
		WorkerLease:            proc.WorkerLease,
		Routes:                 routes,
	}
}

func addSources(w *worker.Worker, proc config.Process, p config.Provider, clock clockwork.Clock, log zerolog.Logger) error {
	if p.Attendant.Enabled {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock))
	}
	if p.PSTN.Enabled {
		w.AddSource(schemas.SourcePSTN, pstn.New(p.PSTN.MaxCallDuration, clock, w))
	}
	if p.SIP.Enabled {
		src, err := sip.New(sipConfig(proc, p.SIP), clock, w, log)
		if err != nil {
			return err
		}
		w.AddSource(schemas.SourceSIP, src)
	}
	if p.Graph.Enabled {
		src, err := graph.New(graphConfig(proc, p.Graph), clock, w, log)
		if err != nil {
			return err
		}
		w.AddSource(schemas.SourceGraph, src)
	}
	return nil
}

func graphConfig(proc config.Process, g config.GraphSource) graph.Config {
	cfg := graph.Config{BaseURL: proc.GraphBaseURL, AuthorityHost: proc.GraphAuthorityHost,
		RequestsPer30s: g.RequestsPer30s, MinCycle: g.MinCycle}
	for _, a := range g.Accounts {
		cfg.Accounts = append(cfg.Accounts, graph.Account{ID: a.ID, TenantID: a.TenantID, ClientID: a.ClientID,
			Secret: string(a.Secret()), CertificateFile: a.CertificateFile})
	}
	return cfg
}

// defaultSIPListen is the SIP stack's address when Config.xml names none.
const defaultSIPListen = "127.0.0.1:5070"

func sipConfig(proc config.Process, c config.SIPSource) sip.Config {
	endpoint := func(name string, ep config.Endpoint, password config.Secret) sip.Endpoint {
		return sip.Endpoint{Name: name, URI: ep.URI, Pool: ep.PoolFQDN, Register: ep.Register, Password: string(password)}
	}
	cfg := sip.Config{Transport: c.Transport, Listen: c.Listen, Expires: c.SubscriptionExpires,
		Application: endpoint("application", c.Application, proc.SIPAppPassword)}
	if proc.SIPListen != "" {
		cfg.Listen = proc.SIPListen
	}
	if cfg.Listen == "" {
		cfg.Listen = defaultSIPListen
	}
	if c.User != nil {
		user := endpoint("user", *c.User, proc.SIPUserPassword)
		cfg.User = &user
	}
	return cfg
}
