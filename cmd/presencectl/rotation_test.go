package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// watch runs as a user whose password the server changes, and back: it
// says once on stderr that NATS refuses it, and when the password works
// again it prints the change it could not hear and the next one.
func TestWatchRecoversFromAPasswordRotation(t *testing.T) {
	first, second := provtest.RotatingUserConfig(t, "pw-1"), provtest.RotatingUserConfig(t, "pw-2")
	n := provtest.StartNATSWith(t, first)
	env := provtest.Join(t, n.URL(), provtest.Config(), clockwork.NewRealClock(), func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`@attendant\.example$`)}))
	})
	const agent = "sip:rotated@attendant.example"
	away := env.AttendantOnceUp(agent, "Away")

	t.Setenv("PRESENCE_NATS_USER", provtest.RotatingUser)
	t.Setenv("PRESENCE_NATS_PASSWORD", "pw-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errs := &provtest.Logs{}, &provtest.Logs{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-nats", n.URL(), "watch", agent}, out, errs) }()
	provtest.Eventually(t, "the current presence", func() bool { return strings.Contains(out.String(), fmt.Sprintf("seq=%d now Away", away)) })

	n.RestartWith(second)
	const refusal = "presencectl watch: NATS still out of reach: nats: Authorization Violation; retrying"
	provtest.Eventually(t, "the watch to say NATS refuses it", func() bool { return strings.Contains(errs.String(), refusal) })
	busy := env.AttendantOnceUp(agent, "Busy")
	n.RestartWith(first)
	provtest.Eventually(t, "the change made while refused", func() bool { return strings.Contains(out.String(), fmt.Sprintf("seq=%d now Busy", busy)) })
	available := env.AttendantOnceUp(agent, "Available")
	provtest.Eventually(t, "the next change", func() bool {
		return strings.Contains(out.String(), fmt.Sprintf("seq=%d Busy (6500) -> Available", available))
	})
	if c := strings.Count(errs.String(), refusal); c != 1 {
		t.Errorf("the refusal was told %d times; want once:\n%s", c, errs.String())
	}
	if c := strings.Count(errs.String(), "presencectl: nats: authorization violation"); c != 1 {
		t.Errorf("the connection's error was printed %d times; want once:\n%s", c, errs.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("interrupted watch exited %d: %s", code, errs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on interrupt")
	}
	t.Logf("stderr:\n%s", errs.String())
}
