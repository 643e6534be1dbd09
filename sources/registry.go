package sources

import "github.com/contactcenter/presence-provider/schemas"

// Spec is what the provider knows of a source beside its code: its name and
// whether inputs feed it. How it routes is its own Serves method.
type Spec struct {
	Name string
	// NotServed is set for a source fed by inputs on
	// presence.in.<Name>.<key>: the error code of an input for an agent that
	// another source serves. Other sources hold upstream subscriptions.
	NotServed string
}

// Fed reports whether inputs feed the source.
func (s Spec) Fed() bool { return s.NotServed != "" }

// Registry is every source in routing order (docs/product.md, Sources and
// routing): an agent takes its presence from the first enabled source that
// serves it. A new source is one line here and a folder of its own.
func Registry() []Spec {
	return []Spec{
		{Name: schemas.SourceGraph},
		{Name: schemas.SourceAttendant, NotServed: schemas.CodeNotAttendantAgent},
		{Name: schemas.SourcePSTN, NotServed: schemas.CodeNotPSTNAgent},
		{Name: schemas.SourceSIP},
	}
}

// Lookup finds a source's Spec by name.
func Lookup(name string) (Spec, bool) {
	for _, s := range Registry() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}
