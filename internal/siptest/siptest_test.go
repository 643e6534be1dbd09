package siptest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestKamailioPresence(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			k := StartKamailio(t, KamailioOptions{})
			ua := newTestUA(t, transport, k.Addr())
			const agent = "sip:agent1@example.com"

			d, resp := ua.subscribe(agent, 60)
			if resp.status != 200 || resp.get("Expires") != "60" || d.toTag == "" {
				t.Fatalf("SUBSCRIBE: want 200 with Expires 60 and a To tag, got:\n%s", resp)
			}
			n := ua.expectNotify(d, 2*time.Second)
			if st := n.get("Subscription-State"); !strings.HasPrefix(st, "active") || n.body != "" {
				t.Fatalf("first NOTIFY: want active without body, got:\n%s", n)
			}
			if transport == "tcp" && ua.accepted.Load() == 0 {
				t.Fatal("over TCP the NOTIFY came on our own connection; Kamailio was expected to connect to the Contact")
			}
			if got := k.ActiveWatchers(t, agent); got != 1 {
				t.Fatalf("ActiveWatchers = %d, want 1", got)
			}
			subs := k.Subscriptions(t)
			if len(subs) != 1 || subs[0].CallID != d.callID || subs[0].Watcher != "sip:ucc@example.com" ||
				subs[0].FromTag != d.fromTag || subs[0].ToTag != d.toTag || subs[0].Event != "presence" ||
				time.Until(subs[0].Expires) < 50*time.Second {
				t.Fatalf("Subscriptions = %+v", subs)
			}

			etag := k.Publish(t, agent, PIDF(agent, "open", "on-the-phone", "call 42"), 30)
			if etag == "" {
				t.Fatal("PUBLISH: no SIP-ETag")
			}
			n = ua.expectNotify(d, 2*time.Second)
			if n.get("Content-Type") != "application/pidf+xml" || !strings.Contains(n.body, "on-the-phone") ||
				!strings.Contains(n.body, "call 42") {
				t.Fatalf("NOTIFY after PUBLISH: want the PIDF, got:\n%s", n)
			}

			// A body-less refresh NOTIFYs the same document again.
			etag2 := k.RefreshPublish(t, agent, etag, 30)
			if etag2 == "" || etag2 == etag {
				t.Fatalf("refresh: etag %q after %q", etag2, etag)
			}
			if n2 := ua.expectNotify(d, 2*time.Second); n2.body != n.body {
				t.Fatalf("NOTIFY after refresh: body changed:\n%s", n2)
			}
			// Removing the publication NOTIFYs a closed document.
			k.RefreshPublish(t, agent, etag2, 0)
			if n2 := ua.expectNotify(d, 2*time.Second); !strings.Contains(n2.body, "<basic>closed</basic>") {
				t.Fatalf("NOTIFY after PUBLISH Expires 0: want a closed PIDF, got:\n%s", n2)
			}

			if resp := ua.resubscribe(d, 60); resp.status != 200 {
				t.Fatalf("re-SUBSCRIBE: %d", resp.status)
			}
			ua.expectNotify(d, 2*time.Second)
			if resp := ua.resubscribe(d, 0); resp.status != 200 {
				t.Fatalf("un-SUBSCRIBE: %d", resp.status)
			}
			if st := ua.expectNotify(d, 2*time.Second).get("Subscription-State"); !strings.HasPrefix(st, "terminated") {
				t.Fatalf("NOTIFY after un-SUBSCRIBE: Subscription-State %q", st)
			}
			if got := k.ActiveWatchers(t, agent); got != 0 {
				t.Fatalf("ActiveWatchers after un-SUBSCRIBE = %d, want 0", got)
			}
		})
	}
}

// TestKamailioCountsExactly checks that the count is exact at once for many
// dialogs, some on the same presentity.
func TestKamailioCountsExactly(t *testing.T) {
	t.Parallel()
	k := StartKamailio(t, KamailioOptions{})
	ua := newTestUA(t, "udp", k.Addr())
	var dialogs []*dialog
	for i := range 50 {
		d, resp := ua.subscribe(fmt.Sprintf("sip:agent%d@example.com", i%25), 60)
		if resp.status != 200 {
			t.Fatalf("SUBSCRIBE %d: %d", i, resp.status)
		}
		dialogs = append(dialogs, d)
	}
	if got := len(k.Subscriptions(t)); got != 50 {
		t.Fatalf("%d subscriptions, want 50", got)
	}
	if got := k.ActiveWatchers(t, "sip:agent7@example.com"); got != 2 {
		t.Fatalf("ActiveWatchers(agent7) = %d, want 2", got)
	}
	for _, d := range dialogs[:10] {
		ua.resubscribe(d, 0)
	}
	if got := len(k.Subscriptions(t)); got != 40 {
		t.Fatalf("%d subscriptions after 10 un-SUBSCRIBEs, want 40", got)
	}
}

