package sip

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jonboulle/clockwork"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// Batching in the mssip dialect ([MS-SIP] 3.3.4.1, [MS-PRES] 2.2.2.4.1):
// the agents the worker hands over within BatchWindow travel in one
// SUBSCRIBE, and a batch dialog takes agents until it holds BatchSize.
const (
	DefaultBatchSize   = 100
	DefaultBatchWindow = 200 * time.Millisecond
)

// Batch body and Accept of [MS-SIP] 3.3.4.1 and [MS-PRES] 2.2.2.4.1.
const (
	contentBatch = "application/msrtc-adrl-categorylist+xml"
	acceptBatch  = contentCategories + ", " + contentRLMI + ", " + contentMultipartRelated
	// benotify is [MS-SIP]'s best-effort NOTIFY (3.5): never answered.
	benotify sip.RequestMethod = "BENOTIFY"
)

// batch is one batched subscription dialog: the application endpoint
// subscribes to its own URI for a list of agents. Fields are guarded by
// Source.mu.
type batch struct {
	ep *endpoint
	// alone is a single category subscription ([MS-PRES] 3.4.5.1.3) to
	// one agent the pool asked to subscribe by itself: addressed to the
	// agent (to), without Require: adhoclist.
	alone bool
	to    sip.Uri
	// ended is a batch given up: nothing joins it again.
	ended bool
	// rebatched is closed when the rebatch queued for the batch is done;
	// nil while none is queued.
	rebatched chan struct{}
	callID    string
	localTag  string
	remoteTag string
	cseq      uint32
	target    sip.Uri
	routeSet  []sip.Uri
	members   map[string]*member // by lower-case agent URI
	expires   time.Time
	refresh   clockwork.Timer
}

// member is an agent of a batch and the last state it reported.
type member struct {
	agent sources.Agent
	last  *schemas.Presence
}

// pendingSub is an agent waiting for its batch's SUBSCRIBE to be answered.
type pendingSub struct {
	agent sources.Agent
	route route
	// redirects counts the resubscribes this attempt followed.
	redirects int
	// last is the state an agent moved from another batch had there.
	last *schemas.Presence
	done chan error
}

// route is where an agent is batched: at the application endpoint's pool
// with the others, unless the pool said otherwise ([MS-PRES] 3.4.5.1.3: a
// resubscribe with poolFqdn names another pool, without it the agent is
// subscribed alone).
type route struct {
	pool  string // poolFqdn; empty: the application endpoint's pool
	alone bool
}

// maxRedirects bounds the resubscribes one subscribe attempt follows.
const maxRedirects = 2

// batcher holds the mssip dialect's batches; one goroutine (run) sends
// every batch request, so CSeqs stay in order without a lock held across
// I/O. Its maps are guarded by Source.mu.
type batcher struct {
	size    int
	window  time.Duration
	pending []pendingSub
	byCall  map[string]*batch
	byAgent map[string]*batch // by agent key
	// routes are the agents the pool sent elsewhere, by agent key.
	routes map[string]route
	// pools are the endpoints of the pools resubscribes named, by poolFqdn.
	pools map[string]*endpoint
	// paused is when each pool may be asked again after a 503 or 429 with
	// Retry-After.
	paused map[*endpoint]time.Time
	// moving are the agents a rebatch is moving, by key: the channel is
	// closed when they are in their new batches.
	moving map[string]chan struct{}
	kick   chan struct{}
	ops    chan func(context.Context)
}

func newBatcher(size int, window time.Duration) *batcher {
	if size <= 0 {
		size = DefaultBatchSize
	}
	if window <= 0 {
		window = DefaultBatchWindow
	}
	return &batcher{size: size, window: window, byCall: map[string]*batch{}, byAgent: map[string]*batch{},
		routes: map[string]route{}, pools: map[string]*endpoint{}, paused: map[*endpoint]time.Time{},
		moving: map[string]chan struct{}{},
		kick:   make(chan struct{}, 1), ops: make(chan func(context.Context), 64)}
}

