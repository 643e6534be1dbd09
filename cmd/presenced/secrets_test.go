package main_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/graphtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
)

// TestNoSecretInOutput runs presenced and presencectl with every secret set,
// at trace level: SIP digest passwords (used: Kamailio challenges the
// REGISTER), the Graph client secret (used: tokens are fetched), the NATS
// passwords of every role, a password inside a NATS URL, an nkey seed and a
// .creds file; with requests that succeed and requests that fail. No log
// line, reply or error shows any of them.
func TestNoSecretInOutput(t *testing.T) {
	const (
		appPassword   = "sip-App-Secret-3390"
		userPassword  = "sip-User-Secret-8812"
		graphSecret   = "graph-Client-Secret-6620"
		graphClientID = "11111111-2222-3333-4444-555555555555"
	)
	k := siptest.StartKamailio(t, siptest.KamailioOptions{AuthUser: "presenceprovider", AuthPassword: appPassword})
	graph := graphtest.Start(t)
	graph.App(graphClientID, graphSecret)
	graph.User("agent3@contoso.com", graphtest.Presence{Availability: "Busy", Activity: "InACall"})
	// presenced trusts the Graph stand-in's certificate as a system root.
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: graph.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "Config.xml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`<config><PresenceProvider>
		<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="udp" Listen="127.0.0.1:%d">
		  <ApplicationEndpoint OwnerUri="sip:presenceprovider@example.com" PoolFqdn="%s" Register="true" />
		  <UserEndpoint UserUri="sip:demo@example.com" PoolFqdn="%s" Register="true" />
		</UcmaPresenceSource>
		<AttendantServiceSource enabled="true"><Match pattern="attendant\.example$" /></AttendantServiceSource>
		<MsGraphPresenceSource enabled="true" minCycleSeconds="1">
		  <Accounts><Account Id="acc1" TenantId="tenant1" ClientId="%s" /></Accounts>
		</MsGraphPresenceSource>
		</PresenceProvider></config>`, freeport.T(t), k.Addr(), k.Addr(), graphClientID)), 0o600); err != nil {
		t.Fatal(err)
	}

	// An nkey seed and a .creds file the server does not know.
	user, _ := nkeys.CreateUser()
	seed, _ := user.Seed()
	userPub, _ := user.PublicKey()
	account, _ := nkeys.CreateAccount()
	userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := jwt.FormatUserConfig(userJWT, seed)
	seedFile, credsFile := filepath.Join(t.TempDir(), "user.nk"), filepath.Join(t.TempDir(), "user.creds")
	if os.WriteFile(seedFile, seed, 0o600) != nil || os.WriteFile(credsFile, creds, 0o600) != nil {
		t.Fatal("cannot write the key files")
	}
	secrets := []string{appPassword, userPassword, graphSecret, string(seed), userJWT}
	for _, v := range exampleSecrets {
		secrets = append(secrets, v)
	}

	presenced, presencectl := build(t)
	port := freeport.T(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	common := []string{"PRESENCE_LOG_LEVEL=trace", "PRESENCE_CONFIG=" + cfgFile, "SSL_CERT_FILE=" + roots,
		"PRESENCE_SIP_APP_PASSWORD=" + appPassword, "PRESENCE_SIP_USER_PASSWORD=" + userPassword,
		"PRESENCE_GRAPH_CLIENT_SECRET=" + graphSecret,
		"PRESENCE_GRAPH_BASE_URL=" + graph.BaseURL(), "PRESENCE_GRAPH_AUTHORITY_HOST=" + graph.AuthorityHost()}
	first := startDaemon(t, presenced, append(append(authEnv("../../examples/nats-auth.conf"), common...),
		fmt.Sprintf("PRESENCE_EMBEDDED_LISTEN=127.0.0.1:%d", port), "PRESENCE_DATA_DIR="+t.TempDir(), "PRESENCE_WORKER_ID=w1"))

	var outputs strings.Builder
	ctl := func(user string, wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(presencectl, append([]string{"-nats", url, "-timeout", "10s"}, args...)...)
		cmd.Env = append(os.Environ(), "PRESENCE_NATS_USER="+user, "PRESENCE_NATS_PASSWORD="+exampleSecrets[strings.ToUpper(user)+"_PASSWORD"])
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("presencectl %v as %s: %v\n%s", args, user, err, out)
		}
		outputs.Write(out)
		return string(out)
	}
	ctl("ucc", true, "subscribe", "-ucc", "ucc_app01", "sip:agent1@example.com", "sip:agent2@attendant.example",
		"sip:agent3@example.com=agent3@contoso.com")
	ctl("source", true, "attendant", "sip:agent2@attendant.example", "Busy")
	// A refused input is an error reply (micro service error headers): the
	// command fails and prints the code.
	if out := ctl("source", false, "attendant", "sip:agent2@attendant.example", "Sleepy"); !strings.Contains(out, schemas.CodeInvalidInput) {
		t.Fatalf("a bad attendant input answered %s; want an error", out)
	}
	if out := ctl("ucc", false, "subscribe", "-ucc", "ucc_app01", "sip:"); !strings.Contains(out, schemas.CodeInvalidURI) {
		t.Fatalf("a bad URI answered %s; want an error", out)
	}
	ctl("ucc", false, "status") // a permissions violation
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := ctl("operator", true, "status")
		// Registered with the digest password, and Teams presence read with the secret.
		if strings.Contains(st, "registered for") && strings.Contains(ctl("ucc", true, "-json", "get", "sip:agent3@example.com"), `"source": "graph"`) &&
			strings.Contains(ctl("ucc", true, "-json", "get", "sip:agent3@example.com"), `"availability": "Busy"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the secrets were never used: status %s", st)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Explain tells what the sources hold, never how they authenticate.
	for _, agent := range []string{"sip:agent1@example.com", "sip:agent2@attendant.example", "sip:agent3@example.com"} {
		ctl("operator", true, "explain", agent)
	}
	if ex := ctl("operator", true, "-json", "explain", "sip:agent3@example.com"); !strings.Contains(ex, `"account": "acc1"`) {
		t.Errorf("explain of the Teams agent: %s; want its Graph account", ex)
	}

	// The metrics of the sources in use are served, and tell no secret.
	_, metrics := get(t, "http://"+first.httpAddr(t)+"/metrics")
	for _, want := range []string{`presence_sip_endpoint_up{endpoint="application"} 1`, `presence_sip_dialogs{endpoint="user"}`,
		`presence_graph_requests_total{account="acc1",code="200"}`, `presence_inputs_total{result="ok",source="attendant"} 1`,
		`presence_requests_total{endpoint="subscribe",result="ok"}`, `presence_upstream_subscribes_total{result="ok",source="graph"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	outputs.WriteString(metrics)

	// A second worker joins with the password inside its NATS URL.
	second := startDaemon(t, presenced, append(common, "PRESENCE_WORKER_ID=w2",
		fmt.Sprintf("PRESENCE_NATS_URL=nats://worker:%s@127.0.0.1:%d", exampleSecrets["WORKER_PASSWORD"], port),
		fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(t))))
	ctl("operator", true, "status")
	second.stop(t)

	// Connections that fail: a password in an URL nobody answers, a seed
	// and a .creds file the server does not know.
	cmd := exec.Command(presencectl, "-nats", fmt.Sprintf("nats://ucc:%s@127.0.0.1:%d", exampleSecrets["UCC_PASSWORD"], freeport.T(t)), "status")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("presencectl reached a closed port")
	}
	outputs.Write(out)
	for _, auth := range []string{"PRESENCE_NATS_NKEY=" + seedFile, "PRESENCE_NATS_CREDS=" + credsFile} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, presenced)
		cmd.Env = append(append(os.Environ(), common...), auth, "PRESENCE_NATS_URL="+url)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "presenced: bus: connect nats://127.0.0.1:") {
			t.Fatalf("%s: presenced %v; want it refused:\n%s", auth, err, out)
		}
		outputs.Write(out)
	}
	first.stop(t)

	all := first.logs.String() + second.logs.String() + outputs.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("a secret shows: %.12s...", s)
		}
	}
	if !strings.Contains(all, `"level":"trace"`) && !strings.Contains(all, `"level":"debug"`) {
		t.Error("no trace or debug line: the scenario did not run at trace level")
	}
	checkLogLines(t, first.logs.String()+second.logs.String())
}

// checkLogLines: every line the daemons wrote, on stdout or stderr, sipgo's
// own among them, is one JSON object; at debug level each SIP transaction
// is logged with its method, Call-ID, status and time (REGISTER, answered
// after the digest challenge), and each Graph request with its status and
// time.
func checkLogLines(t *testing.T, logs string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("a line is not JSON: %q", line)
			continue
		}
		switch obj["message"] {
		case "SIP transaction":
			if obj["method"] == nil || obj["call_id"] == nil || obj["took"] == nil {
				t.Errorf("SIP transaction line without method, Call-ID or time: %s", line)
			}
			if obj["status"] != nil {
				seen[fmt.Sprint("SIP ", obj["method"], " ", obj["status"])] = true
			}
		case "Graph request":
			if obj["status"] == nil || obj["took"] == nil {
				t.Errorf("Graph request line without status or time: %s", line)
			}
			seen[fmt.Sprint("Graph ", obj["status"])] = true
		}
		if obj["lib"] == "sipgo" {
			seen["sipgo"] = true
		}
	}
	for _, want := range []string{"SIP REGISTER 401", "SIP REGISTER 200", "SIP SUBSCRIBE 200", "Graph 200", "sipgo"} {
		if !seen[want] {
			t.Errorf("no %q line at trace level; seen %v", want, seen)
		}
	}
}
