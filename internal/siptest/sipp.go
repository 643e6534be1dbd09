package siptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/freeport"
)

// SippOptions configures StartSippServer. The zero value is usable.
type SippOptions struct {
	// Transport is "udp" (the default) or "tcp". Over TCP sipp sends its
	// NOTIFYs on the subscriber's connection.
	Transport string
	// MaxCalls makes sipp exit once that many calls (Call-IDs) have ended,
	// for Wait; 0 keeps it running until Stop.
	MaxCalls int
}

// Sipp is a sipp process playing a scripted SIP server (UAS) for one test.
type Sipp struct {
	port      int
	transport string
	dir       string
	out       *syncBuffer
	proc      *process
}

// StartSippServer runs sipp with scenarioXML (see the *Scenario functions)
// as a server on a free loopback port, waits until it listens, and stops it
// when the test ends. The messages sipp exchanged and its errors are written
// to the test log if the test fails.
func StartSippServer(t testing.TB, scenarioXML string, opts SippOptions) *Sipp {
	t.Helper()
	bin := requireBinary(t, "sipp", "sip-tester")
	s := &Sipp{transport: opts.Transport, dir: t.TempDir(), out: &syncBuffer{}}
	if s.transport == "" {
		s.transport = "udp"
	}
	mode := map[string]string{"udp": "u1", "tcp": "t1"}[s.transport]
	if mode == "" {
		t.Fatalf("siptest: sipp transport %q: want udp or tcp", opts.Transport)
	}
	scenario := filepath.Join(s.dir, "scenario.xml")
	if err := os.WriteFile(scenario, []byte(scenarioXML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sipp output:\n%s\nsipp errors:\n%s\nsipp messages:\n%s",
				s.out.String(), s.readLog("errors.log"), s.Messages())
		}
	})
	t.Cleanup(s.Stop)

	var err error
	if s.port, err = freeport.Get(); err != nil {
		t.Fatalf("siptest: %v", err)
	}
	args := []string{"-sf", scenario, "-t", mode,
		"-i", "127.0.0.1", "-p", strconv.Itoa(s.port), "-bind_local",
		"-nostdin", // no terminal: don't read keys from stdin
		"-nd",      // no default behaviors: never BYE/abort a call on an unexpected message or timeout
		"-trace_msg", "-message_file", filepath.Join(s.dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(s.dir, "errors.log"),
	}
	if opts.MaxCalls > 0 {
		args = append(args, "-m", strconv.Itoa(opts.MaxCalls))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	if s.proc, err = startProcess(cmd, s.out); err != nil {
		t.Fatalf("siptest: starting sipp: %v", err)
	}

	// sipp answers nothing that could serve as a probe without disturbing
	// the scenario, so watch for its socket instead.
	deadline := time.Now().Add(5 * time.Second)
	for {
		bound, ok := portBound(s.transport, s.port)
		if bound {
			break
		}
		if !ok { // no /proc/net: give sipp a moment
			time.Sleep(500 * time.Millisecond)
			break
		}
		if s.proc.exited() || time.Now().After(deadline) {
			t.Fatalf("siptest: sipp did not start listening on %s/%s", s.transport, s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Addr is sipp's address, 127.0.0.1:port.
func (s *Sipp) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Transport is "udp" or "tcp".
func (s *Sipp) Transport() string { return s.transport }

// Wait waits for sipp to exit by itself (see SippOptions.MaxCalls) and
// returns its exit code: 0 when all calls succeeded, 1 when some failed.
func (s *Sipp) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	code, err := s.proc.wait(timeout)
	if err != nil {
		t.Fatalf("siptest: sipp: %v", err)
	}
	return code
}

// Stop stops sipp. It is safe to call more than once.
func (s *Sipp) Stop() {
	// SIGTERM ends sipp at once; SIGUSR1, its "quit", would wait for the
	// calls in progress to end.
	if s.proc != nil {
		s.proc.stop(syscall.SIGTERM)
	}
}

// Messages returns the log of SIP messages sipp has sent and received.
func (s *Sipp) Messages() string { return s.readLog("messages.log") }

// Received counts the requests of the given method sipp has received so
// far, retransmissions included.
func (s *Sipp) Received(method string) int {
	n := 0
	lines := strings.Split(s.Messages(), "\n")
	for i, line := range lines {
		// Each entry is a "... message received [N] bytes :" line, a blank
		// line, then the message.
		if strings.Contains(line, "message received") && i+2 < len(lines) &&
			strings.HasPrefix(lines[i+2], method+" ") {
			n++
		}
	}
	return n
}

func (s *Sipp) readLog(name string) string {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(data)
}
