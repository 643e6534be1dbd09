package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/ops"
)

const (
	// opsStopTimeout bounds the wait for probes and scrapes in hand at exit.
	opsStopTimeout = time.Second
	// healthcheckTimeout bounds -healthcheck: a readiness check waits at
	// most a few seconds for NATS, and container runtimes time out at 30 s.
	healthcheckTimeout = 5 * time.Second
	// probeTimeout bounds the question whether a presenced holds the
	// HTTP address this one could not bind: it answers at once if so.
	probeTimeout = time.Second
	// memoryLimitRatio is the part of a container's memory limit Go's soft
	// limit takes: the rest is for what the Go runtime does not count.
	memoryLimitRatio = 0.9
)

// setMemoryLimit sets Go's soft memory limit from the container's (cgroup)
// memory limit, unless GOMEMLIMIT is set, and logs the limit in force.
func setMemoryLimit(log zerolog.Logger) {
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(memlimit.FromCgroup),
		memlimit.WithLogger(slog.New(slog.DiscardHandler)))
	ev := log.Info()
	switch {
	case os.Getenv("GOMEMLIMIT") != "":
		ev = ev.Str("from", "GOMEMLIMIT")
	case errors.Is(err, memlimit.ErrCgroupsNotSupported), errors.Is(err, memlimit.ErrNoCgroup):
		// macOS, Windows, a process outside any cgroup: nothing to warn of.
		ev = ev.Str("from", "none: no cgroup memory limit on this system")
	case err != nil:
		ev = log.Warn().Err(err).Str("from", "none: no container memory limit could be read")
	case limit == math.MaxInt64:
		ev = ev.Str("from", "none: no container memory limit")
	default:
		ev = ev.Str("from", fmt.Sprintf("%.0f%% of the container memory limit", memoryLimitRatio*100))
	}
	if limit = debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		ev = ev.Int64("bytes", limit)
	}
	ev.Msg("Go soft memory limit")
}

// checkHealth asks the presenced of this environment's PRESENCE_HTTP_LISTEN
// whether it is ready, for a container's health check (the image has no
// HTTP client of its own); it returns the exit status.
func checkHealth(stdout, stderr io.Writer) int {
	proc, err := config.LoadProcess()
	if err != nil {
		fmt.Fprintln(stderr, "presenced -healthcheck:", err)
		return 1
	}
	if proc.HTTPListen == "" {
		fmt.Fprintln(stderr, "presenced -healthcheck: PRESENCE_HTTP_LISTEN is empty: there is no listener to ask")
		return 1
	}
	url, err := localURL(proc.HTTPListen, ops.PathReadyz)
	if err != nil {
		fmt.Fprintln(stderr, "presenced -healthcheck: PRESENCE_HTTP_LISTEN:", err)
		return 1
	}
	hc := http.Client{Timeout: healthcheckTimeout}
	resp, err := hc.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "presenced -healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "presenced -healthcheck: not ready (%s): %s", resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "%s", body)
	return 0
}

// localURL is the URL of path on the listener of address listen, as this
// host reaches it.
func localURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	// A listener on every address answers on loopback too.
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// httpListenError says what to do when PRESENCE_HTTP_LISTEN cannot be
// bound: most often a presenced already runs with the same settings (a
// second start of the quickstart), which its liveness probe tells.
func httpListenError(listen string, err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" {
		return err
	}
	if url, uerr := localURL(listen, ops.PathHealthz); uerr == nil {
		hc := http.Client{Timeout: probeTimeout}
		if resp, herr := hc.Get(url); herr == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return fmt.Errorf("a presenced already runs here (%s answers): stop it first, or give this one its own PRESENCE_HTTP_LISTEN, PRESENCE_EMBEDDED_LISTEN and PRESENCE_DATA_DIR: %w", url, err)
			}
		}
	}
	return fmt.Errorf("%w; set PRESENCE_HTTP_LISTEN to a free address, or to empty for no listener", err)
}
