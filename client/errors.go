package client

import (
	"errors"

	"github.com/contactcenter/presence-provider/schemas"
)

// Error is an error the provider answered (docs/contract.md, Error codes):
// a request or input refused as a whole, or one failed entry of a reply.
// Match the code with errors.Is and a sentinel below:
//
//	if errors.Is(err, client.ErrInvalidURI) { ... }
//
// and read the rest with errors.As.
type Error struct {
	// Code is stable; Message names what was wrong and may change.
	Code    string
	Message string
	// URI is the failed entry's URI as given; empty for a whole request.
	URI string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.URI == "" && t.Code == e.Code
}

// The sentinels of the contract's error codes, for errors.Is.
var (
	ErrBadRequest        = &Error{Code: schemas.CodeBadRequest}
	ErrInvalidURI        = &Error{Code: schemas.CodeInvalidURI}
	ErrInvalidTeamsUPN   = &Error{Code: schemas.CodeInvalidUPN}
	ErrNotAttendantAgent = &Error{Code: schemas.CodeNotAttendantAgent}
	ErrNotPSTNAgent      = &Error{Code: schemas.CodeNotPSTNAgent}
	ErrInvalidInput      = &Error{Code: schemas.CodeInvalidInput}
	ErrInternal          = &Error{Code: schemas.CodeInternal}
	// ErrUnavailable: NATS JetStream had no leader in time (a cluster
	// electing one); the message says how many seconds to wait.
	ErrUnavailable = &Error{Code: schemas.CodeUnavailable}
)

func fromWire(e *schemas.Error, uri string) *Error {
	return &Error{Code: e.Code, Message: e.Message, URI: uri}
}

// EntryError is the error of one reply entry, or nil when it succeeded.
func EntryError(r schemas.AgentResult) error {
	if r.Error == nil {
		return nil
	}
	return fromWire(r.Error, r.URI)
}

// Failed joins the errors of a reply's failed entries (each an *Error), or
// is nil when every entry succeeded.
func Failed(rep schemas.AgentsReply) error {
	var errs []error
	for _, r := range rep.Agents {
		if err := EntryError(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
