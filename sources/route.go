package sources

import (
	"regexp"
	"strings"

	"github.com/contactcenter/presence-provider/schemas"
)

// Routes picks the one source of each agent, in the order of docs/product.md,
// Sources and routing: Graph for an agent with a Teams UPN, the
// AttendantService when a Match pattern matches, PSTN for an E.164 number, SIP
// for the other sip: URIs. Only enabled sources take part.
type Routes struct {
	Graph             bool
	AttendantPatterns []*regexp.Regexp
	PSTN              bool
	SIP               bool
}

// Route names the source of an agent, or schemas.SourceNone.
func (r Routes) Route(uri schemas.AgentURI, teamsUPN string) string {
	switch {
	case r.Graph && teamsUPN != "":
		return schemas.SourceGraph
	case r.MatchesAttendant(uri.URI):
		return schemas.SourceAttendant
	case r.PSTN && uri.PSTN:
		return schemas.SourcePSTN
	case r.SIP && strings.HasPrefix(uri.URI, "sip:"):
		return schemas.SourceSIP
	default:
		return schemas.SourceNone
	}
}

// MatchesAttendant reports whether an AttendantServiceSource pattern matches
// the URI; patterns are searched within the whole URI, scheme included.
func (r Routes) MatchesAttendant(uri string) bool {
	for _, re := range r.AttendantPatterns {
		if re.MatchString(uri) {
			return true
		}
	}
	return false
}
