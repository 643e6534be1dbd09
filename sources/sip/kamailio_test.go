package sip_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

const appURI = "sip:presenceprovider@example.com"

// provider runs a whole provider on the real clock with the SIP source.
func provider(t testing.TB, cfg sip.Config, tune func(*worker.Config)) (*provtest.Env, *sip.Source) {
	t.Helper()
	return providerLogging(t, cfg, tune, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
}

// providerLogging is provider with the SIP source's logger given.
func providerLogging(t testing.TB, cfg sip.Config, tune func(*worker.Config), log zerolog.Logger) (*provtest.Env, *sip.Source) {
	t.Helper()
	wcfg := provtest.Config()
	wcfg.SubscriptionsPerSecond = 200
	wcfg.Linger = 100 * time.Millisecond
	wcfg.FirstRetry, wcfg.MaxRetry = time.Second, 4*time.Second
	if tune != nil {
		tune(&wcfg)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	var src *sip.Source
	env := provtest.StartReal(t, wcfg, func(w *worker.Worker, clock clockwork.Clock) {
		var err error
		if src, err = sip.New(cfg, clock, w, log); err != nil {
			t.Fatal(err)
		}
		w.AddSource(schemas.SourceSIP, src)
	})
	return env, src
}

func appEndpoint(pool string) sip.Endpoint {
	return sip.Endpoint{Name: "application", URI: appURI, Pool: pool}
}

// ours counts the subscription dialogs Kamailio holds from the provider.
func ours(t *testing.T, k *siptest.Kamailio, presentity string) int {
	t.Helper()
	n := 0
	for _, s := range k.Subscriptions(t) {
		if s.Watcher == appURI && (presentity == "" || s.Presentity == presentity) && s.Expires.After(time.Now()) {
			n++
		}
	}
	return n
}

func waitEvent(t *testing.T, evs *provtest.Events, n int, availability schemas.Availability) schemas.Event {
	t.Helper()
	provtest.Eventually(t, fmt.Sprintf("event %d: %s", n, availability), func() bool { return len(evs.List()) >= n })
	ev := evs.List()[n-1]
	if ev.Presence.Availability != availability {
		t.Fatalf("event %d is %s; want %s (events %+v)", n, ev.Presence.Availability, availability, evs.List())
	}
	return ev
}

func TestPresenceFromKamailio(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			k := siptest.StartKamailio(t, siptest.KamailioOptions{})
			env, _ := provider(t, sip.Config{Transport: transport, Application: appEndpoint(k.Addr())}, nil)
			const agent = "sip:agent1@example.com"
			evs := env.Collect(schemas.Key(agent))
			env.Subscribe("ucc_app01", agent)
			env.Subscribe("ucc_app02", agent)
			provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
			if n := ours(t, k, agent); n != 1 {
				t.Fatalf("Kamailio holds %d subscriptions from the provider for 2 UCCs; want 1", n)
			}

			etag := k.Publish(t, agent, siptest.PIDF(agent, "open", "on-the-phone", ""), 60)
			ev := waitEvent(t, evs, 1, schemas.Busy)
			if ev.Presence.Activity != "on-the-phone" || ev.Presence.Source != "sip" || ev.Previous != nil {
				t.Fatalf("event %+v; want Busy on-the-phone from sip, no previous", ev)
			}
			// A body-less PUBLISH refresh makes Kamailio NOTIFY the same body
			// again: it must not become an event.
			etag = k.RefreshPublish(t, agent, etag, 60)
			k.ModifyPublish(t, agent, etag, siptest.PIDF(agent, "open", "away", ""), 60)
			ev = waitEvent(t, evs, 2, schemas.Away)
			if ev.Previous == nil || ev.Previous.Availability != schemas.Busy {
				t.Fatalf("second event %+v; want Away after Busy with no repeat between", ev)
			}

			for _, ucc := range []string{"ucc_app01", "ucc_app02"} {
				if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: ucc, URIs: []string{agent}}); err != nil {
					t.Fatal(err)
				}
			}
			provtest.Eventually(t, "un-SUBSCRIBE at Kamailio", func() bool { return ours(t, k, agent) == 0 })
		})
	}
}

