// Package internal holds what the module uses but does not offer to UCCs:
// Go refuses an import of internal/... from outside the module, so none of
// it is API.
//
// Most of it is test harnesses, imported only by _test.go files and the
// developer tools beside them: freeport, graphtest, provtest, siptest and
// testca. Two packages are product code, linked into the binaries: slogzero,
// the log/slog handler that writes sipgo's lines through zerolog, and
// buildinfo, the version and commit a binary was built from. They sit here,
// not beside the sources or in cmd, because each serves more than one
// package and no UCC may come to depend on them.
package internal