// subscribeBatched puts the agent into the next batch request and waits for
// the pool's answer about it: each agent's result is its own.
func (s *Source) subscribeBatched(ctx context.Context, a sources.Agent) error {
	var u sip.Uri
	if err := sip.ParseUri(a.URI, &u); err != nil {
		return &sources.PermanentError{Err: fmt.Errorf("agent URI %q: %w", a.URI, err)}
	}
	p := pendingSub{agent: a, done: make(chan error, 1)}
	s.mu.Lock()
	if s.batches.byAgent[a.Key] != nil {
		s.mu.Unlock()
		return nil // in a batch already: an attempt given up on made it after all
	}
	p.route = s.batches.routes[a.Key]
	s.batches.pending = append(s.batches.pending, p)
	s.mu.Unlock()
	select {
	case s.batches.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		s.mu.Lock()
		s.batches.pending = slices.DeleteFunc(s.batches.pending, func(q pendingSub) bool { return q.done == p.done })
		s.mu.Unlock()
		return ctx.Err()
	}
}

// runBatches sends the batch requests until ctx ends.
func (s *Source) runBatches(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			pending := s.batches.pending
			s.batches.pending = nil
			s.mu.Unlock()
			for _, p := range pending {
				p.done <- ctx.Err()
			}
			return
		case op := <-s.batches.ops:
			op(ctx)
		case <-s.batches.kick:
			select {
			case <-ctx.Done():
				continue
			case <-s.clock.After(s.batches.window):
			}
			for s.flush(ctx) {
			}
		}
	}
}

// flush sends one request for agents waiting with the same route, as many
// as the open batch of that route has room for; it reports whether it did
// anything.
func (s *Source) flush(ctx context.Context) bool {
	s.mu.Lock()
	if len(s.batches.pending) == 0 {
		s.mu.Unlock()
		return false
	}
	r := s.batches.pending[0].route
	ep, err := s.routeEndpoint(r)
	var take, rest []pendingSub
	for _, p := range s.batches.pending {
		if p.route == r {
			take = append(take, p)
		} else {
			rest = append(rest, p)
		}
	}
	if err != nil {
		s.batches.pending = rest
		s.mu.Unlock()
		for _, p := range take {
			p.done <- err
		}
		return true
	}
	if until := s.batches.paused[ep]; s.clock.Now().Before(until) {
		// The pool said when to come back: these agents try again then.
		s.batches.pending = rest
		s.mu.Unlock()
		pause := &sources.RetryAfterError{After: until.Sub(s.clock.Now()), Err: fmt.Errorf("pool %s paused", ep.pool)}
		for _, p := range take {
			p.done <- pause
		}
		return true
	}
	var open *batch
	if !r.alone {
		for _, b := range s.batches.byCall {
			if b.ep == ep && !b.alone && len(b.members) < s.batches.size && (open == nil || len(b.members) > len(open.members)) {
				open = b
			}
		}
	}
	room := s.batches.size
	if r.alone {
		room = 1
	} else if open != nil {
		room -= len(open.members)
	}
	n := min(room, len(take))
	rest = append(rest, take[n:]...)
	take = take[:n]
	s.batches.pending = rest
	if open == nil {
		to := ep.uri
		if r.alone {
			// Parsed when the agent was handed over.
			_ = sip.ParseUri(take[0].agent.URI, &to)
		}
		open = s.newBatch(ep, r.alone, to)
	}
	req := s.batchRequest(open, int(s.cfg.Expires/time.Second), take)
	s.mu.Unlock()
	s.sendBatch(ctx, open, req, take)
	return true
}

// newBatch starts a batch dialog on ep. It is known before its request
// leaves: a NOTIFY may beat the 200. The caller holds s.mu.
func (s *Source) newBatch(ep *endpoint, alone bool, to sip.Uri) *batch {
	b := &batch{ep: ep, alone: alone, to: to, callID: sip.GenerateTagN(24), localTag: sip.GenerateTagN(12), target: to,
		members: map[string]*member{}}
	s.batches.byCall[b.callID] = b
	return b
}

// routeEndpoint is the endpoint a route's batches go to: another pool is
// reached over the same trusted transport, with the same identity. The
// caller holds s.mu.
func (s *Source) routeEndpoint(r route) (*endpoint, error) {
	app := s.endpoints[0]
	if r.pool == "" {
		return app, nil
	}
	if ep := s.batches.pools[r.pool]; ep != nil {
		return ep, nil
	}
	cfg := app.cfg
	cfg.Pool = r.pool
	ep, err := newEndpoint(cfg, s.transport, s.contact)
	if err != nil {
		return nil, fmt.Errorf("pool %q named by the resubscribe: %w", r.pool, err)
	}
	ep.setHealth(true, "named by a resubscribe")
	s.batches.pools[r.pool] = ep
	return ep, nil
}

