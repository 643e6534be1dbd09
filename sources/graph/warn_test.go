package graph_test

import (
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/sources/graph"
)

// TestAccountWithoutCredentialsWarnsOnceWithTheFix: an enabled account
// that cannot work is a warning at start, once, that says what to set; not
// an error, since the provider runs on.
func TestAccountWithoutCredentialsWarnsOnceWithTheFix(t *testing.T) {
	logs := &provtest.Logs{}
	cfg := graph.Config{Accounts: []graph.Account{{ID: "account-a", TenantID: "tenant-1", ClientID: "client-a"}}}
	if _, err := graph.New(cfg, clockwork.NewRealClock(), nil, zerolog.New(logs)); err != nil {
		t.Fatal(err)
	}
	var warned int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		switch {
		case strings.Contains(line, `"level":"error"`):
			t.Errorf("an account without credentials logged an error: %s", line)
		case strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"account":"account-a"`) &&
			strings.Contains(line, "set the variable its ClientSecretEnv names (default PRESENCE_GRAPH_CLIENT_SECRET) or its CertificateFile"):
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings with the fix; want 1:\n%s", warned, logs.String())
	}
}
