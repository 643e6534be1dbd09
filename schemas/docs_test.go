package schemas_test

import (
	"bufio"
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/schemas/schematest"
)

// contractDoc is the wire contract in words, relative to this package.
const contractDoc = "../docs/contract.md"

// stringConstants returns every string constant the schemas package defines
// (subjects, buckets, error codes, sources, states, availabilities...), by
// name, read from its source so that a constant added later is checked too.
func stringConstants(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, file := range names {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					value, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatalf("%s: %v", name.Name, err)
					}
					consts[name.Name] = value
				}
			}
		}
	}
	if len(consts) == 0 {
		t.Fatal("found no string constants in package schemas")
	}
	return consts
}

func readContract(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Every name a program on the wire depends on is written in docs/contract.md, as
// code (`presence.api.get`, `presence_claims`, `invalid_uri`...); a prefix
// such as presence.in.pstn. counts when written as the start of code.
func TestContractNamesEveryConstant(t *testing.T) {
	doc := readContract(t)
	consts := stringConstants(t)
	for _, want := range []string{"SubjectSubscribe", "BucketWorkers", "CodeInternal", "ServiceName"} {
		if _, ok := consts[want]; !ok {
			t.Fatalf("constant %s not found: the source reader misses constants", want)
		}
	}
	for name, value := range consts {
		if !strings.Contains(doc, "`"+value) {
			t.Errorf("schemas.%s = %q is not written in %s", name, value, contractDoc)
		}
	}
}

// jsonExamples returns the fenced blocks of docs/contract.md whose info string is
// "json <schema>", with the line each starts on; a JSON block that names no
// schema fails t, since nothing would check it.
func jsonExamples(t *testing.T, doc string) (schemaOf []string, docs []string, lines []int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(doc))
	var cur *strings.Builder
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```json":
			t.Errorf("%s line %d: a JSON example must name its schema (```json event)", contractDoc, n)
		case cur == nil && strings.HasPrefix(line, "```json "):
			schemaOf = append(schemaOf, strings.TrimSpace(strings.TrimPrefix(line, "```json ")))
			lines = append(lines, n)
			cur = &strings.Builder{}
		case cur != nil && strings.HasPrefix(line, "```"):
			docs = append(docs, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("%s: the block opened on line %d is never closed", contractDoc, lines[len(lines)-1])
	}
	return schemaOf, docs, lines
}

// Every example of docs/contract.md is a valid message, and every message has an
// example.
func TestContractExamplesMatchSchemas(t *testing.T) {
	v := schematest.Validator(t)
	schemaOf, docs, lines := jsonExamples(t, readContract(t))
	shown := map[string]bool{}
	for i, name := range schemaOf {
		shown[name+".schema.json"] = true
		if err := v.Check(name, []byte(docs[i])); err != nil {
			t.Errorf("%s line %d: example of %s: %v", contractDoc, lines[i], name, err)
		}
	}
	for _, file := range v.Files() {
		if !shown[file] {
			t.Errorf("%s has no example of %s (a block opened with ```json %s)", contractDoc, file, strings.TrimSuffix(file, ".schema.json"))
		}
	}
}

// The worked examples of keys compute as docs/contract.md, Keys says.
func TestContractKeyExample(t *testing.T) {
	doc := readContract(t)
	for uri, key := range map[string]string{"sip:user1@domain.com": "c2lwOnVzZXIxQGRvbWFpbi5jb20", "ucc_app01": "dWNjX2FwcDAx"} {
		if got := schemas.Key(uri); got != key {
			t.Errorf("Key(%q) = %s, want %s", uri, got, key)
		}
		if !strings.Contains(doc, key) {
			t.Errorf("%s does not show the key %s of %s", contractDoc, key, uri)
		}
	}
}

// outsideRefs are the ways a file can point outside the repository: the
// reference material the project was written from is not part of a clone.
var outsideRefs = []string{".." + "/shared", "/" + "work/"}

// The repository stands alone: no tracked file points at files outside it.
func TestNoReferenceOutsideTheRepository(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := trackedFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("found no files in the repository")
	}
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(data, 0) >= 0 {
			continue // a binary (a build outside git) records where it was built
		}
		for _, ref := range outsideRefs {
			if i := bytes.Index(data, []byte(ref)); i >= 0 {
				line := 1 + bytes.Count(data[:i], []byte("\n"))
				t.Errorf("%s:%d refers to %s, which is not in the repository; cite docs/ instead", rel, line, ref)
			}
		}
	}
}

// trackedFiles lists the files git tracks under root; outside a git checkout
// (a source archive) it lists every file but hidden ones and presence-data.
func trackedFiles(root string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"), nil
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && p != root && (strings.HasPrefix(name, ".") || name == "presence-data") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, path.Clean(filepath.ToSlash(rel)))
		}
		return nil
	})
	return files, err
}

// markdownLink is a link to a page of the repository: [text](target#anchor).
var markdownLink = regexp.MustCompile(`\]\(([^)\s:]*?)(?:#([^)\s]*))?\)`)

// anchor is the id GitHub gives a heading: lower case, punctuation but - and
// _ dropped, spaces as dashes.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchorsOf(t *testing.T, page string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			anchors[anchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

// Every link of the documentation reaches a file of the repository, and a
// heading of it when it names one.
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "../README.md")
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(data), -1) {
			target := page
			if m[1] != "" {
				target = filepath.Join(filepath.Dir(page), m[1])
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %s: %v", page, m[0], err)
					continue
				}
			}
			if m[2] != "" && strings.HasSuffix(target, ".md") && !anchorsOf(t, target)[m[2]] {
				t.Errorf("%s: link %s: %s has no heading #%s", page, m[0], target, m[2])
			}
		}
	}
}
