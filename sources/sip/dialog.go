package sip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// dialog is one subscription dialog (RFC 6665): what sipgo keeps only for
// INVITE. Its fields are guarded by Source.mu, but for those of notifyMu.
type dialog struct {
	agent     sources.Agent
	ep        *endpoint
	agentURI  sip.Uri
	callID    string
	localTag  string
	remoteTag string
	cseq      uint32
	routeSet  []sip.Uri
	target    sip.Uri // the remote target: the agent URI until the server's Contact is known
	refresh   clockwork.Timer
	expires   time.Time // when the server ends the subscription unless refreshed
	// stored is the CSeq ceiling last written to the dialog store: this
	// holder sends no CSeq above it, so the next one may start past it.
	stored uint32
	// storedExpires is the expiry last written to the dialog store: a
	// next holder takes the dialog for over one expiry past it.
	storedExpires time.Time

	// sendMu keeps one refresh of the dialog at a time, and lets Detach
	// wait for one under way.
	sendMu sync.Mutex

	// notifyMu keeps one dialog's NOTIFYs in order while each is parsed and
	// stored; last drops a repeat of the same state.
	notifyMu   sync.Mutex
	notifyCSeq uint32
	last       *schemas.Presence
}

func (d *dialog) established() bool { return d.remoteTag != "" }

func (d *dialog) stopRefresh() {
	if d.refresh != nil {
		d.refresh.Stop()
		d.refresh = nil
	}
}

// request builds the dialog's next SUBSCRIBE; expires 0 ends the subscription.
func (d *dialog) request(expires int) *sip.Request {
	d.cseq++
	return subscribeRequest(dialogIDs{target: d.target, from: d.ep.uri, to: d.agentURI, localTag: d.localTag,
		remoteTag: d.remoteTag, callID: d.callID, cseq: d.cseq, routeSet: d.routeSet, contact: d.ep.contact}, expires, acceptBodies)
}

// subscribeOn makes a new subscription dialog for the agent on one endpoint.
func (s *Source) subscribeOn(ctx context.Context, ep *endpoint, a sources.Agent) error {
	var agentURI sip.Uri
	if err := sip.ParseUri(a.URI, &agentURI); err != nil {
		return &sources.PermanentError{Err: fmt.Errorf("agent URI %q: %w", a.URI, err)}
	}
	d := &dialog{agent: a, ep: ep, agentURI: agentURI, target: agentURI,
		callID: sip.GenerateTagN(24), localTag: sip.GenerateTagN(12)}
	req := s.track(d)

	res, err := s.send(ctx, ep, req)
	if err == nil && res.StatusCode >= 300 {
		err = statusError(res)
	}
	s.mu.Lock()
	if err != nil {
		if s.byCallID[d.callID] == d {
			s.forget(d)
		}
		s.mu.Unlock()
		return err
	}
	d.cseq = max(d.cseq, req.CSeq().SeqNo) // a digest retry took the next number
	s.establish(d, res.To(), res.Contact(), res.GetHeaders("Record-Route"), true)
	s.granted(d, res, s.cfg.Expires)
	s.mu.Unlock()
	s.store(ctx, d)
	s.log.Info().Str("uri", a.URI).Str("endpoint", ep.cfg.Name).Str("call_id", d.callID).Msg("SIP subscription up")
	return nil
}

// granted applies a 2xx to a SUBSCRIBE of the dialog: its new expiry and
// the next refresh, at four fifths of it (a slow answer still lands in
// time) or after at most within; the caller holds s.mu, then stores the
// dialog.
func (s *Source) granted(d *dialog, res *sip.Response, within time.Duration) {
	expires := expiresOf(res, s.cfg.Expires)
	d.expires = s.clock.Now().Add(expires)
	s.scheduleRefresh(d, min(expires*4/5, within))
}

