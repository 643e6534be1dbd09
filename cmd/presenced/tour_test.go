package main_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
)

// binaries are the real presenced and presencectl, built by the first test
// that needs them and run by every other: one build per test binary, not
// one per test. TestMain removes them.
var binaries built

type built struct {
	once sync.Once
	dir  string
	err  error
}

// build returns the paths of the real binaries, building them the first
// time.
func build(t testing.TB) (presenced, presencectl string) {
	t.Helper()
	b := &binaries
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "presenced-test-"); b.err != nil {
			return
		}
		for _, name := range []string{"presenced", "presencectl"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(b.dir, name), "../"+name).CombinedOutput()
			if err != nil {
				b.err = fmt.Errorf("build %s: %w\n%s", name, err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return filepath.Join(b.dir, "presenced"), filepath.Join(b.dir, "presencectl")
}

// remove deletes the binaries, if built.
func (b *built) remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

type daemon struct {
	cmd  *exec.Cmd
	logs *provtest.Logs
	done chan error
}

func startDaemon(t testing.TB, bin string, env []string) *daemon {
	t.Helper()
	d := spawnDaemon(t, bin, env)
	d.waitReady(t)
	return d
}

// spawnDaemon starts presenced without waiting: nodes of a cluster are
// ready only once their peers run.
func spawnDaemon(t testing.TB, bin string, env []string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin), logs: &provtest.Logs{}, done: make(chan error, 1)}
	d.cmd.Env = append(os.Environ(), env...)
	// Both streams: every line presenced writes must be a log line.
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("presenced logs:\n%s", d.logs.String())
		}
	})
	return d
}

func (d *daemon) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.logs.String(), "presence provider ready") {
		if time.Now().After(deadline) {
			t.Fatal("presenced did not log that it is ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (d *daemon) stop(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("presenced exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("presenced did not stop within 60s of SIGTERM")
	}
}

func TestReadmeTour(t *testing.T) {
	presenced, presencectl := build(t)
	dataDir := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	env := []string{
		"PRESENCE_CONFIG=../../examples/Config.xml",
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + dataDir,
		"PRESENCE_SIP_APP_PASSWORD=s3cret-app",
		// Not the example's fixed SIP port: a provider run by hand may hold it.
		fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(t)),
	}
	d := startDaemon(t, presenced, env)
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(presencectl, append([]string{"-nats", url}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("presencectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	const agent = "sip:agent1@attendant.example"

	// Two UCCs watch the agent, as two UCC processes would.
	var watches []*provtest.Logs
	for range 2 {
		out := &provtest.Logs{}
		w := exec.Command(presencectl, "-nats", url, "watch", agent)
		w.Stdout = out
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Process.Kill(); _ = w.Wait() })
		watches = append(watches, out)
	}
	time.Sleep(300 * time.Millisecond) // let the watchers subscribe before the change

	// What the README shows: one line per agent, the change as the watchers
	// print it, and the status in words.
	subscribed := regexp.MustCompile(`(?m)^sip:agent1@attendant\.example +attendant +active +none +-$`)
	for _, ucc := range []string{"ucc_app01", "ucc_app02"} {
		if out := ctl("subscribe", "-ucc", ucc, agent); !subscribed.MatchString(out) {
			t.Fatalf("subscribe printed %q", out)
		}
	}
	if out := ctl("attendant", "-activity", "InACall", agent, "Busy"); !strings.HasPrefix(out, "stored, seq ") {
		t.Fatalf("attendant printed %q", out)
	}
	// The line the README says the watch prints, after its time.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	said := regexp.MustCompile(`(?m)^# the watch prints: \S+ (.+)$`).FindSubmatch(readme)
	if said == nil {
		t.Fatal("the README's tour does not say what the watch prints")
	}
	for i, w := range watches {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(w.String(), string(said[1])) {
			if time.Now().After(deadline) {
				t.Fatalf("watch %d never printed the change; it printed %q", i, w.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out := ctl("status"); !strings.Contains(out, "agents: 1  interests: 2") || !regexp.MustCompile(`(?m)^attendant +yes +yes +active=1`).MatchString(out) {
		t.Fatalf("status printed %q; want one agent with two interested UCCs, active on the attendant source", out)
	}
	// The operator's listener tells the same, and that the worker is ready.
	addr := d.httpAddr(t)
	if code, body := get(t, "http://"+addr+"/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "\npresence_agents{source=\"attendant\",state=\"active\"} 1\n") || !strings.Contains(body, "\npresence_interests 2\n") {
		t.Fatalf("/metrics answered %d:\n%s\nwant one active attendant agent and two interests", code, body)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz answered %d %q; want 200", code, body)
	}
	if code, _, stderr := exited(t, presenced, []string{"PRESENCE_HTTP_LISTEN=" + addr}, "-healthcheck"); code != 0 {
		t.Fatalf("presenced -healthcheck exited %d: %s", code, stderr)
	}
	d.stop(t)
	if code, _, stderr := exited(t, presenced, []string{"PRESENCE_HTTP_LISTEN=" + addr}, "-healthcheck"); code != 1 || !strings.HasPrefix(stderr, "presenced -healthcheck: ") {
		t.Fatalf("presenced -healthcheck with presenced stopped exited %d: %q; want 1 and why", code, stderr)
	}

	logs := d.logs.String()
	for _, want := range []string{
		`"message":"PresenceProviderConfiguration"`, `"MaxPresenceSubscriptionsPerSecond":15`,
		`"ApplicationEndpoints":[{"uri":"sip:ucc_presenceprovider01@sipdomain.com"`,
		`"ucc":"ucc_app02","uri":"sip:agent1@attendant.example","source":"attendant"`, `"message":"subscribe"`,
		`"previous":{}`, `"new":{"availability":"Busy","value":6500,"activity":"InACall"`,
		`"message":"worker stopped"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(logs, "s3cret-app") {
		t.Error("a secret reached the logs")
	}

	// A restart on the same store keeps every interest and the last presence.
	startDaemon(t, presenced, env)
	if out := ctl("get", agent); !regexp.MustCompile(`(?m)^sip:agent1@attendant\.example +attendant +active +Busy \(6500\) InACall +1$`).MatchString(out) {
		t.Fatalf("after restart get printed %q", out)
	}
	if out := ctl("status"); !strings.Contains(out, "interests: 2") {
		t.Fatalf("after restart status printed %q; want 2 interests", out)
	}
}
