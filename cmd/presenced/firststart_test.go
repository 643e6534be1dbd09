package main_test

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/internal/freeport"
)

// TestFirstStartIsClean: the quickstart's command, with the example
// Config.xml and nothing else running, logs no warning and no error from
// start to stop, and status explains every row.
func TestFirstStartIsClean(t *testing.T) {
	presenced, presencectl := build(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(t))
	d := startDaemon(t, presenced, []string{
		"PRESENCE_CONFIG=../../examples/Config.xml",
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + t.TempDir(),
	})
	out, err := exec.Command(presencectl, "-nats", url, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, row := range []string{
		`graph +no +no +- +off: Config\.xml does not enable it`,
		`attendant +yes +yes +- +fed by inputs, for the URIs that match .+`,
		`pstn +yes +yes +- +busy agents 0, calls 0`,
		`sip +no +no +- +off: Config\.xml does not enable it`,
		`none +no +no +- +agents no enabled source serves \(state unsupported\)`,
	} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(string(out)) {
			t.Errorf("status has no row %q:\n%s", row, out)
		}
	}
	d.stop(t)
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) || line != "" && !strings.HasPrefix(line, "{") {
			t.Errorf("the first start logged: %s", line)
		}
	}
	if strings.Contains(d.logs.String(), "transcation") {
		t.Error("sipgo's client transaction warning reached the logs of a start with SIP off")
	}
}
