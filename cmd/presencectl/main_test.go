package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/buildinfo"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/sources/pstn"
)

// ctl runs presencectl in process against env's server.
func ctl(t *testing.T, env *provtest.Env, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	code = run(context.Background(), append([]string{"-nats", env.Server.ClientURL(), "-timeout", "10s"}, args...), &out, &errs)
	return code, out.String(), errs.String()
}

func start(t *testing.T) *provtest.Env {
	return provtest.StartParts(t, provtest.Server(t), provtest.Config(), clockwork.NewRealClock(), func(p provtest.Parts) {
		p.Worker.AddSource(schemas.SourceAttendant, attendant.New(p.Clock, []*regexp.Regexp{regexp.MustCompile(`@attendant\.example$`)}))
		p.Worker.AddSource(schemas.SourcePSTN, pstn.New(p.Calls, time.Hour, p.Clock, p.Worker, p.Log))
	})
}

func TestMistakesFailWithTheirCode(t *testing.T) {
	env := start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"subscribe", "-ucc", "u1", "notauri"}, `presencectl subscribe: agent "notauri": invalid_uri: uri "notauri": scheme "" is not sip, sips or tel`},
		{[]string{"attendant", "sip:a1@attendant.example", "Sleepy"}, `presencectl attendant: invalid_input: availability "Sleepy" is not one of`},
		{[]string{"call", "-ucc", "u1", "-call", "c1", "sip:a1@attendant.example", "connected"}, "presencectl call: not_pstn_agent: sip:a1@attendant.example is served by source attendant, not pstn"},
		{[]string{"attendant", "agent1", "Busy"}, `presencectl attendant: invalid_uri: uri "agent1"`},
		{[]string{"subscribe", "-ucc", "u1", "-json", "sip:a2@attendant.example", "sip:"}, `agent "sip:": invalid_uri`},
	} {
		code, out, errs := ctl(t, env, tc.args...)
		if code != exitFailed || !strings.Contains(errs, tc.want) {
			t.Errorf("presencectl %v: exit %d, stderr %q; want exit 1 and %q", tc.args, code, errs, tc.want)
		}
		if strings.Contains(out, "notauri") {
			t.Errorf("presencectl %v printed the refused agent on stdout: %q", tc.args, out)
		}
	}
	// With -json the reply is still printed whole, the good entry included.
	_, out, _ := ctl(t, env, "subscribe", "-ucc", "u1", "-json", "sip:a2@attendant.example", "sip:")
	var rep schemas.AgentsReply
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Agents) != 2 || rep.Agents[1].Error.Code != schemas.CodeInvalidURI {
		t.Errorf("-json printed %q (%v)", out, err)
	}
}

func TestFlagsAfterTheAgents(t *testing.T) {
	env := start(t)
	const agent = "sip:lease@attendant.example"
	code, out, errs := ctl(t, env, "subscribe", "-ucc", "u1", agent, "-lease", "30")
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], agent+" ") || !strings.Contains(lines[1], "attendant  active") {
		t.Fatalf("subscribe printed %q; want a header and the one agent", out)
	}
	kv, err := env.Conn.JS.KeyValue(context.Background(), schemas.BucketInterest)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), schemas.InterestKey(schemas.Key(agent), schemas.Key("u1")))
	if err != nil {
		t.Fatal(err)
	}
	var in schemas.Interest
	if err := json.Unmarshal(e.Value(), &in); err != nil || in.LeaseS != 30 {
		t.Fatalf("interest %s; want lease_s 30", e.Value())
	}
	// -- ends the flags.
	if code, _, errs := ctl(t, env, "get", "--", "-lease"); code != exitFailed || !strings.Contains(errs, `agent "-lease": invalid_uri`) {
		t.Fatalf("get -- -lease: exit %d, %q", code, errs)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}, {"subscribe", "-h"}, {"help", "subscribe"}, {"call", "-ucc", "u", "-h"}} {
		var out, errs bytes.Buffer
		code := run(context.Background(), args, &out, &errs)
		if code != exitOK || errs.Len() != 0 || !strings.HasPrefix(out.String(), "usage: presencectl") {
			t.Errorf("presencectl %v: exit %d, stdout %q, stderr %q; want usage and exit 0", args, code, out.String(), errs.String())
		}
	}
	var out, errs bytes.Buffer
	run(context.Background(), []string{"help", "call"}, &out, &errs)
	if !strings.Contains(out.String(), "usage: presencectl call -ucc UCC -call ID URI connected|ended") || !strings.Contains(out.String(), "-call id") {
		t.Errorf("help call printed %q", out.String())
	}
	for _, args := range [][]string{{}, {"bogus"}, {"subscribe", "-x"}, {"subscribe", "sip:a@b.example"}, {"attendant", "sip:a@b.example"}, {"status", "extra"}} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), args, &out, &errs); code != exitUsage || !strings.Contains(errs.String(), "usage: presencectl") {
			t.Errorf("presencectl %v: exit %d, stderr %q; want usage on stderr and exit 2", args, code, errs.String())
		}
	}
}

