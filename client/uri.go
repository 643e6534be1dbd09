package client

import (
	"errors"

	"github.com/contactcenter/presence-provider/schemas"
)

// URI is a normalised agent URI and whether it names a PSTN number.
type URI = schemas.AgentURI

// ParseURI normalises an agent URI as the provider does (docs/contract.md,
// Agent URIs); a refusal is an *Error matching ErrInvalidURI.
func ParseURI(raw string) (URI, error) {
	u, err := schemas.ParseURI(raw)
	var wire *schemas.Error
	if errors.As(err, &wire) {
		return u, fromWire(wire, raw)
	}
	return u, err
}

// Key normalises an agent URI and returns its key: the token of its event
// subject presence.<key> and of its input subjects.
func Key(raw string) (string, error) {
	u, err := ParseURI(raw)
	if err != nil {
		return "", err
	}
	return u.Key(), nil
}
