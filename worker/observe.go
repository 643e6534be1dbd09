package worker

import (
	"errors"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// Observer is told what the worker does, for metrics. It is called on the
// paths of requests and inputs, so it must be quick and never block. Every
// label it is given is one of the few names below or a source's name: never
// an agent's URI or UPN.
type Observer interface {
	// Request is one presence.api request answered, by endpoint.
	Request(endpoint string, result Result)
	// Input is one input of a fed source handled by this worker.
	Input(source string, result Result)
	// Published is an event published on presence.<key> by its source;
	// sinceObserved is the time from the source's observation to the
	// publication, negative for an event published again or one whose
	// observation time is unknown.
	Published(source string, sinceObserved time.Duration)
	// Subscribe is one outcome of an upstream subscription attempt.
	Subscribe(source string, result Result)
	// Lost is an upstream subscription the source ended unasked.
	Lost(source string, reason Result)
}

// Result is the outcome of a request, input, subscribe attempt or the
// reason of a lost subscription: the fixed set of metric label values.
type Result string

// Outcomes of requests and inputs.
const (
	ResultOK       Result = "ok"
	ResultRejected Result = "rejected" // the caller's error (docs/contract.md, Error codes)
	ResultError    Result = "error"    // the provider failed to handle it
)

// InputSourceUnknown stands for the source of an input sent to a source
// that does not exist: the subject's name is not a label.
const InputSourceUnknown = "unknown"

// Outcomes of upstream subscription attempts.
const (
	SubscribeOK      Result = "ok"
	SubscribeResumed Result = "resumed" // a subscription left by an earlier holder continued
	SubscribeFailed  Result = "failed"  // the attempt failed; the agent backs off
	SubscribeRetry   Result = "retry"   // the back-off ended: a new attempt is queued
	SubscribeGaveUp  Result = "gave_up" // too many failures, or a permanent one
)

// Reasons an upstream subscription ended unasked.
const (
	LostTerminated Result = "terminated"  // the server ended it and asked for a new one
	LostSourceDown Result = "source_down" // the source itself is down (no endpoint, no account)
	LostRejected   Result = "rejected"    // a failure retrying cannot mend
	LostError      Result = "error"       // any other failure
)

// Endpoints of requests, as Observer.Request names them.
const (
	EndpointSubscribe   = "subscribe"
	EndpointUnsubscribe = "unsubscribe"
	EndpointSync        = "sync"
	EndpointGet         = "get"
	EndpointStatus      = "status"
)

// Endpoints is every endpoint Observer.Request names.
var Endpoints = []string{EndpointSubscribe, EndpointUnsubscribe, EndpointSync, EndpointGet, EndpointStatus}

// nopObserver observes nothing: the default.
type nopObserver struct{}

func (nopObserver) Request(string, Result)          {}
func (nopObserver) Input(string, Result)            {}
func (nopObserver) Published(string, time.Duration) {}
func (nopObserver) Subscribe(string, Result)        {}
func (nopObserver) Lost(string, Result)             {}

// requestResult is the outcome of a request that returned err.
func requestResult(err error) Result {
	var e *schemas.Error
	switch {
	case err == nil:
		return ResultOK
	case errors.As(err, &e) && e.Code != schemas.CodeInternal:
		return ResultRejected
	}
	return ResultError
}

// lostReason is why an upstream subscription ended, from the source's error.
func lostReason(err error) Result {
	var permanent *sources.PermanentError
	switch {
	case err == nil || errors.Is(err, sources.ErrTerminated):
		return LostTerminated
	case errors.Is(err, sources.ErrSourceDown):
		return LostSourceDown
	case errors.As(err, &permanent):
		return LostRejected
	}
	return LostError
}
