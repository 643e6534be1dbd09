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
	// asked is the expiry the dialog's SUBSCRIBEs ask for: the configured
	// one, or the server's Min-Expires once it answered 423.
	asked time.Duration
	// notified is set by the dialog's first NOTIFY; timerN, running from
	// the 2xx of the first SUBSCRIBE until then, fails the subscription
	// when no NOTIFY comes (RFC 6665 section 4.1.2.4).
	notified bool
	timerN   clockwork.Timer
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

func (d *dialog) stopTimers() {
	d.stopRefresh()
	if d.timerN != nil {
		d.timerN.Stop()
		d.timerN = nil
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
	d := &dialog{agent: a, ep: ep, agentURI: agentURI, target: agentURI, asked: s.cfg.Expires,
		callID: sip.GenerateTagN(24), localTag: sip.GenerateTagN(12)}
	req := s.track(d)

	res, req, err := s.sendSubscribe(ctx, d, req)
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
	s.granted(d, res, d.asked)
	if !d.notified {
		s.startTimerN(d)
	}
	s.mu.Unlock()
	s.store(ctx, d)
	s.log.Info().Str("uri", a.URI).Str("endpoint", ep.cfg.Name).Str("call_id", d.callID).Msg("SIP subscription up")
	return nil
}

// sendSubscribe sends one of the dialog's SUBSCRIBEs. A 423 Interval Too
// Brief is answered as RFC 3261 section 10.2.8 (carried into RFC 6665)
// says: once more, in the same dialog, asking for the server's Min-Expires,
// which the dialog asks for from then on. It returns the request that got
// the answer.
func (s *Source) sendSubscribe(ctx context.Context, d *dialog, req *sip.Request) (*sip.Response, *sip.Request, error) {
	res, err := s.send(ctx, d.ep, req)
	if err != nil || res.StatusCode != 423 {
		return res, req, err
	}
	least, ok := minExpiresOf(res)
	s.mu.Lock()
	d.cseq = max(d.cseq, req.CSeq().SeqNo)
	if !ok || least <= d.asked {
		s.mu.Unlock()
		return res, req, nil // nothing longer to ask: the 423 is the answer
	}
	d.asked = least
	retry := d.request(int(least / time.Second))
	s.mu.Unlock()
	s.log.Info().Str("uri", d.agent.URI).Str("call_id", d.callID).Dur("min_expires", least).
		Msg("SIP server wants a longer subscription (423 Interval Too Brief): asking its Min-Expires")
	res, err = s.send(ctx, d.ep, retry)
	return res, retry, err
}

// minExpiresOf is a 423's Min-Expires.
func minExpiresOf(res *sip.Response) (time.Duration, bool) {
	h := res.GetHeader("Min-Expires")
	if h == nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// startTimerN fails the subscription when no NOTIFY comes within Timer N
// of its first 2xx (RFC 6665 section 4.1.2.4): a notifier that accepts and
// never notifies (linphonec for a watcher it does not count as a friend)
// would leave the agent active with no presence for ever. The failure
// counts for the agent's back-off; the dialog is ended at the notifier so
// that it holds none beside the next. The caller holds s.mu.
func (s *Source) startTimerN(d *dialog) {
	d.timerN = s.clock.AfterFunc(s.cfg.TimerN, func() {
		s.mu.Lock()
		if s.closing || s.byCallID[d.callID] != d || d.notified {
			s.mu.Unlock()
			return
		}
		var req *sip.Request
		if d.established() {
			req = d.request(0)
		}
		ctx := s.ctx
		s.effects.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.effects.Done()
			s.log.Warn().Str("uri", d.agent.URI).Str("endpoint", d.ep.cfg.Name).Str("call_id", d.callID).
				Dur("timer_n", s.cfg.TimerN).Msg("SIP subscription failed: no NOTIFY within Timer N of the 2xx")
			s.lose(d, fmt.Errorf("no NOTIFY within %s of the SUBSCRIBE's 2xx (RFC 6665 Timer N)", s.cfg.TimerN))
			if req != nil {
				if err := s.end(ctx, d, req); err != nil {
					s.log.Info().Err(err).Str("uri", d.agent.URI).Msg("could not end the SIP dialog that got no NOTIFY")
				}
			}
		}()
	})
}

// granted applies a 2xx to a SUBSCRIBE of the dialog: its new expiry and
// the next refresh, at four fifths of it (a slow answer still lands in
// time) or after at most within; the caller holds s.mu, then stores the
// dialog.
func (s *Source) granted(d *dialog, res *sip.Response, within time.Duration) {
	expires := expiresOf(res, d.asked)
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
	req := d.request(int(d.asked / time.Second))
	s.mu.Unlock()
	res, req, err := s.sendSubscribe(ctx, d, req)
	if err == nil && res.StatusCode < 300 {
		s.mu.Lock()
		d.cseq = max(d.cseq, req.CSeq().SeqNo)
		current := s.byCallID[d.callID] == d
		if current {
			s.granted(d, res, d.asked)
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
	d.stopTimers()
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
		// The NOTIFY came before the 2xx (RFC 6665 section 4.1.2.4): it
		// establishes the dialog and is applied.
		s.establish(d, &sip.ToHeader{Params: req.From().Params}, req.Contact(), req.GetHeaders("Record-Route"), false)
	}
	if d != nil {
		d.notified = true
		if d.timerN != nil {
			d.timerN.Stop()
			d.timerN = nil
		}
		if !state.terminated {
			s.shortened(d, state.expires)
		}
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

// notifyExpiresSlack is how much earlier than the granted expiry a NOTIFY's
// must be to count as shortening the subscription: servers give whole
// seconds that count down (Kamailio), not a change.
const notifyExpiresSlack = 2 * time.Second

// shortened applies the expires of a NOTIFY's Subscription-State, which
// RFC 6665 section 4.1.3 makes authoritative, when it ends the subscription
// before the 2xx said: the refresh comes in time. A later one is not taken,
// since a notifier's word in its NOTIFY can be wrong that way (linphonec
// says 600 whatever it granted) and a refresh too late loses the
// subscription. The caller holds s.mu.
func (s *Source) shortened(d *dialog, expires time.Duration) {
	if expires == 0 || d.expires.IsZero() {
		return
	}
	at := s.clock.Now().Add(expires)
	if !at.Before(d.expires.Add(-notifyExpiresSlack)) {
		return
	}
	d.expires = at
	s.scheduleRefresh(d, expires*4/5)
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
		case p.Availability == schemas.Unknown && !s.reportedOf(d.agent.Key):
			// Nothing was known of the agent: it stays so (no presence
			// known yet) until the notifier knows.
		case d.last == nil || !d.last.SameAs(p):
			d.last = &p
			s.mu.Lock()
			s.reported[d.agent.Key] = true
			s.mu.Unlock()
			s.sink.Observe(d.agent, p)
		}
	}
	d.notifyMu.Unlock()

	if state.terminated {
		s.lose(d, state.err())
	}
}

// reportedOf says whether this stack reported a presence of the agent since
// it was handed the agent.
func (s *Source) reportedOf(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported[key]
}

// subscriptionState is the Subscription-State header (RFC 6665 section 4.1.3).
type subscriptionState struct {
	terminated bool
	reason     string
	retryAfter time.Duration
	expires    time.Duration // 0: none given
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
		case "expires":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				st.expires = time.Duration(n) * time.Second
			}
		}
	}
	return st
}