func TestReadableOutput(t *testing.T) {
	env := start(t)
	const agent = "sip:show@attendant.example"
	if code, out, errs := ctl(t, env, "attendant", "-activity", "InACall", agent, "Busy"); code != exitOK || !strings.HasPrefix(out, "stored, seq ") {
		t.Fatalf("attendant: exit %d %q %q", code, out, errs)
	}
	_, out, _ := ctl(t, env, "get", agent)
	if !regexp.MustCompile(`(?m)^sip:show@attendant\.example +attendant +- +Busy \(6500\) InACall +\d+$`).MatchString(out) {
		t.Fatalf("get printed %q", out)
	}
	ctl(t, env, "subscribe", "-ucc", "u1", agent)
	// The worker counts the interest once its watch of presence_interest
	// shows it, a moment after the subscribe is answered.
	provtest.Eventually(t, "status with the agent", func() bool {
		_, out, _ = ctl(t, env, "status")
		return strings.Contains(out, "agents: 1  interests: 1")
	})
	if !regexp.MustCompile(`(?m)^attendant +yes +yes +active=1`).MatchString(out) {
		t.Fatalf("status printed %q", out)
	}
	// Every row says what it is: the sources turned off and none too.
	for _, row := range []string{`sip +no +no +- +off: Config\.xml does not enable it`, `none +no +no +- +agents no enabled source serves \(state unsupported\)`} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(out) {
			t.Errorf("status has no row %q:\n%s", row, out)
		}
	}
	// -wait, off a terminal: a plain line each time the counts change, the
	// last when every agent settled.
	code, _, errs := ctl(t, env, "subscribe", "-ucc", "u2", "-wait", agent, "sip:other@attendant.example")
	progress := regexp.MustCompile(`^(\d/2 settled: \d active, 0 failed, 0 unsupported, \d waiting\n)*2/2 settled: 2 active, 0 failed, 0 unsupported, 0 waiting\n$`)
	if code != exitOK || !progress.MatchString(errs) {
		t.Fatalf("subscribe -wait: exit %d, stderr %q", code, errs)
	}
	ctl(t, env, "unsubscribe", "-ucc", "u2", agent, "sip:other@attendant.example")
	_, out, _ = ctl(t, env, "unsubscribe", "-ucc", "u1", agent)
	if out != fmt.Sprintf("%s  unsubscribed\n", agent) {
		t.Fatalf("unsubscribe printed %q", out)
	}
}

