package siptest

import (
	"strings"
	"testing"
	"time"
)

// The peers behave as the harnesses' doc comments say: what the SIP
// source's interop tests rely on.

func TestBaresipNotifier(t *testing.T) {
	b := StartBaresip(t, BaresipOptions{})
	ua := newTestUA(t, "udp", b.Addr())
	d, resp := ua.subscribe(b.AOR(), 60)
	if resp.status != 200 || resp.get("Expires") != "60" || d.toTag == "" {
		t.Fatalf("SUBSCRIBE: want 200 granting 60 s, got:\n%s", resp)
	}
	if n := ua.expectNotify(d, 2*time.Second); !strings.Contains(n.body, "<basic>?</basic>") {
		t.Fatalf("first NOTIFY: want <basic>?</basic>, got:\n%s", n)
	}
	b.Online(t)
	if n := ua.expectNotify(d, 2*time.Second); !strings.Contains(n.body, "<basic>open</basic>") {
		t.Fatalf("NOTIFY after presence_online: want open, got:\n%s", n)
	}
	if resp := ua.resubscribe(d, 60); resp.status != 423 || resp.get("Min-Expires") != "600" {
		t.Fatalf("refresh of 60 s: want 423 with Min-Expires 600, got:\n%s", resp)
	}
	if resp := ua.resubscribe(d, 600); resp.status != 200 {
		t.Fatalf("refresh of 600 s: want 200, got:\n%s", resp)
	}
	// Ended here: baresip would otherwise wait at its exit for the answer
	// to its last NOTIFY, from a UA already closed.
	if resp := ua.resubscribe(d, 0); resp.status != 200 {
		t.Fatalf("un-SUBSCRIBE: want 200, got:\n%s", resp)
	}
}

func TestLinphoneNotifiesItsFriend(t *testing.T) {
	l := StartLinphone(t, LinphoneOptions{Friend: "sip:ucc@example.com"})
	ua := newTestUA(t, "udp", l.Addr())
	d, resp := ua.subscribe(l.AOR(), 60)
	if resp.status != 200 || d.toTag == "" {
		t.Fatalf("SUBSCRIBE: want 200, got:\n%s", resp)
	}
	if n := ua.expectNotify(d, 5*time.Second); !strings.Contains(n.body, "<basic>open</basic>") || n.get("Contact") != "" {
		t.Fatalf("NOTIFY: want open without Contact, got:\n%s", n)
	}
	if resp := ua.resubscribe(d, 60); resp.status != 200 || resp.get("Expires") != "" {
		t.Fatalf("refresh: want 200 without Expires, got:\n%s", resp)
	}
}
