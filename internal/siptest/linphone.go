package siptest

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// LinphoneOptions configures StartLinphone.
type LinphoneOptions struct {
	// User is the identity's user part; default "agent1".
	User string
	// Friend is the watcher URI linphonec accepts (pol=accept): it gets
	// NOTIFYs of linphonec's presence (open). Any other watcher's
	// SUBSCRIBE is answered 200 and never NOTIFYed.
	Friend string
}

// Linphone is linphonec 5.1 (Debian's linphone-cli) running for one test as
// a notifier of its own presence. Seen on the wire: its 200 to a refresh
// has no Expires; its NOTIFY says expires=600 whatever it granted, has no
// Contact, and its From drops the port.
type Linphone struct {
	opts  LinphoneOptions
	port  int
	out   *syncBuffer
	proc  *process
	stdin io.WriteCloser
}

// StartLinphone starts linphonec on a free loopback port (UDP) and stops it
// when the test ends; its log is written to the test log if the test fails.
func StartLinphone(t testing.TB, opts LinphoneOptions) *Linphone {
	t.Helper()
	bin := requireBinary(t, "linphonec", "linphone-cli")
	if opts.User == "" {
		opts.User = "agent1"
	}
	l := &Linphone{opts: opts, port: freePorts(t, 1)[0], out: &syncBuffer{}}
	dir := t.TempDir()
	// linphonec keeps its databases there and fails without the folder.
	if err := os.MkdirAll(filepath.Join(dir, ".local", "share", "linphone"), 0o755); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "linphonerc")
	writePeerFile(t, "linphonerc", rc, struct {
		LinphoneOptions
		Port int
	}{opts, l.port})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("linphonec log:\n%s", l.out.String())
		}
	})
	cmd := exec.Command(bin, "-c", rc, "-d", "6")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var err error
	// linphonec reads commands from stdin and ends at its end: keep it open.
	if l.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if l.proc, err = startProcess(cmd, l.out); err != nil {
		t.Fatalf("siptest: starting linphonec: %v", err)
	}
	t.Cleanup(func() {
		_, _ = io.WriteString(l.stdin, "quit\n")
		_ = l.stdin.Close()
		l.proc.stop(syscall.SIGTERM)
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if bound, ok := portBound("udp", l.port); bound || !ok {
			break
		}
		if l.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("siptest: linphonec did not listen on udp/%s:\n%s", l.Addr(), l.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l
}

// Addr is linphonec's SIP address, 127.0.0.1:port (UDP).
func (l *Linphone) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port)) }

// AOR is what a watcher subscribes to.
func (l *Linphone) AOR() string { return "sip:" + l.opts.User + "@" + l.Addr() }
