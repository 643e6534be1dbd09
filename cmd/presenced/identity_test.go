package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

func natsClient(t testing.TB, url string) *client.Client {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return client.New(nc)
}

// TestKilledWorkerRestartsAsItself: presenced killed with SIGKILL and
// started again on its data directory, with no PRESENCE_WORKER_ID, is the
// same worker. Its lease is five minutes, so its old entry in
// presence_workers outlives the test: the restarted process still takes its
// SIP agent's claim back, and answers every attendant input sent the moment
// it is ready, since no dead worker owns a share of the agents.
func TestKilledWorkerRestartsAsItself(t *testing.T) {
	presenced, _ := build(t)
	pool := startSilentPool(t, false)
	cfgFile := filepath.Join(t.TempDir(), "Config.xml")
	xml := fmt.Sprintf(`<config><PresenceProvider>
		<UcmaPresenceSource enabled="true" ApplicationId="urn:application:test" Transport="udp" Listen="127.0.0.1:%d">
		  <ApplicationEndpoint OwnerUri="sip:presenceprovider@example.com" PoolFqdn="%s" />
		</UcmaPresenceSource>
		<AttendantServiceSource enabled="true"><Match pattern="attendant\.example$" /></AttendantServiceSource>
		</PresenceProvider></config>`, freeport.T(t), pool.conn.LocalAddr())
	if err := os.WriteFile(cfgFile, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	env := []string{"PRESENCE_CONFIG=" + cfgFile, "PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + dataDir, "PRESENCE_WORKER_LEASE=5m", "PRESENCE_WORKER_ID="}
	first := startDaemon(t, presenced, env)
	kept, err := os.ReadFile(filepath.Join(dataDir, config.WorkerIDFile))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(kept))

	client := natsClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{{URI: sipAgent}}}
	var attendants []string
	for i := range 20 {
		uri := fmt.Sprintf("sip:agent%02d@attendant.example", i)
		attendants = append(attendants, uri)
		req.Agents = append(req.Agents, schemas.AgentRef{URI: uri})
	}
	if _, err := client.Subscribe(ctx, req); err != nil {
		t.Fatal(err)
	}
	pool.waitFor(t, "SUBSCRIBE")
	claim, rev := claimOf(t, url, sipAgent)
	if claim.Worker != id {
		t.Fatalf("claim %+v; want it held by %s, the id kept in the data directory", claim, id)
	}

	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killed := time.Now()
	second := startDaemon(t, presenced, env)
	ready := time.Now()

	for _, uri := range attendants {
		rep, err := client.Attendant(ctx, schemas.Key(uri), schemas.AttendantInput{Availability: "Busy"})
		if err != nil || !rep.OK {
			t.Fatalf("input for %s after the restart: %+v, %v; want it answered", uri, rep, err)
		}
	}
	answered := time.Since(ready)
	for {
		if c, r := claimOf(t, url, sipAgent); c.Worker == id && r > rev {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the restarted worker never took its SIP agent's claim back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("restart ready %s after the kill; after it was ready: 20 inputs answered in %s, claim taken back in %s",
		ready.Sub(killed).Round(time.Millisecond), answered.Round(time.Millisecond), time.Since(ready).Round(time.Millisecond))

	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Worker != id || len(st.Workers) != 1 || st.Workers[0].PID != second.cmd.Process.Pid {
		t.Fatalf("status %+v; want one worker, %s, held by the restarted process %d", st, id, second.cmd.Process.Pid)
	}
	if !strings.Contains(second.logs.String(), "worker id taken back from this worker's earlier process") {
		t.Errorf("the restarted process did not say it took its id back:\n%s", second.logs.String())
	}
	second.stop(t)
}

// TestSecondLiveProcessWithOneWorkerID: a presenced that joins the NATS of
// a running one under the same PRESENCE_WORKER_ID is refused with one line
// naming the process that holds the id, and changes nothing.
func TestSecondLiveProcessWithOneWorkerID(t *testing.T) {
	first := sipDaemon(t, false, "PRESENCE_WORKER_ID=w1")
	claim, rev := claimOf(t, first.url, sipAgent)

	code, _, stderr := exited(t, first.presenced, []string{
		"PRESENCE_CONFIG=" + first.config,
		"PRESENCE_NATS_URL=" + first.url,
		fmt.Sprintf("PRESENCE_SIP_LISTEN=127.0.0.1:%d", freeport.T(t)),
		"PRESENCE_WORKER_ID=w1",
	})
	host, _ := os.Hostname()
	want := fmt.Sprintf(`presenced: bus: worker id "w1" is in use by process %d on host %s (started `, first.cmd.Process.Pid, host)
	lines := errorLines(stderr)
	if code == 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], "); one presenced per PRESENCE_WORKER_ID") {
		t.Fatalf("second presenced: exit %d, error lines %q; want non-zero and one line starting %q\n%s", code, lines, want, stderr)
	}
	if strings.Contains(stderr, `"level":"error"`) || strings.Contains(stderr, `"level":"warn"`) {
		t.Errorf("the refused start logged more than its one line:\n%s", stderr)
	}

	if after, afterRev := claimOf(t, first.url, sipAgent); after != claim || afterRev != rev {
		t.Fatalf("the claim moved: %+v rev %d, was %+v rev %d", after, afterRev, claim, rev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natsClient(t, first.url).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workers) != 1 || st.Workers[0].PID != first.cmd.Process.Pid {
		t.Fatalf("workers %+v; want the first process alone", st.Workers)
	}
	first.stop(t)
}