func TestKamailioExpiry(t *testing.T) {
	t.Parallel()
	k := StartKamailio(t, KamailioOptions{MinExpires: 2, MaxExpires: 30})
	ua := newTestUA(t, "udp", k.Addr())
	const agent = "sip:agent2@example.com"

	if _, resp := ua.subscribe(agent, 1); resp.status != 423 || resp.get("Min-Expires") != "2" {
		t.Fatalf("SUBSCRIBE below MinExpires: want 423 with Min-Expires 2, got:\n%s", resp)
	}
	if _, resp := ua.subscribe(agent, 3600); resp.status != 200 || resp.get("Expires") != "30" {
		t.Fatalf("SUBSCRIBE above MaxExpires: want 200 with Expires 30, got:\n%s", resp)
	}

	// A refresh moves the expiry at once, in Kamailio and in Subscriptions.
	d, _ := ua.subscribe(agent, 2)
	ua.expectNotify(d, time.Second)
	ua.resubscribe(d, 20)
	ua.expectNotify(d, time.Second)
	for _, s := range k.Subscriptions(t) {
		if left := time.Until(s.Expires); s.CallID == d.callID && (left < 15*time.Second || left > 21*time.Second) {
			t.Fatalf("after a 20 s refresh the subscription expires in %v", left)
		}
	}
	ua.resubscribe(d, 2)
	ua.expectNotify(d, time.Second)
	start := time.Now()
	n := ua.expectNotify(d, 5*time.Second)
	if st := n.get("Subscription-State"); st != "terminated;reason=timeout" {
		t.Fatalf("want terminated;reason=timeout, got %q", st)
	}
	t.Logf("unrefreshed 2 s subscription ended %v after the NOTIFY of its refresh", time.Since(start).Round(100*time.Millisecond))
	if got := k.ActiveWatchers(t, agent); got != 1 { // the 30 s one
		t.Fatalf("ActiveWatchers = %d, want 1", got)
	}
}

func TestKamailioRestart(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			k := StartKamailio(t, KamailioOptions{})
			ua := newTestUA(t, transport, k.Addr())
			const agent = "sip:agent3@example.com"
			d, _ := ua.subscribe(agent, 60)
			ua.expectNotify(d, time.Second)
			k.Publish(t, agent, PIDF(agent, "open", "away", ""), 60)
			ua.expectNotify(d, time.Second)
			if got := k.ActiveWatchers(t, agent); got != 1 {
				t.Fatalf("ActiveWatchers = %d, want 1", got)
			}

			k.Restart(t)
			if got := k.ActiveWatchers(t, agent); got != 0 {
				t.Fatalf("ActiveWatchers after restart = %d, want 0", got)
			}
			if transport == "tcp" {
				ua.redial() // the restart closed our connection
			}
			if resp := ua.resubscribe(d, 60); resp.status != 481 {
				t.Fatalf("in-dialog refresh after restart: want 481, got:\n%s", resp)
			}
			d2, resp := ua.subscribe(agent, 60)
			if resp.status != 200 {
				t.Fatalf("new SUBSCRIBE after restart: %d", resp.status)
			}
			// The publication survived the restart: the first NOTIFY carries it.
			if n := ua.expectNotify(d2, time.Second); !strings.Contains(n.body, "away") {
				t.Fatalf("first NOTIFY after restart: want the PIDF published before, got:\n%s", n)
			}
		})
	}
}

