//go:build unix

package bus

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes f's flock(2) lock without waiting; held says another open
// file has it.
func tryLock(f *os.File) (held bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