// watch prints the current presence, then the changes, and says so when
// the provider goes away; an interrupt ends it with status 0.
func TestWatchSaysWhenTheProviderGoes(t *testing.T) {
	env := start(t)
	const agent = "sip:watched@attendant.example"
	ctl(t, env, "attendant", agent, "Away")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errs := &provtest.Logs{}, &provtest.Logs{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-nats", env.Server.ClientURL(), "watch", agent}, out, errs) }()
	provtest.Eventually(t, "the current presence", func() bool { return strings.Contains(out.String(), agent+" seq=1 now Away (15500)") })
	ctl(t, env, "attendant", "-activity", "InACall", agent, "Busy")
	provtest.Eventually(t, "the change", func() bool {
		return strings.Contains(out.String(), `seq=2 Away (15500) -> Busy (6500) activity="InACall" source=attendant`)
	})
	// The provider stops, its NATS stays: the probe finds nobody answers.
	env.Stop()
	deadline := time.Now().Add(3 * client.DefaultProbe)
	for !strings.Contains(errs.String(), "presencectl watch: the provider does not answer (") {
		if time.Now().After(deadline) {
			t.Fatalf("watch never said the provider went away: %q", errs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	env.Server.Shutdown()
	provtest.Eventually(t, "the watch to say the provider went away", func() bool {
		return strings.Contains(errs.String(), "presencectl watch: lost NATS (the provider went away?); reconnecting")
	})
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("interrupted watch exited %d: %s", code, errs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on interrupt")
	}
}

// TestWithoutAProvider: with nothing at the URL, or a NATS no provider
// serves, the error says how to start one or where to point presencectl.
func TestWithoutAProvider(t *testing.T) {
	noNATS := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	for name, tc := range map[string]struct{ url, want string }{
		"no NATS":     {noNATS, "no NATS answers at " + noNATS + ", so no provider runs there"},
		"no provider": {provtest.Server(t).ClientURL(), "answers, but no provider listens on it"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errs bytes.Buffer
			code := run(context.Background(), []string{"-nats", tc.url, "-timeout", "10s", "get", "sip:a1@attendant.example"}, &out, &errs)
			if code != exitFailed || !strings.Contains(errs.String(), tc.want) ||
				!strings.Contains(errs.String(), "start one (PRESENCE_CONFIG=examples/Config.xml go run ./cmd/presenced), or set PRESENCE_NATS_URL") {
				t.Errorf("exit %d, stderr %q; want exit 1, %q and how to start a provider", code, errs.String(), tc.want)
			}
		})
	}
}

// TestVersion: one line, the product's version, the same as presenced's
// (and no NATS needed).
func TestVersion(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"-nats", "nats://127.0.0.1:1", "version"}, &out, &errs)
	want := "presencectl " + buildinfo.Version
	if code != exitOK || errs.Len() != 0 || strings.Count(out.String(), "\n") != 1 || !strings.HasPrefix(out.String(), want) {
		t.Errorf("version: exit %d, stdout %q, stderr %q; want one line starting %q", code, out.String(), errs.String(), want)
	}
}

// TestHelpAttendantListsTheAvailabilities: every name the contract's JSON
// Schema allows, with its band of the scale.
func TestHelpAttendantListsTheAvailabilities(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"help", "attendant"}, &out, &errs); code != exitOK {
		t.Fatalf("help attendant: exit %d, %s", code, errs.String())
	}
	data, err := schemas.JSONSchemas.ReadFile("json/presence.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs struct {
			Availability struct {
				Enum []string `json:"enum"`
			} `json:"availability"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil || len(schema.Defs.Availability.Enum) == 0 {
		t.Fatalf("presence.schema.json availability enum: %v", err)
	}
	for _, name := range schema.Defs.Availability.Enum {
		if !regexp.MustCompile(`(?m)^  ` + name + ` +(\d+-\d+|\d+ and above|0) +\(\d+\)$`).MatchString(out.String()) {
			t.Errorf("help attendant has no line for %s with its band:\n%s", name, out.String())
		}
	}
	if !strings.Contains(out.String(), "  Busy           6000-7499        (6500)") {
		t.Errorf("help attendant does not give Busy's band 6000-7499 and default 6500:\n%s", out.String())
	}
}