// establish learns the dialog's remote side from a 2xx or the first NOTIFY.
// The route set is the Record-Route reversed when learnt from a response
// (this side sent the request) and in order from a NOTIFY (RFC 3261 12.1).
func (s *Source) establish(d *dialog, to *sip.ToHeader, contact *sip.ContactHeader, recordRoute []sip.Header, fromResponse bool) {
	if d.remoteTag == "" && to != nil {
		d.remoteTag, _ = to.Params.Get("tag")
	}
	if contact != nil {
		d.target = *contact.Address.Clone()
	}
	if len(recordRoute) > 0 && len(d.routeSet) == 0 {
		for _, h := range recordRoute {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				d.routeSet = append(d.routeSet, *rr.Address.Clone())
			}
		}
		if fromResponse {
			slices.Reverse(d.routeSet)
		}
	}
}

// scheduleRefresh renews the subscription after a while.
func (s *Source) scheduleRefresh(d *dialog, after time.Duration) {
	d.stopRefresh()
	if s.closing {
		return
	}
	d.refresh = s.clock.AfterFunc(after, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closing || s.byCallID[d.callID] != d {
			return
		}
		s.effects.Add(1)
		go func() {
			defer s.effects.Done()
			s.refreshDialog(d)
		}()
	})
}

// refreshDialog renews a subscription. Whatever keeps the refresh from
// succeeding (481 after a server restart, a timeout, a 5xx) ends the dialog
// and asks for a new subscription at once: the new attempt is what counts
// as a failure if the server really refuses.
func (s *Source) refreshDialog(d *dialog) {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	s.mu.Lock()
	if s.byCallID[d.callID] != d {
		s.mu.Unlock()
		return // unsubscribed or detached meanwhile
	}
	ctx := s.ctx
	if s.reserveNeeded(d) {
		s.mu.Unlock()
		s.store(ctx, d)
		s.mu.Lock()
	}
	req := d.request(int(s.cfg.Expires / time.Second))
	s.mu.Unlock()
	res, err := s.send(ctx, d.ep, req)
	if err == nil && res.StatusCode < 300 {
		s.mu.Lock()
		d.cseq = max(d.cseq, req.CSeq().SeqNo)
		current := s.byCallID[d.callID] == d
		if current {
			s.granted(d, res, s.cfg.Expires)
		}
		s.mu.Unlock()
		if current {
			s.store(ctx, d)
		}
		return
	}
	if err == nil {
		err = statusError(res)
	}
	if ctx.Err() != nil {
		return // stopping
	}
	s.lose(d, fmt.Errorf("refresh: %w: %w", err, sources.ErrTerminated))
}

// forget drops a dialog from the tables; the caller holds s.mu.
func (s *Source) forget(d *dialog) {
	d.stopRefresh()
	if s.byCallID[d.callID] == d {
		delete(s.byCallID, d.callID)
	}
	if s.byAgent[d.agent.Key] == d {
		delete(s.byAgent, d.agent.Key)
	}
}

// lose ends a dialog the worker did not ask to end, and tells the worker.
func (s *Source) lose(d *dialog, err error) {
	s.mu.Lock()
	current := s.byAgent[d.agent.Key] == d
	s.forget(d)
	s.mu.Unlock()
	if current {
		s.log.Info().Err(err).Str("uri", d.agent.URI).Str("endpoint", d.ep.cfg.Name).Msg("SIP subscription ended")
		s.unstore(s.ctx, d)
		s.sink.Lost(d.agent, err)
	}
}

// onNotify answers every NOTIFY at once, then applies its state and body.
func (s *Source) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	state := parseSubscriptionState(req)
	s.mu.Lock()
	var d *dialog
	if callID := req.CallID(); callID != nil {
		d = s.byCallID[callID.Value()]
	}
	if d != nil {
		if tag, _ := req.To().Params.Get("tag"); tag != d.localTag {
			d = nil
		}
	}
	if d != nil && !d.established() {
		s.establish(d, &sip.ToHeader{Params: req.From().Params}, req.Contact(), req.GetHeaders("Record-Route"), false)
	}
	s.mu.Unlock()

	code, reason := 200, "OK"
	if d == nil && !state.terminated && !s.heldElsewhere(req) {
		// Nobody's: 481 tells the server to end the subscription.
		code, reason = 481, "Subscription Does Not Exist"
	}
	if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		s.log.Warn().Err(err).Msg("could not answer NOTIFY")
	}
	s.log.Debug().Str("method", string(req.Method)).Str("call_id", callIDOf(req)).Int("status", code).
		Str("subscription_state", headerValue(req, "Subscription-State")).Msg("SIP transaction answered")
	if d == nil {
		return
	}
	s.applyNotify(d, req, state)
}

