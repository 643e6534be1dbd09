package bus

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName is the file in the data directory whose lock marks it taken.
const lockFileName = "presenced.lock"

// lockDataDir takes the data directory for this process. Two embedded
// servers on one JetStream store take each other's claims and damage the
// store, so a second one must not start at all. The lock is the system's
// file lock, which it drops when its holder dies: a killed process leaves no
// stale lock behind. The file records the holder's pid for the refusal
// message.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("bus: data directory %s: %w; set PRESENCE_DATA_DIR to a directory this process may write", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("bus: data directory %s: %w", dir, err)
	}
	if held, err := tryLock(f); held || err != nil {
		holder := readHolder(f)
		_ = f.Close()
		if held {
			return nil, fmt.Errorf("bus: data directory %s is in use by process %s: a presenced already runs on it; stop it first, or give this one its own PRESENCE_DATA_DIR (and PRESENCE_EMBEDDED_LISTEN, PRESENCE_HTTP_LISTEN)", dir, holder)
		}
		return nil, fmt.Errorf("bus: lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bus: data directory %s: record the lock holder: %w", dir, err)
	}
	return f, nil
}

// readHolder reads the pid the lock's holder wrote; a holder that has the
// lock but has not written yet is "unknown".
func readHolder(f *os.File) string {
	b, err := io.ReadAll(io.LimitReader(f, 32))
	pid := strings.TrimSpace(string(b))
	if _, perr := strconv.Atoi(pid); err != nil || perr != nil {
		return "unknown"
	}
	return pid
}