// batchRequest builds the batch's next SUBSCRIBE, with a batchSub for the
// agents given (none: a refresh or, with expires 0, the end). The caller
// holds s.mu.
func (s *Source) batchRequest(b *batch, expires int, agents []pendingSub) *sip.Request {
	b.cseq++
	req := subscribeRequest(dialogIDs{target: b.target, from: b.ep.uri, to: b.to, localTag: b.localTag,
		remoteTag: b.remoteTag, callID: b.callID, cseq: b.cseq, routeSet: b.routeSet, contact: b.ep.contact}, expires, acceptBatch)
	if b.alone {
		req.AppendHeader(sip.NewHeader("Supported", "ms-benotify, ms-piggyback-first-notify"))
	} else {
		req.AppendHeader(sip.NewHeader("Supported", "eventlist, ms-benotify, ms-piggyback-first-notify"))
		req.AppendHeader(sip.NewHeader("Require", "adhoclist, categoryList"))
	}
	req.AppendHeader(sip.NewHeader("Proxy-Require", "ms-benotify"))
	if len(agents) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", contentBatch))
		req.SetBody(batchSubBody(b.ep.uri.String(), agents))
	}
	return req
}

// batchSubBody is the batchSub of [MS-PRES] schema 6.8: one subscribe
// action, the agents as its adhocList, the state category alone (one
// category subscription per agent counts against MaxCategorySubscription).
func batchSubBody(watcher string, agents []pendingSub) []byte {
	var b strings.Builder
	b.WriteString(`<batchSub xmlns="http://schemas.microsoft.com/2006/01/sip/batch-subscribe" uri="` + xmlEscape(watcher) + `" name="">`)
	b.WriteString(`<action name="subscribe" id="` + sip.GenerateTagN(8) + `"><adhocList>`)
	for _, p := range agents {
		b.WriteString(`<resource uri="` + xmlEscape(p.agent.URI) + `"/>`)
	}
	b.WriteString(`</adhocList><categoryList xmlns="http://schemas.microsoft.com/2006/09/sip/categorylist"><category name="state"/></categoryList></action></batchSub>`)
	return []byte(b.String())
}

// sendBatch sends a request adding agents to b and tells each its result.
func (s *Source) sendBatch(ctx context.Context, b *batch, req *sip.Request, agents []pendingSub) {
	res, err := s.send(ctx, b.ep, req)
	if err == nil && res.StatusCode == 400 && len(agents) > 1 {
		// One bad URI fails a whole batch: halves find it, and the others
		// are subscribed.
		s.split(ctx, b, agents)
		return
	}
	if err == nil && res.StatusCode >= 300 {
		err = statusError(res)
	}
	if err != nil {
		err = fmt.Errorf("batched subscribe: %w", err)
		// A pool that does not answer at all is no fault of the agents
		// (unless it answered with a certificate not trusted): they wait
		// for it without counting, as the rfc dialect's do.
		down := res == nil && !b.ep.isUp() && !errors.Is(err, errUntrusted)
		if down {
			err = fmt.Errorf("%w: %w", err, sources.ErrSourceDown)
		}
		s.mu.Lock()
		if len(b.members) == 0 && s.batches.byCall[b.callID] == b {
			delete(s.batches.byCall, b.callID)
		}
		var retryAfter *sources.RetryAfterError
		if errors.As(err, &retryAfter) {
			s.batches.paused[b.ep] = s.clock.Now().Add(retryAfter.After)
		}
		for _, p := range agents {
			if down {
				s.waiting[p.agent.Key] = p.agent
			}
		}
		s.mu.Unlock()
		for _, p := range agents {
			p.done <- err
		}
		return
	}
	s.mu.Lock()
	if b.ended {
		// Ended by the pool while the request was out: no fault of these
		// agents, which are subscribed again at once.
		s.mu.Unlock()
		for _, p := range agents {
			p.done <- nil
			s.sink.Lost(p.agent, fmt.Errorf("batch ended while it took the agent: %w", sources.ErrTerminated))
		}
		return
	}
	// A batch a split emptied comes back with its first agents.
	s.batches.byCall[b.callID] = b
	s.establishBatch(b, res)
	s.mu.Unlock()
	var list *listNotification
	contentType := ""
	if h := res.ContentType(); h != nil {
		contentType = h.Value()
	}
	if len(res.Body()) > 0 && mediaType(contentType) == contentCategories {
		// A single category subscription's first state is the agent's
		// categories document itself.
		s.mu.Lock()
		for _, p := range agents {
			s.join(b, p)
			p.done <- nil
		}
		s.mu.Unlock()
		s.applyCategories(b, res.Body())
		return
	}
	if len(res.Body()) > 0 {
		n, perr := parseListNotification(contentType, res.Body())
		if perr != nil {
			s.log.Warn().Err(perr).Str("call_id", b.callID).Msg("first state of a batch not understood; states come with the next notifications")
		} else {
			list = &n
		}
	}
	var observed []observation
	s.mu.Lock()
	for _, p := range agents {
		in, found := instanceFor(list, p.agent.URI)
		switch {
		case list != nil && !found:
			p.done <- fmt.Errorf("batched subscribe: the pool's answer does not name %s", p.agent.URI)
		case found && in.State == instanceResubscribe && p.redirects < maxRedirects:
			// The same attempt goes on where the pool says.
			p.route, p.redirects = rerouted(in), p.redirects+1
			s.batches.routes[p.agent.Key] = p.route
			s.batches.pending = append([]pendingSub{p}, s.batches.pending...)
		case found && (in.State == instanceTerminated || in.State == instanceResubscribe):
			p.done <- instanceError(in)
		default:
			m := s.join(b, p)
			if found {
				observed = append(observed, s.stateFor(list, in, m)...)
			}
			p.done <- nil
		}
	}
	s.mu.Unlock()
	s.report(observed)
	s.log.Info().Str("call_id", b.callID).Int("agents", len(agents)).Msg("SIP batch subscribed")
}

