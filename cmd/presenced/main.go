// Command presenced is the Presence Provider daemon: one upstream presence
// subscription per agent for every UCC of the service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/buildinfo"
	"github.com/contactcenter/presence-provider/internal/slogzero"
	"github.com/contactcenter/presence-provider/ops"
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the process's exit status: 0 after a stop on SIGTERM or
// SIGINT, finished or cut at PRESENCE_SHUTDOWN_TIMEOUT, since the stop was
// asked for; 1 when the start fails or a second signal cuts the stop short;
// 2 for a command line it does not take.
func run(args []string, stdout, stderr io.Writer) int {
	if code, done := answer(args, stdout, stderr); done {
		return code
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	proc, err := config.LoadProcess()
	if err != nil {
		fmt.Fprintln(stderr, "presenced:", err)
		return 1
	}
	level, _ := zerolog.ParseLevel(proc.LogLevel)
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	// Libraries that log with log/slog or the log package (sipgo's
	// transports) write JSON through zerolog too.
	slog.SetDefault(slogzero.New(log))
	setMemoryLimit(log)
	d, err := start(ctx, proc, log)
	if err != nil && ctx.Err() != nil {
		// Asked to stop while starting: what failed was the wait.
		log.Info().Msg("stopped while starting")
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "presenced:", err)
		return 1
	}

	<-ctx.Done()
	// From here a second signal ends the process at once.
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	stopSignals()
	log.Info().Stringer("timeout", proc.ShutdownTimeout).
		Msg("shutting down: no new requests, handing agents over, ending upstream subscriptions, releasing claims")
	stopCtx, cancel := context.WithTimeout(context.Background(), proc.ShutdownTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.stop(stopCtx, proc.ShutdownTimeout)
	}()
	// Leaving before the stop ends is safe: claims still held run out with
	// the worker lease, and upstream subscriptions with their expiry.
	select {
	case <-stopped:
		log.Info().Msg("presence provider stopped")
		return 0
	case <-stopCtx.Done():
		log.Warn().Stringer("timeout", proc.ShutdownTimeout).
			Msg("shutdown not finished within PRESENCE_SHUTDOWN_TIMEOUT: exiting; claims still held run out with the worker lease")
		return 0
	case sig := <-again:
		log.Warn().Stringer("signal", sig).
			Msg("second signal: exiting at once; claims still held run out with the worker lease")
		return 1
	}
}

// answer handles the command line. Settings come from the environment, so
// the only arguments are questions; done says the process should end with code.
func answer(args []string, stdout, stderr io.Writer) (code int, done bool) {
	flags := flag.NewFlagSet("presenced", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the usage is written here, to the right stream
	showVersion := flags.Bool("version", false, "print the version and exit")
	healthcheck := flags.Bool("healthcheck", false,
		"ask the presenced running here (PRESENCE_HTTP_LISTEN) whether it is ready; exit 0 if so, 1 otherwise")
	err := flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout, flags)
		return 0, true
	case err != nil:
		fmt.Fprintln(stderr, "presenced:", err)
		usage(stderr, flags)
		return 2, true
	case flags.NArg() > 0:
		fmt.Fprintf(stderr, "presenced: unexpected argument %q\n", flags.Arg(0))
		usage(stderr, flags)
		return 2, true
	case *showVersion:
		fmt.Fprintln(stdout, buildinfo.Line("presenced", version))
		return 0, true
	case *healthcheck:
		return checkHealth(stdout, stderr), true
	}
	return 0, false
}

func usage(w io.Writer, flags *flag.FlagSet) {
	fmt.Fprint(w, `Usage: presenced [-version] [-healthcheck] [-h]

The Presence Provider daemon: one upstream presence subscription per agent
for every UCC. It reads the PresenceProvider element of PRESENCE_CONFIG and
the variables below, and runs until SIGTERM or SIGINT.

Flags:
`)
	flags.SetOutput(w)
	flags.PrintDefaults()
	flags.SetOutput(io.Discard)
	fmt.Fprintln(w, "  -h, --help\n    \tprint this help and exit")
	fmt.Fprintln(w)
	if err := config.Usage(w); err != nil {
		fmt.Fprintln(w, err)
	}
}

