// Package siptest runs real SIP peers for tests: Kamailio as a presence
// server (SUBSCRIBE/NOTIFY/PUBLISH, REGISTER with digest auth), sipp as a
// scripted, misbehaving presence server for fault tests, and user agents
// nobody on the team wrote: baresip (a notifier of its own presence, or a
// publisher into Kamailio), linphonec (a notifier for its friends) and
// sipsak (one-shot requests). Each peer's configuration is in peers/ (or,
// for Kamailio, kamailio.go), filled in with free loopback ports per test.
//
// All are external programs (Debian packages kamailio,
// kamailio-presence-modules, sip-tester, baresip-core, linphone-cli and
// sipsak). When one is missing the test is skipped, except with CI=true
// where a missing peer is a failure: CI must not go green by skipping the
// tests that matter.
//
// The package uses the standard library only (and internal/freeport), so
// that it adds no dependency to the module. Helpers that take a testing.TB call t.Fatal and must run on
// the test goroutine.
package siptest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireBinary returns the path of name or ends the test (see unavailable).
func requireBinary(t testing.TB, name, aptPackages string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, fmt.Sprintf("%s not found in PATH; install it with: apt-get install %s", name, aptPackages))
	}
	return path
}

// unavailable ends a test that cannot get its server: skipped normally,
// failed under CI=true.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	msg = "siptest: " + msg
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the SIP server tests must run, not skip)")
	}
	t.Skip(msg)
}

// syncBuffer collects a child's output; it is written by os/exec's copying
// goroutine and read by the test, hence the lock.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a started server. It runs in its own process group so that
// forked workers (Kamailio forks about ten) can all be killed if the main
// process does not stop them.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status; read only after done is closed
}

func startProcess(cmd *exec.Cmd, out *syncBuffer) (*process, error) {
	cmd.Stdout = out
	cmd.Stderr = out
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to end by itself and returns its
// exit code (-1 when it was killed by a signal).
func (p *process) wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("still running after %v", timeout)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return 0, p.err
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

// stop sends sig to the main process (which lets it shut down cleanly), then
// kills the whole process group if it is not gone within a few seconds.
func (p *process) stop(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		killGroup(p.cmd.Process)
		<-p.done
	}
	// Workers left behind by a crashed main process share its group.
	killGroup(p.cmd.Process)
}

// portBound reports whether some process has bound 127.0.0.1:port (UDP) or
// listens on it (TCP), there or on a wildcard address, IPv6's dual-stack
// one included (linphonec binds that), by reading /proc/net. It lets a test
// wait for a server that answers nothing that could serve as a probe. ok is
// false when /proc/net cannot be read.
func portBound(proto string, port int) (bound, ok bool) {
	addrs := map[string][]string{
		proto: {fmt.Sprintf("0100007F:%04X", port), // 127.0.0.1 in host (little-endian) order
			fmt.Sprintf("00000000:%04X", port)},
		proto + "6": {fmt.Sprintf("%032X:%04X", 0, port)},
	}
	for _, table := range []string{proto, proto + "6"} {
		data, err := os.ReadFile("/proc/net/" + table)
		if err != nil {
			if table == proto {
				return false, false
			}
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || !slices.Contains(addrs[table], f[1]) {
				continue
			}
			if proto == "udp" || f[3] == "0A" { // 0A: TCP_LISTEN
				return true, true
			}
		}
	}
	return false, true
}
