//go:build unix

package bus

import (
	"errors"
	"syscall"
)

// running reports whether a process with the pid exists on this host.
// Signal 0 checks without sending anything; EPERM means it exists but
// belongs to another user.
func running(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
