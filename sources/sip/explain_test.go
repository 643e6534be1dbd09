package sip_test

import (
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
)

// Explain tells the SIP dialog the provider holds at Kamailio: the endpoint,
// the Call-ID Kamailio knows it by, and its expiry.
func TestExplainShowsTheDialogAtKamailio(t *testing.T) {
	k := siptest.StartKamailio(t, siptest.KamailioOptions{})
	env, _ := provider(t, sip.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)
	const agent = "sip:explained@example.com"
	env.Subscribe("ucc_app01", agent)
	// The claim records the state after the worker has it: wait for both.
	provtest.Eventually(t, "active", func() bool {
		return env.State(agent) == schemas.StateActive && claimOf(t, env, agent).State == schemas.StateActive
	})
	var held siptest.Subscription
	provtest.Eventually(t, "Kamailio holds the dialog", func() bool {
		for _, s := range k.Subscriptions(t) {
			if s.Watcher == appURI && s.Presentity == agent {
				held = s
				return true
			}
		}
		return false
	})
	ex, err := env.Client.Explain(env.Ctx(), agent)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Route.Source != schemas.SourceSIP || ex.Route.Rule != "sip: a sip: URI that no source before SIP serves" {
		t.Errorf("route %+v; want sip and its rule", ex.Route)
	}
	if ex.Claim == nil || ex.Claim.Worker != "worker-a" || ex.Claim.State != schemas.StateActive {
		t.Errorf("claim %+v; want worker-a's, active", ex.Claim)
	}
	up := ex.Upstream
	if up == nil || up.State != schemas.StateActive || up.Worker != "worker-a" || up.SIP == nil {
		t.Fatalf("upstream %+v; want worker-a's active SIP dialog", up)
	}
	if up.SIP.Endpoint != "application" || up.SIP.CallID != held.CallID || up.SIP.Expires == nil {
		t.Errorf("SIP %+v; want the application endpoint and Kamailio's Call-ID %s with an expiry", *up.SIP, held.CallID)
	}
	// Kamailio's expiry is whole seconds from when it took the SUBSCRIBE.
	if d := up.SIP.Expires.Sub(held.Expires); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("expires %s; Kamailio's is %s", up.SIP.Expires, held.Expires)
	}
}