// headerValue is a header's value, empty when the message has none.
func headerValue(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func (s *Source) applyNotify(d *dialog, req *sip.Request, state subscriptionState) {
	d.notifyMu.Lock()
	seq := req.CSeq().SeqNo
	stale := d.notifyCSeq != 0 && seq <= d.notifyCSeq
	if !stale {
		d.notifyCSeq = seq
	}
	if body := req.Body(); len(body) > 0 && !stale {
		contentType := ""
		if h := req.ContentType(); h != nil {
			contentType = h.Value()
		}
		p, err := parseBody(contentType, body, s.clock.Now())
		switch {
		case errors.Is(err, errNoState):
		case err != nil:
			s.log.Warn().Err(err).Str("uri", d.agent.URI).Msg("NOTIFY body not understood; presence kept")
		case d.last == nil || !d.last.SameAs(p):
			d.last = &p
			s.sink.Observe(d.agent, p)
		}
	}
	d.notifyMu.Unlock()

	if state.terminated {
		s.lose(d, state.err())
	}
}

// subscriptionState is the Subscription-State header (RFC 6665 section 4.1.3).
type subscriptionState struct {
	terminated bool
	reason     string
	retryAfter time.Duration
}

func parseSubscriptionState(req *sip.Request) subscriptionState {
	h := req.GetHeader("Subscription-State")
	if h == nil {
		return subscriptionState{}
	}
	parts := strings.Split(h.Value(), ";")
	st := subscriptionState{terminated: strings.EqualFold(strings.TrimSpace(parts[0]), "terminated")}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "reason":
			st.reason = strings.ToLower(v)
		case "retry-after":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				st.retryAfter = time.Duration(n) * time.Second
			}
		}
	}
	return st
}

// err is what a terminated subscription means for the worker: subscribe
// again at once after a timeout or deactivation, or count a failure.
func (st subscriptionState) err() error {
	base := fmt.Errorf("terminated by the server (reason %q)", st.reason)
	switch st.reason {
	case "deactivated", "timeout", "":
		if st.retryAfter == 0 {
			return fmt.Errorf("%w: %w", base, sources.ErrTerminated)
		}
	}
	if st.retryAfter > 0 {
		return &sources.RetryAfterError{After: st.retryAfter, Err: base}
	}
	return base
}

// statusError turns a final failure answer into an error, keeping the
// server's Retry-After.
func statusError(res *sip.Response) error {
	err := fmt.Errorf("%d %s", res.StatusCode, res.Reason)
	if h := res.GetHeader("Retry-After"); h != nil {
		v, _, _ := strings.Cut(h.Value(), ";")
		if n, perr := strconv.Atoi(strings.TrimSpace(v)); perr == nil && n > 0 {
			return &sources.RetryAfterError{After: time.Duration(n) * time.Second, Err: err}
		}
	}
	return err
}

// expiresOf is the subscription length the server granted.
func expiresOf(res *sip.Response, asked time.Duration) time.Duration {
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// track makes d the agent's dialog and builds its next SUBSCRIBE. The
// dialog is known before the request leaves: the NOTIFY may beat the 200.
func (s *Source) track(d *dialog) *sip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.byAgent[d.agent.Key]; old != nil {
		s.forget(old)
	}
	s.byCallID[d.callID] = d
	s.byAgent[d.agent.Key] = d
	return d.request(int(s.cfg.Expires / time.Second))
}
