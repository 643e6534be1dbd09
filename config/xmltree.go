package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Bounds of a Config.xml: a real one is a few KB and a few levels deep; past
// these, the file is not a configuration and reading it on would only cost.
const (
	MaxFileSize = 4 << 20
	MaxDepth    = 64
)

// node is an XML element with its attribute names folded to lower case, since
// Config.xml files in the field spell them every which way.
type node struct {
	name     string
	parent   *node
	attrs    map[string]attribute
	children []*node
	// asked are the attribute and child names the reader looked up, by
	// lower-case name: whatever else the element holds is unknown to it.
	askedAttrs, askedChildren map[string]string
}

type attribute struct {
	name, value string
	// order keeps the file's order for the warnings.
	order int
}

func readTree(r io.Reader) (*node, error) {
	dec := xml.NewDecoder(r)
	// Config.xml files say encoding="utf-8"; accept any label rather than
	// refuse the file over it.
	dec.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	var stack []*node
	var root *node
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("config: not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == MaxDepth {
				line, _ := dec.InputPos()
				return nil, fmt.Errorf("config: element %s on line %d is nested deeper than %d levels", t.Name.Local, line, MaxDepth)
			}
			n := &node{name: t.Name.Local, attrs: make(map[string]attribute, len(t.Attr))}
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("config: more than one root element")
				}
				root = n
			} else {
				n.parent = stack[len(stack)-1]
				n.parent.children = append(n.parent.children, n)
			}
			for i, a := range t.Attr {
				name := strings.ToLower(a.Name.Local)
				if _, dup := n.attrs[name]; dup {
					// Names differ only in case here, so which one wins would be a guess.
					return nil, &RuleError{Element: n.path(), Attribute: a.Name.Local, Rule: "is given more than once"}
				}
				n.attrs[name] = attribute{name: a.Name.Local, value: strings.TrimSpace(a.Value), order: i}
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if root == nil {
		return nil, errors.New("config: the file has no root element")
	}
	return root, nil
}

// path names the element from the root, as errors and warnings show it. It
// is built only for those: a path kept on every node would cost the square
// of the depth.
func (n *node) path() string {
	var names []string
	for e := n; e != nil; e = e.parent {
		names = append(names, e.name)
	}
	slices.Reverse(names)
	return strings.Join(names, "/")
}

// find returns the first element with the given name (any case) at or below n.
func (n *node) find(name string) *node {
	if strings.EqualFold(n.name, name) {
		return n
	}
	for _, c := range n.children {
		if f := c.find(name); f != nil {
			return f
		}
	}
	return nil
}

// all returns n's direct children with the given name (any case).
func (n *node) all(name string) []*node {
	n.askedChildren = ask(n.askedChildren, name)
	var out []*node
	for _, c := range n.children {
		if strings.EqualFold(c.name, name) {
			out = append(out, c)
		}
	}
	return out
}

func (n *node) attr(name string) (string, bool) {
	n.askedAttrs = ask(n.askedAttrs, name)
	a, ok := n.attrs[strings.ToLower(name)]
	return a.value, ok
}

func ask(asked map[string]string, name string) map[string]string {
	if asked == nil {
		asked = map[string]string{}
	}
	asked[strings.ToLower(name)] = name
	return asked
}
