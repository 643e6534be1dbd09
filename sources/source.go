// Package sources defines what a presence source is, and which source serves
// an agent. Each source lives in its own folder and knows nothing of NATS.
package sources

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

// Agent is what a source knows of an agent.
type Agent struct {
	URI      string
	Key      string
	TeamsUPN string
}

// Sink receives what sources observe. The worker implements it; a source may
// call it from any goroutine.
type Sink interface {
	// Observe reports the agent's presence as the source sees it now.
	Observe(a Agent, p schemas.Presence)
	// Lost reports that an upstream subscription ended without the worker
	// asking. A nil or ErrTerminated error asks for a new subscription at
	// once; any other error is a failure for the back-off.
	Lost(a Agent, err error)
}

// Source keeps upstream subscriptions to one presence system.
type Source interface {
	// Subscribe returns once the agent's upstream subscription is up, or
	// with the reason it could not be made.
	Subscribe(ctx context.Context, a Agent) error
	// Unsubscribe ends the agent's upstream subscription.
	Unsubscribe(ctx context.Context, a Agent) error
	// Serves is the source's routing rule: whether it serves the agent,
	// given the Teams UPN its UCCs gave ("" for none).
	Serves(uri schemas.AgentURI, teamsUPN string) bool
	Health() Health
}

// Runner is a source with work of its own (timers, connections, polling);
// the worker runs it until ctx ends.
type Runner interface {
	Run(ctx context.Context) error
}

// Resumer is a source whose upstream subscription outlives the worker that
// made it: the next holder of the agent (after a handover, a death, a
// restart) continues it rather than making a new one, and a holder that
// lets the agent go detaches rather than ending it.
type Resumer interface {
	Source
	// Resume continues the agent's upstream subscription left by an
	// earlier holder. Any error means there is none to continue: the
	// worker subscribes anew through the throttle. ErrNothingToResume
	// says nothing was tried.
	Resume(ctx context.Context, a Agent) error
	// Detach lets the agent's subscription go without ending it upstream,
	// for the next holder to resume; it returns once this source sends
	// nothing more in it. A subscription the next holder could not resume
	// (what it needs was never recorded as it stands) is ended instead:
	// left upstream, it would live beside the next holder's new one.
	Detach(ctx context.Context, a Agent) error
}

// ErrNothingToResume is a Resume that found no subscription to continue (none
// kept, or expired).
var ErrNothingToResume = errors.New("no upstream subscription to resume")

// Fed is a source fed by inputs on presence.in.<name>.<key> (AttendantService,
// PSTN) rather than by upstream subscriptions: it needs neither a claim nor
// the throttle. Input turns one input body into the agent's presence, storing
// what the source keeps of it first; a rejected input is a *schemas.Error.
type Fed interface {
	Source
	Input(ctx context.Context, a Agent, body []byte) (schemas.Presence, error)
}

// Current is a source whose view of an agent changes on several goroutines
// (its inputs, and a store it watches): the worker asks it for the agent's
// presence as it stores one, one store of an agent at a time, so that an
// older view is never stored over a newer one.
type Current interface {
	Current(a Agent) schemas.Presence
}

// Explainer is a source that says its routing rule in words, for
// presence.api.explain.
type Explainer interface {
	// Why says why the source serves an agent it Serves.
	Why(uri schemas.AgentURI, teamsUPN string) string
}

// Describer is a source that tells what it holds upstream for an agent, for
// presence.api.explain: it fills in its own part of u (SIP, Graph).
type Describer interface {
	Describe(a Agent, u *schemas.Upstream)
}

// Health is how a source stands, for presence.api.status.
type Health struct {
	Healthy bool
	Detail  string
	Stats   map[string]any
}

// EndpointReporter is a source with endpoints (SIP) whose state is read at
// scrape time, for metrics.
type EndpointReporter interface {
	// Endpoints tells how each endpoint stands, in configured order.
	Endpoints() []EndpointStats
}

// EndpointStats is how one endpoint stands, for metrics.
type EndpointStats struct {
	// Name is the endpoint's configured name (application, user).
	Name string
	Up   bool
	// Dialogs counts the subscription dialogs held on it.
	Dialogs int
}

// AccountReporter is a source with accounts (Graph) whose state is read at
// scrape time, for metrics.
type AccountReporter interface {
	// Accounts tells how each account stands, in configured order.
	Accounts() []AccountStats
}

// AccountStats is how one account stands, for metrics.
type AccountStats struct {
	// ID is the account's configured id.
	ID string
	// Requests counts the requests made since the start, by the HTTP
	// status of the answer; 0 counts those that got no answer.
	Requests map[int]uint64
	// BudgetUsed is the part of the account's request budget spent in its
	// window.
	BudgetUsed float64
	// LastCycle is how long the last poll of all the account's agents took.
	LastCycle time.Duration
}

// ErrTerminated is an upstream subscription ended by the server in a way that
// asks for a new one at once (a timeout, a deactivated subscription).
var ErrTerminated = errors.New("subscription terminated upstream")

// ErrSourceDown marks a failure of the source itself (no SIP endpoint up, a
// Graph account that keeps failing): the agent backs off, but the failure
// does not count toward giving the agent up, and the source calls the agent
// back (Lost with ErrTerminated) once it is up again.
var ErrSourceDown = errors.New("presence source down")

// RetryAfterError is a failure whose server said when to try again.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// PermanentError is a failure that retrying cannot mend (an unknown user):
// the agent is failed at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }

func (e *PermanentError) Unwrap() error { return e.Err }
