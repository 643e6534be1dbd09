package sip_test

import (
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
	"github.com/contactcenter/presence-provider/worker"
)

const (
	agent   = "sip:agent1@example.com"
	userURI = "sip:demo_user@example.com"
)

func claimOf(t *testing.T, env *provtest.Env, uri string) schemas.Claim {
	t.Helper()
	c, _, _, err := env.Stores.Claims.Get(env.Ctx(), schemas.Key(uri))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeactivatedSubscriptionIsRenewedAtOnce(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.DeactivatedScenario(300*time.Millisecond), siptest.SippOptions{})
	// A back-off of an hour: only an immediate resubscribe can pass.
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(sipp.Addr())},
		func(c *worker.Config) { c.FirstRetry, c.MaxRetry = time.Hour, time.Hour })
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "subscribed again after deactivation", func() bool {
		return sipp.Received("SUBSCRIBE") >= 2 && env.State(agent) == schemas.StateActive
	})
	if c := claimOf(t, env, agent); c.Failures != 0 {
		t.Fatalf("a deactivation counted as a failure: %+v", c)
	}
}

func TestServiceUnavailableHonoursRetryAfter(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.RetryAfterScenario(2), siptest.SippOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(sipp.Addr())}, nil) // first retry 1 s
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "retrying", func() bool { return env.State(agent) == schemas.StateRetrying })
	if logs := env.Logs.String(); !strings.Contains(logs, `"retry_in":2000`) || !strings.Contains(logs, "503") {
		t.Fatalf("the failure did not wait the server's 2 s:\n%s", logs)
	}
	provtest.Eventually(t, "active after the retry", func() bool { return env.State(agent) == schemas.StateActive })
}

// The application endpoint's server fails; the user endpoint, on Kamailio,
// takes the subscription before anything counts as a failure.
func TestFallbackToTheUserEndpoint(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	for name, scenario := range map[string]string{
		"503 with Retry-After": siptest.RetryAfterScenario(30),
		"silence":              siptest.SilentScenario(),
	} {
		t.Run(name, func(t *testing.T) {
			sipp := siptest.StartSippServer(t, scenario, siptest.SippOptions{})
			user := &sip.Endpoint{Name: "user", URI: userURI, Pool: k.Addr()}
			env, src := provider(t, sip.Config{Transport: "udp", RequestTimeout: 2 * time.Second,
				Application: appEndpoint(sipp.Addr()), User: user}, nil)
			env.Subscribe("ucc_app01", agent)
			provtest.Eventually(t, "active", func() bool { return env.State(agent) == schemas.StateActive })
			if c := claimOf(t, env, agent); c.Failures != 0 {
				t.Fatalf("claim %+v: the fallback counted a failure", c)
			}
			found := false
			for _, s := range k.Subscriptions(t) {
				found = found || (s.Watcher == userURI && s.Presentity == agent)
			}
			if !found || src.Health().Stats["user_dialogs"] != 1 {
				t.Fatalf("the subscription is not on the user endpoint: %v", src.Health())
			}
		})
	}
}

func TestSilenceBacksOff(t *testing.T) {
	sipp := siptest.StartSippServer(t, siptest.SilentScenario(), siptest.SippOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", RequestTimeout: time.Second, Application: appEndpoint(sipp.Addr())}, nil)
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(t, "retrying", func() bool { return env.State(agent) == schemas.StateRetrying })
	if !strings.Contains(env.Logs.String(), `"retry_in":1000`) {
		t.Fatalf("no back-off of the configured first delay:\n%s", env.Logs.String())
	}
	provtest.Eventually(t, "active after the retry", func() bool { return env.State(agent) == schemas.StateActive })
}
