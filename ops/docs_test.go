package ops_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/worker"
)

// TestEveryMetricDocumented: each presence_ metric /metrics can serve has
// its row in docs/product.md.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/product.md")
	if err != nil {
		t.Fatal(err)
	}
	descs := make(chan *prometheus.Desc, 64)
	w := worker.New(worker.Config{}, worker.Stores{}, clockwork.NewRealClock(), zerolog.Nop())
	ops.NewMetrics().Describe(descs)
	ops.NewCollector(w).Describe(descs)
	close(descs)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range descs {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		n++
		if !strings.Contains(string(doc), "| `"+m[1]+"` |") {
			t.Errorf("%s has no row in docs/product.md, Operating", m[1])
		}
	}
	if n < 16 {
		t.Errorf("%d metrics described; want the 16 of docs/product.md", n)
	}
}

// TestEveryPathDocumented: each path of the listener has its row in
// docs/product.md, Operating, and docs/operating.md names it.
func TestEveryPathDocumented(t *testing.T) {
	product, err := os.ReadFile("../docs/product.md")
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile("../docs/operating.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{ops.PathMetrics, ops.PathHealthz, ops.PathReadyz, ops.PathPage, ops.PathEvents, ops.PathExplain} {
		if !strings.Contains(string(product), "| `"+path) {
			t.Errorf("%s has no row in docs/product.md, Operating", path)
		}
		if path != ops.PathEvents && path != ops.PathExplain && !strings.Contains(string(guide), path) {
			t.Errorf("%s is not in docs/operating.md", path)
		}
	}
}
