// Package schemas is the single truth for what crosses the wire: the JSON
// types of docs/contract.md, its error codes, agent URIs and keys, and the
// JSON Schema files that describe every message.
package schemas

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode"
)

// MaxURIBytes is the longest agent URI accepted (docs/contract.md, Agent URIs).
const MaxURIBytes = 512

// AgentURI is a normalised agent URI and whether it names a PSTN number.
type AgentURI struct {
	URI string
	// PSTN is true for tel:+E164, and for sip:+E164@host;user=phone. The
	// second form loses its parameters in normalising, so the flag is the
	// only record of it.
	PSTN bool
}

// Key is the agent's KV key and subject token.
func (a AgentURI) Key() string { return Key(a.URI) }

// Key returns base64url (no padding) of a normalised URI or UCC id: one subject
// token and a valid KV key, since '@', ':' and '+' are refused in both.
func Key(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// ParseURI normalises an agent URI as docs/contract.md, Agent URIs says. Every
// rejection is an *Error with code invalid_uri. Case folding is ASCII only,
// and text CheckText refuses is refused.
func ParseURI(raw string) (AgentURI, error) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return AgentURI{}, invalidURI(raw, "it is empty")
	case len(s) > MaxURIBytes:
		return AgentURI{}, invalidURI(raw, fmt.Sprintf("it is longer than %d bytes", MaxURIBytes))
	}
	if err := CheckText("it", s); err != nil {
		return AgentURI{}, invalidURI(raw, err.Error())
	}
	var u AgentURI
	var err error
	switch scheme, rest := splitScheme(s); scheme {
	case "sip", "sips":
		u, err = parseSIP(raw, rest)
	case "tel":
		u, err = parseTel(raw, rest)
	default:
		return AgentURI{}, invalidURI(raw, fmt.Sprintf("scheme %q is not sip, sips or tel", scheme))
	}
	// Lower-casing can lengthen text and "sip:" is added to bare forms: the
	// limit holds for what is stored, not only for what was given.
	if err == nil && len(u.URI) > MaxURIBytes {
		return AgentURI{}, invalidURI(raw, fmt.Sprintf("normalised it is longer than %d bytes", MaxURIBytes))
	}
	return u, err
}

// splitScheme finds the scheme; bare "user@host" is sip and bare "+digits" is tel.
func splitScheme(s string) (scheme, rest string) {
	colon := strings.IndexByte(s, ':')
	at := strings.IndexByte(s, '@')
	switch {
	case strings.HasPrefix(s, "+"):
		return "tel", s
	case colon < 0 || (at >= 0 && at < colon):
		// No colon, or the colon belongs to a port after the host.
		if at >= 0 {
			return "sip", s
		}
		return "", s
	default:
		return ASCIILower(s[:colon]), s[colon+1:]
	}
}

func parseSIP(raw, rest string) (AgentURI, error) {
	// Headers (?...) come after parameters (;...): a ";" inside them is no parameter.
	rest, _, _ = strings.Cut(rest, "?")
	addr, params, _ := strings.Cut(rest, ";")
	user, host, ok := strings.Cut(addr, "@")
	switch {
	case !ok || host == "":
		return AgentURI{}, invalidURI(raw, "it has no host")
	case user == "":
		return AgentURI{}, invalidURI(raw, "it has no user")
	case strings.ContainsFunc(addr, unicode.IsSpace) || strings.ContainsAny(addr, "<>\""):
		return AgentURI{}, invalidURI(raw, "it contains white space or <>\"")
	}
	uri := "sip:" + ASCIILower(addr)
	pstn := isE164(user) && hasParam(params, "user", "phone")
	return AgentURI{URI: uri, PSTN: pstn}, nil
}

func parseTel(raw, rest string) (AgentURI, error) {
	number, _, _ := strings.Cut(rest, ";")
	number = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -.()", r) {
			return -1
		}
		return r
	}, number)
	if !isE164(number) {
		return AgentURI{}, invalidURI(raw, "a tel URI must be + and 1 to 15 digits (E.164)")
	}
	return AgentURI{URI: "tel:" + number, PSTN: true}, nil
}

func isE164(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	if !ok || len(digits) < 1 || len(digits) > 15 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func hasParam(params, name, value string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if asciiEqualFold(strings.TrimSpace(k), name) && asciiEqualFold(strings.TrimSpace(v), value) {
			return true
		}
	}
	return false
}

func invalidURI(raw, why string) *Error {
	return &Error{Code: CodeInvalidURI, Message: fmt.Sprintf("uri %q: %s", truncate(raw, 80), why)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
