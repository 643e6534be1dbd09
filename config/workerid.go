package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WorkerIDFile is the file in PRESENCE_DATA_DIR that keeps the worker's
// default id.
const WorkerIDFile = "worker-id"

// ResolveWorkerID gives the worker an id that outlives restarts when
// PRESENCE_WORKER_ID is empty, so that a restarted presenced is the same
// worker and takes its agents back at once. With the embedded server it is
// the id kept in PRESENCE_DATA_DIR/worker-id, made once from the host name
// and a random suffix: the directory and its store belong together, and
// several processes on one host each have their own. Joining
// PRESENCE_NATS_URL, no directory of this process's is in use: the id is the
// host name (letters, digits, '-', '_' and inner dots kept, anything else
// '-'), and a second presenced on the same host needs its own
// PRESENCE_WORKER_ID.
func (p *Process) ResolveWorkerID() error {
	if p.WorkerID != "" {
		return nil
	}
	host, _ := os.Hostname()
	if p.NATSURL != "" {
		p.WorkerID = hostID(host)
		return nil
	}
	id, err := keptWorkerID(p.DataDir, host)
	if err != nil {
		return err
	}
	p.WorkerID = id
	return nil
}

// hostID turns a host name into a worker id.
func hostID(host string) string {
	id := strings.Map(func(c rune) rune {
		if c == '.' || validWorkerID(string(c)) {
			return c
		}
		return '-'
	}, host)
	for strings.Contains(id, "..") {
		id = strings.ReplaceAll(id, "..", ".")
	}
	id = strings.Trim(id, ".")
	if id == "" {
		return "presenced"
	}
	return id
}

// keptWorkerID reads the id kept in the data directory, or makes and keeps
// one. The file appears whole or not at all (a link of a written file), so
// two processes starting on one directory read the same id.
func keptWorkerID(dir, host string) (string, error) {
	file := filepath.Join(dir, WorkerIDFile)
	if id, err := readWorkerID(file); !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("config: data directory %s: %w", dir, err)
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return "", fmt.Errorf("config: worker id: %w", err)
	}
	id := hostID(host) + "-" + hex.EncodeToString(suffix)
	tmp, err := os.CreateTemp(dir, WorkerIDFile+".*")
	if err != nil {
		return "", fmt.Errorf("config: keep the worker id in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(id + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), file)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return readWorkerID(file)
	case err != nil:
		return "", fmt.Errorf("config: keep the worker id in %s: %w", file, err)
	}
	return id, nil
}

func readWorkerID(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("config: worker id: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if !validWorkerID(id) {
		return "", fmt.Errorf("config: %s holds %q, which is not a worker id (A-Z a-z 0-9 - _ = and inner dots); correct it or delete it for a new one", file, id)
	}
	return id, nil
}
