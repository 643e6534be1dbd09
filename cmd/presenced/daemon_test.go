package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

// exited runs presenced to its end, which must come within a minute: every
// case here should end on its own, and a daemon that starts instead hangs.
func exited(t *testing.T, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("presenced %v did not end by itself; stderr:\n%s", args, errOut.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// errorLines are the lines of stderr that are not JSON log lines.
func errorLines(stderr string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "{") {
			out = append(out, line)
		}
	}
	return out
}

func TestCommandLine(t *testing.T) {
	presenced, _ := build(t)
	// Were an argument ignored, the daemon would start here and not end.
	env := []string{"PRESENCE_DATA_DIR=" + t.TempDir(), fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t))}

	code, stdout, stderr := exited(t, presenced, env, "-version")
	if code != 0 || !strings.HasPrefix(stdout, "presenced ") || strings.Count(stdout, "\n") != 1 || stderr != "" {
		t.Errorf("-version: exit %d, stdout %q, stderr %q; want one version line and 0", code, stdout, stderr)
	}
	info, err := exec.Command("go", "version", "-m", presenced).Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, rest, stamped := strings.Cut(string(info), "vcs.revision="); stamped {
		if commit := strings.Fields(rest)[0]; !strings.Contains(stdout, "(commit "+commit) {
			t.Errorf("-version %q does not name the commit %s it was built from", stdout, commit)
		}
	} else if strings.Contains(stdout, "commit") {
		t.Errorf("-version %q names a commit, and the build has none", stdout)
	}

	for _, arg := range []string{"-h", "--help", "-help"} {
		code, stdout, stderr := exited(t, presenced, env, arg)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: presenced") {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want the usage on stdout and 0", arg, code, stderr, stdout)
		}
		for name := range envNames() {
			if !strings.Contains(stdout, "  "+name+" ") {
				t.Errorf("%s: the usage lacks %s", arg, name)
			}
		}
		if !regexp.MustCompile(`PRESENCE_SHUTDOWN_TIMEOUT +10s`).MatchString(stdout) {
			t.Errorf("%s: the usage does not give the defaults:\n%s", arg, stdout)
		}
	}

	for _, args := range [][]string{{"-x"}, {"start"}, {"-version", "now"}, {"--config=Config.xml"}} {
		code, stdout, stderr := exited(t, presenced, env, args...)
		lines := strings.Split(stderr, "\n")
		if code != 2 || stdout != "" || !strings.HasPrefix(lines[0], "presenced: ") || !strings.HasPrefix(lines[1], "Usage: presenced") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the fault and the usage on stderr and 2", args, code, stdout, stderr)
		}
	}
}

// claimOf reads an agent's claim as the workers see it.
func claimOf(t *testing.T, url, uri string) (schemas.Claim, uint64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.BucketClaims)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, schemas.Key(uri))
	if err != nil {
		t.Fatalf("claim of %s: %v", uri, err)
	}
	var c schemas.Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		t.Fatal(err)
	}
	return c, e.Revision()
}

// TestSecondDaemonOnTheSameDataDirectory: the second process is refused
// before it touches anything, and the first keeps its agent and its claim.
func TestSecondDaemonOnTheSameDataDirectory(t *testing.T) {
	dataDir := t.TempDir()
	first := sipDaemon(t, false, "PRESENCE_DATA_DIR="+dataDir, "PRESENCE_WORKER_ID=first")
	claim, rev := claimOf(t, first.url, sipAgent)
	if claim.Worker != "first" {
		t.Fatalf("claim %+v; want the first worker's", claim)
	}

	code, _, stderr := exited(t, first.presenced, []string{
		"PRESENCE_CONFIG=" + first.config,
		fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)),
		"PRESENCE_DATA_DIR=" + dataDir,
		"PRESENCE_WORKER_ID=second",
	})
	want := fmt.Sprintf("presenced: bus: data directory %s is in use by process %d: a presenced already runs on it; stop it first, or give this one its own PRESENCE_DATA_DIR (and PRESENCE_EMBEDDED_LISTEN, PRESENCE_HTTP_LISTEN)", dataDir, first.cmd.Process.Pid)
	if lines := errorLines(stderr); code == 0 || len(lines) != 1 || lines[0] != want {
		t.Fatalf("second presenced: exit %d, error lines %q; want non-zero and %q\n%s", code, lines, want, stderr)
	}
	if strings.Contains(stderr, `"level":"error"`) || strings.Contains(stderr, `"level":"warn"`) {
		t.Errorf("the refused start logged more than its one line:\n%s", stderr)
	}

	var got schemas.AgentsReply
	if err := json.Unmarshal([]byte(first.ctl(t, "-json", "get", sipAgent)), &got); err != nil {
		t.Fatal(err)
	}
	if r := got.Agents[0]; r.Source != schemas.SourceSIP || r.State != claim.State {
		t.Fatalf("after the refused start the first answers %+v; its claim was %+v", r, claim)
	}
	if after, afterRev := claimOf(t, first.url, sipAgent); after != claim || afterRev != rev {
		t.Fatalf("the claim moved: %+v rev %d, was %+v rev %d", after, afterRev, claim, rev)
	}
	var st schemas.Status
	if err := json.Unmarshal([]byte(first.ctl(t, "-json", "status")), &st); err != nil || st.Agents != 1 || st.Interests != 1 {
		t.Fatalf("status after the refused start: %+v, %v", st, err)
	}
	first.stop(t)
}

