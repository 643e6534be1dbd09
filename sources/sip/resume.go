package sip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// A subscription dialog outlives the worker that made it: any worker can
// continue it with an in-dialog SUBSCRIBE refresh, whose Contact moves the
// NOTIFYs to that worker (a target refresh, RFC 6665). The dialog store
// keeps what that takes, per agent.

// DialogStore keeps each agent's subscription dialog where the agent's next
// holder finds it (docs/contract.md, presence_dialogs).
type DialogStore interface {
	Put(ctx context.Context, key string, d schemas.Dialog) error
	// Get reports found false when the agent has no dialog.
	Get(ctx context.Context, key string) (d schemas.Dialog, found bool, err error)
	Delete(ctx context.Context, key string) error
}

const (
	// cseqReserve is how far above its last CSeq a holder records the
	// dialog's CSeq: the server refuses a CSeq that does not grow, and a
	// holder that dies after sending leaves its last CSeq unrecorded. A
	// refresh takes one number, two with a digest retry; the dialog is
	// stored after each, so the reserve runs out only if many stores fail.
	cseqReserve = 16
	// storeTimeout bounds one write or read of the dialog store.
	storeTimeout = 5 * time.Second
	// notifyTimeoutCheck is when a resumed dialog is refreshed first: a
	// NOTIFY the server sent to a dead holder before the resume times out
	// within SIP timer F (64 × T1 = 32 s), and some servers then remove the
	// subscription (Kamailio's timeout_rm_subs, on by default). This
	// refresh finds that out (481) and subscribes anew, rather than the
	// next one at four fifths of the expiry.
	notifyTimeoutCheck = 35 * time.Second
)

// reserveNeeded says whether the dialog's next refresh could pass the CSeq
// last stored: the dialog is stored first then. The caller holds s.mu.
func (s *Source) reserveNeeded(d *dialog) bool {
	return s.cfg.Dialogs != nil && d.cseq+2 > d.stored
}

// store records the dialog for the agent's next holder, CSeq reserved
// ahead. A failed write is logged: the reserve of the last one still holds.
func (s *Source) store(ctx context.Context, d *dialog) {
	if s.cfg.Dialogs == nil {
		return
	}
	s.mu.Lock()
	rec := schemas.Dialog{Endpoint: d.ep.cfg.Name, CallID: d.callID, LocalTag: d.localTag, RemoteTag: d.remoteTag,
		Target: d.target.String(), CSeq: d.cseq + cseqReserve, Expires: d.expires.UTC()}
	for _, r := range d.routeSet {
		rec.RouteSet = append(rec.RouteSet, r.String())
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.cfg.Dialogs.Put(ctx, d.agent.Key, rec); err != nil {
		s.log.Warn().Err(err).Str("uri", d.agent.URI).Msg("could not store the SIP dialog; a next holder may subscribe anew")
		return
	}
	s.mu.Lock()
	d.stored = max(d.stored, rec.CSeq)
	if rec.Expires.After(d.storedExpires) {
		d.storedExpires = rec.Expires
	}
	s.mu.Unlock()
}

// unstore deletes the record of a dialog that ended.
func (s *Source) unstore(ctx context.Context, d *dialog) {
	if s.cfg.Dialogs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.cfg.Dialogs.Delete(ctx, d.agent.Key); err != nil {
		s.log.Warn().Err(err).Str("uri", d.agent.URI).Msg("could not delete the stored SIP dialog")
	}
}

// Resume continues the agent's stored dialog with an in-dialog refresh that
// carries this stack's Contact, so that the server sends the NOTIFYs here
// from now on; its answer is followed by a NOTIFY of the current state. The
// caller holds the agent's claim. Any failure (481 after a server restart,
// a timeout) leaves nothing held here: the worker subscribes anew, and
// Subscribe first ends the dialog or waits until it is surely over
// (endLeftDialog).
func (s *Source) Resume(ctx context.Context, a sources.Agent) error {
	if s.cfg.Dialogs == nil || s.batches != nil {
		// mssip keeps no dialog for a next holder: it batches anew.
		return sources.ErrNothingToResume
	}
	get, cancel := context.WithTimeout(ctx, storeTimeout)
	rec, found, err := s.cfg.Dialogs.Get(get, a.Key)
	cancel()
	switch {
	case err != nil:
		return fmt.Errorf("sip: read stored dialog: %w", err)
	case !found:
		return sources.ErrNothingToResume
	case !rec.Expires.Add(s.cfg.Expires).After(s.clock.Now()):
		// A holder that died just after a refresh may have extended the
		// dialog by one expiry beyond the record: only past that is it
		// surely over. Before, the refresh tells (481 if it ended): a new
		// subscription beside a live dialog would make two.
		return fmt.Errorf("sip: stored dialog expired at %s: %w", rec.Expires.Format(time.RFC3339), sources.ErrNothingToResume)
	}
	d, err := s.restore(a, rec)
	if err != nil {
		return err
	}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
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
		return fmt.Errorf("sip: resume on the %s endpoint: %w", d.ep.cfg.Name, err)
	}
	d.cseq = max(d.cseq, req.CSeq().SeqNo)
	// The earlier holder reported the dialog's state: a NOTIFY that it is
	// not known any more makes it Unknown.
	s.reported[a.Key] = true
	s.establish(d, nil, res.Contact(), nil, true)
	s.granted(d, res, notifyTimeoutCheck)
	s.mu.Unlock()
	s.store(ctx, d)
	s.log.Info().Str("uri", a.URI).Str("endpoint", d.ep.cfg.Name).Str("call_id", d.callID).Msg("SIP subscription resumed")
	return nil
}