// daemon is what start made and stop ends, in this order.
type daemon struct {
	log  zerolog.Logger
	ns   *bus.Embedded
	conn *bus.Conn
	w    *worker.Worker
	svc  *bus.Service
	ops  *ops.Server // nil without PRESENCE_HTTP_LISTEN
	// metrics counts what the worker does; nil without PRESENCE_HTTP_LISTEN.
	metrics *ops.Metrics
}

func start(ctx context.Context, proc config.Process, log zerolog.Logger) (_ *daemon, err error) {
	provider := config.Default()
	if proc.ConfigFile != "" {
		var warnings []config.Warning
		if provider, warnings, err = config.Load(proc.ConfigFile); err != nil {
			var unreadable *fs.PathError
			if errors.As(err, &unreadable) && unreadable.Path == proc.ConfigFile {
				err = fmt.Errorf("%w; set PRESENCE_CONFIG to a Config.xml this process may read, e.g. examples/Config.xml", err)
			}
			return nil, err
		}
		for _, w := range warnings {
			log.Warn().EmbedObject(w).Str("file", proc.ConfigFile).Msg(w.String())
		}
	}
	log.Info().Object("config", provider).Str("file", proc.ConfigFile).Msg("PresenceProviderConfiguration")
	if proc.ConfigFile == "" {
		// Said at start, or agents of the other sources would be
		// subscribed without a word as source none, unsupported.
		log.Warn().Msg("PRESENCE_CONFIG is not set: only the PSTN source (tel: URIs) is on and every other agent is unsupported; set PRESENCE_CONFIG to a Config.xml, e.g. examples/Config.xml, for the attendant, SIP and Teams sources")
	}
	log.Info().Object("process", proc).Msg("process configuration")
	if proc.Insecure {
		log.Warn().Msg("PRESENCE_INSECURE=true: the embedded NATS server may listen beyond loopback or open routes with no authentication; anyone who reaches it can forge presence")
	}

	d := &daemon{log: log}
	defer func() {
		if err != nil {
			d.closeNATS()
		}
	}()
	// Bound first: an address in use stops start-up before NATS starts.
	if proc.HTTPListen != "" {
		if d.ops, err = ops.Listen(proc.HTTPListen, log); err != nil {
			return nil, httpListenError(proc.HTTPListen, err)
		}
	}
	var ns *server.Server
	if proc.NATSURL == "" {
		opts := bus.EmbeddedOptions{Listen: proc.EmbeddedListen, DataDir: proc.DataDir, Name: proc.ServerName,
			Cluster:    bus.ClusterOptions{Name: proc.ClusterName, Listen: proc.ClusterListen, Routes: proc.ClusterRoutes},
			ConfigFile: proc.NATSConfig, Insecure: proc.Insecure, SyncInterval: time.Duration(proc.SyncInterval)}
		if d.ns, err = bus.StartEmbedded(opts, log); err != nil {
			return nil, err
		}
		ns = d.ns.Server
	}
	// With the embedded server the id is kept in its data directory, now
	// this process's.
	if err := proc.ResolveWorkerID(); err != nil {
		return nil, err
	}
	auth, err := client.AuthOptions(proc.NATSAuth)
	if err != nil {
		return nil, err
	}
	if d.conn, err = bus.Connect(proc.NATSURL, ns, "presenced "+proc.WorkerID, log, auth...); err != nil {
		return nil, err
	}

	bucketCtx, cancelBuckets := context.WithTimeout(ctx, bus.StartupWait)
	bucketOpts := bus.BucketOptions{Replicas: proc.KVReplicas, WorkerLease: proc.WorkerLease}
	stores, err := d.conn.Buckets(bucketCtx, bucketOpts, log)
	var dialogs sip.DialogStore
	if err == nil && proc.Resume && provider.SIP.Enabled {
		dialogs, err = d.conn.DialogBucket(bucketCtx, bucketOpts, log)
	}
	if err == nil {
		stores.History, err = d.conn.HistoryStream(bucketCtx,
			bus.HistoryOptions{MaxAge: proc.HistoryMaxAge, MaxBytes: proc.HistoryMaxBytes, Replicas: proc.KVReplicas}, log)
	}
	cancelBuckets()
	if err != nil {
		return nil, err
	}
	clock := clockwork.NewRealClock()
	wcfg := workerConfig(proc, provider)
	if d.ops != nil {
		d.metrics = ops.NewMetrics()
		wcfg.Observer = d.metrics
	}
	d.w = worker.New(wcfg, stores.Stores, clock, log)
	built, err := addSources(d.w, stores.Calls, dialogs, proc, provider, clock, log)
	if err != nil {
		return nil, err
	}
	if d.metrics != nil {
		for _, s := range built {
			d.metrics.AddSource(s)
		}
	}

	// The worker and the service outlive the signal: stop ends them in
	// order, and requests in hand finish rather than fail on a cancelled
	// context.
	running := context.WithoutCancel(ctx)
	inputs, err := d.conn.OpenInputs(running, bus.InputQueueOptions{WorkerID: proc.WorkerID,
		MaxMsgs: proc.InputQueueMaxMsgs, MaxBytes: proc.InputQueueMaxBytes, MaxAge: proc.InputQueueMaxAge, Replicas: proc.KVReplicas}, log)
	if err != nil {
		return nil, err
	}
	if err := d.w.Start(running); err != nil {
		return nil, err
	}
	if d.svc, err = d.conn.Serve(running, d.w, version, inputs, log); err != nil {
		d.w.Stop(ctx)
		return nil, err
	}
	ready := log.Info().Str("worker", proc.WorkerID).Str("version", version)
	if d.ops != nil {
		d.ops.Serve(d.w, d.conn, d.w, d.metrics)
		ready = ready.Str("http", d.ops.Addr())
	}
	if d.ns != nil {
		ready = ready.Str("embedded_nats", d.ns.ClientURL()).Str("data_dir", proc.DataDir)
	} else {
		ready = ready.Str("nats", d.conn.NC.ConnectedUrlRedacted())
	}
	ready.Msg("presence provider ready")
	return d, nil
}

