// Package internal holds what the module uses but does not offer to UCCs:
// Go refuses an import of internal/... from outside the module, so none of
// it is API.
//
// Most of it is test harnesses, imported only by _test.go files and the
// developer tools beside them: freeport, graphtest, provtest, siptest and
// testca. One package is product code, linked into presenced: slogzero, the
// log/slog handler that writes sipgo's lines through zerolog. It sits here,
// not beside the sources, because it belongs to no source and no UCC may
// come to depend on it.
package internal
