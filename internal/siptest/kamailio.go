package siptest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/contactcenter/presence-provider/internal/freeport"
)

// KamailioOptions configures StartKamailio. The zero value is usable.
type KamailioOptions struct {
	// Domain is the SIP domain served, used as the digest realm.
	// Default "example.com". Presence itself accepts any domain.
	Domain string
	// MinExpires is the shortest subscription, publication and registration
	// accepted; a shorter one gets 423 Interval Too Brief. Default 0: any.
	MinExpires int
	// MaxExpires is the longest one; a longer Expires is lowered to it in
	// the 200. Default 3600.
	MaxExpires int
	// AuthUser and AuthPassword, when AuthUser is set, make REGISTER need
	// digest credentials (401 with qop=auth, then 200). SUBSCRIBE and
	// PUBLISH are never challenged. The password must not hold `"` or `\`.
	AuthUser, AuthPassword string
	// Host is the address Kamailio listens on; default 127.0.0.1 (a
	// container takes 0.0.0.0).
	Host string
	// SharedMemoryMB is Kamailio's shared memory; its transactions live
	// there, so a load of many NOTIFYs needs more. Default 32.
	SharedMemoryMB int
	// TLS, when set, adds a SIP over TLS listener (the kamailio-tls-modules
	// package).
	TLS *KamailioTLS
	// KeepSubscriptionsOnNotifyTimeout keeps a subscription whose NOTIFY
	// got no answer (presence timeout_rm_subs 0), as a server whose
	// watchers move between processes should; by default Kamailio removes
	// it when the NOTIFY times out, about 30 s after it was sent.
	KeepSubscriptionsOnNotifyTimeout bool
}

// KamailioTLS is Kamailio's TLS listener and how it checks its peers.
type KamailioTLS struct {
	// Port is the TLS listener's port; StartKamailio takes a free one.
	Port int
	// CertFile and KeyFile are Kamailio's certificate and key (PEM).
	CertFile, KeyFile string
	// CAFile, when set, is what Kamailio verifies peers with: the
	// certificate of the NOTIFY listener it connects to, and a client's.
	// Empty: no verification either way.
	CAFile string
	// RequireClientCert makes the listener refuse a client without a
	// certificate from CAFile (mutual TLS).
	RequireClientCert bool
}

func (o KamailioOptions) withDefaults() KamailioOptions {
	if o.Domain == "" {
		o.Domain = "example.com"
	}
	if o.MaxExpires == 0 {
		o.MaxExpires = 3600
	}
	if o.SharedMemoryMB == 0 {
		o.SharedMemoryMB = 32
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	return o
}

// Kamailio is a Kamailio presence server running for one test, listening on
// UDP and TCP at the same loopback port, and on TLS at another when asked.
//
// Subscriptions are kept in memory and written through to db_text tables
// (presence subs_db_mode 1), which is what lets Subscriptions list them
// exactly; Restart empties those tables, so that a restart loses every
// subscription as a memory-only server would.
type Kamailio struct {
	opts KamailioOptions
	port int
	dir  string // working directory: kamailio.cfg, db/, run/
	log  *syncBuffer
	mu   sync.Mutex // serializes start/stop and the dump+read of Subscriptions
	proc *process
	kbin string
}

// StartKamailio starts Kamailio on a free loopback port and stops it when the
// test ends. Its log is written to the test log if the test fails.
func StartKamailio(t testing.TB, opts KamailioOptions) *Kamailio {
	t.Helper()
	bin := requireBinary(t, "kamailio", "kamailio kamailio-presence-modules")
	opts = opts.withDefaults()
	if opts.TLS != nil {
		tlsOpts := *opts.TLS
		opts.TLS = &tlsOpts // its port is ours to choose
	}
	if strings.ContainsAny(opts.AuthUser+opts.AuthPassword+opts.Domain, "\"\\\r\n") {
		t.Fatal("siptest: Domain, AuthUser and AuthPassword must not contain quotes, backslashes or line breaks")
	}
	k := &Kamailio{opts: opts, dir: t.TempDir(), log: &syncBuffer{}, kbin: bin}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kamailio log (%s):\n%s", k.dir, k.log.String())
		}
	})
	t.Cleanup(k.Stop) // runs before the log dump above
	if err := k.setupDir(); err != nil {
		unavailable(t, fmt.Sprintf("kamailio's db_text tables: %v; install them with: apt-get install kamailio", err))
	}

	// A free port can be taken by another process before Kamailio binds it:
	// try a few ports before giving up.
	var err error
	for range 3 {
		if k.port, err = freeport.Get(); err != nil {
			break
		}
		if opts.TLS != nil {
			if opts.TLS.Port, err = freeport.Get(); err != nil {
				break
			}
		}
		if err = k.start(); err == nil {
			return k
		}
		if !strings.Contains(k.log.String(), "in use") {
			break
		}
	}
	if strings.Contains(k.log.String(), "could not find module") {
		unavailable(t, "a kamailio module is missing (see the log); install them with: apt-get install "+kamailioPackages(opts))
	}
	t.Fatalf("siptest: starting kamailio: %v", err)
	return nil
}

