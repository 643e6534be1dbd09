package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Warning is a name inside PresenceProvider that the provider does not
// read: most likely a typo, which would otherwise leave a default in force
// without a word. The file still loads, as the product's would.
type Warning struct {
	// Element is the path of the element holding the unknown attribute,
	// or of the unknown element itself.
	Element string
	// Attribute is empty when the element is the unknown name.
	Attribute string
	// Suggestion is the closest known name, if one is close.
	Suggestion string
}

func (w Warning) String() string {
	what := "element " + w.Element + " is unknown"
	if w.Attribute != "" {
		what = fmt.Sprintf("element %s, attribute %s is unknown", w.Element, w.Attribute)
	}
	if w.Suggestion != "" {
		return fmt.Sprintf("config: %s and ignored; did you mean %s?", what, w.Suggestion)
	}
	return "config: " + what + " and ignored"
}

// unknowns lists, in the file's order, the attributes and elements at or
// below n that the reader never asked for. An unknown element's content is
// not looked into: one warning says it all.
func unknowns(n *node) []Warning {
	var out []Warning
	attrs := make([]attribute, 0, len(n.attrs))
	for key, a := range n.attrs {
		if _, known := n.askedAttrs[key]; !known {
			attrs = append(attrs, a)
		}
	}
	slices.SortFunc(attrs, func(a, b attribute) int { return cmp.Compare(a.order, b.order) })
	for _, a := range attrs {
		out = append(out, Warning{Element: n.path(), Attribute: a.name, Suggestion: closest(a.name, n.askedAttrs)})
	}
	for _, c := range n.children {
		if _, known := n.askedChildren[strings.ToLower(c.name)]; known {
			out = append(out, unknowns(c)...)
			continue
		}
		out = append(out, Warning{Element: c.path(), Suggestion: closest(c.name, n.askedChildren)})
	}
	return out
}

// maxSuggested is the longest name a suggestion is looked for: the edit
// distance costs the product of the lengths.
const maxSuggested = 100

// closest returns the known name nearest to name (edit distance, any case),
// if it is within a third of the name's length (at least 2 edits).
func closest(name string, known map[string]string) string {
	if len(name) > maxSuggested {
		return ""
	}
	lower := strings.ToLower(name)
	best, bestDistance := "", max(2, len(name)/3)+1
	for key, spelled := range known {
		d := editDistance(lower, key)
		if d < bestDistance || (d == bestDistance && best != "" && spelled < best) {
			best, bestDistance = spelled, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
