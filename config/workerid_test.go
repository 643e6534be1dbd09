package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/contactcenter/presence-provider/config"
)

// The default id with the embedded server is made once per data directory
// and read back by every later start; another directory gets another id.
func TestWorkerIDKeptInTheDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first := config.Process{DataDir: dir}
	if err := first.ResolveWorkerID(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !regexp.MustCompile(`^.+-[0-9a-f]{6}$`).MatchString(first.WorkerID) || !strings.HasPrefix(first.WorkerID, strings.Split(host, ".")[0]) {
		t.Fatalf("id %q; want the host name %q and a random suffix", first.WorkerID, host)
	}
	data, err := os.ReadFile(filepath.Join(dir, config.WorkerIDFile))
	if err != nil || strings.TrimSpace(string(data)) != first.WorkerID {
		t.Fatalf("%s holds %q (%v); want %q", config.WorkerIDFile, data, err, first.WorkerID)
	}
	again := config.Process{DataDir: dir}
	if err := again.ResolveWorkerID(); err != nil || again.WorkerID != first.WorkerID {
		t.Fatalf("restart: id %q (%v); want the kept %q", again.WorkerID, err, first.WorkerID)
	}
	other := config.Process{DataDir: t.TempDir()}
	if err := other.ResolveWorkerID(); err != nil || other.WorkerID == first.WorkerID {
		t.Fatalf("another directory: id %q (%v); want one of its own", other.WorkerID, err)
	}
	set := config.Process{DataDir: dir, WorkerID: "w1"}
	if err := set.ResolveWorkerID(); err != nil || set.WorkerID != "w1" {
		t.Fatalf("PRESENCE_WORKER_ID=w1 became %q (%v)", set.WorkerID, err)
	}
}

// Processes starting together on a new directory read one id.
func TestWorkerIDMadeOnceUnderConcurrentStarts(t *testing.T) {
	dir := t.TempDir()
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := config.Process{DataDir: dir}
			if err := p.ResolveWorkerID(); err != nil {
				t.Error(err)
			}
			ids[i] = p.WorkerID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids %q; want one", ids)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("the directory holds %d files; want the one %s", len(entries), config.WorkerIDFile)
	}
}

func TestWorkerIDFileThatIsNoID(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, config.WorkerIDFile)
	if err := os.WriteFile(file, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := config.Process{DataDir: dir}
	err := p.ResolveWorkerID()
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `"two words"`) {
		t.Fatalf("error %v; want one naming the file and what it holds", err)
	}
}

// Joining an external NATS, the id is the host name: no directory of the
// process's is in use.
func TestWorkerIDWithExternalNATSIsTheHostName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "unused")
	p := config.Process{NATSURL: "nats://127.0.0.1:4222", DataDir: dir}
	if err := p.ResolveWorkerID(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := config.HostWorkerID(host); p.WorkerID != want || want == "" {
		t.Fatalf("id %q; want %q, from the host name %q", p.WorkerID, want, host)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the data directory was made (%v); with PRESENCE_NATS_URL it is not used", err)
	}
	for host, want := range map[string]string{
		"node1.example.com": "node1.example.com",
		"Node_2":            "Node_2",
		"a b:c":             "a-b-c",
		".x..y.":            "x.y",
		"wörker":            "w-rker",
		"":                  "presenced",
	} {
		if got := config.HostWorkerID(host); got != want {
			t.Errorf("host %q: id %q; want %q", host, got, want)
		}
	}
}
