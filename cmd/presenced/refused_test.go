package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// A presenced joined to an external NATS whose server stops taking its
// password (restarted with another one) fences and says why, once, and
// takes its agents back when the server takes the password again.
func TestAWorkerRefusedByNATSFencesAndComesBack(t *testing.T) {
	presenced, _ := build(t)
	first, second := provtest.RotatingUserConfig(t, "pw-1"), provtest.RotatingUserConfig(t, "pw-2")
	n := provtest.StartNATSWith(t, first)
	d := startDaemon(t, presenced, []string{
		"PRESENCE_CONFIG=" + attendantConfig(t),
		"PRESENCE_NATS_URL=" + n.URL(),
		"PRESENCE_NATS_USER=" + provtest.RotatingUser,
		"PRESENCE_NATS_PASSWORD=pw-1",
		"PRESENCE_WORKER_ID=w-refused",
		"PRESENCE_WORKER_LEASE=3s",
		"PRESENCE_HTTP_LISTEN=",
	})
	const agent = "sip:refused@attendant.example"
	ucc := client.New(connect(t, n.URL())) // the configuration's other user, without credentials
	// input may be sent again after no answer: the same presence twice.
	input := func(avail string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rep, err := ucc.Attendant(ctx, schemas.Key(agent), schemas.AttendantInput{Availability: avail})
		return err == nil && rep.OK
	}
	if !input("Away") {
		t.Fatal("the provider did not store an input before the rotation")
	}

	n.RestartWith(second)
	provtest.Eventually(t, "the fence, saying NATS refuses the credentials", func() bool {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			if strings.Contains(line, "cannot reach NATS: fenced") && strings.Contains(strings.ToLower(line), "authorization violation") {
				return true
			}
		}
		return false
	})
	if c := strings.Count(d.logs.String(), "NATS refuses to take this process back"); c != 1 {
		t.Errorf("the refusal was logged %d times; want once", c)
	}
	if strings.Contains(d.logs.String(), "pw-1") {
		t.Error("the password is in the logs")
	}

	n.RestartWith(first)
	provtest.Eventually(t, "the worker back", func() bool { return strings.Contains(d.logs.String(), "NATS reachable again; taking agents back") })
	provtest.Eventually(t, "an input stored after the rotation back", func() bool { return input("Busy") })
	select {
	case err := <-d.done:
		t.Fatalf("presenced exited: %v", err)
	default:
	}
}
