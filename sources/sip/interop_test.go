package sip_test

import (
	"slices"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// The interop suite: the SIP source against peers the team did not write
// (baresip, linphonec, Kamailio with another setting), each started by the
// test on free loopback ports from the configuration in internal/siptest.

// A Kamailio that takes no subscription under 120 s answers the 60 asked
// with 423 and Min-Expires: 120. The SUBSCRIBE is made again in the same
// dialog with 120, which the server grants: one dialog, no failure.
func TestKamailioMinExpiresIsHonoured(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{MinExpires: 120})
	env, src := provider(t, sip.Config{Transport: "udp", Expires: 60 * time.Second, Application: appEndpoint(k.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	const agent = "sip:agent1@example.com"
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	if c := claimOf(t, env, agent); c.Failures != 0 {
		t.Fatalf("claim %+v: the 423 counted as a failure", c)
	}
	subs := k.Subscriptions(t)
	if len(subs) != 1 || time.Until(subs[0].Expires) < 100*time.Second {
		t.Fatalf("Kamailio holds %+v; want one subscription of 120 s", subs)
	}
	if d := dialogOf(src, agent); d == nil || d.CallID != subs[0].CallID || d.Expires == nil || time.Until(*d.Expires) < 100*time.Second {
		t.Fatalf("the source's dialog %+v; want Kamailio's, granted 120 s", d)
	}
	var cseqs []string
	for _, r := range k.Requests() {
		if r.Method == "SUBSCRIBE" {
			if r.CallID != subs[0].CallID {
				t.Fatalf("a SUBSCRIBE of another dialog: %+v", r)
			}
			cseqs = append(cseqs, r.CSeq)
		}
	}
	if len(cseqs) != 2 || cseqs[0] == cseqs[1] {
		t.Fatalf("SUBSCRIBE CSeqs %v; want the first and its retry, in one dialog", cseqs)
	}
}

// baresip as the notifier of its own presence: its first NOTIFY says
// <basic>?</basic>, which leaves no presence known (never Offline); its
// 423 to a refresh under 600 s is answered in the same dialog; its state,
// changed over ctrl_tcp, reaches the UCCs.
func TestBaresipAsNotifier(t *testing.T) {
	b := siptest.StartBaresip(t, siptest.BaresipOptions{})
	env, src := provider(t, sip.Config{Transport: "udp", Expires: 3 * time.Second, Application: appEndpoint(b.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	agent := b.AOR()
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	first := dialogOf(src, agent)
	if first == nil {
		t.Fatal("no dialog")
	}
	// The refresh at four fifths of 3 s gets 423 with Min-Expires: 600.
	provtest.Eventually(t, "refreshed for baresip's 600 s", func() bool {
		d := dialogOf(src, agent)
		return d != nil && d.Expires != nil && time.Until(*d.Expires) > 500*time.Second
	})
	if d := dialogOf(src, agent); d.CallID != first.CallID {
		t.Fatalf("dialog %s after the 423; want the same one, %s", d.CallID, first.CallID)
	}
	if c := claimOf(t, env, agent); c.Failures != 0 || c.State != schemas.StateActive {
		t.Fatalf("claim %+v after the 423; want active, no failure", c)
	}
	if p := presenceOf(t, env, agent); p != nil {
		t.Fatalf("presence %+v from <basic>?</basic>; want none known", p)
	}
	if ex, err := env.Client.Explain(env.Ctx(), agent); err != nil || !slices.Contains(ex.Notes, "no presence known yet") {
		t.Fatalf("explain %+v (%v); want the note that no presence is known yet", ex, err)
	}

	onlineThenOffline(t, b, evs)

	if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{agent}}); err != nil {
		t.Fatal(err)
	}
	provtest.Eventually(t, "un-SUBSCRIBE at baresip", func() bool { return dialogOf(src, agent) == nil })
}

// baresip publishing into Kamailio: a fresh baresip publishes
// <basic>unknown</basic>, which leaves no presence known; its online state
// is the agent's first presence.
func TestBaresipPublishingIntoKamailio(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	b := siptest.StartBaresip(t, siptest.BaresipOptions{PublishTo: k.Addr()})
	agent := b.AOR()
	published := func() int {
		n := 0
		for _, r := range k.Requests() {
			if r.Method == "PUBLISH" && r.URI == agent {
				n++
			}
		}
		return n
	}
	provtest.Eventually(t, "baresip's first PUBLISH", func() bool { return published() >= 1 })
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })

	onlineThenOffline(t, b, evs)
}

// linphonec notifies a watcher it accepts as a friend; its 200 to a
// refresh has no Expires, and the dialog then lasts what was asked.
func TestLinphoneAsNotifier(t *testing.T) {
	l := siptest.StartLinphone(t, siptest.LinphoneOptions{Friend: appURI})
	env, src := provider(t, sip.Config{Transport: "udp", Expires: 3 * time.Second, TimerN: 2 * time.Second,
		Application: appEndpoint(l.Addr())}, nil)
	agent := l.AOR()
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	waitEvent(t, evs, 1, schemas.Available)
	first := dialogOf(src, agent)
	if first == nil || first.Expires == nil {
		t.Fatal("no dialog")
	}
	// Two refreshes later (each at four fifths of 3 s), past Timer N.
	provtest.Eventually(t, "refreshed twice", func() bool {
		d := dialogOf(src, agent)
		return d != nil && d.Expires != nil && d.Expires.Sub(*first.Expires) > 4*time.Second
	})
	d := dialogOf(src, agent)
	if d.CallID != first.CallID || time.Until(*d.Expires) > 3*time.Second {
		t.Fatalf("dialog %+v after %+v; want the same one, lasting the 3 s asked", d, first)
	}
	if c := claimOf(t, env, agent); c.Failures != 0 || c.State != schemas.StateActive {
		t.Fatalf("claim %+v; want active, no failure", c)
	}
}

// linphonec answers 200 to a watcher that is not its friend and never
// NOTIFYs it: Timer N fails the subscription, counted for its back-off.
func TestLinphoneSilentToAStrangerFailsAtTimerN(t *testing.T) {
	l := siptest.StartLinphone(t, siptest.LinphoneOptions{Friend: "sip:someone-else@example.com"})
	env, _ := provider(t, sip.Config{Transport: "udp", TimerN: time.Second, Application: appEndpoint(l.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	agent := l.AOR()
	env.Subscribe("ucc_app01", agent)
	waitOneFailure(t, env, agent, "Timer N")
	if p := presenceOf(t, env, agent); p != nil {
		t.Fatalf("presence %+v; linphonec sent none", p)
	}
}

// A notifier that knew the agent's state and then says it does not
// (<basic>unknown</basic>) makes the presence Unknown: neither the old state
// kept nor Offline guessed.
func TestUnknownAfterAKnownStateIsUnknown(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)
	const agent = "sip:agent1@example.com"
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	etag := k.Publish(t, agent, siptest.PIDF(agent, "open", "", ""), 60)
	waitEvent(t, evs, 1, schemas.Available)
	k.ModifyPublish(t, agent, etag, siptest.PIDF(agent, "unknown", "", ""), 60)
	waitEvent(t, evs, 2, schemas.Unknown)
}

// sipsak, a SIP client nobody on the team wrote, pings the provider's SIP
// stack with OPTIONS: a server's keep-alive gets 200.
func TestSipsakPingIsAnswered(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	_, src := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)
	provtest.Eventually(t, "up", func() bool { return src.Health().Healthy })
	if code := siptest.SipsakOptions(t, "sip:presenceprovider@"+src.Addr()); code != 200 {
		t.Fatalf("OPTIONS answered %d; want 200", code)
	}
}

// onlineThenOffline turns baresip online, then offline: the first is the
// agent's first event, no presence before it (what baresip said before
// was not known), the second follows it.
func onlineThenOffline(t *testing.T, b *siptest.Baresip, evs *provtest.Events) {
	t.Helper()
	b.Online(t)
	if ev := waitEvent(t, evs, 1, schemas.Available); ev.Previous != nil {
		t.Fatalf("first event %+v follows another presence: baresip's unknown state became one", ev)
	}
	b.Offline(t)
	waitEvent(t, evs, 2, schemas.Offline)
}