// Addr is Kamailio's address, 127.0.0.1:port, for both UDP and TCP.
func (k *Kamailio) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port))
}

// TLSAddr is Kamailio's SIP over TLS address, 127.0.0.1:port; empty
// without a TLS listener.
func (k *Kamailio) TLSAddr() string {
	if k.opts.TLS == nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.opts.TLS.Port))
}

// kamailioPackages is what Debian packages the options need.
func kamailioPackages(opts KamailioOptions) string {
	if opts.TLS != nil {
		return "kamailio kamailio-presence-modules kamailio-tls-modules"
	}
	return "kamailio kamailio-presence-modules"
}

// Domain is the SIP domain (and digest realm) the server was started with.
func (k *Kamailio) Domain() string { return k.opts.Domain }

// Log returns what Kamailio has logged so far (one line per request it
// received, among others).
func (k *Kamailio) Log() string { return k.log.String() }

// Request is one request Kamailio received, as its log line tells.
type Request struct {
	Transport, Method, URI, From, CallID, CSeq string
	// ToTag is empty for a request outside a dialog: an initial SUBSCRIBE.
	ToTag string
}

// Requests lists the requests Kamailio received so far, restarts included,
// in order.
func (k *Kamailio) Requests() []Request {
	var out []Request
	for _, line := range strings.Split(k.log.String(), "\n") {
		_, rest, ok := strings.Cut(line, "siptest: ")
		f := strings.Fields(rest)
		// udp SUBSCRIBE <ruri> from <from> call-id <id> cseq <n> <method> to-tag <tag>
		if !ok || len(f) < 11 || f[3] != "from" || f[5] != "call-id" || f[7] != "cseq" || f[len(f)-2] != "to-tag" {
			continue
		}
		r := Request{Transport: f[0], Method: f[1], URI: f[2], From: f[4], CallID: f[6], CSeq: f[8], ToTag: f[len(f)-1]}
		if r.ToTag == "<null>" {
			r.ToTag = ""
		}
		out = append(out, r)
	}
	return out
}

// InitialSubscribes counts, per presentity, the SUBSCRIBEs Kamailio received
// outside a dialog (no To tag): each one asks for a new subscription.
func (k *Kamailio) InitialSubscribes() map[string]int {
	n := map[string]int{}
	for _, r := range k.Requests() {
		if r.Method == "SUBSCRIBE" && r.ToTag == "" {
			n[r.URI]++
		}
	}
	return n
}

// Stop stops Kamailio. It is safe to call more than once.
func (k *Kamailio) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
}

func (k *Kamailio) stopLocked() {
	if k.proc != nil {
		k.proc.stop(syscall.SIGTERM)
		k.proc = nil
	}
}

// Restart stops Kamailio and starts it again on the same port. Like a
// memory-only presence server it comes back without subscriptions, so an
// in-dialog re-SUBSCRIBE gets 481; publications (the presentity table)
// survive, as they would in a database.
func (k *Kamailio) Restart(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
	for _, table := range []string{"active_watchers", "watchers"} {
		if err := copyFile(filepath.Join(dbTemplateDir, table), filepath.Join(k.dir, "db", table)); err != nil {
			t.Fatalf("siptest: resetting table %s: %v", table, err)
		}
	}
	fmt.Fprintf(k.log, "\n==== siptest: restarting kamailio ====\n\n")
	if err := k.startLocked(); err != nil {
		t.Fatalf("siptest: restarting kamailio: %v", err)
	}
}

