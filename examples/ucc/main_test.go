package main

import (
	"context"
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

// The example UCC, run against an embedded provider, follows its agents'
// presence and prints who is routable as it changes.
func TestUCCPrintsWhoIsRoutable(t *testing.T) {
	env := provtest.StartReal(t, provtest.Config(), func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`@attendant\.example$`)}))
	})
	const a1, a2 = "sip:a1@attendant.example", "sip:a2@attendant.example"
	set := func(uri, availability string) {
		t.Helper()
		if _, err := env.Client.Attendant(env.Ctx(), schemas.Key(uri), schemas.AttendantInput{Availability: availability}); err != nil {
			t.Fatal(err)
		}
	}
	set(a1, "Available")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errs := &provtest.Logs{}, &provtest.Logs{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", env.Server.ClientURL(), "-ucc", "ucc_example", a1, a2}, out, errs)
	}()
	waitLine := func(line string) {
		t.Helper()
		provtest.Eventually(t, "the UCC prints "+line, func() bool { return strings.Contains(out.String(), line+"\n") })
	}
	waitLine("routable: " + a1)
	// The provider counts interests as its watch of them delivers them,
	// which may trail the subscribe's reply.
	provtest.Eventually(t, "the provider counts the UCC's two interests", func() bool {
		st, err := env.Client.Status(env.Ctx())
		return err == nil && st.Interests == 2
	})
	set(a2, "AvailableIdle")
	waitLine("routable: " + a1 + " " + a2)
	set(a1, "Busy")
	waitLine("routable: " + a2)
	set(a2, "Offline")
	waitLine("routable: nobody")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the UCC ended with %v; stderr %s", err, errs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the UCC did not stop")
	}
	want := strings.Join([]string{"routable: " + a1, "routable: " + a1 + " " + a2, "routable: " + a2, "routable: nobody"}, "\n") + "\n"
	if out.String() != want {
		t.Fatalf("the UCC printed %q; want %q", out.String(), want)
	}
}
