package siptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BaresipOptions configures StartBaresip. The zero value is usable: baresip
// answers SUBSCRIBEs for its own account, sip:agent1@127.0.0.1:<port>.
type BaresipOptions struct {
	// User is the account's user part; default "agent1".
	User string
	// PublishTo, host:port of a presence server such as Kamailio, makes
	// the account sip:<User>@<Domain> and has baresip PUBLISH its presence
	// there every PublishInterval seconds (default 60).
	PublishTo       string
	Domain          string
	PublishInterval int
}

// Baresip is a baresip 1.0 user agent (Debian's baresip-core) running for
// one test: a notifier of its own presence, or a publisher into a presence
// server. Its state is set over its ctrl_tcp module. Seen on the wire: it
// refuses a refresh under 600 s with 423 and Min-Expires: 600, its first
// NOTIFY carries <basic>?</basic> and its first PUBLISH <basic>unknown</basic>,
// its Contact's user part holds a pointer, and its NOTIFY CSeq starts at a
// random number.
type Baresip struct {
	opts     BaresipOptions
	port     int
	ctrlPort int
	out      *syncBuffer
	proc     *process
}

// StartBaresip starts baresip on free loopback ports and stops it when the
// test ends; its output (a SIP trace) is written to the test log if the
// test fails.
func StartBaresip(t testing.TB, opts BaresipOptions) *Baresip {
	t.Helper()
	bin := requireBinary(t, "baresip", "baresip-core")
	if opts.User == "" {
		opts.User = "agent1"
	}
	if opts.Domain == "" {
		opts.Domain = "example.com"
	}
	if opts.PublishInterval == 0 {
		opts.PublishInterval = 60
	}
	ports := freePorts(t, 2)
	b := &Baresip{opts: opts, port: ports[0], ctrlPort: ports[1], out: &syncBuffer{}}
	dir := t.TempDir()
	data := struct {
		BaresipOptions
		Port, CtrlPort int
	}{opts, b.port, b.ctrlPort}
	writePeerFile(t, "baresip.config", filepath.Join(dir, "config"), data)
	writePeerFile(t, "baresip.accounts", filepath.Join(dir, "accounts"), data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.out.String())
		}
	})
	// -s: SIP trace in the output, for the log of a failed test.
	cmd := exec.Command(bin, "-f", dir, "-s")
	cmd.Dir = dir
	var err error
	if b.proc, err = startProcess(cmd, b.out); err != nil {
		t.Fatalf("siptest: starting baresip: %v", err)
	}
	t.Cleanup(func() { b.proc.stop(syscall.SIGTERM) })
	waitOutput(t, "baresip", b.proc, b.out, "baresip is ready.")
	if strings.Contains(b.out.String(), "ctrl_tcp: failed") {
		t.Fatalf("siptest: baresip's ctrl_tcp did not listen:\n%s", b.out.String())
	}
	return b
}

// Addr is baresip's SIP address, 127.0.0.1:port (UDP).
func (b *Baresip) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// AOR is the account's address: what a watcher subscribes to.
func (b *Baresip) AOR() string {
	if b.opts.PublishTo != "" {
		return "sip:" + b.opts.User + "@" + b.opts.Domain
	}
	return "sip:" + b.opts.User + "@" + b.Addr()
}

// Online sets the account's presence open; baresip NOTIFYs its watchers
// (and PUBLISHes, when publishing).
func (b *Baresip) Online(t testing.TB) { b.command(t, "presence_online") }

// Offline sets the account's presence closed.
func (b *Baresip) Offline(t testing.TB) { b.command(t, "presence_offline") }

// Output is what baresip has written so far, its SIP trace included.
func (b *Baresip) Output() string { return b.out.String() }

// command sends one ctrl_tcp command, a netstring of JSON, and waits for
// its response.
func (b *Baresip) command(t testing.TB, name string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ctrlPort)), 5*time.Second)
	if err != nil {
		t.Fatalf("siptest: baresip ctrl_tcp: %v", err)
	}
	defer conn.Close()
	msg, _ := json.Marshal(map[string]string{"command": name, "token": name})
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(msg), msg); err != nil {
		t.Fatalf("siptest: baresip ctrl_tcp: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	for {
		// Events come on the same connection; the response names the token.
		length, err := r.ReadString(':')
		if err != nil {
			t.Fatalf("siptest: baresip ctrl_tcp %s: no response: %v", name, err)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(length, ":"))
		if err != nil {
			t.Fatalf("siptest: baresip ctrl_tcp %s: bad netstring length %q", name, length)
		}
		body := make([]byte, n+1) // the JSON and the closing comma
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("siptest: baresip ctrl_tcp %s: %v", name, err)
		}
		var res struct {
			Response bool   `json:"response"`
			OK       bool   `json:"ok"`
			Data     string `json:"data"`
			Token    string `json:"token"`
		}
		if json.Unmarshal(body[:n], &res) == nil && res.Response && res.Token == name {
			if !res.OK {
				t.Fatalf("siptest: baresip ctrl_tcp %s refused: %s", name, res.Data)
			}
			return
		}
	}
}
