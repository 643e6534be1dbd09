package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/sfbtest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/schemas"
)

// TestManualConfigSpeaksMSSIP: the manual's Config.xml, with
// Dialect="mssip", Transport="tls" and the certificates added, runs
// against the test front-end pool: the agents travel in batches of
// batchSize over mutual TLS, their first states and changes reach the UCC, and the
// manual's user endpoint is named once as retired. Graph is turned off:
// no Entra ID answers here.
func TestManualConfigSpeaksMSSIP(t *testing.T) {
	presenced, presencectl := build(t)
	ca := testca.New(t, "contoso-ca")
	const poolName = "pool.sipdomain.com"
	pool := sfbtest.Start(t, ca, poolName)
	cert, key := ca.Issue("ucc_presenceprovider01.sipdomain.com", "127.0.0.1")
	manual, err := os.ReadFile(filepath.Join("..", "..", "config", "testdata", "spec-example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	xml := string(manual)
	for _, r := range []struct{ old, new string }{
		{`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:ucc_presenceprovider01" >`,
			fmt.Sprintf(`<UcmaPresenceSource enabled="true" ApplicationId="urn:application:ucc_presenceprovider01" Dialect="mssip" batchSize="2" Transport="tls" Listen="127.0.0.1:%d" TlsCAFile="%s" TlsCertFile="%s" TlsKeyFile="%s" TlsServerName="%s">`,
				freeport.T(t), ca.File, cert, key, poolName)},
		{`<ApplicationEndpoint OwnerUri="sip:ucc_presenceprovider01@sipdomain.com" />`,
			`<ApplicationEndpoint OwnerUri="sip:ucc_presenceprovider01@sipdomain.com" PoolFqdn="` + pool.Addr() + `" />`},
		{`<MsGraphPresenceSource enabled="true">`, `<MsGraphPresenceSource enabled="false">`},
	} {
		if !strings.Contains(xml, r.old) {
			t.Fatalf("the manual's Config.xml has no %s", r.old)
		}
		xml = strings.Replace(xml, r.old, r.new, 1)
	}
	config := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(config, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	d := startDaemon(t, presenced, []string{
		"PRESENCE_CONFIG=" + config,
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
	})
	agents := []string{"sip:agent1@sipdomain.com", "sip:agent2@sipdomain.com", "sip:agent3@sipdomain.com"}
	for _, a := range agents {
		pool.SetState(a, sfbtest.State{Availability: 15500, Device: "computer"})
	}
	ctl(t, presencectl, url, append([]string{"subscribe", "-ucc", "ucc_app01"}, agents...)...)
	presence := func(uri string) *schemas.Presence {
		var got schemas.AgentsReply
		if err := json.Unmarshal([]byte(ctl(t, presencectl, url, "-json", "get", uri)), &got); err != nil || len(got.Agents) != 1 {
			t.Fatalf("get %s: %v", uri, err)
		}
		if r := got.Agents[0]; r.Source == schemas.SourceSIP && r.State == schemas.StateActive {
			return r.Presence
		}
		return nil
	}
	for _, a := range agents {
		provtest.Eventually(t, a+" Away from the pool's first state", func() bool {
			p := presence(a)
			return p != nil && p.Availability == schemas.Away && p.AvailabilityValue == 15500 && p.Device == "Computer"
		})
	}
	// ceil(3 ÷ batchSize 2) dialogs.
	if b := pool.Batches(); len(b) != 2 || len(b[0].Agents)+len(b[1].Agents) != len(agents) {
		t.Fatalf("batches at the pool %+v; want two holding the %d agents", b, len(agents))
	}
	pool.SetState(agents[0], sfbtest.State{Availability: 6500, Activity: "on-the-phone"})
	provtest.Eventually(t, "the change by BENOTIFY", func() bool {
		p := presence(agents[0])
		return p != nil && p.Availability == schemas.Busy && p.Activity == "on-the-phone"
	})
	if n := strings.Count(d.logs.String(), "retired by Microsoft"); n != 1 {
		t.Fatalf("%d lines name the user endpoint retired; want 1:\n%s", n, d.logs.String())
	}
}
