package sip_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

// presenceOf is the agent's presence as a get answers it; nil when none is known.
func presenceOf(t *testing.T, env *provtest.Env, uri string) *schemas.Presence {
	t.Helper()
	rep, err := env.Client.Get(env.Ctx(), schemas.GetRequest{URIs: []string{uri}})
	if err != nil {
		t.Fatal(err)
	}
	return rep.Agents[0].Presence
}

// waitOneFailure waits until the agent backs off after one counted
// failure whose reason says why.
func waitOneFailure(t *testing.T, env *provtest.Env, uri, why string) {
	t.Helper()
	provtest.Eventually(t, "a counted failure for "+why, func() bool {
		c := claimOf(t, env, uri)
		return c.State == schemas.StateRetrying && c.Failures == 1 && strings.Contains(c.Reason, why)
	})
}

// dialogOf is the agent's SIP dialog as the source describes it.
func dialogOf(src *sip.Source, uri string) *schemas.SIPUpstream {
	var u schemas.Upstream
	src.Describe(sources.Agent{URI: uri, Key: schemas.Key(uri)}, &u)
	return u.SIP
}

// A notifier that accepts and never NOTIFYs fails the subscription at
// Timer N: a counted failure with the reason, the dialog ended at the
// notifier, then the retry after the back-off.
func TestTimerNFailsASilentNotifier(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.SilentNotifierScenario(), siptest.SippOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", TimerN: 500 * time.Millisecond, Application: appEndpoint(sipp.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	env.Subscribe("ucc_app01", agent)
	waitOneFailure(t, env, agent, "Timer N")
	if !strings.Contains(env.Logs.String(), "RFC 6665 Timer N") {
		t.Errorf("no log line says why the subscription failed:\n%s", env.Logs.String())
	}
	provtest.Eventually(t, "the dialog ended at the notifier", func() bool {
		return strings.Contains(sipp.Messages(), "Expires: 0")
	})
}

// A NOTIFY that arrives before the 2xx of its SUBSCRIBE is applied, and the
// dialog it established goes on.
func TestNotifyBeforeTheTwoHundredIsApplied(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.NotifyFirstScenario(), siptest.SippOptions{})
	env, src := provider(t, sip.Config{Transport: "udp", TimerN: 500 * time.Millisecond, Expires: 2 * time.Second,
		RequestTimeout: 6 * time.Second, Application: appEndpoint(sipp.Addr())}, nil)
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "Available from the early NOTIFY", func() bool {
		p := presenceOf(t, env, agent)
		return p != nil && p.Availability == schemas.Available
	})
	first := dialogOf(src, agent)
	// Past Timer N and a refresh: the dialog is kept.
	provtest.Eventually(t, "refreshed", func() bool { return sipp.Received("SUBSCRIBE") >= 2 })
	if d := dialogOf(src, agent); d == nil || first == nil || d.CallID != first.CallID || env.State(agent) != schemas.StateActive {
		t.Fatalf("dialog %+v after %+v; want the same, active", d, first)
	}
	if c := claimOf(t, env, agent); c.Failures != 0 {
		t.Fatalf("claim %+v: a failure counted", c)
	}
}

// A 202 is accepted like a 200.
func TestAcceptedIsLikeOK(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.AcceptedScenario(), siptest.SippOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(sipp.Addr())}, nil)
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active and Available", func() bool {
		p := presenceOf(t, env, agent)
		return env.State(agent) == schemas.StateActive && p != nil && p.Availability == schemas.Available
	})
}

// A 200 without Expires grants what was asked: the dialog expires then and
// is refreshed in time.
func TestOKWithoutExpiresKeepsTheAskedExpiry(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.NoExpiresScenario(), siptest.SippOptions{})
	env, src := provider(t, sip.Config{Transport: "udp", Expires: 2 * time.Second, RequestTimeout: 6 * time.Second,
		Application: appEndpoint(sipp.Addr())}, nil)
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	first := dialogOf(src, agent)
	if first == nil || first.Expires == nil || time.Until(*first.Expires) > 2*time.Second || time.Until(*first.Expires) < time.Second {
		t.Fatalf("dialog %+v; want it to expire within the 2 s asked", first)
	}
	provtest.Eventually(t, "refreshed in the dialog before the asked expiry", func() bool {
		d := dialogOf(src, agent)
		return d != nil && d.CallID == first.CallID && d.Expires.After(*first.Expires)
	})
}