func TestKamailioRegisterDigest(t *testing.T) {
	t.Parallel()
	k := StartKamailio(t, KamailioOptions{AuthUser: "ucc1", AuthPassword: "s3cret", Domain: "cc.example"})
	ua := newTestUA(t, "udp", k.Addr())
	register := func(auth string) *message {
		h := []header{
			{"Max-Forwards", "70"},
			{"From", "<sip:ucc1@cc.example>;tag=" + randomToken()},
			{"To", "<sip:ucc1@cc.example>"},
			{"Call-ID", "reg-" + randomToken()},
			{"CSeq", "1 REGISTER"},
			{"Contact", "<" + ua.uri("ucc1") + ">"},
			{"Expires", "60"},
		}
		if auth != "" {
			h = append(h, header{"Authorization", auth})
		}
		return ua.request(newRequest("REGISTER", "sip:cc.example", h, ""))
	}

	resp := register("")
	chal := resp.get("WWW-Authenticate")
	if resp.status != 401 || !strings.HasPrefix(chal, "Digest ") {
		t.Fatalf("REGISTER without credentials: want 401 Digest, got:\n%s", resp)
	}
	if resp := register(digest(chal, "ucc1", "wrong", "REGISTER", "sip:cc.example")); resp.status != 401 {
		t.Fatalf("REGISTER with a wrong password: want 401, got %d", resp.status)
	}
	resp = register(digest(chal, "ucc1", "s3cret", "REGISTER", "sip:cc.example"))
	if resp.status != 200 || !strings.Contains(resp.get("Contact"), ua.local) {
		t.Fatalf("REGISTER with credentials: want 200 listing the contact, got:\n%s", resp)
	}
}