// dbTemplateDir holds the empty db_text tables shipped with Kamailio.
const dbTemplateDir = "/usr/share/kamailio/dbtext/kamailio"

func (k *Kamailio) setupDir() error { return setupDir(k.dir) }

// setupDir makes a Kamailio working folder: its db_text tables and runtime dir.
func setupDir(dir string) error {
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return err
	}
	// The runtime dir (-Y) replaces /run/kamailio, which may not exist.
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		return err
	}
	for _, table := range []string{"version", "presentity", "active_watchers", "watchers", "xcap"} {
		if err := copyFile(filepath.Join(dbTemplateDir, table), filepath.Join(db, table)); err != nil {
			return err
		}
	}
	return nil
}

// PrepareDir writes into dir the configuration and tables the tests run
// Kamailio with, for a person to run it by hand (see devkamailio). It
// returns the kamailio command line.
func PrepareDir(dir string, port int, opts KamailioOptions) ([]string, error) {
	opts = opts.withDefaults()
	if err := setupDir(dir); err != nil {
		return nil, err
	}
	cfg, err := writeConfig(dir, port, opts)
	if err != nil {
		return nil, err
	}
	return commandLine(cfg, dir, opts), nil
}

func writeConfig(dir string, port int, opts KamailioOptions) (string, error) {
	cfg := filepath.Join(dir, "kamailio.cfg")
	f, err := os.Create(cfg)
	if err != nil {
		return "", err
	}
	tlsCfg := ""
	if opts.TLS != nil {
		if tlsCfg, err = writeTLSConfig(dir, *opts.TLS); err != nil {
			_ = f.Close()
			return "", err
		}
	}
	err = kamailioCfg.Execute(f, struct {
		KamailioOptions
		Port      int
		DBURL     string
		TLSConfig string
	}{opts, port, "text://" + filepath.Join(dir, "db"), tlsCfg})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return cfg, err
}

// writeTLSConfig writes the tls module's own configuration file: one
// profile for the listener, one for the connections Kamailio opens (to send
// NOTIFYs to a watcher's Contact).
func writeTLSConfig(dir string, o KamailioTLS) (string, error) {
	for _, name := range []string{o.CertFile, o.KeyFile, o.CAFile} {
		if strings.ContainsAny(name, "\r\n\"") {
			return "", fmt.Errorf("TLS file name %q has a quote or a line break", name)
		}
	}
	yes := map[bool]string{true: "yes", false: "no"}
	verify := o.CAFile != ""
	var b strings.Builder
	fmt.Fprintf(&b, "[server:default]\nmethod = TLSv1.2+\ncertificate = %s\nprivate_key = %s\n", o.CertFile, o.KeyFile)
	mutual := yes[verify && o.RequireClientCert]
	fmt.Fprintf(&b, "verify_certificate = %s\nrequire_certificate = %s\n", mutual, mutual)
	if verify {
		fmt.Fprintf(&b, "ca_list = %s\n", o.CAFile)
	}
	fmt.Fprintf(&b, "\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = %s\nrequire_certificate = %s\n", yes[verify], yes[verify])
	if verify {
		fmt.Fprintf(&b, "ca_list = %s\n", o.CAFile)
	}
	path := filepath.Join(dir, "tls.cfg")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// commandLine is kamailio's arguments. -DD: stay in the foreground (workers
// are still forked); -E: log to stderr; -Y and -w: keep runtime files in
// dir; small memory pools because a test may run several servers.
func commandLine(cfg, dir string, opts KamailioOptions) []string {
	return []string{"-DD", "-E", "-f", cfg, "-Y", filepath.Join(dir, "run"), "-w", dir,
		"-m", strconv.Itoa(opts.SharedMemoryMB), "-M", "8"}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	data = bytes.Replace(data, []byte(" sender(string) "), []byte(" sender(string,null) "), 1)
	return os.WriteFile(to, data, 0o644)
}

func (k *Kamailio) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.startLocked()
}

