package siptest

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// sipsakStatus finds the status line of the reply in sipsak's verbose output.
var sipsakStatus = regexp.MustCompile(`(?m)^SIP/2\.0 (\d{3}) `)

// SipsakOptions sends one OPTIONS to uri with sipsak 0.9 (Debian's sipsak),
// a client nobody on the team wrote, over UDP, and returns the status of
// the final reply. The test fails when none comes within 5 s.
func SipsakOptions(t testing.TB, uri string) int {
	t.Helper()
	bin := requireBinary(t, "sipsak", "sipsak")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// -vv prints the reply; -D 5: give up after 5 s of retransmissions.
	out, err := exec.CommandContext(ctx, bin, "-vv", "-D", "5", "-s", uri).CombinedOutput()
	m := sipsakStatus.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("siptest: sipsak got no reply from %s (%v):\n%s", uri, err, out)
	}
	code, _ := strconv.Atoi(string(m[len(m)-1][1]))
	return code
}
