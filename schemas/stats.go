package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// statPhrases say a figure of SourceStatus.Stats (docs/contract.md, Status)
// in words, in the order they are told; a figure not listed is told as its
// name and value.
var statPhrases = []struct{ key, phrase string }{
	{"dialogs", "%s dialogs"},
	{"waiting_for_endpoint", "%s agents waiting for an endpoint"},
	{"agents", "%s agents"},
	{"cycle_ms", "last cycle %s ms"},
	{"requests_last_30s", "%s requests in the last 30 s"},
	{"budget_per_30s", "of a budget of %s"},
	{"requests_total", "%s requests in all"},
	{"failures", "%s failed cycles"},
	{"paused_ms", "paused for %s ms more (429)"},
	{"tenant", "tenant %s"},
	{"accounts", "accounts %s"},
	{"users_missing_from_answers", "%s users missing from Graph's answers"},
}

// endpointDialogs is the suffix of a SIP endpoint's dialog count.
const endpointDialogs = "_dialogs"

// SourceText tells a source's entry of a status in words, for every entry:
// none and the sources turned off explain themselves, the others give their
// detail and their stats.
func SourceText(name string, s SourceStatus) string {
	switch {
	case name == SourceNone:
		return "agents no enabled source serves (state unsupported)"
	case !s.Enabled:
		return "off: Config.xml does not enable it"
	}
	var parts []string
	for _, p := range []string{s.Detail, StatsText(s.Stats)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "; ")
}

// StatsText tells a source's stats in words, for people: the status page
// and presencectl status. Stats read from JSON and stats as a source made
// them read the same.
func StatsText(stats map[string]any) string {
	data, err := json.Marshal(stats)
	if err != nil || len(stats) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return ""
	}
	return strings.Join(statParts(m), ", ")
}

func statParts(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		for i, p := range statPhrases {
			if p.key == k {
				return 2 * i
			}
		}
		if strings.HasSuffix(k, endpointDialogs) {
			return 1 // after the total
		}
		return 2 * len(statPhrases)
	}
	sort.Slice(keys, func(i, j int) bool {
		if a, b := rank(keys[i]), rank(keys[j]); a != b {
			return a < b
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		if k == "id" {
			continue // names the list item
		}
		switch v := m[k].(type) {
		case []any:
			// A list of objects: one part each, named by its id.
			item := strings.TrimSuffix(strings.ReplaceAll(k, "_", " "), "s")
			for _, e := range v {
				obj, ok := e.(map[string]any)
				if !ok {
					parts = append(parts, fmt.Sprintf("%s %v", item, e))
					continue
				}
				parts = append(parts, fmt.Sprintf("%s %v: %s", item, obj["id"], strings.Join(statParts(obj), ", ")))
			}
		default:
			parts = append(parts, statPhrase(k, fmt.Sprint(v)))
		}
	}
	return parts
}

func statPhrase(key, value string) string {
	for _, p := range statPhrases {
		if p.key == key {
			return fmt.Sprintf(p.phrase, value)
		}
	}
	if name, ok := strings.CutSuffix(key, endpointDialogs); ok {
		return fmt.Sprintf("%s on the %s endpoint", value, name)
	}
	return strings.ReplaceAll(key, "_", " ") + " " + value
}