// digest answers a Digest challenge (RFC 2617, with qop=auth when offered).
func digest(challenge, user, password, method, uri string) string {
	params := map[string]string{}
	for _, p := range strings.Split(strings.TrimPrefix(challenge, "Digest "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		params[k] = strings.Trim(v, `"`)
	}
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(user + ":" + params["realm"] + ":" + password)
	ha2 := h(method + ":" + uri)
	auth := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5`,
		user, params["realm"], params["nonce"], uri)
	if strings.Contains(params["qop"], "auth") {
		const nc, cnonce = "00000001", "0a4f113b"
		resp := h(ha1 + ":" + params["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + ha2)
		return auth + fmt.Sprintf(`, response="%s", qop=auth, nc=%s, cnonce="%s"`, resp, nc, cnonce)
	}
	return auth + fmt.Sprintf(`, response="%s"`, h(ha1+":"+params["nonce"]+":"+ha2))
}

// sippAgent is the presentity the sipp self-tests subscribe to.
const sippAgent = "sip:agent9@example.com"

// expectActive waits for the NOTIFY that activates d and checks its PIDF.
func expectActive(t *testing.T, ua *testUA, d *dialog) {
	t.Helper()
	n := ua.expectNotify(d, 2*time.Second)
	if st := n.get("Subscription-State"); st != "active;expires=60" ||
		!strings.Contains(n.body, `entity="`+sippAgent+`"`) || n.get("From") != "<"+sippAgent+">;tag="+d.toTag ||
		headerParam(n.get("To"), "tag") != d.fromTag || n.uri != ua.uri("ucc") {
		t.Fatalf("want NOTIFY active with a PIDF in the dialog, got:\n%s", n)
	}
}

func TestSippDeactivated(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			s := StartSippServer(t, DeactivatedScenario(300*time.Millisecond), SippOptions{Transport: transport})
			ua := newTestUA(t, transport, s.Addr())

			d, resp := ua.subscribe(sippAgent, 60)
			if resp.status != 200 || resp.get("Expires") != "60" || d.toTag == "" {
				t.Fatalf("want 200 with Expires and a To tag, got:\n%s", resp)
			}
			expectActive(t, ua, d)
			if transport == "tcp" && ua.accepted.Load() != 0 {
				t.Fatal("sipp was expected to send its NOTIFYs on the subscriber's connection")
			}
			if st := ua.expectNotify(d, 2*time.Second).get("Subscription-State"); st != "terminated;reason=deactivated" {
				t.Fatalf("second NOTIFY: Subscription-State %q", st)
			}

			// Served normally from now on: subscribe, refresh, end.
			d2, resp := ua.subscribe(sippAgent, 60)
			if resp.status != 200 {
				t.Fatalf("new SUBSCRIBE: %d", resp.status)
			}
			expectActive(t, ua, d2)
			if resp := ua.resubscribe(d2, 60); resp.status != 200 || headerParam(resp.get("To"), "tag") != d2.toTag {
				t.Fatalf("refresh: want 200 with the same To tag, got:\n%s", resp)
			}
			expectActive(t, ua, d2)
			if resp := ua.resubscribe(d2, 0); resp.status != 200 {
				t.Fatalf("un-SUBSCRIBE: %d", resp.status)
			}
			if st := ua.expectNotify(d2, 2*time.Second).get("Subscription-State"); st != "terminated;reason=timeout" {
				t.Fatalf("NOTIFY after un-SUBSCRIBE: Subscription-State %q", st)
			}
			if n := s.Received("SUBSCRIBE"); n != 4 {
				t.Fatalf("sipp received %d SUBSCRIBEs, want 4", n)
			}
		})
	}
}

func TestSippRetryAfter(t *testing.T) {
	t.Parallel()
	s := StartSippServer(t, RetryAfterScenario(7), SippOptions{})
	ua := newTestUA(t, "udp", s.Addr())
	d, resp := ua.subscribe(sippAgent, 60)
	if resp.status != 503 || resp.get("Retry-After") != "7" {
		t.Fatalf("want 503 with Retry-After 7, got:\n%s", resp)
	}
	// A retry in the same call (same Call-ID, next CSeq) is served.
	d.toTag = ""
	resp = ua.resubscribe(d, 60)
	d.toTag = headerParam(resp.get("To"), "tag")
	if resp.status != 200 {
		t.Fatalf("retry: %d", resp.status)
	}
	expectActive(t, ua, d)
}

func TestSippSilent(t *testing.T) {
	t.Parallel()
	s := StartSippServer(t, SilentScenario(), SippOptions{})
	ua := newTestUA(t, "udp", s.Addr())
	d := &dialog{presentity: sippAgent, callID: randomToken(), fromTag: randomToken(), cseq: 1}
	req := ua.subscribeRequest(d, 60)
	ua.send(req)
	ua.send(req) // a retransmission is swallowed as well
	ua.noMessage("answer to a SUBSCRIBE", time.Second, func(*message) bool { return true })
	if n := s.Received("SUBSCRIBE"); n != 2 {
		t.Fatalf("sipp received %d SUBSCRIBEs, want 2", n)
	}
	d2, resp := ua.subscribe(sippAgent, 60)
	if resp.status != 200 {
		t.Fatalf("SUBSCRIBE with a new Call-ID: %d", resp.status)
	}
	expectActive(t, ua, d2)
}

func TestSippRejected(t *testing.T) {
	t.Parallel()
	s := StartSippServer(t, RejectedScenario(), SippOptions{})
	ua := newTestUA(t, "udp", s.Addr())
	d, resp := ua.subscribe(sippAgent, 60)
	if resp.status != 200 {
		t.Fatalf("SUBSCRIBE: %d", resp.status)
	}
	n := ua.expectNotify(d, 2*time.Second)
	if st := n.get("Subscription-State"); st != "terminated;reason=rejected" || n.body != "" {
		t.Fatalf("want NOTIFY terminated;reason=rejected without body, got:\n%s", n)
	}
}

func TestSippFailure(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
	}{{403, "Forbidden"}, {404, "Not Found"}} {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			s := StartSippServer(t, FailureScenario(tc.code, tc.reason), SippOptions{})
			ua := newTestUA(t, "udp", s.Addr())
			if _, resp := ua.subscribe(sippAgent, 60); resp.status != tc.code {
				t.Fatalf("want %d, got:\n%s", tc.code, resp)
			}
			if n := s.Received("SUBSCRIBE"); n != 1 {
				t.Fatalf("sipp received %d SUBSCRIBEs, want 1", n)
			}
		})
	}
}

// TestSippWait checks that sipp ends by itself after MaxCalls calls.
func TestSippWait(t *testing.T) {
	t.Parallel()
	s := StartSippServer(t, ServeScenario(), SippOptions{MaxCalls: 1})
	ua := newTestUA(t, "udp", s.Addr())
	d, _ := ua.subscribe(sippAgent, 60)
	expectActive(t, ua, d)
	ua.resubscribe(d, 0)
	ua.expectNotify(d, 2*time.Second)
	if code := s.Wait(t, 5*time.Second); code != 0 {
		t.Fatalf("sipp exit code %d, want 0", code)
	}
}

// recordTB records Skip and Fatal instead of ending the test.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper()           {}
func (r *recordTB) Skip(args ...any)  { r.skipped = fmt.Sprint(args...); panic(r) }
func (r *recordTB) Fatal(args ...any) { r.failed = fmt.Sprint(args...); panic(r) }

func TestMissingBinarySkipsUnlessCI(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recordTB{TB: t}
		func() {
			defer func() { _ = recover() }()
			requireBinary(r, "siptest-no-such-server", "some-package")
		}()
		msg := r.skipped
		if ci == "true" {
			msg = r.failed
		}
		if !strings.Contains(msg, "apt-get install some-package") {
			t.Errorf("CI=%q: skipped %q, failed %q", ci, r.skipped, r.failed)
		}
	}
}
