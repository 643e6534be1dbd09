package siptest

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testUA is a hand-rolled SIP user agent for the self-tests, over UDP or TCP.
// It answers every request it receives (NOTIFY) with 200 and queues all
// messages for expect. Over TCP it listens at its Contact address, because
// Kamailio sends NOTIFYs on a new connection to the Contact rather than on
// the subscriber's connection.
type testUA struct {
	t         *testing.T
	transport string // "udp" or "tcp"
	server    string
	local     string // host:port of Via and Contact
	in        chan *message
	backlog   []*message // received but not yet expected

	udp      net.PacketConn
	ln       net.Listener
	accepted atomic.Int32 // TCP connections the server opened to us
	out      net.Conn     // TCP: our connection to the server
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
	closed   chan struct{}
	once     sync.Once
}

func newTestUA(t *testing.T, transport, server string) *testUA {
	u := &testUA{t: t, transport: transport, server: server, in: make(chan *message, 1000), closed: make(chan struct{})}
	var err error
	switch transport {
	case "udp":
		if u.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.local = u.udp.LocalAddr().String()
		u.wg.Add(1)
		go u.readUDP()
	case "tcp":
		if u.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.local = u.ln.Addr().String()
		u.wg.Add(1)
		go u.accept()
		u.redial()
	default:
		t.Fatalf("transport %q", transport)
	}
	t.Cleanup(u.close)
	return u
}

// redial opens a new TCP connection to the server for the requests, as
// needed after a server restart.
func (u *testUA) redial() {
	c, err := net.Dial("tcp", u.server)
	if err != nil {
		u.t.Fatal(err)
	}
	u.out = c
	u.track(c)
}

func (u *testUA) close() {
	u.once.Do(u.shutdown)
}

func (u *testUA) shutdown() {
	close(u.closed)
	if u.udp != nil {
		u.udp.Close()
	}
	if u.ln != nil {
		u.ln.Close()
	}
	u.mu.Lock()
	for _, c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *testUA) track(c net.Conn) {
	u.mu.Lock()
	u.conns = append(u.conns, c)
	u.mu.Unlock()
	u.wg.Add(1)
	go u.readTCP(c)
}

func (u *testUA) readUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := parseMessage(buf[:n])
		if err != nil {
			continue
		}
		u.deliver(m, func(resp *message) { _, _ = u.udp.WriteTo([]byte(resp.String()), from) })
	}
}

func (u *testUA) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepted.Add(1)
		u.track(c)
	}
}

func (u *testUA) readTCP(c net.Conn) {
	defer u.wg.Done()
	r := bufio.NewReader(c)
	for {
		m, err := readMessage(r)
		if err != nil {
			return
		}
		u.deliver(m, func(resp *message) { _, _ = c.Write([]byte(resp.String())) })
	}
}

func (u *testUA) deliver(m *message, reply func(*message)) {
	if m.method != "" && m.method != "ACK" {
		reply(newResponse(m, 200, "OK"))
	}
	select {
	case u.in <- m:
	case <-u.closed:
	}
}

func (u *testUA) uri(user string) string {
	if u.transport == "tcp" {
		return fmt.Sprintf("sip:%s@%s;transport=tcp", user, u.local)
	}
	return fmt.Sprintf("sip:%s@%s", user, u.local)
}

// send sends a request with a fresh Via branch, which it returns.
func (u *testUA) send(req *message) string {
	branch := "z9hG4bK" + randomToken()
	via := fmt.Sprintf("SIP/2.0/%s %s;branch=%s;rport", strings.ToUpper(u.transport), u.local, branch)
	req.headers = append([]header{{"Via", via}}, req.headers...)
	data := []byte(req.String())
	var err error
	if u.transport == "udp" {
		var addr *net.UDPAddr
		if addr, err = net.ResolveUDPAddr("udp", u.server); err == nil {
			_, err = u.udp.WriteTo(data, addr)
		}
	} else {
		_, err = u.out.Write(data)
	}
	if err != nil {
		u.t.Fatalf("send %s: %v", req.method, err)
	}
	return branch
}

// expect returns the first message, received or queued, that match accepts.
func (u *testUA) expect(what string, timeout time.Duration, match func(*message) bool) *message {
	u.t.Helper()
	for i, m := range u.backlog {
		if match(m) {
			u.backlog = append(u.backlog[:i], u.backlog[i+1:]...)
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m := <-u.in:
			if match(m) {
				return m
			}
			u.backlog = append(u.backlog, m)
		case <-deadline:
			u.t.Fatalf("no %s within %v", what, timeout)
		}
	}
}

// noMessage fails if a message that match accepts arrives within d.
func (u *testUA) noMessage(what string, d time.Duration, match func(*message) bool) {
	u.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-u.in:
			if match(m) {
				u.t.Fatalf("unexpected %s:\n%s", what, m)
			}
			u.backlog = append(u.backlog, m)
		case <-deadline:
			return
		}
	}
}

// request sends req and waits for its final response.
func (u *testUA) request(req *message) *message {
	u.t.Helper()
	branch := u.send(req)
	return u.expect("final response to "+req.method, 5*time.Second, func(m *message) bool {
		return m.status >= 200 && headerParam(m.get("Via"), "branch") == branch
	})
}

// dialog is the subscriber's side of a subscription dialog.
type dialog struct {
	presentity string
	callID     string
	fromTag    string
	toTag      string
	cseq       int
}

func (u *testUA) subscribeRequest(d *dialog, expires int) *message {
	to := "<" + d.presentity + ">"
	if d.toTag != "" {
		to += ";tag=" + d.toTag
	}
	return newRequest("SUBSCRIBE", d.presentity, []header{
		{"Max-Forwards", "70"},
		{"From", "<sip:ucc@example.com>;tag=" + d.fromTag},
		{"To", to},
		{"Call-ID", d.callID},
		{"CSeq", strconv.Itoa(d.cseq) + " SUBSCRIBE"},
		{"Contact", "<" + u.uri("ucc") + ">"},
		{"Event", "presence"},
		{"Accept", "application/pidf+xml"},
		{"Expires", strconv.Itoa(expires)},
	}, "")
}

// subscribe starts a subscription and returns the dialog and the response.
func (u *testUA) subscribe(presentity string, expires int) (*dialog, *message) {
	u.t.Helper()
	d := &dialog{presentity: presentity, callID: randomToken() + "@ua", fromTag: randomToken(), cseq: 1}
	resp := u.request(u.subscribeRequest(d, expires))
	d.toTag = headerParam(resp.get("To"), "tag")
	return d, resp
}

// resubscribe sends an in-dialog SUBSCRIBE (refresh, or Expires 0 to end).
func (u *testUA) resubscribe(d *dialog, expires int) *message {
	u.t.Helper()
	d.cseq++
	return u.request(u.subscribeRequest(d, expires))
}

// notifyFor matches NOTIFYs in dialog d.
func notifyFor(d *dialog) func(*message) bool {
	return func(m *message) bool { return m.method == "NOTIFY" && m.get("Call-ID") == d.callID }
}

// expectNotify waits for the next NOTIFY of d.
func (u *testUA) expectNotify(d *dialog, timeout time.Duration) *message {
	u.t.Helper()
	return u.expect("NOTIFY for "+d.presentity, timeout, notifyFor(d))
}