// workerShare is the part of the shutdown timeout the worker may take; the
// rest is for the inputs, the flush and the embedded server's store.
const workerShare = 4.0 / 5

// stop ends requests, the worker, inputs and NATS in order within ctx.
func (d *daemon) stop(ctx context.Context, timeout time.Duration) {
	if err := d.svc.StopRequests(); err != nil {
		d.log.Warn().Err(err).Msg("presence service stop")
	}
	workerCtx, cancel := context.WithTimeout(ctx, time.Duration(float64(timeout)*workerShare))
	d.w.Stop(workerCtx)
	cancel()
	if err := d.svc.Stop(); err != nil {
		d.log.Warn().Err(err).Msg("presence inputs stop")
	}
	if err := d.conn.NC.FlushWithContext(ctx); err != nil {
		d.log.Warn().Err(err).Msg("flush")
	}
	d.closeNATS()
}

// closeNATS ends the connection and the embedded server, and the listener
// that reports on them.
func (d *daemon) closeNATS() {
	if d.ops != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opsStopTimeout)
		d.ops.Stop(ctx)
		cancel()
	}
	if d.conn != nil {
		d.conn.Close()
	}
	if d.ns != nil {
		d.ns.Shutdown()
	}
}

func workerConfig(proc config.Process, p config.Provider) worker.Config {
	return worker.Config{
		ID:                     proc.WorkerID,
		SubscriptionsPerSecond: p.MaxSubscriptionsPerSecond,
		FirstRetry:             p.FailedResubscribeDelay,
		MaxRetry:               p.MaxFailedResubscribeDelay,
		MaxFailures:            p.MaxFailuresPerURI,
		Linger:                 proc.UnsubscribeLinger,
		WorkerLease:            proc.WorkerLease,
		Resume:                 proc.Resume,
		ResumesPerSecond:       proc.ResumeRate,
	}
}

