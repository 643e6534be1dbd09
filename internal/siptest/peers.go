package siptest

import (
	"embed"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/contactcenter/presence-provider/internal/freeport"
)

// The peers' configuration files, templates filled in per test.
//
//go:embed peers
var peerFiles embed.FS

// writePeerFile fills in the template peers/name and writes it to path.
func writePeerFile(t testing.TB, name, path string, data any) {
	t.Helper()
	tmpl, err := template.ParseFS(peerFiles, "peers/"+name)
	if err != nil {
		t.Fatalf("siptest: %v", err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = tmpl.Execute(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("siptest: writing %s: %v", filepath.Base(path), err)
	}
}

// freePorts returns n free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		var err error
		if ports[i], err = freeport.Get(); err != nil {
			t.Fatalf("siptest: %v", err)
		}
	}
	return ports
}

// waitOutput waits until the process has written want, or fails the test.
func waitOutput(t testing.TB, name string, p *process, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("siptest: %s did not get ready (no %q in its output):\n%s", name, want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