// err is what a terminated subscription means for the worker, reason by
// reason as RFC 6665 section 4.1.3 says: deactivated and timeout subscribe
// again at once (retry-after means nothing for them); probation and giveup
// retry later, after retry-after when given, as a failure that backs off;
// rejected, noresource and invariant must not be subscribed again, so the
// agent fails until a UCC subscribes it again (invariant's last NOTIFY
// carried the final state, which stays); no reason, or one RFC 6665 does
// not define, may subscribe again at any time, but not before a
// retry-after.
func (st subscriptionState) err() error {
	base := fmt.Errorf("terminated by the server (reason %q)", st.reason)
	switch st.reason {
	case "deactivated", "timeout":
		return fmt.Errorf("%w: %w", base, sources.ErrTerminated)
	case "rejected", "noresource", "invariant":
		return &sources.PermanentError{Err: fmt.Errorf("%w: RFC 6665 says not to subscribe again", base)}
	case "probation", "giveup":
		if st.retryAfter > 0 {
			return &sources.RetryAfterError{After: st.retryAfter, Err: base}
		}
		return base
	}
	if st.retryAfter > 0 {
		return &sources.RetryAfterError{After: st.retryAfter, Err: base}
	}
	return fmt.Errorf("%w: %w", base, sources.ErrTerminated)
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
	return d.request(int(d.asked / time.Second))
}
