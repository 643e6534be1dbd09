package config_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/contactcenter/presence-provider/config"
)

// productDoc documents every setting, relative to this package.
const productDoc = "../docs/product.md"

func readProductDoc(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(productDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Every PRESENCE_ variable the process reads is in docs/product.md,
// Environment.
func TestProductDocNamesEveryVariable(t *testing.T) {
	doc := readProductDoc(t)
	for _, f := range processFields() {
		name := f.Tag.Get("envconfig")
		if name == "" {
			t.Errorf("config.Process.%s has no envconfig tag", f.Name)
			continue
		}
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s is read (config.Process.%s) but not written in %s", name, f.Name, productDoc)
		}
	}
	if !strings.Contains(doc, "`"+config.DefaultClientSecretEnv+"`") {
		t.Errorf("%s is not written in %s", config.DefaultClientSecretEnv, productDoc)
	}
}

// configurationDoc is the guide that lists every variable by its group.
const configurationDoc = "../docs/configuration.md"

// Every PRESENCE_ variable's row in docs/product.md, Environment gives the
// default the process really takes, and docs/configuration.md names the
// variable: a variable added to Process and left out of either (as
// PRESENCE_INPUT_QUEUE_MAX_* and PRESENCE_RESUME* once were of the README)
// fails here.
func TestDocsGiveEveryVariableAndDefault(t *testing.T) {
	product := readProductDoc(t)
	guide, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(product, "\n") {
		if !strings.HasPrefix(line, "| `PRESENCE_") {
			continue
		}
		names, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, name := range strings.Split(names, ", ") {
			rows[strings.Trim(name, "`")] = line
		}
	}
	for _, f := range processFields() {
		name := f.Tag.Get("envconfig")
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s has no row of its own in %s, Environment", name, productDoc)
			continue
		}
		if def := f.Tag.Get("default"); def != "" && !strings.Contains(row, "`"+def+"`") {
			t.Errorf("%s: its row in %s does not give its default `%s`: %s", name, productDoc, def, row)
		}
		if !strings.Contains(string(guide), "`"+name+"`") {
			t.Errorf("%s is not named in %s", name, configurationDoc)
		}
	}
}

// readerMethods are the calls by which provider.go names an element or an
// attribute of Config.xml: their string arguments are those names.
var readerMethods = map[string]bool{
	"int": true, "seconds": true, "bool": true, "str": true, "sipURI": true, "hostPort": true,
	"endpoint": true, "one": true, "all": true, "find": true, "attr": true,
}

// configNames returns every element and attribute name provider.go reads.
func configNames(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "provider.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !readerMethods[sel.Sel.Name] {
			return true
		}
		for _, arg := range call.Args {
			if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					names[s] = true
				}
			}
		}
		return true
	})
	return names
}

// Every element and attribute that Config.xml may hold is in
// docs/product.md, Config.xml.
func TestProductDocNamesEveryConfigName(t *testing.T) {
	doc := readProductDoc(t)
	names := configNames(t)
	for _, want := range []string{"PresenceProvider", "maxPresenceSubscriptionsPerSecond", "UcmaPresenceSource", "OwnerUri", "ClientSecretEnv"} {
		if !names[want] {
			t.Fatalf("%s not found in provider.go: the reader of names misses some (found %d)", want, len(names))
		}
	}
	for name := range names {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("Config.xml name %s is read by provider.go but not written in %s", name, productDoc)
		}
	}
}