func (k *Kamailio) startLocked() error {
	cfg, err := writeConfig(k.dir, k.port, k.opts)
	if err != nil {
		return err
	}
	cmd := exec.Command(k.kbin, commandLine(cfg, k.dir, k.opts)...)
	if k.proc, err = startProcess(cmd, k.log); err != nil {
		return err
	}
	if err := k.waitReady(10 * time.Second); err != nil {
		k.stopLocked()
		return err
	}
	return nil
}

// waitReady sends OPTIONS until Kamailio answers: it answers only once all
// its workers have started.
func (k *Kamailio) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if k.proc.exited() {
			return errors.New("kamailio exited during startup (see its log)")
		}
		req := newRequest("OPTIONS", "sip:"+k.Addr(), []header{
			{"From", "<sip:probe@siptest>;tag=" + randomToken()},
			{"To", "<sip:" + k.Addr() + ">"},
			{"Call-ID", randomToken()},
			{"CSeq", "1 OPTIONS"},
			{"Max-Forwards", "70"},
		}, "")
		resp, err := udpTransaction(k.Addr(), req, 200*time.Millisecond)
		if err == nil && resp.status == 200 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("kamailio did not answer OPTIONS within %v", timeout)
}

// udpTransaction sends req from a fresh UDP socket (adding the Via) and
// returns the first final response. Retransmits every 500 ms (RFC 3261 T1),
// though loopback does not lose datagrams.
func udpTransaction(addr string, req *message, timeout time.Duration) (*message, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	branch := "z9hG4bK" + randomToken()
	via := header{"Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", conn.LocalAddr(), branch)}
	req.headers = append([]header{via}, req.headers...)
	data := []byte(req.String())

	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := conn.Write(data); err != nil {
			return nil, err
		}
		wait := time.Now().Add(500 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		_ = conn.SetReadDeadline(wait)
		for {
			n, err := conn.Read(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break // retransmit
			}
			if err != nil {
				return nil, err // such as ICMP port unreachable: nobody listens yet
			}
			resp, err := parseMessage(buf[:n])
			if err != nil || resp.status < 200 || headerParam(resp.get("Via"), "branch") != branch {
				continue
			}
			return resp, nil
		}
	}
	return nil, fmt.Errorf("no final response to %s within %v", req.method, timeout)
}

// Publish sends a PUBLISH of body (a PIDF document, see PIDF) for the
// presentity URI, with the given Expires, and returns the SIP-ETag of the
// 200. Kamailio then NOTIFYs every watcher of the presentity.
func (k *Kamailio) Publish(t testing.TB, presentity, body string, expires int) (etag string) {
	t.Helper()
	return k.publish(t, presentity, "", body, expires)
}

// RefreshPublish refreshes the publication etag without a body (RFC 3903);
// expires 0 removes it, and watchers are then notified with a closed PIDF.
// It returns the new SIP-ETag.
func (k *Kamailio) RefreshPublish(t testing.TB, presentity, etag string, expires int) string {
	t.Helper()
	return k.publish(t, presentity, etag, "", expires)
}

func (k *Kamailio) publish(t testing.TB, presentity, etag, body string, expires int) string {
	t.Helper()
	tag, err := Publish(k.Addr(), presentity, etag, body, expires)
	if err != nil {
		t.Fatalf("siptest: %v", err)
	}
	return tag
}

// Publish sends one PUBLISH of presence (a PIDF body, or none to refresh the
// publication etag names) to a presence server over UDP, and returns the
// SIP-ETag of the 200.
func Publish(server, presentity, etag, body string, expires int) (string, error) {
	headers := []header{
		{"Max-Forwards", "70"},
		{"From", "<" + presentity + ">;tag=" + randomToken()},
		{"To", "<" + presentity + ">"},
		{"Call-ID", randomToken() + "@siptest"},
		{"CSeq", "1 PUBLISH"},
		{"Event", "presence"},
		{"Expires", strconv.Itoa(expires)},
	}
	if etag != "" {
		headers = append(headers, header{"SIP-If-Match", etag})
	}
	if body != "" {
		headers = append(headers, header{"Content-Type", "application/pidf+xml"})
	}
	resp, err := udpTransaction(server, newRequest("PUBLISH", presentity, headers, body), 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("PUBLISH %s: %w", presentity, err)
	}
	if resp.status != 200 {
		return "", fmt.Errorf("PUBLISH %s: got %d %s", presentity, resp.status, resp.reason)
	}
	return resp.get("SIP-ETag"), nil
}

