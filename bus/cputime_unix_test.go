//go:build unix

package bus_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU this process used so far, user and system: the
// embedded server's, the worker's and the clients' together. Unlike the
// time per input, it hardly moves with what else the machine runs.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
