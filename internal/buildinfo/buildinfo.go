// Package buildinfo reads what the Go toolchain recorded in a binary: the
// module version and the git commit it was built from, for the -version
// flag of presenced and presencectl's version command.
package buildinfo

import "runtime/debug"

// Line is name and version, with the commit when the binary was built from a
// git checkout, e.g. "presencectl v1.2.0 (commit 5ec40f2..., modified)".
// An empty version is the module's: its tag under go install, "(devel)" in
// a checkout.
func Line(name, version string) string {
	info, ok := debug.ReadBuildInfo()
	if version == "" {
		version = "(unknown)"
		if ok && info.Main.Version != "" {
			version = info.Main.Version
		}
	}
	line := name + " " + version
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
