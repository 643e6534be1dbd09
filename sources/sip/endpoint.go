package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/contactcenter/presence-provider/sources"
)

// endpoint is one SIP identity: its URI, its pool, its registration and
// whether its pool answers.
type endpoint struct {
	cfg     Endpoint
	uri     sip.Uri
	pool    string // host:port
	contact sip.Uri

	// register is the registration's own dialog-like state: one Call-ID for
	// every REGISTER, as RFC 3261 section 10.2 asks.
	regCallID string
	regCSeq   uint32

	mu     sync.Mutex
	up     bool
	known  bool // health checked at least once
	detail string
}

func newEndpoint(cfg Endpoint, transport string, contact sip.Uri) (*endpoint, error) {
	e := &endpoint{cfg: cfg, regCallID: sip.GenerateTagN(24), detail: "not checked yet"}
	if err := sip.ParseUri(cfg.URI, &e.uri); err != nil || e.uri.User == "" {
		return nil, fmt.Errorf("sip: %s endpoint URI %q is not sip:user@host", cfg.Name, cfg.URI)
	}
	pool := cfg.Pool
	if pool == "" {
		pool = e.uri.Host
	}
	if _, _, err := net.SplitHostPort(pool); err != nil {
		port := 5060
		if transport == "TLS" {
			port = 5061
		}
		pool = net.JoinHostPort(pool, strconv.Itoa(port))
	}
	e.pool = pool
	e.contact = *contact.Clone()
	e.contact.User = e.uri.User
	return e, nil
}

// isUp is true until a check says otherwise: an endpoint is tried before
// its first check.
func (e *endpoint) isUp() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.up || !e.known
}

func (e *endpoint) status() (bool, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.up, e.detail
}

// setHealth records a check; it reports a change of up or down.
func (e *endpoint) setHealth(up bool, detail string) (changed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed = !e.known || e.up != up
	e.up, e.known, e.detail = up, true, detail
	return changed
}

// watch keeps one endpoint registered (when configured to) and checks that
// its pool answers, until ctx ends.
func (s *Source) watch(ctx context.Context, ep *endpoint) {
	var registeredUntil time.Time
	for {
		var err error
		detail := "answers OPTIONS"
		if ep.cfg.Register && !s.clock.Now().Before(registeredUntil) {
			var granted time.Duration
			if granted, err = s.register(ctx, ep, s.cfg.RegisterExpires); err == nil {
				registeredUntil = s.clock.Now().Add(granted * 4 / 5)
				detail = fmt.Sprintf("registered for %s", granted)
			}
		} else {
			err = s.ping(ctx, ep)
			if ep.cfg.Register {
				detail = "registered; answers OPTIONS"
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			detail = err.Error()
		}
		s.setHealth(ep, err == nil, detail)
		wait := s.cfg.KeepAlive
		if ep.cfg.Register && err == nil {
			wait = min(wait, registeredUntil.Sub(s.clock.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(wait):
		}
	}
}

// setHealth applies an endpoint check: the dialogs of an endpoint that went
// down are restored (on the other endpoint, if up) through the worker, and
// agents that waited for any endpoint are subscribed again when one is back.
func (s *Source) setHealth(ep *endpoint, up bool, detail string) {
	if !ep.setHealth(up, detail) {
		return
	}
	if !up {
		s.log.Warn().Str("endpoint", ep.cfg.Name).Str("uri", ep.uri.String()).Str("reason", detail).Msg("SIP endpoint down: check that a SIP server answers at its PoolFqdn, or set enabled=\"false\" on UcmaPresenceSource")
		s.mu.Lock()
		var lost []*dialog
		for _, d := range s.byAgent {
			// A dialog not granted yet is a subscribe or a resume under
			// way, whose caller learns how it ends; lost here, a resume's
			// stored dialog would be deleted while it may still live at
			// the server, and nothing would end it before the next
			// subscribe.
			if d.ep == ep && !d.expires.IsZero() {
				lost = append(lost, d)
			}
		}
		s.mu.Unlock()
		for _, d := range lost {
			s.lose(d, fmt.Errorf("%s endpoint down: %w", ep.cfg.Name, sources.ErrTerminated))
		}
		return
	}
	s.log.Info().Str("endpoint", ep.cfg.Name).Str("uri", ep.uri.String()).Str("state", detail).Msg("SIP endpoint up")
	s.mu.Lock()
	waiting := s.waiting
	s.waiting = map[string]sources.Agent{}
	s.mu.Unlock()
	for _, a := range waiting {
		s.sink.Lost(a, fmt.Errorf("%s endpoint back: %w", ep.cfg.Name, sources.ErrTerminated))
	}
}

// register sends a REGISTER (expires 0 unregisters) and returns the time the
// registrar granted.
func (s *Source) register(ctx context.Context, ep *endpoint, expires time.Duration) (time.Duration, error) {
	registrar := sip.Uri{Scheme: "sip", Host: ep.uri.Host}
	req := sip.NewRequest(sip.REGISTER, registrar)
	from := &sip.FromHeader{Address: ep.uri, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	to := &sip.ToHeader{Address: ep.uri, Params: sip.NewParams()}
	s.mu.Lock()
	ep.regCSeq++
	cseq := ep.regCSeq
	s.mu.Unlock()
	callID := sip.CallIDHeader(ep.regCallID)
	maxForwards := sip.MaxForwardsHeader(70)
	expiresHeader := sip.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
	req.AppendHeader(&maxForwards)
	req.AppendHeader(&sip.ContactHeader{Address: ep.contact})
	req.AppendHeader(&expiresHeader)
	res, err := s.send(ctx, ep, req)
	if got := req.CSeq().SeqNo; got > cseq {
		s.mu.Lock()
		ep.regCSeq = max(ep.regCSeq, got)
		s.mu.Unlock()
	}
	if err != nil {
		return 0, fmt.Errorf("register: %w", err)
	}
	if res.StatusCode >= 300 {
		return 0, fmt.Errorf("registration refused: %w", statusError(res))
	}
	if expires == 0 {
		return 0, nil
	}
	granted := expiresOf(res, expires)
	if c := res.Contact(); c != nil {
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				granted = time.Duration(n) * time.Second
			}
		}
	}
	return granted, nil
}

// ping asks the pool OPTIONS: any answer means it is there.
func (s *Source) ping(ctx context.Context, ep *endpoint) error {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: ep.uri.Host})
	from := &sip.FromHeader{Address: ep.uri, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: ep.uri.Host}})
	if _, err := s.send(ctx, ep, req); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("no answer to OPTIONS")
		}
		return fmt.Errorf("OPTIONS: %w", err)
	}
	return nil
}
