package worker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
	"github.com/contactcenter/presence-provider/worker"
)

// resumer is a scripted source whose subscriptions a next holder resumes:
// those it made or resumed, and not ended, are kept upstream.
type resumer struct {
	*scripted
	kept     map[string]bool // upstream, for a next holder
	resumed  []string
	detached []string
	// claimed reports, at each Detach, whether the agent's claim was held.
	claimed   func(a sources.Agent) bool
	heldAtLet int
	resumeErr error
}

func (r *resumer) Resume(_ context.Context, a sources.Agent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumed = append(r.resumed, a.URI)
	if r.resumeErr != nil {
		return r.resumeErr
	}
	if !r.kept[a.URI] {
		return sources.ErrNothingToResume
	}
	r.up[a.URI] = true
	return nil
}

func (r *resumer) Detach(_ context.Context, a sources.Agent) error {
	held := r.claimed != nil && r.claimed(a)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.detached = append(r.detached, a.URI)
	r.kept[a.URI] = r.up[a.URI]
	delete(r.up, a.URI)
	if held {
		r.heldAtLet++
	}
	return nil
}

func (r *resumer) lists() (resumed, detached, ended []string, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resumed), slices.Clone(r.detached), slices.Clone(r.ended), len(r.attempts)
}

func startResumer(t *testing.T, cfg worker.Config, kept ...string) (*provtest.Env, *resumer) {
	t.Helper()
	cfg.Resume = true
	var src *resumer
	env := provtest.Start(t, cfg, func(w *worker.Worker, clock clockwork.Clock) {
		src = &resumer{scripted: newScripted(clock), kept: map[string]bool{}}
		for _, uri := range kept {
			src.kept[uri] = true
		}
		w.AddSource(schemas.SourceSIP, src)
	})
	return env, src
}

// An agent whose subscription an earlier holder kept is resumed, not
// subscribed; one with none is subscribed through the throttle.
func TestTakingAnAgentResumesFirst(t *testing.T) {
	env, src := startResumer(t, provtest.Config(), "sip:kept@d.com")
	env.Subscribe("ucc_app01", "sip:kept@d.com", "sip:new@d.com")
	env.AdvanceUntil("both active", func() bool {
		return env.State("sip:kept@d.com") == schemas.StateActive && env.State("sip:new@d.com") == schemas.StateActive
	})
	resumed, _, _, _ := src.lists()
	slices.Sort(resumed)
	if attempts := src.attemptList(); len(attempts) != 1 || attempts[0].uri != "sip:new@d.com" ||
		!slices.Equal(resumed, []string{"sip:kept@d.com", "sip:new@d.com"}) {
		t.Fatalf("subscribed %v, resumed %v; want both resumed first, only the new one subscribed", attempts, resumed)
	}
}

// A stop lets wanted subscriptions go under the claim, to be resumed; it
// un-SUBSCRIBEs nothing. The next run of the worker resumes them all.
func TestStopKeepsSubscriptionsForTheSuccessor(t *testing.T) {
	env, src := startResumer(t, provtest.Config())
	uris := []string{"sip:a@d.com", "sip:b@d.com"}
	src.claimed = func(a sources.Agent) bool {
		_, _, found, _ := env.Stores.Claims.Get(context.Background(), a.Key)
		return found
	}
	env.Subscribe("ucc_app01", uris...)
	env.AdvanceUntil("both active", func() bool {
		return env.State(uris[0]) == schemas.StateActive && env.State(uris[1]) == schemas.StateActive
	})
	env.Stop()
	_, detached, ended, _ := src.lists()
	if len(detached) != 2 || len(ended) != 0 || src.heldAtLet != 2 {
		t.Fatalf("stop detached %v (claim held %d times), ended %v; want both let go under their claims, none ended", detached, src.heldAtLet, ended)
	}
	for _, uri := range uris {
		if _, found := claimOf(t, env, uri); found {
			t.Fatalf("claim of %s survived a clean stop", uri)
		}
	}
}

// A resume that fails (the server restarted) subscribes anew.
func TestFailedResumeSubscribesAnew(t *testing.T) {
	env, src := startResumer(t, provtest.Config())
	const uri = "sip:a@d.com"
	src.mu.Lock()
	src.resumeErr = errors.New("481 Call/Transaction Does Not Exist")
	src.mu.Unlock()
	env.Subscribe("ucc_app01", uri)
	env.AdvanceUntil("active", func() bool { return env.State(uri) == schemas.StateActive })
	if resumed, _, _, attempts := src.lists(); len(resumed) != 1 || attempts != 1 {
		t.Fatalf("resumed %v, subscribed %d times; want the failed resume, then one subscribe", resumed, attempts)
	}
}

// Nobody wants the agent any more: its subscription is ended, not kept.
func TestUnwantedSubscriptionIsEndedNotKept(t *testing.T) {
	cfg := provtest.Config()
	cfg.Linger = time.Second
	env, src := startResumer(t, cfg)
	const uri = "sip:a@d.com"
	env.Subscribe("ucc_app01", uri)
	env.AdvanceUntil("active", func() bool { return env.State(uri) == schemas.StateActive })
	if _, err := env.Client.Unsubscribe(env.Ctx(), schemas.UnsubscribeRequest{UCC: "ucc_app01", URIs: []string{uri}}); err != nil {
		t.Fatal(err)
	}
	env.AdvanceUntil("ended after the linger", func() bool {
		_, _, ended, _ := src.lists()
		return len(ended) == 1
	})
	if _, detached, _, _ := src.lists(); len(detached) != 0 {
		t.Fatalf("detached %v; want an unwanted subscription ended", detached)
	}
}