// kamailioCfg is the generated kamailio.cfg. Notes on the choices:
//   - presence subs_db_mode 1 (write-through): subscriptions live in memory as
//     with mode 0 and are also written synchronously to db_text, so that the
//     active_watchers table is an exact list at any time (5.6 has no RPC that
//     lists subscriptions). Mode 2 would lag by db_update_period.
//   - publ_cache 1: with 2, a body-less PUBLISH refresh gave NOTIFYs with
//     empty bodies.
//   - presence_xml force_active: no XCAP authorization rules, else every
//     subscription would stay pending.
//   - clean_period 1: expired subscriptions end (NOTIFY terminated;
//     reason=timeout) within about a second.
//   - jsonrpcs over xhttp on the SIP TCP port serves RPC without a FIFO or
//     a control socket.
var kamailioCfg = template.Must(template.New("kamailio.cfg").Parse(`#!KAMAILIO
# Generated by siptest for a test: a presence server on loopback.
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
alias="{{.Domain}}"
listen=udp:{{.Host}}:{{.Port}}
listen=tcp:{{.Host}}:{{.Port}}
{{- if .TLS}}
enable_tls=yes
listen=tls:{{.Host}}:{{.TLS.Port}}
{{- end}}
# xhttp (RPC over HTTP) shares the SIP TCP port.
tcp_accept_no_cl=yes
http_reply_parse=yes

{{- if .TLS}}
loadmodule "tls.so"
modparam("tls", "config", "{{.TLSConfig}}")
{{- end}}
loadmodule "db_text.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"

modparam("jsonrpcs", "transport", 1)
modparam("jsonrpcs", "pretty_format", 0)
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", {{.MinExpires}})
modparam("registrar", "max_expires", {{.MaxExpires}})
modparam("presence", "db_url", "{{.DBURL}}")
modparam("presence", "subs_db_mode", 1)
modparam("presence", "publ_cache", 1)
modparam("presence", "clean_period", 1)
modparam("presence", "db_update_period", 1)
modparam("presence", "min_expires", {{.MinExpires}})
modparam("presence", "max_expires", {{.MaxExpires}})
{{- if .KeepSubscriptionsOnNotifyTimeout}}
modparam("presence", "timeout_rm_subs", 0)
{{- end}}
modparam("presence_xml", "db_url", "{{.DBURL}}")
modparam("presence_xml", "force_active", 1)
modparam("presence_xml", "integrated_xcap_server", 1)

request_route {
	xlog("L_INFO", "siptest: $pr $rm $ru from $fu call-id $ci cseq $cs to-tag $tt\n");
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("OPTIONS")) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (is_method("PUBLISH|SUBSCRIBE")) {
		if (!t_newtran()) {
			sl_reply_error();
			exit;
		}
		if (is_method("PUBLISH")) {
			handle_publish();
		} else {
			handle_subscribe();
		}
		t_release();
		exit;
	}
	if (is_method("REGISTER")) {
{{- if .AuthUser}}
		if (!pv_www_authenticate("{{.Domain}}", "{{.AuthPassword}}", "0") || $au != "{{.AuthUser}}") {
			www_challenge("{{.Domain}}", "1");
			exit;
		}
		consume_credentials();
{{- end}}
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if (is_method("ACK")) {
		exit;
	}
	sl_send_reply("405", "Method Not Allowed");
}

event_route[xhttp:request] {
	if ($hu =~ "^/RPC") {
		jsonrpc_dispatch();
		exit;
	}
	xhttp_reply("404", "Not Found", "text/plain", "");
}
`))