// endLeftDialog ends the agent's stored dialog before a new subscription
// goes out beside it. A resume that timed out proves nothing: its refresh
// may have reached the server, or never reached it while the dialog still
// lives there (refreshed by the holder before), and a new SUBSCRIBE would
// then make two live dialogs for one agent. The stored dialog is gone once
// the server answers its un-SUBSCRIBE (200, or 481: no such dialog), or once
// the expiry a last refresh could have given it has passed. Until then the
// subscribe fails, and the worker retries it with its back-off.
func (s *Source) endLeftDialog(ctx context.Context, a sources.Agent) error {
	if s.cfg.Dialogs == nil {
		return nil
	}
	get, cancel := context.WithTimeout(ctx, storeTimeout)
	rec, found, err := s.cfg.Dialogs.Get(get, a.Key)
	cancel()
	surelyOver := rec.Expires.Add(s.cfg.Expires)
	switch {
	case err != nil:
		return fmt.Errorf("sip: read the stored dialog before subscribing anew: %w", err)
	case !found || !surelyOver.After(s.clock.Now()):
		return nil
	}
	d, err := s.restore(a, rec)
	if err != nil {
		// Nobody can end or resume it from here (an endpoint another
		// worker has): it runs out at the server.
		s.log.Warn().Err(err).Str("uri", a.URI).Msg("a stored SIP dialog cannot be ended from here; subscribing anew")
		return nil
	}
	if err := s.end(ctx, d, d.request(0)); err != nil {
		return fmt.Errorf("sip: the stored dialog (Call-ID %s) may still be live at the server; no new subscription beside it until it is ended or until %s: %w",
			d.callID, surelyOver.UTC().Format(time.RFC3339), err)
	}
	s.unstore(ctx, d)
	s.log.Info().Str("uri", a.URI).Str("call_id", d.callID).Msg("stored SIP dialog ended before subscribing anew")
	return nil
}