// join makes the agent a member of b; the caller holds s.mu.
func (s *Source) join(b *batch, p pendingSub) *member {
	m := &member{agent: p.agent, last: p.last}
	b.members[strings.ToLower(p.agent.URI)] = m
	s.batches.byAgent[p.agent.Key] = b
	return m
}

// observation is a state to hand the worker once s.mu is released.
type observation struct {
	agent sources.Agent
	p     schemas.Presence
}

func (s *Source) report(observed []observation) {
	for _, o := range observed {
		s.sink.Observe(o.agent, o.p)
	}
}

// instanceFor finds the RLMI instance of an agent's resource.
func instanceFor(list *listNotification, uri string) (rlmiInstance, bool) {
	if list == nil {
		return rlmiInstance{}, false
	}
	for _, r := range list.List.Resources {
		if strings.EqualFold(r.URI, uri) && len(r.Instances) > 0 {
			return r.Instances[0], true
		}
	}
	return rlmiInstance{}, false
}

// instanceError is what an ended instance means for its agent alone: a
// failure with the pool's reason, or a resubscribe past maxRedirects.
func instanceError(in rlmiInstance) error {
	if in.State == instanceResubscribe {
		return fmt.Errorf("the pool asked to subscribe again (poolFqdn %q) more than %d times", in.PoolFQDN, maxRedirects)
	}
	return fmt.Errorf("the pool ended the subscription (reason %q)", in.Reason)
}

// rerouted is where a resubscribe sends its agent ([MS-PRES] 3.4.5.1.3):
// batched at the pool poolFqdn names, or alone without one.
func rerouted(in rlmiInstance) route {
	return route{pool: in.PoolFQDN, alone: in.PoolFQDN == ""}
}

// split sends a batch's agents again in two halves, after a 400 for all.
func (s *Source) split(ctx context.Context, b *batch, agents []pendingSub) {
	half := len(agents) / 2
	for _, part := range [][]pendingSub{agents[:half], agents[half:]} {
		s.mu.Lock()
		req := s.batchRequest(b, int(s.cfg.Expires/time.Second), part)
		s.mu.Unlock()
		s.sendBatch(ctx, b, req, part)
	}
}