// TestListenAddressInUse: each address in use stops start-up with one line
// that names the port and the setting to change.
func TestListenAddressInUse(t *testing.T) {
	presenced, _ := build(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sipConfig := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(sipConfig, []byte(fmt.Sprintf(`<config><PresenceProvider>
		<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="tcp" Listen="%s">
		  <ApplicationEndpoint OwnerUri="sip:presenceprovider@example.com" PoolFqdn="127.0.0.1:1" />
		</UcmaPresenceSource></PresenceProvider></config>`, taken.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		env []string
		fix string
	}{
		"client": {[]string{"PRESENCE_EMBEDDED_LISTEN=" + taken.Addr().String()}, "set PRESENCE_EMBEDDED_LISTEN to a free address"},
		"http": {[]string{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)), "PRESENCE_HTTP_LISTEN=" + taken.Addr().String()},
			"set PRESENCE_HTTP_LISTEN to a free address"},
		// Insecure: open routes are refused before any port is tried.
		"cluster": {[]string{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)), "PRESENCE_CLUSTER_LISTEN=" + taken.Addr().String(),
			"PRESENCE_CLUSTER_ROUTES=nats-route://" + taken.Addr().String(), "PRESENCE_INSECURE=true"}, "set PRESENCE_CLUSTER_LISTEN to a free address"},
		"sip": {[]string{fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)), "PRESENCE_CONFIG=" + sipConfig},
			"change the Listen attribute of UcmaPresenceSource in PRESENCE_CONFIG " + sipConfig},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := exited(t, presenced, append(tt.env, "PRESENCE_DATA_DIR="+t.TempDir()))
			lines := errorLines(stderr)
			if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "address already in use") || !strings.Contains(lines[0], strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)) {
				t.Fatalf("exit %d, error lines %q; want non-zero and one line naming the port in use\n%s", code, lines, stderr)
			}
			if !strings.Contains(lines[0], tt.fix) {
				t.Errorf("error line %q does not say how to fix it (%q)", lines[0], tt.fix)
			}
		})
	}
}

// TestSecondProviderWithTheSameSettings: a second start of the quickstart
// while the first runs says that a provider already runs, and how to run a
// second one; a start without PRESENCE_CONFIG says what that leaves on.
func TestSecondProviderWithTheSameSettings(t *testing.T) {
	presenced, _ := build(t)
	env := []string{
		fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", freeport.T(t)),
		fmt.Sprintf("PRESENCE_HTTP_LISTEN=127.0.0.1:%d", freeport.T(t)),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
		"PRESENCE_CONFIG=",
	}
	first := startDaemon(t, presenced, env)
	warned := regexp.MustCompile(`(?m)^\{"level":"warn".*"message":"PRESENCE_CONFIG is not set: only the PSTN source \(tel: URIs\) is on`)
	if !warned.MatchString(first.logs.String()) {
		t.Errorf("a start without PRESENCE_CONFIG does not say what that means:\n%s", first.logs.String())
	}
	code, _, stderr := exited(t, presenced, env)
	lines := errorLines(stderr)
	if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "a presenced already runs here") ||
		!strings.Contains(lines[0], "PRESENCE_HTTP_LISTEN, PRESENCE_EMBEDDED_LISTEN and PRESENCE_DATA_DIR") {
		t.Fatalf("second start: exit %d, error lines %q; want one saying a presenced already runs and what to change\n%s", code, lines, stderr)
	}
}

// silentPool is a SIP server that reads every request and answers none, as
// a hung presence server does; or, with answerFirst, one that accepts the
// first SUBSCRIBE and then hangs.
type silentPool struct {
	conn        *net.UDPConn
	got         chan string
	answerFirst bool
}

// accept answers a SUBSCRIBE with 200 OK: the dialog is up.
func accept(conn *net.UDPConn, to *net.UDPAddr, request string) {
	var reply strings.Builder
	reply.WriteString("SIP/2.0 200 OK\r\n")
	for _, line := range strings.Split(request, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "from", "call-id", "cseq":
			reply.WriteString(line + "\r\n")
		case "to":
			reply.WriteString(line + ";tag=pool\r\n")
		}
	}
	fmt.Fprintf(&reply, "Contact: <sip:pool@%s>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", conn.LocalAddr())
	_, _ = conn.WriteToUDP([]byte(reply.String()), to)
}