// restore makes a dialog of a stored record, on this stack's endpoint of
// the same name; its next CSeq is past every one sent before.
func (s *Source) restore(a sources.Agent, rec schemas.Dialog) (*dialog, error) {
	var ep *endpoint
	for _, e := range s.endpoints {
		if e.cfg.Name == rec.Endpoint {
			ep = e
		}
	}
	if ep == nil {
		return nil, fmt.Errorf("sip: stored dialog is on endpoint %q, not configured here: %w", rec.Endpoint, sources.ErrNothingToResume)
	}
	d := &dialog{agent: a, ep: ep, callID: rec.CallID, localTag: rec.LocalTag, remoteTag: rec.RemoteTag,
		cseq: rec.CSeq, stored: rec.CSeq, storedExpires: rec.Expires, asked: s.cfg.Expires}
	bad := func(what string, err error) error {
		return fmt.Errorf("sip: stored dialog: %s: %w (%w)", what, err, sources.ErrNothingToResume)
	}
	if err := sip.ParseUri(a.URI, &d.agentURI); err != nil {
		return nil, bad("agent URI", err)
	}
	if err := sip.ParseUri(rec.Target, &d.target); err != nil {
		return nil, bad("target", err)
	}
	for _, r := range rec.RouteSet {
		var u sip.Uri
		if err := sip.ParseUri(r, &u); err != nil {
			return nil, bad("route", err)
		}
		d.routeSet = append(d.routeSet, u)
	}
	if d.callID == "" || d.localTag == "" || d.remoteTag == "" {
		return nil, bad("dialog id", errors.New("call_id, local_tag or remote_tag empty"))
	}
	return d, nil
}

// Detach lets the agent's dialog go without ending it: no refresh is sent
// any more, and one under way has finished when Detach returns. The stored
// record stays for the next holder; unresumed, the dialog expires at the
// server. A dialog refreshed since its last store (the store failed, as
// NATS does while a worker is fenced) is ended instead: the next holder
// would take it for expired and subscribe anew beside it.
func (s *Source) Detach(ctx context.Context, a sources.Agent) error {
	if s.batches != nil {
		// Nothing is left for the next holder: the agent leaves its batch.
		return s.Unsubscribe(ctx, a)
	}
	s.mu.Lock()
	delete(s.waiting, a.Key)
	delete(s.reported, a.Key)
	d := s.byAgent[a.Key]
	if d != nil {
		s.forget(d)
	}
	s.mu.Unlock()
	if d == nil {
		return nil
	}
	d.sendMu.Lock() // waits for a refresh under way
	defer d.sendMu.Unlock()
	s.mu.Lock()
	var req *sip.Request
	storedExpires := d.storedExpires
	if s.cfg.Dialogs != nil && d.established() && d.expires.After(storedExpires) {
		req = d.request(0)
	}
	s.mu.Unlock()
	if req == nil {
		return nil
	}
	s.log.Info().Str("uri", a.URI).Str("call_id", d.callID).Time("stored_expires", storedExpires).
		Msg("SIP dialog not stored as it stands: ended rather than left for the next holder")
	return s.end(ctx, d, req)
}

// heldElsewhere says whether a NOTIFY for a dialog this stack does not hold
// may belong to one another worker holds, or is about to resume: its
// agent's stored dialog is this one and has not expired. A 481 would end
// the subscription for every worker, so it is answered only when no worker
// can hold the dialog; when that cannot be known (the store does not
// answer), the NOTIFY is answered 200 and dropped, and an orphan dialog
// ends at its expiry.
func (s *Source) heldElsewhere(req *sip.Request) bool {
	if s.cfg.Dialogs == nil {
		return false
	}
	from, callID := req.From(), req.CallID()
	if from == nil || callID == nil {
		return false
	}
	uri, err := schemas.ParseURI(from.Address.String())
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	rec, found, err := s.cfg.Dialogs.Get(ctx, uri.Key())
	if err != nil {
		s.log.Warn().Err(err).Str("uri", uri.URI).Msg("NOTIFY for a dialog not held here, store unreadable: answered 200 and dropped")
		return true
	}
	held := found && rec.CallID == callID.Value() && rec.Expires.After(s.clock.Now())
	if held {
		s.log.Debug().Str("uri", uri.URI).Msg("NOTIFY for a dialog held or resumed elsewhere: answered 200 and dropped")
	}
	return held
}

var _ sources.Resumer = (*Source)(nil)
