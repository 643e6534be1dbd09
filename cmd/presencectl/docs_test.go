package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pages are the README and the guides a newcomer follows.
func pages(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range append(files, "../../README.md") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(data)
	}
	return out
}

// TestDocsUseRealCommands: every presencectl command the pages show exists,
// with each flag written right after it.
func TestDocsUseRealCommands(t *testing.T) {
	used := regexp.MustCompile("(?:bin/)?presencectl ((?:-[a-z]+ [^ `]+ )*)([a-z]+)((?: -[a-z]+)*)")
	for page, text := range pages(t) {
		for _, m := range used.FindAllStringSubmatch(text, -1) {
			name := m[2]
			if name == "help" {
				continue
			}
			c, ok := lookup(name)
			if !ok {
				// Prose ("presencectl talks to") names no command; a
				// command line does.
				if strings.HasPrefix(m[0], "bin/") {
					t.Errorf("%s: %q runs no command of presencectl", page, m[0])
				}
				continue
			}
			for _, flag := range strings.Fields(m[3]) {
				if !hasFlag(c, strings.TrimPrefix(flag, "-")) {
					t.Errorf("%s: %q: %s takes no flag %s", page, m[0], name, flag)
				}
			}
		}
	}
}

// hasFlag says whether the command, or every command, takes the flag.
func hasFlag(c command, name string) bool {
	var o options
	var f cmdFlags
	fs := newFlagSet(c, &o, &f)
	return fs.Lookup(name) != nil
}

// TestReadmeQuickstart: the README starts with the two commands, the second
// the one .ci/run runs, and the Taskfile's tasks it names exist.
func TestReadmeQuickstart(t *testing.T) {
	readme := pages(t)["../../README.md"]
	block := regexp.MustCompile("(?s)^# [^\n]+\n\n```sh\n([^\n]+)\n([^\n]+)\n```\n").FindStringSubmatch(readme)
	if block == nil {
		t.Fatal("the README does not start with a block of two commands")
	}
	const test = "go test -race -count=1 ./..."
	if !strings.HasPrefix(block[1], "PRESENCE_CONFIG=examples/Config.xml go run ./cmd/presenced ") || !strings.HasPrefix(block[2], test+" ") {
		t.Errorf("the README's commands are %q and %q; want the provider with the example Config.xml, then %q", block[1], block[2], test)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "\n"+test+"\n") {
		t.Errorf(".ci/run does not run %q, the README's test command", test)
	}
	taskfile, err := os.ReadFile("../../Taskfile.yml")
	if err != nil {
		t.Fatal(err)
	}
	tasks := regexp.MustCompile("`task ([a-z]+)`").FindAllStringSubmatch(readme, -1)
	if len(tasks) == 0 {
		t.Error("the README does not mention the Taskfile's tasks")
	}
	for _, m := range tasks {
		if !strings.Contains(string(taskfile), "\n  "+m[1]+":\n") {
			t.Errorf("the README names `task %s`, which Taskfile.yml does not have", m[1])
		}
	}
}
