package bus_test

import (
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// cpuTime is the CPU this process used so far, user and system, as
// cputime_unix_test.go measures it, from GetProcessTimes.
func cpuTime(b *testing.B) time.Duration {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user); err != nil {
		b.Fatal(err)
	}
	// Filetime counts 100 ns ticks.
	ticks := func(t windows.Filetime) int64 { return int64(t.HighDateTime)<<32 | int64(t.LowDateTime) }
	return time.Duration((ticks(kernel) + ticks(user)) * 100)
}
