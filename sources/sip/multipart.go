package sip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// Body types of resource lists: a list notification is multipart/related
// (RFC 2387) whose root part is the RLMI index (RFC 4662 section 5), and
// [MS-SIP] 3.3.5.1 sends the first state of a batch the same way, in the
// 200 OK.
const (
	contentMultipartRelated = "multipart/related"
	contentRLMI             = "application/rlmi+xml"
)

// Bounds of a list body: a batch's first state carries one document per
// agent, each bounded by maxBodyBytes.
const (
	maxListBodyBytes = 8 << 20
	maxListParts     = 10000
)

// bodyPart is one part of a multipart body.
type bodyPart struct {
	// ContentID is the Content-ID without its angle brackets, as an RLMI
	// instance's cid names it (RFC 4662 section 5.2).
	ContentID   string
	ContentType string
	Body        []byte
}

// relatedBody is a multipart/related body: the root part (the one start
// names, else the first; RFC 2387 section 3.2) and every part in order,
// the root included.
type relatedBody struct {
	// Type is the root's type as the type parameter gives it.
	Type  string
	Root  bodyPart
	Parts []bodyPart
}

// part returns the part with Content-ID cid (with or without brackets).
func (b relatedBody) part(cid string) (bodyPart, bool) {
	cid = contentID(cid)
	for _, p := range b.Parts {
		if cid != "" && p.ContentID == cid {
			return p, true
		}
	}
	return bodyPart{}, false
}

// contentID strips the brackets and blanks a Content-ID or start may
// carry: RFC 4662's examples use <id@host>, [MS-SIP] 3.3.5.1's a bare
// token (start=resourceList).
func contentID(s string) string {
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">"))
}

// mediaType is a Content-Type's type and subtype, lower case, without
// parameters.
func mediaType(contentType string) string {
	t, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// parseMultipartRelated splits a multipart/related body into its parts.
func parseMultipartRelated(contentType string, body []byte) (relatedBody, error) {
	if len(body) > maxListBodyBytes {
		return relatedBody{}, fmt.Errorf("multipart body of %d bytes; at most %d", len(body), maxListBodyBytes)
	}
	t, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return relatedBody{}, fmt.Errorf("multipart: content type %q: %w", contentType, err)
	}
	if t != contentMultipartRelated {
		return relatedBody{}, fmt.Errorf("multipart: content type %q is not %s", contentType, contentMultipartRelated)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return relatedBody{}, fmt.Errorf("multipart: content type %q has no boundary", contentType)
	}
	out := relatedBody{Type: strings.ToLower(params["type"])}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return relatedBody{}, fmt.Errorf("multipart: part %d: %w", len(out.Parts)+1, err)
		}
		if len(out.Parts) == maxListParts {
			return relatedBody{}, fmt.Errorf("multipart: more than %d parts", maxListParts)
		}
		// Only identity encodings: RFC 4662 section 5.1 sends binary, and
		// [MS-SIP] 3.3.5.1's example does too.
		switch enc := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); enc {
		case "", "binary", "8bit", "7bit":
		default:
			return relatedBody{}, fmt.Errorf("multipart: part %d: Content-Transfer-Encoding %q is not binary", len(out.Parts)+1, enc)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return relatedBody{}, fmt.Errorf("multipart: part %d: %w", len(out.Parts)+1, err)
		}
		out.Parts = append(out.Parts, bodyPart{ContentID: contentID(p.Header.Get("Content-ID")),
			ContentType: strings.TrimSpace(p.Header.Get("Content-Type")), Body: data})
	}
	if len(out.Parts) == 0 {
		return relatedBody{}, errors.New("multipart: no parts")
	}
	out.Root = out.Parts[0]
	if start := contentID(params["start"]); start != "" {
		root, ok := out.part(start)
		if !ok {
			return relatedBody{}, fmt.Errorf("multipart: no part has the start Content-ID %q", start)
		}
		out.Root = root
	}
	if out.Type != "" && mediaType(out.Root.ContentType) != out.Type {
		return relatedBody{}, fmt.Errorf("multipart: root part is %q, the type parameter says %q", out.Root.ContentType, out.Type)
	}
	return out, nil
}
