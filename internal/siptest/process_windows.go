package siptest

import (
	"os"
	"os/exec"
)

// ownGroup does nothing on Windows: the servers the package runs (Kamailio,
// sipp) are Unix programs, and a test there skips before starting one. It
// exists so that the package and its tests build everywhere.
func ownGroup(*exec.Cmd) {}

// killGroup kills p; see ownGroup.
func killGroup(p *os.Process) {
	_ = p.Kill()
}
