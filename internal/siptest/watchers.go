package siptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Subscription is one subscription dialog held by Kamailio: a row of its
// active_watchers table.
type Subscription struct {
	Presentity string // presentity URI: the SUBSCRIBE's request URI
	Watcher    string // sip:user@domain of the SUBSCRIBE's From
	Event      string // "presence"
	CallID     string
	FromTag    string // the subscriber's tag
	ToTag      string // Kamailio's tag
	Contact    string // where Kamailio sends the NOTIFYs
	Expires    time.Time
}

// Subscriptions lists the subscription dialogs Kamailio holds, expired ones
// not yet cleaned up (within about a second) included.
//
// Kamailio 5.6 has no RPC that lists presence subscriptions, so the list is
// read from the active_watchers db_text table: the server writes it through
// on every SUBSCRIBE before answering (subs_db_mode 1), and the db_text.dump
// RPC flushes it to its file just before it is read. The list is thus exact
// for every SUBSCRIBE that has been answered.
func (k *Kamailio) Subscriptions(t testing.TB) []Subscription {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.rpc("db_text.dump"); err != nil {
		t.Fatalf("siptest: kamailio RPC db_text.dump: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(k.dir, "db", "active_watchers"))
	if err != nil {
		t.Fatalf("siptest: reading active_watchers: %v", err)
	}
	subs, err := parseActiveWatchers(string(data))
	if err != nil {
		t.Fatalf("siptest: parsing active_watchers: %v", err)
	}
	return subs
}

// ActiveWatchers counts the unexpired presence subscriptions to presentity
// (a URI such as sip:agent@example.com): the number of subscription dialogs
// Kamailio would NOTIFY when the presentity publishes.
func (k *Kamailio) ActiveWatchers(t testing.TB, presentity string) int {
	t.Helper()
	now := time.Now()
	n := 0
	for _, s := range k.Subscriptions(t) {
		if s.Presentity == presentity && s.Event == "presence" && s.Expires.After(now) {
			n++
		}
	}
	return n
}

// rpc calls a Kamailio RPC command through jsonrpcs over HTTP and returns its
// result. The connection is closed after each call so that none outlives a
// restart.
func (k *Kamailio) rpc(method string, params ...any) (json.RawMessage, error) {
	if k.proc == nil {
		return nil, fmt.Errorf("kamailio is stopped")
	}
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+k.Addr()+"/RPC", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Close = true
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: HTTP %s: %w", method, resp.Status, err)
	}
	if out.Error != nil {
		return nil, fmt.Errorf("%s: error %d: %s", method, out.Error.Code, out.Error.Message)
	}
	return out.Result, nil
}

// parseActiveWatchers parses a db_text table file: a header line of
// name(type) column definitions, then one row per line with the columns
// separated by ':' and ':' '\' and line breaks escaped with '\'.
func parseActiveWatchers(data string) ([]Subscription, error) {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return nil, fmt.Errorf("no header line")
	}
	col := map[string]int{}
	for i, def := range strings.Fields(lines[0]) {
		name, _, _ := strings.Cut(def, "(")
		col[name] = i
	}
	for _, name := range []string{"presentity_uri", "watcher_username", "watcher_domain", "event",
		"callid", "from_tag", "to_tag", "contact", "expires"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("no column %s in %q", name, lines[0])
		}
	}
	var subs []Subscription
	for _, line := range lines[1:] {
		if line == "" {
			continue
		}
		f := splitDBTextRow(line)
		if len(f) < len(col) {
			return nil, fmt.Errorf("short row %q", line)
		}
		exp, err := strconv.ParseInt(f[col["expires"]], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad expires in row %q", line)
		}
		subs = append(subs, Subscription{
			Presentity: f[col["presentity_uri"]],
			Watcher:    "sip:" + f[col["watcher_username"]] + "@" + f[col["watcher_domain"]],
			Event:      f[col["event"]],
			CallID:     f[col["callid"]],
			FromTag:    f[col["from_tag"]],
			ToTag:      f[col["to_tag"]],
			Contact:    f[col["contact"]],
			Expires:    time.Unix(exp, 0),
		})
	}
	return subs, nil
}

func splitDBTextRow(line string) []string {
	var fields []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			switch line[i] {
			case 'n':
				cur.WriteByte('\n')
			case 'r':
				cur.WriteByte('\r')
			case 't':
				cur.WriteByte('\t')
			case '0':
				cur.WriteByte(0)
			default:
				cur.WriteByte(line[i])
			}
		case c == ':':
			fields = append(fields, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(fields, cur.String())
}

// Connection is one TCP or TLS connection Kamailio holds.
type Connection struct {
	Type string `json:"type"` // "TCP", "TLS"
	// Kamailio names the far end src and its own dst, whichever side
	// opened the connection.
	SrcIP   string `json:"src_ip"`
	SrcPort int    `json:"src_port"`
	DstIP   string `json:"dst_ip"`
	DstPort int    `json:"dst_port"`
}

// Connections lists the TCP and TLS connections Kamailio holds (the RPC's
// own included).
func (k *Kamailio) Connections(t testing.TB) []Connection {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	out, err := k.rpc("core.tcp_list")
	if err != nil {
		t.Fatalf("siptest: %v", err)
	}
	var conns []Connection
	if err := json.Unmarshal(out, &conns); err != nil {
		t.Fatalf("siptest: core.tcp_list: %v", err)
	}
	return conns
}
