package schemas

import (
	"errors"
	"fmt"
	"testing"
)

func TestAsError(t *testing.T) {
	bad := &Error{Code: CodeInvalidURI, Message: "no scheme"}
	for _, tc := range []struct {
		name string
		err  error
		want Error
	}{
		{"a contract error", bad, *bad},
		{"a wrapped contract error keeps its code", fmt.Errorf("agent 3: %w", bad), *bad},
		{"any other error is internal, with its text", errors.New("bucket gone"), Error{Code: CodeInternal, Message: "bucket gone"}},
	} {
		if got := AsError(tc.err); *got != tc.want {
			t.Errorf("%s: AsError = %+v, want %+v", tc.name, *got, tc.want)
		}
	}
}
