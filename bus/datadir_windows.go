package bus

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// tryLock takes a lock on f without waiting; held says another open file
// has it. Windows locks forbid reading what they cover, so the lock is on a
// byte far past the pid, which stays readable for the refusal message.
func tryLock(f *os.File) (held bool, err error) {
	const lockedByte = 1 << 30
	overlapped := &windows.Overlapped{Offset: lockedByte}
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, overlapped)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return true, nil
	}
	return false, err
}
