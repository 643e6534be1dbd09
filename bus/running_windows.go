package bus

import (
	"errors"

	"golang.org/x/sys/windows"
)

// running reports whether a process with the pid exists on this host. A
// process that has exited but whose handle someone still holds can still be
// opened, so it asks whether the process object is signalled (exited)
// rather than trust OpenProcess alone; its exit code cannot tell either,
// since a process may exit with STILL_ACTIVE (259). A process of another
// user that cannot be opened (access denied) exists.
func running(pid int) bool {
	if pid <= 0 {
		return false
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return errors.Is(err, windows.ERROR_ACCESS_DENIED)
	}
	defer windows.CloseHandle(h)
	event, err := windows.WaitForSingleObject(h, 0)
	return err == nil && event == uint32(windows.WAIT_TIMEOUT)
}