// stateFor reads an active instance's part into m, returning the change
// to report. The caller holds s.mu.
func (s *Source) stateFor(list *listNotification, in rlmiInstance, m *member) []observation {
	part, ok := list.stateOf(in)
	if !ok {
		return nil
	}
	if mediaType(part.ContentType) != contentCategories {
		s.log.Warn().Str("uri", m.agent.URI).Str("content_type", part.ContentType).Msg("batch part not understood; presence kept")
		return nil
	}
	if len(part.Body) > maxBodyBytes {
		s.log.Warn().Str("uri", m.agent.URI).Int("bytes", len(part.Body)).Msg("batch part too large; presence kept")
		return nil
	}
	u, err := parseCategoryDocument(part.Body)
	if err != nil {
		s.log.Warn().Err(err).Str("uri", m.agent.URI).Msg("batch part not understood; presence kept")
		return nil
	}
	return s.observe(m, u)
}

// observe keeps a categories document's state as m's, returning the change
// to report; a document without a state changes nothing. The caller holds
// s.mu.
func (s *Source) observe(m *member, u categoryUpdate) []observation {
	if !u.HasState {
		return nil
	}
	p := u.Presence
	p.Source, p.ObservedAt = schemas.SourceSIP, s.clock.Now().UTC()
	if m.last != nil && m.last.SameAs(p) {
		return nil
	}
	m.last = &p
	return []observation{{agent: m.agent, p: p}}
}

// establishBatch learns the dialog from a 2xx and schedules its refresh.
// The caller holds s.mu.
func (s *Source) establishBatch(b *batch, res *sip.Response) {
	if b.remoteTag == "" && res.To() != nil {
		b.remoteTag, _ = res.To().Params.Get("tag")
	}
	if c := res.Contact(); c != nil {
		b.target = *c.Address.Clone()
	}
	if len(b.routeSet) == 0 {
		for _, h := range res.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				b.routeSet = append(b.routeSet, *rr.Address.Clone())
			}
		}
		slices.Reverse(b.routeSet)
	}
	granted := expiresOf(res, s.cfg.Expires)
	b.expires = s.clock.Now().Add(granted)
	if b.refresh != nil {
		b.refresh.Stop()
	}
	b.refresh = s.clock.AfterFunc(granted*4/5, func() {
		s.mu.Lock()
		stopping := s.ctx.Done()
		s.mu.Unlock()
		// Waits its turn in the batch loop: a refresh is never dropped.
		select {
		case s.batches.ops <- func(ctx context.Context) { s.refreshBatch(ctx, b) }:
		case <-stopping:
		}
	})
}

// refreshBatch renews a batch; whatever keeps it from succeeding ends it,
// and every agent in it is subscribed again at once.
func (s *Source) refreshBatch(ctx context.Context, b *batch) {
	s.mu.Lock()
	if s.batches.byCall[b.callID] != b || s.closing {
		s.mu.Unlock()
		return
	}
	req := s.batchRequest(b, int(s.cfg.Expires/time.Second), nil)
	s.mu.Unlock()
	res, err := s.send(ctx, b.ep, req)
	if err == nil && res.StatusCode < 300 {
		s.mu.Lock()
		s.establishBatch(b, res)
		s.mu.Unlock()
		return
	}
	if err == nil {
		err = statusError(res)
	}
	if ctx.Err() != nil {
		return
	}
	s.loseBatch(b, fmt.Errorf("batch refresh: %w: %w", err, sources.ErrTerminated))
}

// loseBatch ends a batch the worker did not ask to end: every agent in it
// is lost with err.
func (s *Source) loseBatch(b *batch, err error) {
	s.mu.Lock()
	if s.batches.byCall[b.callID] != b {
		s.mu.Unlock()
		return
	}
	s.endBatch(b)
	var lost []sources.Agent
	for _, m := range b.members {
		if s.batches.byAgent[m.agent.Key] == b {
			delete(s.batches.byAgent, m.agent.Key)
			lost = append(lost, m.agent)
		}
	}
	s.mu.Unlock()
	s.log.Info().Err(err).Str("call_id", b.callID).Int("agents", len(lost)).Msg("SIP batch ended")
	for _, a := range lost {
		s.sink.Lost(a, err)
	}
}

// endBatch forgets a batch for good; the caller holds s.mu.
func (s *Source) endBatch(b *batch) {
	b.ended = true
	delete(s.batches.byCall, b.callID)
	if b.refresh != nil {
		b.refresh.Stop()
	}
}

