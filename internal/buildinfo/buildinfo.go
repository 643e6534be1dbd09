// Package buildinfo is the product's version and the git commit the
// toolchain recorded in a binary, for the -version flag of presenced and
// presencectl's version command.
package buildinfo

import "runtime/debug"

// Version is the product's version, one for presenced and presencectl; a
// release sets it with -ldflags "-X github.com/contactcenter/presence-provider/internal/buildinfo.Version=...".
var Version = "1.0.0"

// Line is name and Version, with the commit when the binary was built from
// a git checkout, e.g. "presencectl 1.0.0 (commit 5ec40f2..., modified)".
func Line(name string) string {
	info, ok := debug.ReadBuildInfo()
	line := name + " " + Version
	if !ok {
		return line
	}
	var commit, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if commit != "" {
		line += " (commit " + commit + modified + ")"
	}
	return line
}
