package sip

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// RLMI instance states: RFC 4662 section 5.2 defines active, pending and
// terminated; [MS-PRES] 3.4.5.1.3 adds resubscribe, with poolFqdn naming
// the pool to batch the resource at, or without it to subscribe it alone.
const (
	instanceActive      = "active"
	instanceTerminated  = "terminated"
	instanceResubscribe = "resubscribe"
)

// rlmiList is an application/rlmi+xml document (RFC 4662 section 5.2,
// namespace urn:ietf:params:xml:ns:rlmi): the list's URI, its version
// (each notification's one higher) and whether it carries the full state
// or only the resources that changed.
type rlmiList struct {
	URI       string
	Version   uint64
	FullState bool
	Resources []rlmiResource
}

// rlmiResource is one resource of the list; no instance means no
// subscription to it exists yet (RFC 4662 section 5.2).
type rlmiResource struct {
	URI       string
	Instances []rlmiInstance
}

// rlmiInstance is one subscription to a resource.
type rlmiInstance struct {
	ID    string
	State string
	// Reason says why a terminated instance ended (RFC 6665 reason codes:
	// deactivated, probation, rejected, timeout, giveup, noresource).
	Reason string
	// CID is the Content-ID of the part holding the resource's state, if
	// this notification carries one.
	CID string
	// PoolFQDN is the pool to batch a resubscribe instance at ([MS-PRES]
	// 3.4.5.1.3); empty when it is to be subscribed alone.
	PoolFQDN string
}

type rlmiXML struct {
	XMLName   xml.Name `xml:"list"`
	URI       string   `xml:"uri,attr"`
	Version   string   `xml:"version,attr"`
	FullState string   `xml:"fullState,attr"`
	Resources []struct {
		URI       string `xml:"uri,attr"`
		Instances []struct {
			ID       string `xml:"id,attr"`
			State    string `xml:"state,attr"`
			Reason   string `xml:"reason,attr"`
			CID      string `xml:"cid,attr"`
			PoolFQDN string `xml:"poolFqdn,attr"`
		} `xml:"instance"`
	} `xml:"resource"`
}

// parseRLMI reads an RLMI document. The list attributes RFC 4662 requires
// (uri, version, fullState) must be there; a resource without a uri is
// an error too, since nothing could be done with its state.
func parseRLMI(body []byte) (rlmiList, error) {
	if len(body) > maxListBodyBytes {
		return rlmiList{}, fmt.Errorf("rlmi: %d bytes; at most %d", len(body), maxListBodyBytes)
	}
	var doc rlmiXML
	if err := decode(body, &doc); err != nil {
		return rlmiList{}, fmt.Errorf("rlmi: %w", err)
	}
	l := rlmiList{URI: strings.TrimSpace(doc.URI)}
	if l.URI == "" {
		return rlmiList{}, fmt.Errorf("rlmi: list has no uri")
	}
	version, err := strconv.ParseUint(strings.TrimSpace(doc.Version), 10, 32)
	if err != nil {
		return rlmiList{}, fmt.Errorf("rlmi: list version %q is not an unsigned number", doc.Version)
	}
	l.Version = version
	switch strings.TrimSpace(doc.FullState) {
	case "true", "1":
		l.FullState = true
	case "false", "0":
	default:
		return rlmiList{}, fmt.Errorf("rlmi: list fullState %q is not true or false", doc.FullState)
	}
	for i, r := range doc.Resources {
		res := rlmiResource{URI: strings.TrimSpace(r.URI)}
		if res.URI == "" {
			return rlmiList{}, fmt.Errorf("rlmi: resource %d has no uri", i+1)
		}
		for _, in := range r.Instances {
			res.Instances = append(res.Instances, rlmiInstance{ID: strings.TrimSpace(in.ID),
				State: strings.ToLower(strings.TrimSpace(in.State)), Reason: strings.TrimSpace(in.Reason),
				CID: contentID(in.CID), PoolFQDN: strings.TrimSpace(in.PoolFQDN)})
		}
		l.Resources = append(l.Resources, res)
	}
	return l, nil
}

// listNotification is a resource list body read whole: the RLMI index and,
// per instance, the part holding its state.
type listNotification struct {
	List  rlmiList
	Parts relatedBody
}

// parseListNotification reads a multipart/related body whose root is RLMI.
func parseListNotification(contentType string, body []byte) (listNotification, error) {
	related, err := parseMultipartRelated(contentType, body)
	if err != nil {
		return listNotification{}, err
	}
	if t := mediaType(related.Root.ContentType); t != contentRLMI {
		return listNotification{}, fmt.Errorf("multipart: root part is %q, not %s", related.Root.ContentType, contentRLMI)
	}
	list, err := parseRLMI(related.Root.Body)
	if err != nil {
		return listNotification{}, err
	}
	return listNotification{List: list, Parts: related}, nil
}

// stateOf is the part an instance's cid names; false when the
// notification carries no state for it (or names a part it lacks).
func (n listNotification) stateOf(in rlmiInstance) (bodyPart, bool) {
	if in.CID == "" {
		return bodyPart{}, false
	}
	return n.Parts.part(in.CID)
}
