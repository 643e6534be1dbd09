package siptest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// message is a parsed SIP message: just enough SIP for the helpers and the
// self-tests, which must not depend on the SIP stack under test.
type message struct {
	method  string // request method; "" for a response
	uri     string // request URI
	status  int    // response code; 0 for a request
	reason  string
	headers []header // in order, names as received
	body    string
}

type header struct{ name, value string }

// compactForms maps RFC 3261 compact header names to the full ones.
var compactForms = map[string]string{
	"i": "Call-ID", "f": "From", "t": "To", "v": "Via", "m": "Contact",
	"l": "Content-Length", "c": "Content-Type", "o": "Event", "k": "Supported",
	"u": "Allow-Events", "e": "Content-Encoding",
}

func canonical(name string) string {
	if full, ok := compactForms[strings.ToLower(name)]; ok {
		return strings.ToLower(full)
	}
	return strings.ToLower(name)
}

// get returns the first value of a header ("" if absent).
func (m *message) get(name string) string {
	name = canonical(name)
	for _, h := range m.headers {
		if canonical(h.name) == name {
			return h.value
		}
	}
	return ""
}

func (m *message) String() string {
	var b strings.Builder
	if m.status != 0 {
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", m.status, m.reason)
	} else {
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.method, m.uri)
	}
	for _, h := range m.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
	}
	b.WriteString("\r\n")
	b.WriteString(m.body)
	return b.String()
}

// parseMessage parses one datagram.
func parseMessage(data []byte) (*message, error) {
	return readMessage(bufio.NewReader(strings.NewReader(string(data))))
}

// readMessage reads one message from a stream (TCP) or a datagram. The body
// length comes from Content-Length, which SIP over TCP requires.
func readMessage(r *bufio.Reader) (*message, error) {
	tp := textproto.NewReader(r)
	var start string
	for start == "" { // skip CRLF keep-alives between messages
		line, err := tp.ReadLine()
		if err != nil {
			return nil, err
		}
		start = strings.TrimSpace(line)
	}
	m := &message{}
	if rest, ok := strings.CutPrefix(start, "SIP/2.0 "); ok {
		code, reason, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(code)
		if err != nil {
			return nil, fmt.Errorf("bad status line %q", start)
		}
		m.status, m.reason = n, reason
	} else {
		f := strings.Fields(start)
		if len(f) != 3 || f[2] != "SIP/2.0" {
			return nil, fmt.Errorf("bad start line %q", start)
		}
		m.method, m.uri = f[0], f[1]
	}
	for {
		line, err := tp.ReadContinuedLine()
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		m.headers = append(m.headers, header{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", cl)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		m.body = string(body)
	}
	return m, nil
}

// newRequest builds a request; Content-Length is always added because
// Kamailio answers a PUBLISH without it with 400 and TCP needs it anyway.
func newRequest(method, uri string, headers []header, body string) *message {
	m := &message{method: method, uri: uri, headers: headers, body: body}
	m.headers = append(m.headers, header{"Content-Length", strconv.Itoa(len(body))})
	return m
}

// newResponse builds a response to req, copying the headers that RFC 3261
// section 8.2.6.2 says a response copies.
func newResponse(req *message, status int, reason string, extra ...header) *message {
	resp := &message{status: status, reason: reason}
	for _, h := range req.headers {
		switch canonical(h.name) {
		case "via", "from", "to", "call-id", "cseq":
			resp.headers = append(resp.headers, h)
		}
	}
	resp.headers = append(resp.headers, extra...)
	resp.headers = append(resp.headers, header{"Content-Length", "0"})
	return resp
}

// headerParam returns the value of parameter name in a header value such as
// `<sip:a@b>;tag=x` or `active;expires=60` ("" if absent).
func headerParam(value, name string) string {
	if i := strings.LastIndexByte(value, '>'); i >= 0 {
		value = value[i+1:] // skip URI parameters inside <...>
	}
	for _, p := range strings.Split(value, ";")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// randomToken returns a fresh hex token for tags, branches and Call-IDs.
func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
