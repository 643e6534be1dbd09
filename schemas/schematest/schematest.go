// Package schematest validates messages against the JSON Schemas of docs/contract.md
// (schemas.JSONSchemas), for tests: a unit test of the Go types, or an
// end-to-end test that checks what a running provider publishes and stores.
package schematest

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/contactcenter/presence-provider/schemas"
)

// BaseID is the $id every schema file has, before its file name.
const BaseID = "https://contactcenter.example/presence/v1/"

// V holds the compiled schemas, by file name ("event.schema.json").
type V struct {
	schemas map[string]*jsonschema.Schema
}

var (
	once    sync.Once
	shared  *V
	loadErr error
)

// Validator returns the compiled schemas; they are compiled once per test
// binary, with format assertions on. A schema that does not compile fails t.
func Validator(t testing.TB) *V {
	t.Helper()
	once.Do(func() { shared, loadErr = compile(schemas.JSONSchemas) })
	if loadErr != nil {
		t.Fatalf("schematest: %v", loadErr)
	}
	return shared
}

// Files lists the schema files, sorted.
func (v *V) Files() []string {
	names := make([]string, 0, len(v.schemas))
	for name := range v.schemas {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Check validates one JSON document against a schema file ("event.schema.json"
// or just "event") and returns what is wrong, or nil.
func (v *V) Check(schemaFile string, data []byte) error {
	sch, ok := v.schemas[fileName(schemaFile)]
	if !ok {
		return fmt.Errorf("no schema %q; there are %v", schemaFile, v.Files())
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(doc)
}

// Validate fails t when data is not valid against the schema file, naming the
// schema, the document and every violation.
func (v *V) Validate(t testing.TB, schemaFile string, data []byte) {
	t.Helper()
	if err := v.Check(schemaFile, data); err != nil {
		t.Errorf("message does not match schema %s:\n%s\n%v", fileName(schemaFile), data, err)
	}
}

func fileName(s string) string {
	if path.Ext(s) != ".json" {
		return s + ".schema.json"
	}
	return s
}

// compile loads every file of fsys's json folder under its $id and compiles
// them all; a $ref outside the set is an error rather than a download.
func compile(fsys fs.FS) (*V, error) {
	files, err := fs.Glob(fsys, "json/*.schema.json")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no schema files embedded")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: not JSON: %w", f, err)
		}
		name := path.Base(f)
		if id, _ := doc.(map[string]any)["$id"].(string); id != BaseID+name {
			return nil, fmt.Errorf("%s: $id is %q, want %q", f, id, BaseID+name)
		}
		if err := c.AddResource(BaseID+name, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	v := &V{schemas: map[string]*jsonschema.Schema{}}
	for _, f := range files {
		name := path.Base(f)
		sch, err := c.Compile(BaseID + name)
		if err != nil {
			return nil, fmt.Errorf("%s does not compile: %w", name, err)
		}
		v.schemas[name] = sch
	}
	return v, nil
}

// refuseLoader keeps the compiler off the network: every schema it needs is
// embedded, except the draft's own meta-schemas, which the library carries.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not embedded", url)
}