// addSources starts the sources Config.xml enables, one line each, and
// returns them; their routing order is the registry's (sources.Registry).
// dialogs is nil when SIP dialogs are not resumed.
func addSources(w *worker.Worker, calls *bus.Calls, dialogs sip.DialogStore, proc config.Process, p config.Provider, clock clockwork.Clock, log zerolog.Logger) ([]sources.Source, error) {
	var built []sources.Source
	for _, s := range []struct {
		name    string
		enabled bool
		build   func() (sources.Source, error)
	}{
		{schemas.SourceGraph, p.Graph.Enabled, func() (sources.Source, error) { return graph.New(graphConfig(proc, p.Graph), clock, w, log) }},
		{schemas.SourceAttendant, p.Attendant.Enabled, func() (sources.Source, error) { return attendant.New(clock, p.Attendant.Patterns), nil }},
		{schemas.SourcePSTN, p.PSTN.Enabled, func() (sources.Source, error) { return pstn.New(calls, p.PSTN.MaxCallDuration, clock, w, log), nil }},
		{schemas.SourceSIP, p.SIP.Enabled, func() (sources.Source, error) { return sip.New(sipConfig(proc, p.SIP, dialogs), clock, w, log) }},
	} {
		if !s.enabled {
			continue
		}
		src, err := s.build()
		var listen *net.OpError
		if s.name == schemas.SourceSIP && errors.As(err, &listen) && listen.Op == "listen" {
			fix := "change the Listen attribute of UcmaPresenceSource in PRESENCE_CONFIG " + proc.ConfigFile
			if proc.SIPListen != "" {
				fix = "change PRESENCE_SIP_LISTEN"
			}
			err = fmt.Errorf("%w; another presenced or SIP stack may hold the address: stop it, or %s", err, fix)
		}
		if err != nil {
			return nil, err
		}
		w.AddSource(s.name, src)
		built = append(built, src)
	}
	return built, nil
}

func graphConfig(proc config.Process, g config.GraphSource) graph.Config {
	cfg := graph.Config{BaseURL: proc.GraphBaseURL, AuthorityHost: proc.GraphAuthorityHost,
		RequestsPer30s: g.RequestsPer30s, BudgetShare: float64(g.BudgetPercent) / 100, MinCycle: g.MinCycle}
	for _, a := range g.Accounts {
		cfg.Accounts = append(cfg.Accounts, graph.Account{ID: a.ID, TenantID: a.TenantID, ClientID: a.ClientID,
			Secret: string(a.Secret()), CertificateFile: a.CertificateFile})
	}
	return cfg
}

// defaultSIPListen is the SIP stack's address when Config.xml names none.
const defaultSIPListen = "127.0.0.1:5070"

func sipConfig(proc config.Process, c config.SIPSource, dialogs sip.DialogStore) sip.Config {
	endpoint := func(name string, ep config.Endpoint, password config.Secret) sip.Endpoint {
		return sip.Endpoint{Name: name, URI: ep.URI, Pool: ep.PoolFQDN, Register: ep.Register, Password: string(password)}
	}
	cfg := sip.Config{Transport: c.Transport, TLS: c.TLS, Listen: c.Listen, Expires: c.SubscriptionExpires, MSSIP: c.Dialect == config.DialectMSSIP,
		BatchSize:   c.BatchSize,
		Application: endpoint("application", c.Application, proc.SIPAppPassword), Dialogs: dialogs}
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