func startSilentPool(t *testing.T, answerFirst bool) *silentPool {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &silentPool{conn: conn, got: make(chan string, 100), answerFirst: answerFirst}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		answered := false
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			method, _, _ := strings.Cut(string(buf[:n]), " ")
			if p.answerFirst && !answered && method == "SUBSCRIBE" {
				answered = true
				accept(conn, from, string(buf[:n]))
			}
			select {
			case p.got <- method:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return p
}

// waitFor waits until the pool has received a request with the method.
func (p *silentPool) waitFor(t *testing.T, method string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-p.got:
			if m == method {
				return
			}
		case <-timeout:
			t.Fatalf("no %s reached the SIP pool", method)
		}
	}
}

const sipAgent = "sip:agent1@example.com"

// sipRun is a presenced whose SIP endpoints are a silent pool, with one
// agent subscribed whose SUBSCRIBE waits for an answer.
type sipRun struct {
	*daemon
	presenced, presencectl string
	url, config            string
}

func (r *sipRun) ctl(t *testing.T, args ...string) string {
	t.Helper()
	return ctl(t, r.presencectl, r.url, args...)
}

// ctl runs presencectl against url and returns what it printed.
func ctl(t *testing.T, presencectl, url string, args ...string) string {
	t.Helper()
	out, err := exec.Command(presencectl, append([]string{"-nats", url}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("presencectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// sipDaemon starts it; env adds to and overrides its settings. With
// answerFirst the pool accepts the SUBSCRIBE and hangs afterwards, so the
// un-SUBSCRIBE of the stop waits in vain.
func sipDaemon(t *testing.T, answerFirst bool, env ...string) *sipRun {
	t.Helper()
	r := &sipRun{config: filepath.Join(t.TempDir(), "Config.xml")}
	r.presenced, r.presencectl = build(t)
	pool := startSilentPool(t, answerFirst)
	xml := fmt.Sprintf(`<config><PresenceProvider>
		<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="udp" Listen="127.0.0.1:%d">
		  <ApplicationEndpoint OwnerUri="sip:presenceprovider@example.com" PoolFqdn="%s" />
		</UcmaPresenceSource></PresenceProvider></config>`, freeport.T(t), pool.conn.LocalAddr())
	if err := os.WriteFile(r.config, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	r.url = fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	r.daemon = startDaemon(t, r.presenced, append([]string{
		"PRESENCE_CONFIG=" + r.config,
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(r.url, "nats://"),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
		"PRESENCE_SHUTDOWN_TIMEOUT=3s",
	}, env...))
	r.ctl(t, "subscribe", "-ucc", "ucc_app01", sipAgent)
	pool.waitFor(t, "SUBSCRIBE")
	if answerFirst {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(r.logs.String(), "upstream subscribed") {
			if time.Now().After(deadline) {
				t.Fatalf("the accepted SUBSCRIBE never made the agent active:\n%s", r.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r
}

// misleading are log texts a clean stop must not show: they read as faults.
var misleading = []string{"context canceled", "closed pipe", `"level":"error"`}

// TestStopIsBoundedWhenTheSIPPoolHangs: a SUBSCRIBE in flight, or an
// un-SUBSCRIBE nobody answers, would hold the stop for its transaction
// timeout (32 s); the process exits 0 within PRESENCE_SHUTDOWN_TIMEOUT all
// the same.
func TestStopIsBoundedWhenTheSIPPoolHangs(t *testing.T) {
	for name, answerFirst := range map[string]bool{"SUBSCRIBE in flight": false, "un-SUBSCRIBE unanswered": true} {
		t.Run(name, func(t *testing.T) { stopsWithin(t, answerFirst) })
	}
}

func stopsWithin(t *testing.T, answerFirst bool) {
	const timeout = 3 * time.Second
	d := sipDaemon(t, answerFirst, "PRESENCE_SHUTDOWN_TIMEOUT="+timeout.String())
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	// The bound is what is tested, not a speed: slack for a loaded machine.
	const slack = 5 * time.Second
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("presenced exited with %v after SIGTERM; want 0", err)
		}
	case <-time.After(timeout + slack):
		t.Fatalf("presenced still runs %s after SIGTERM, with PRESENCE_SHUTDOWN_TIMEOUT=%s", timeout+slack, timeout)
	}
	t.Logf("exited %s after SIGTERM", time.Since(signalled).Round(10*time.Millisecond))
	logs := d.logs.String()
	for _, text := range misleading {
		if strings.Contains(logs, text) {
			t.Errorf("the stop logged %q:\n%s", text, logs)
		}
	}
}

// TestSecondSignalExitsAtOnce: with a long shutdown timeout, a second
// SIGTERM ends the stop, with a status that says it was cut short.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	d := sipDaemon(t, true, "PRESENCE_SHUTDOWN_TIMEOUT=10m")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.logs.String(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatal("presenced did not log that it is shutting down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("after a second SIGTERM presenced exited with %v; want status 1", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("presenced still runs 30 s after a second SIGTERM, with a 10 minute shutdown timeout")
	}
	if !strings.Contains(d.logs.String(), "second signal: exiting at once") {
		t.Errorf("no line says why it exited:\n%s", d.logs.String())
	}
}
