package slogzero_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/slogzero"
)

// TestLinesAreZerologJSON logs through slog at every level and with the
// kinds of attributes sipgo uses: each line that passes zerolog's level is
// one JSON object with the attributes as fields, and a message's raw data
// is written as its size only.
func TestLinesAreZerologJSON(t *testing.T) {
	var out bytes.Buffer
	log := slogzero.New(zerolog.New(&out).Level(zerolog.InfoLevel)).With("caller", "TransportLayer")
	log.Debug("not written", "ip", "127.0.0.1")
	log.Info("listening", "network", "udp", "port", 5070, "ok", true, "dur", 1500*time.Millisecond)
	log.WithGroup("tx").Warn("failed to parse", "data", "SUBSCRIBE sip:a@b SIP/2.0\r\nAuthorization: Digest response=x", "error", errors.New("bad"))

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug is below the level):\n%s", len(lines), out.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line is not JSON: %v: %s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatalf("line is not JSON: %v: %s", err, lines[1])
	}
	want := map[string]any{"level": "info", "message": "listening", "caller": "TransportLayer", "network": "udp",
		"port": float64(5070), "ok": true, "dur": float64(1500)}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v in %s", k, first[k], v, lines[0])
		}
	}
	if second["level"] != "warn" || second["caller"] != "TransportLayer" {
		t.Errorf("second line %s: want level warn and the logger's caller", lines[1])
	}
	tx, _ := second["tx"].(map[string]any)
	if tx["error"] != "bad" || tx["data_bytes"] == nil {
		t.Errorf("group tx = %v: want error and data_bytes", second["tx"])
	}
	if strings.Contains(out.String(), "Digest") {
		t.Errorf("a message's raw data was written: %s", out.String())
	}
}