// Each reason of RFC 6665 section 4.1.3 a NOTIFY ends a subscription with.
func TestTerminatedReasons(t *testing.T) {
	for _, tc := range []struct {
		state string
		// want is the claim's state once the termination is handled;
		// failures the count; retryIn the back-off in ms (0: none).
		want     schemas.State
		failures int
		retryIn  int
		body     bool
	}{
		// Subscribe again at once: retry-after has no meaning for them.
		{state: "terminated;reason=deactivated;retry-after=3600", want: schemas.StateActive},
		{state: "terminated;reason=timeout;retry-after=3600", want: schemas.StateActive},
		// No reason, or one RFC 6665 does not define: at any time...
		{state: "terminated", want: schemas.StateActive},
		{state: "terminated;reason=moved-elsewhere", want: schemas.StateActive},
		// ... but not before a retry-after.
		{state: "terminated;retry-after=2", want: schemas.StateRetrying, failures: 1, retryIn: 2000},
		// Later, after retry-after when given.
		{state: "terminated;reason=probation;retry-after=2", want: schemas.StateRetrying, failures: 1, retryIn: 2000},
		{state: "terminated;reason=probation", want: schemas.StateRetrying, failures: 1, retryIn: 1000},
		{state: "terminated;reason=giveup;retry-after=2", want: schemas.StateRetrying, failures: 1, retryIn: 2000},
		// Never again (until a UCC subscribes the agent again).
		{state: "terminated;reason=rejected", want: schemas.StateFailed, failures: 1},
		{state: "terminated;reason=noresource;retry-after=1", want: schemas.StateFailed, failures: 1},
		{state: "terminated;reason=invariant", want: schemas.StateFailed, failures: 1, body: true},
	} {
		t.Run(tc.state, func(t *testing.T) {
			sipp := siptest.StartSippServer(t, siptest.TerminatedScenario(200*time.Millisecond, tc.state, tc.body), siptest.SippOptions{})
			firstRetry := time.Second
			if tc.want == schemas.StateActive {
				firstRetry = time.Hour // only a new subscription at once passes
			}
			env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(sipp.Addr())},
				func(c *worker.Config) { c.FirstRetry, c.MaxRetry = firstRetry, time.Hour })
			env.Subscribe("ucc_app01", agent)
			provtest.Eventually(t, fmt.Sprintf("%s with %d failures", tc.want, tc.failures), func() bool {
				c := claimOf(t, env, agent)
				settled := tc.want != schemas.StateActive || sipp.Received("SUBSCRIBE") >= 2
				return settled && c.State == tc.want && c.Failures == tc.failures
			})
			if tc.retryIn > 0 && !strings.Contains(env.Logs.String(), fmt.Sprintf(`"retry_in":%d`, tc.retryIn)) {
				t.Errorf("no back-off of %d ms:\n%s", tc.retryIn, env.Logs.String())
			}
			if tc.want == schemas.StateFailed {
				if c := claimOf(t, env, agent); !strings.Contains(c.Reason, "not to subscribe again") {
					t.Errorf("reason %q does not say why", c.Reason)
				}
				if n := sipp.Received("SUBSCRIBE"); n != 1 {
					t.Errorf("%d SUBSCRIBEs; RFC 6665 says not to subscribe again", n)
				}
			}
			if tc.body {
				// invariant: the last NOTIFY's state is the agent's, for good.
				if p := presenceOf(t, env, agent); p == nil || p.Availability != schemas.Available {
					t.Errorf("presence %+v; want the final NOTIFY's Available", p)
				}
			}
		})
	}
}

// A 423 is answered once in the same dialog with its Min-Expires; one
// without a Min-Expires above what was asked is a failure, not a loop.
func TestIntervalTooBrief(t *testing.T) {
	t.Run("Min-Expires 5", func(t *testing.T) {
		sipp := siptest.StartSippServer(t, siptest.IntervalTooBriefScenario(5), siptest.SippOptions{})
		env, src := provider(t, sip.Config{Transport: "udp", Expires: 2 * time.Second, Application: appEndpoint(sipp.Addr())},
			func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
		env.Subscribe("ucc_app01", agent)
		provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
		if d := dialogOf(src, agent); d == nil || d.Expires == nil || time.Until(*d.Expires) < 4*time.Second {
			t.Fatalf("dialog %+v; want the 5 s of Min-Expires granted", d)
		}
		if n := sipp.Received("SUBSCRIBE"); n != 2 || !strings.Contains(sipp.Messages(), "Expires: 5") {
			t.Fatalf("%d SUBSCRIBEs; want the first and one asking 5 s", n)
		}
	})
	t.Run("no Min-Expires", func(t *testing.T) {
		sipp := siptest.StartSippServer(t, siptest.IntervalTooBriefScenario(0), siptest.SippOptions{})
		env, _ := provider(t, sip.Config{Transport: "udp", Expires: 2 * time.Second, Application: appEndpoint(sipp.Addr())},
			func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
		env.Subscribe("ucc_app01", agent)
		waitOneFailure(t, env, agent, "423")
		if n := sipp.Received("SUBSCRIBE"); n != 1 {
			t.Fatalf("%d SUBSCRIBEs; want one", n)
		}
	})
}

// A NOTIFY whose Subscription-State ends the subscription sooner than the
// 2xx granted brings the refresh forward (RFC 6665 section 4.1.3).
func TestNotifyShorteningTheSubscriptionIsTaken(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.ShortNotifyExpiresScenario(2), siptest.SippOptions{})
	// sipp answers no OPTIONS: the endpoint goes down, and its dialogs are
	// made anew, only at the request timeout, long after the refresh due.
	env, src := provider(t, sip.Config{Transport: "udp", Expires: time.Hour, RequestTimeout: 6 * time.Second,
		Application: appEndpoint(sipp.Addr())}, nil)
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
	first := dialogOf(src, agent)
	provtest.Eventually(t, "refreshed in the dialog within the NOTIFY's 2 s", func() bool {
		d := dialogOf(src, agent)
		return sipp.Received("SUBSCRIBE") >= 2 && d != nil && d.CallID == first.CallID
	})
}