// errLeft ends the wait of an agent unsubscribed before its batch request
// left.
var errLeft = errors.New("unsubscribed before its batch left")

// unsubscribeBatched takes the agent out of its batch at the pool before
// it returns, so a next holder never finds the agent in two batches: the
// last agent out ends the batch, another's leaving moves the rest to a new
// batch (rebatch), since a batch SUBSCRIBE only adds resources.
func (s *Source) unsubscribeBatched(ctx context.Context, a sources.Agent) {
	s.mu.Lock()
	for moved := s.batches.moving[a.Key]; moved != nil; moved = s.batches.moving[a.Key] {
		// On its way to a new batch: it leaves that one.
		s.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
	}
	s.batches.pending = slices.DeleteFunc(s.batches.pending, func(p pendingSub) bool {
		if p.agent.Key == a.Key {
			p.done <- errLeft
			return true
		}
		return false
	})
	delete(s.batches.routes, a.Key)
	delete(s.waiting, a.Key)
	b := s.batches.byAgent[a.Key]
	if b == nil {
		s.mu.Unlock()
		return
	}
	delete(s.batches.byAgent, a.Key)
	delete(b.members, strings.ToLower(a.URI))
	// One rebatch serves every agent that left before it runs.
	done := b.rebatched
	if done == nil {
		done = make(chan struct{})
		b.rebatched = done
		s.mu.Unlock()
		op := func(ctx context.Context) {
			defer close(done)
			s.rebatch(ctx, b)
		}
		select {
		case s.batches.ops <- op:
		case <-ctx.Done():
			return
		}
	} else {
		s.mu.Unlock()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// rebatch ends b at the pool and subscribes the agents left in it anew,
// with the state they had, in the next batches; runs in the batch loop.
func (s *Source) rebatch(ctx context.Context, b *batch) {
	s.mu.Lock()
	if b.ended || s.batches.byCall[b.callID] != b {
		s.mu.Unlock()
		return
	}
	end := s.batchRequest(b, 0, nil)
	s.endBatch(b)
	var moving []pendingSub
	moved := make(chan struct{})
	for _, m := range b.members {
		if s.batches.byAgent[m.agent.Key] == b {
			delete(s.batches.byAgent, m.agent.Key)
		}
		s.batches.moving[m.agent.Key] = moved
		moving = append(moving, pendingSub{agent: m.agent, route: s.batches.routes[m.agent.Key], last: m.last, done: make(chan error, 1)})
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, p := range moving {
			if s.batches.moving[p.agent.Key] == moved {
				delete(s.batches.moving, p.agent.Key)
			}
		}
		s.mu.Unlock()
		close(moved)
	}()
	if res, err := s.send(ctx, b.ep, end); ctx.Err() == nil && (err != nil || (res.StatusCode >= 300 && res.StatusCode != 481)) {
		s.log.Warn().AnErr("error", err).Str("call_id", b.callID).Msg("could not end the SIP batch")
	}
	if len(moving) == 0 {
		return
	}
	s.mu.Lock()
	s.batches.pending = append(moving, s.batches.pending...)
	s.mu.Unlock()
	for s.flush(ctx) {
	}
	for _, p := range moving {
		select {
		case err := <-p.done:
			if err != nil && !errors.Is(err, errLeft) {
				s.sink.Lost(p.agent, fmt.Errorf("moving to a new batch: %w", err))
			}
		default:
			// Still on its way (the loop stopped): the worker hears of it then.
		}
	}
	s.log.Info().Str("call_id", b.callID).Int("agents", len(moving)).Msg("SIP batch rebuilt without the agents that left")
}

// onBatchNotify applies a NOTIFY (answered) or BENOTIFY (never answered,
// [MS-SIP] 3.5) of a batch: the RLMI index says each agent's instance
// state, its parts their categories.
func (s *Source) onBatchNotify(req *sip.Request, tx sip.ServerTransaction) {
	state := parseSubscriptionState(req)
	s.mu.Lock()
	b := s.batches.byCall[callIDOf(req)]
	if b != nil && req.To() != nil {
		if tag, _ := req.To().Params.Get("tag"); tag != b.localTag {
			b = nil
		}
	}
	s.mu.Unlock()
	if req.Method == sip.NOTIFY {
		code, reason := 200, "OK"
		if b == nil && !state.terminated {
			code, reason = 481, "Subscription Does Not Exist"
		}
		if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
			s.log.Warn().Err(err).Msg("could not answer NOTIFY")
		}
		s.log.Debug().Str("method", string(req.Method)).Str("call_id", callIDOf(req)).Int("status", code).
			Str("subscription_state", headerValue(req, "Subscription-State")).Msg("SIP transaction answered")
	} else {
		s.log.Debug().Str("method", string(req.Method)).Str("call_id", callIDOf(req)).
			Str("subscription_state", headerValue(req, "Subscription-State")).Msg("SIP BENOTIFY received")
	}
	if b == nil {
		return
	}
	if body := req.Body(); len(body) > 0 {
		s.applyBatchBody(b, req)
	}
	if state.terminated {
		s.loseBatch(b, state.err())
	}
}

func (s *Source) applyBatchBody(b *batch, req *sip.Request) {
	contentType := ""
	if h := req.ContentType(); h != nil {
		contentType = h.Value()
	}
	if mediaType(contentType) == contentCategories {
		// A single categories document names its presentity itself.
		s.applyCategories(b, req.Body())
		return
	}
	list, err := parseListNotification(contentType, req.Body())
	if err != nil {
		s.log.Warn().Err(err).Str("call_id", b.callID).Msg("batch notification not understood; presence kept")
		return
	}
	var observed []observation
	var lost []struct {
		agent sources.Agent
		err   error
	}
	s.mu.Lock()
	for _, r := range list.List.Resources {
		m := b.members[strings.ToLower(r.URI)]
		if m == nil || len(r.Instances) == 0 {
			continue
		}
		in := r.Instances[0]
		switch in.State {
		case instanceTerminated, instanceResubscribe:
			delete(b.members, strings.ToLower(r.URI))
			if s.batches.byAgent[m.agent.Key] == b {
				delete(s.batches.byAgent, m.agent.Key)
			}
			err := instanceError(in)
			if in.State == instanceResubscribe {
				// The worker subscribes it again at once, on its new route.
				s.batches.routes[m.agent.Key] = rerouted(in)
				err = fmt.Errorf("the pool asks to subscribe again (poolFqdn %q): %w", in.PoolFQDN, sources.ErrTerminated)
			}
			lost = append(lost, struct {
				agent sources.Agent
				err   error
			}{m.agent, err})
		default:
			observed = append(observed, s.stateFor(&list, in, m)...)
		}
	}
	s.mu.Unlock()
	s.report(observed)
	for _, l := range lost {
		s.sink.Lost(l.agent, l.err)
	}
}

func (s *Source) applyCategories(b *batch, body []byte) {
	if len(body) > maxBodyBytes {
		s.log.Warn().Int("bytes", len(body)).Str("call_id", b.callID).Msg("categories body too large; presence kept")
		return
	}
	u, err := parseCategoryDocument(body)
	if err != nil {
		s.log.Warn().Err(err).Str("call_id", b.callID).Msg("categories body not understood; presence kept")
		return
	}
	var observed []observation
	s.mu.Lock()
	if m := b.members[strings.ToLower(u.URI)]; m != nil {
		observed = s.observe(m, u)
	}
	s.mu.Unlock()
	s.report(observed)
}

// describeBatched tells the agent's batch: endpoint, Call-ID and expiry.
// The caller holds s.mu.
func (s *Source) describeBatched(a sources.Agent, u *schemas.Upstream) {
	b := s.batches.byAgent[a.Key]
	if b == nil {
		return
	}
	u.SIP = upstreamOf(b.ep, b.callID, b.expires)
}

// xmlEscape escapes s for an XML attribute.
func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// batchStats counts the batch dialogs, the agents in them and the dialogs
// of each endpoint by name, for Health.
func (s *Source) batchStats() (batches, agents int, perName map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	perName = map[string]int{}
	for _, b := range s.batches.byCall {
		perName[b.ep.cfg.Name]++
	}
	return len(s.batches.byCall), len(s.batches.byAgent), perName
}

// batchDialogs adds each endpoint's batch dialogs to perEndpoint; the
// caller holds s.mu.
func (s *Source) batchDialogs(perEndpoint map[*endpoint]int) {
	if s.batches == nil {
		return
	}
	for _, b := range s.batches.byCall {
		perEndpoint[b.ep]++
	}
}