func TestFiveUCCsOfFiftyAgentsMakeFiftyDialogs(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)
	var agents []string
	for i := range 50 {
		agents = append(agents, fmt.Sprintf("sip:agent%02d@example.com", i))
	}
	for u := range 5 {
		env.Subscribe(fmt.Sprintf("ucc_app%02d", u), agents...)
	}
	provtest.Eventually(t, "50 active", func() bool {
		st, err := env.Client.Status(env.Ctx())
		return err == nil && st.Sources["sip"].States[schemas.StateActive] == 50
	})
	if n := ours(t, k, ""); n != 50 {
		t.Fatalf("Kamailio holds %d subscription dialogs from the provider; want exactly 50 (not 250)", n)
	}
}

func TestRefreshesAcrossShortExpiries(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, _ := provider(t, sip.Config{Transport: "tcp", Expires: 3 * time.Second, Application: appEndpoint(k.Addr())}, nil)
	const agent = "sip:agent1@example.com"
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	first := k.Subscriptions(t)
	time.Sleep(8 * time.Second) // the server's clock runs: nearly three expiry cycles
	now := k.Subscriptions(t)
	if len(now) != 1 || len(first) != 1 || now[0].CallID != first[0].CallID || !now[0].Expires.After(time.Now()) {
		t.Fatalf("after three 3 s cycles Kamailio holds %+v (first %+v); want the same dialog, refreshed", now, first)
	}
	k.Publish(t, agent, siptest.PIDF(agent, "open", "busy", ""), 60)
	waitEvent(t, evs, 1, schemas.Busy)
}

func TestKamailioRestartIsMended(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Expires: 3 * time.Second, Application: appEndpoint(k.Addr())}, nil)
	const agent = "sip:agent1@example.com"
	evs := env.Collect(schemas.Key(agent))
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	before := k.Subscriptions(t)[0].CallID

	k.Restart(t) // the subscriptions are gone: the next refresh gets 481
	provtest.Eventually(t, "subscribed again after the restart", func() bool {
		subs := k.Subscriptions(t)
		return len(subs) == 1 && subs[0].CallID != before
	})
	if !strings.Contains(env.Logs.String(), "481") {
		t.Fatalf("no 481 in the logs:\n%s", env.Logs.String())
	}
	k.Publish(t, agent, siptest.PIDF(agent, "open", "away", ""), 60)
	waitEvent(t, evs, 1, schemas.Away)
}

func TestRegisterWithDigest(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{AuthUser: "presenceprovider", AuthPassword: "s3cret"})
	ep := appEndpoint(k.Addr())
	ep.Register, ep.Password = true, "s3cret"
	_, src := provider(t, sip.Config{Transport: "udp", Application: ep}, nil)
	provtest.Eventually(t, "registered", func() bool {
		h := src.Health()
		return h.Healthy && strings.Contains(h.Detail, "registered for")
	})

	wrong := appEndpoint(k.Addr())
	wrong.Register, wrong.Password = true, "not-it"
	_, bad := provider(t, sip.Config{Transport: "udp", Application: wrong}, nil)
	provtest.Eventually(t, "registration refused", func() bool {
		h := bad.Health()
		return !h.Healthy && strings.Contains(h.Detail, "refused")
	})
	if strings.Contains(bad.Health().Detail, "not-it") {
		t.Fatal("the password shows in the health detail")
	}
}

// When the pool stops answering, the endpoint is down and its subscriptions
// are ended; when it answers again they are restored at once, not after the
// back-off.
func TestLostEndpointIsRestoredWhenBack(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, src := provider(t, sip.Config{Transport: "udp", KeepAlive: 300 * time.Millisecond, RequestTimeout: time.Second,
		Application: appEndpoint(k.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	const agent = "sip:agent1@example.com"
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })

	k.Stop()
	provtest.Eventually(t, "endpoint down, agent retrying", func() bool {
		return !src.Health().Healthy && env.State(agent) == schemas.StateRetrying
	})
	k.Restart(t)
	provtest.Eventually(t, "restored once the endpoint is back", func() bool {
		return env.State(agent) == schemas.StateActive && ours(t, k, agent) == 1
	})
	evs := env.Collect(schemas.Key(agent))
	k.Publish(t, agent, siptest.PIDF(agent, "open", "busy", ""), 60)
	waitEvent(t, evs, 1, schemas.Busy)
}
