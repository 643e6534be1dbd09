package schemas

import "errors"

// Error codes, as they appear in replies (docs/contract.md, Error codes).
const (
	CodeBadRequest        = "bad_request"
	CodeInvalidURI        = "invalid_uri"
	CodeInvalidUPN        = "invalid_teams_upn"
	CodeNotAttendantAgent = "not_attendant_agent"
	CodeNotPSTNAgent      = "not_pstn_agent"
	CodeInvalidInput      = "invalid_input"
	CodeInternal          = "internal"
	// CodeOverloaded refuses an input the durable input queue has no room for.
	CodeOverloaded = "overloaded"
	// CodeUnavailable refuses what met no NATS JetStream leader in time (a
	// cluster electing one); its message says how many seconds to wait.
	CodeUnavailable = "unavailable"
)

// Error is an error a caller can act on: a stable code and a message that
// names what was wrong.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// AsError makes any error an error of docs/contract.md (Error codes): one
// that is keeps its code, any other is internal, with its text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
