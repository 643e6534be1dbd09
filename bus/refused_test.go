package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// The provider's connection to an external NATS whose server stops taking
// its password (restarted with another one), then takes it again: the
// connection does not close, the beats fail saying that NATS refuses the
// credentials, the refusal is logged once, not at every attempt, and the
// beats succeed again once the password works.
func TestConnectionOutlivesRefusedCredentials(t *testing.T) {
	first, second := provtest.RotatingUserConfig(t, "pw-1"), provtest.RotatingUserConfig(t, "pw-2")
	n := provtest.StartNATSWith(t, first)
	auth, err := client.AuthOptions(config.NATSAuth{User: provtest.RotatingUser, Password: "pw-1"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &provtest.Logs{}
	conn, err := bus.Connect(n.URL(), nil, "refused-test", zerolog.New(logs), auth...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stores, err := conn.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	me := schemas.WorkerInfo{ID: "w-refused", Started: time.Now().UTC()}
	beat := func() error {
		bctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return stores.Workers.Beat(bctx, me)
	}
	if err := beat(); err != nil {
		t.Fatal(err)
	}

	n.RestartWith(second)
	var refused error
	provtest.Eventually(t, "a beat that says NATS refuses the credentials", func() bool {
		refused = beat()
		return errors.Is(refused, nats.ErrAuthorization)
	})
	if !strings.Contains(refused.Error(), "NATS refuses the connection") {
		t.Errorf("beat failed with %v; want it to say NATS refuses the connection", refused)
	}
	// Several attempts to reconnect later, still one line.
	reconnects := conn.NC.Stats().Reconnects
	provtest.Eventually(t, "more attempts to reconnect", func() bool { return beat() != nil && conn.NC.Stats().Reconnects >= reconnects+3 })
	if lines := strings.Count(logs.String(), "NATS refuses to take this process back"); lines != 1 {
		t.Errorf("the refusal was logged %d times; want once:\n%s", lines, logs.String())
	}
	if conn.NC.IsClosed() {
		t.Fatal("the connection closed for good on refused credentials")
	}

	n.RestartWith(first)
	provtest.Eventually(t, "a beat once the password works again", func() bool { return beat() == nil })
	// The reconnect handler runs after the beat may have succeeded.
	provtest.Eventually(t, "the refusal forgotten", func() bool { return conn.Refused() == nil })
}
