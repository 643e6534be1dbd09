package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// node is an XML element with its attribute names folded to lower case, since
// Config.xml files in the field spell them every which way.
type node struct {
	name     string
	path     string
	attrs    map[string]string
	children []*node
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
			n := &node{name: t.Name.Local, attrs: make(map[string]string, len(t.Attr))}
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("config: more than one root element")
				}
				root, n.path = n, n.name
			} else {
				parent := stack[len(stack)-1]
				n.path = parent.path + "/" + n.name
				parent.children = append(parent.children, n)
			}
			for _, a := range t.Attr {
				name := strings.ToLower(a.Name.Local)
				if _, dup := n.attrs[name]; dup {
					// Names differ only in case here, so which one wins would be a guess.
					return nil, &RuleError{Element: n.path, Attribute: a.Name.Local, Rule: "is given more than once"}
				}
				n.attrs[name] = strings.TrimSpace(a.Value)
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
	var out []*node
	for _, c := range n.children {
		if strings.EqualFold(c.name, name) {
			out = append(out, c)
		}
	}
	return out
}

func (n *node) attr(name string) (string, bool) {
	v, ok := n.attrs[strings.ToLower(name)]
	return v, ok
}
