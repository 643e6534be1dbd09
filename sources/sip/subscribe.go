package sip

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/contactcenter/presence-provider/schemas"
)

// dialogIDs are what names a subscription dialog's requests (RFC 3261
// section 12.2.1.1): the remote target, both URIs and tags, the Call-ID,
// the CSeq, the route set, and this side's Contact.
type dialogIDs struct {
	target, from, to            sip.Uri
	localTag, remoteTag, callID string
	cseq                        uint32
	routeSet                    []sip.Uri
	contact                     sip.Uri
}

// subscribeRequest builds a SUBSCRIBE of the presence event package in a
// dialog; expires 0 ends the subscription. Dialect headers come after.
func subscribeRequest(id dialogIDs, expires int, accept string) *sip.Request {
	req := sip.NewRequest(sip.SUBSCRIBE, *id.target.Clone())
	from := &sip.FromHeader{Address: id.from, Params: sip.NewParams()}
	from.Params.Add("tag", id.localTag)
	to := &sip.ToHeader{Address: id.to, Params: sip.NewParams()}
	if id.remoteTag != "" {
		to.Params.Add("tag", id.remoteTag)
	}
	callID := sip.CallIDHeader(id.callID)
	maxForwards := sip.MaxForwardsHeader(70)
	expiresHeader := sip.ExpiresHeader(uint32(expires))
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: id.cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&maxForwards)
	for _, r := range id.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	req.AppendHeader(&sip.ContactHeader{Address: id.contact})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Accept", accept))
	req.AppendHeader(&expiresHeader)
	return req
}

// upstreamOf tells a subscription dialog for explain: its endpoint,
// Call-ID and expiry (none before the server granted one).
func upstreamOf(ep *endpoint, callID string, expires time.Time) *schemas.SIPUpstream {
	up := &schemas.SIPUpstream{Endpoint: ep.cfg.Name, CallID: callID}
	if !expires.IsZero() {
		utc := expires.UTC()
		up.Expires = &utc
	}
	return up
}
