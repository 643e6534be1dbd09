package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestMain gives every presenced the tests start a listener on a free port:
// the default one may be held by a provider run by hand, or by another test.
// It removes the binaries build made once the tests are done.
func TestMain(m *testing.M) {
	if os.Getenv("PRESENCE_HTTP_LISTEN") == "" {
		os.Setenv("PRESENCE_HTTP_LISTEN", "127.0.0.1:0")
	}
	code := m.Run()
	binaries.remove()
	os.Exit(code)
}

// httpAddr is the address of the daemon's listener, from its ready line.
func (d *daemon) httpAddr(t testing.TB) string {
	t.Helper()
	for _, line := range strings.Split(d.logs.String(), "\n") {
		var ready struct {
			Message string `json:"message"`
			HTTP    string `json:"http"`
		}
		if json.Unmarshal([]byte(line), &ready) == nil && ready.Message == "presence provider ready" && ready.HTTP != "" {
			return ready.HTTP
		}
	}
	t.Fatal("presenced's ready line names no http listener")
	return ""
}

// get answers the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestMemoryLimitLogged: the soft memory limit in force is logged at start,
// and GOMEMLIMIT wins over the container's limit.
func TestMemoryLimitLogged(t *testing.T) {
	presenced, _ := build(t)
	_, _, stderr := exited(t, presenced, []string{"GOMEMLIMIT=500MiB", "PRESENCE_CONFIG=" + t.TempDir() + "/missing.xml"})
	for _, line := range strings.Split(stderr, "\n") {
		var limit struct {
			Message, From string
			Bytes         int64
		}
		if json.Unmarshal([]byte(line), &limit) == nil && limit.Message == "Go soft memory limit" {
			if limit.From != "GOMEMLIMIT" || limit.Bytes != 500<<20 {
				t.Fatalf("logged %q; want the limit from GOMEMLIMIT, 500 MiB", line)
			}
			return
		}
	}
	t.Fatalf("no log line of the soft memory limit:\n%s", stderr)
}
