// Package sip is the SIP presence source, in the role the UCMA source played:
// SUBSCRIBE/NOTIFY for the presence event package, through an application
// endpoint and an optional user endpoint, with fallback between them.
// sipgo carries the transactions; the subscription dialogs are kept here.
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/slogzero"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// Config is the UcmaPresenceSource element, in the terms of a SIP stack.
type Config struct {
	// Transport is udp, tcp or tls.
	Transport string
	// TLS is what transport tls needs: RootCAs (nil: the system's) and
	// ServerName (empty: the pool's host) check the server; Certificates
	// holds this stack's certificate, shown to a server that asks for one
	// (mutual TLS) and served by the listener NOTIFYs come to.
	TLS *tls.Config
	// Listen is host:port of this stack: where NOTIFYs come, the Contact.
	// Port 0 takes a free port.
	Listen      string
	Application Endpoint
	User        *Endpoint
	// Expires is the subscription length asked for; the server may shorten it.
	Expires time.Duration
	// RegisterExpires is the registration length asked for.
	RegisterExpires time.Duration
	// KeepAlive is how often an endpoint's pool is asked OPTIONS to learn it
	// still answers.
	KeepAlive time.Duration
	// RequestTimeout bounds one transaction (SIP's own Timer B is 32 s).
	RequestTimeout time.Duration
	// TimerN is how long after the 2xx of a new subscription its first
	// NOTIFY may take before the subscription counts as failed (RFC 6665
	// section 4.1.2.4); zero takes DefaultTimerN. Tests shorten it.
	TimerN time.Duration
	// MSSIP speaks Microsoft SIP to Skype for Business Server as a trusted
	// application (Dialect="mssip"): no REGISTER and no digest, since a
	// trusted server is not challenged; no user endpoint, which Microsoft
	// retired; over TLS the pool's connections to the listener must show a
	// certificate TLS.RootCAs vouches for, as the pool demands of ours.
	MSSIP bool
	// BatchSize is the most agents one mssip batch holds (default
	// DefaultBatchSize); BatchWindow how long the agents handed over are
	// gathered before their batch request leaves (default DefaultBatchWindow).
	BatchSize   int
	BatchWindow time.Duration
	// Dialogs keeps the subscription dialogs for the agents' next holders
	// (Resume); nil keeps none, and a NOTIFY for a dialog not held here is
	// answered 481.
	Dialogs DialogStore
}

// Endpoint is one SIP identity of the provider.
type Endpoint struct {
	// Name is "application" or "user", for logs and claims.
	Name string
	URI  string
	// Pool is host or host:port where the endpoint registers and sends its
	// SUBSCRIBEs; empty takes the host of URI.
	Pool     string
	Register bool
	// Password answers digest challenges; never logged.
	Password string
}

// Defaults for what Config leaves zero.
const (
	DefaultExpires         = 600 * time.Second
	DefaultRegisterExpires = 600 * time.Second
	DefaultKeepAlive       = 30 * time.Second
	DefaultRequestTimeout  = 32 * time.Second
	// DefaultTimerN is RFC 6665's Timer N, 64 × T1 (T1 = 500 ms).
	DefaultTimerN = 64 * 500 * time.Millisecond
)

// Source keeps the SIP subscriptions of the agents the worker hands it.
type Source struct {
	cfg       Config
	clock     clockwork.Clock
	sink      sources.Sink
	log       zerolog.Logger
	ua        *sipgo.UserAgent
	client    *sipgo.Client
	server    *sipgo.Server
	transport string // upper case, as sipgo wants it
	contact   sip.Uri
	udp       net.PacketConn
	stream    net.Listener
	endpoints []*endpoint

	// ctx lives from Run to its end; refreshes started by timers use it.
	ctx     context.Context
	effects sync.WaitGroup
	// serving is closed once Run serves the listeners: a request sent
	// before would make sipgo bind the listening address a second time.
	serving chan struct{}

	mu       sync.Mutex
	closing  bool
	byCallID map[string]*dialog
	byAgent  map[string]*dialog
	// reported are the agents whose presence this stack reported since it
	// was handed them: a NOTIFY that says the notifier does not know is
	// Unknown for them, and leaves the others with no presence known.
	reported map[string]bool
	// waiting are agents that failed while no endpoint was up; they are
	// subscribed again as soon as one is back.
	waiting map[string]sources.Agent
	// batches holds the mssip dialect's batched subscriptions; nil in rfc.
	batches *batcher
}

// New binds the SIP stack's listener, so NOTIFYs can arrive as soon as the
// first SUBSCRIBE leaves; Run serves it.
func New(cfg Config, clock clockwork.Clock, sink sources.Sink, log zerolog.Logger) (*Source, error) {
	if cfg.Expires == 0 {
		cfg.Expires = DefaultExpires
	}
	if cfg.RegisterExpires == 0 {
		cfg.RegisterExpires = DefaultRegisterExpires
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.TimerN == 0 {
		cfg.TimerN = DefaultTimerN
	}
	if cfg.MSSIP {
		cfg = trustedApplication(cfg, log)
	}
	s := &Source{cfg: cfg, clock: clock, sink: sink, log: log.With().Str("source", "sip").Logger(),
		transport: strings.ToUpper(cfg.Transport), ctx: context.Background(), serving: make(chan struct{}),
		byCallID: map[string]*dialog{}, byAgent: map[string]*dialog{}, reported: map[string]bool{}, waiting: map[string]sources.Agent{}}
	if cfg.MSSIP {
		s.batches = newBatcher(cfg.BatchSize, cfg.BatchWindow)
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	for _, ep := range append([]*Endpoint{&cfg.Application}, cfg.User) {
		if ep == nil {
			continue
		}
		e, err := newEndpoint(*ep, s.transport, s.contact)
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.endpoints = append(s.endpoints, e)
	}
	return s, nil
}

func (s *Source) listen() error {
	var addr net.Addr
	var err error
	switch s.transport {
	case "UDP":
		s.udp, err = net.ListenPacket("udp", s.cfg.Listen)
		if err == nil {
			addr = s.udp.LocalAddr()
		}
	case "TCP":
		s.stream, err = net.Listen("tcp", s.cfg.Listen)
		if err == nil {
			addr = s.stream.Addr()
		}
	case "TLS":
		if s.cfg.TLS == nil || len(s.cfg.TLS.Certificates) == 0 {
			// Never TCP instead: the digest and the agents' presence would go in clear.
			return errors.New("sip: transport tls needs a certificate and key, served to the server that sends NOTIFYs")
		}
		var l net.Listener
		if l, err = net.Listen("tcp", s.cfg.Listen); err == nil {
			addr = l.Addr()
			s.stream = tls.NewListener(l, s.listenerTLS())
		}
	default:
		return fmt.Errorf("sip: transport %q is not udp, tcp or tls", s.cfg.Transport)
	}
	if err != nil {
		return fmt.Errorf("sip: listen %s %s: %w", s.transport, s.cfg.Listen, err)
	}
	host, portText, _ := net.SplitHostPort(addr.String())
	port, _ := strconv.Atoi(portText)
	s.contact = sip.Uri{Scheme: "sip", Host: host, Port: port, UriParams: sip.NewParams()}
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent("presence-provider")}
	if s.transport == "TLS" {
		// sips: NOTIFYs must come over TLS too (RFC 3261 section 19.1).
		s.contact.Scheme = "sips"
		client := s.cfg.TLS.Clone()
		client.MinVersion = max(client.MinVersion, tls.VersionTLS12)
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(client))
	} else {
		s.contact.UriParams.Add("transport", strings.ToLower(s.transport))
	}

	// sipgo's own lines go through this source's zerolog logger, as JSON.
	libLog := slogzero.New(s.log.With().Str("lib", "sipgo").Logger())
	uaOpts = append(uaOpts,
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(libLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(libLog)))
	if s.ua, err = sipgo.NewUA(uaOpts...); err != nil {
		return err
	}
	opts := []sipgo.ClientOption{sipgo.WithClientLogger(libLog), sipgo.WithClientHostname(host)}
	if s.transport == "UDP" {
		// Requests leave from the listening socket, so answers and NOTIFYs come back to it.
		opts = append(opts, sipgo.WithClientConnectionAddr(addr.String()))
	}
	if s.client, err = sipgo.NewClient(s.ua, opts...); err != nil {
		return err
	}
	if s.server, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(libLog)); err != nil {
		return err
	}
	if s.batches != nil {
		s.server.OnNotify(s.onBatchNotify)
		s.server.OnRequest(benotify, s.onBatchNotify)
	} else {
		s.server.OnNotify(s.onNotify)
	}
	s.server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return nil
}

// Addr is where this stack listens: its Contact address.
func (s *Source) Addr() string { return net.JoinHostPort(s.contact.Host, strconv.Itoa(s.contact.Port)) }

func (s *Source) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.stream != nil {
		_ = s.stream.Close()
	}
}

// Run serves the SIP stack and keeps the endpoints registered and watched
// until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	var loops sync.WaitGroup
	serve := func(f func() error) {
		loops.Add(1)
		go func() {
			defer loops.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				s.log.Error().Err(err).Msg("SIP listener stopped")
			}
		}()
	}
	if s.udp != nil {
		serve(func() error { return s.server.ServeUDP(s.udp) })
		// Requests leave from this socket: the endpoint checks must not
		// start before sipgo has it.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if c, _ := s.ua.TransportLayer().GetConnection("udp", s.udp.LocalAddr().String()); c != nil {
				break
			}
		}
	}
	if s.stream != nil && s.transport == "TLS" {
		serve(func() error { return s.server.ServeTLS(s.stream) })
	} else if s.stream != nil {
		serve(func() error { return s.server.ServeTCP(s.stream) })
	}
	close(s.serving)
	if s.batches != nil {
		loops.Add(1)
		go func() {
			defer loops.Done()
			s.runBatches(ctx)
		}()
	}
	for _, ep := range s.endpoints {
		loops.Add(1)
		go func() {
			defer loops.Done()
			s.watch(ctx, ep)
		}()
	}
	s.log.Info().Str("contact", s.contact.String()).Int("endpoints", len(s.endpoints)).Msg("SIP stack listening")
	<-ctx.Done()

	s.mu.Lock()
	s.closing = true
	for _, d := range s.byCallID {
		d.stopTimers()
	}
	s.mu.Unlock()
	s.effects.Wait()
	unregister, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ep := range s.endpoints {
		if ep.cfg.Register {
			s.register(unregister, ep, 0)
		}
	}
	s.closeListeners()
	loops.Wait()
	return s.ua.Close()
}

// Subscribe subscribes on the first endpoint that is up, and tries the
// other before it reports a failure. An agent that failed while no endpoint
// was up is subscribed again as soon as one is back.
func (s *Source) Subscribe(ctx context.Context, a sources.Agent) error {
	if s.batches != nil {
		return s.subscribeBatched(ctx, a)
	}
	if err := s.endLeftDialog(ctx, a); err != nil {
		return err
	}
	endpoints, anyUp := s.order()
	var errs []error
	for _, ep := range endpoints {
		err := s.subscribeOn(ctx, ep, a)
		if err == nil {
			s.mu.Lock()
			delete(s.waiting, a.Key)
			s.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s endpoint: %w", ep.cfg.Name, err))
		if ctx.Err() != nil {
			break
		}
	}
	err := errors.Join(errs...)
	if !anyUp {
		s.mu.Lock()
		s.waiting[a.Key] = a
		s.mu.Unlock()
		// A server that is reached but not trusted is no outage: it may be
		// an impostor, and its failures count.
		if !errors.Is(err, errUntrusted) {
			err = errors.Join(err, fmt.Errorf("no SIP endpoint is up: %w", sources.ErrSourceDown))
		}
	}
	return err
}

// errUntrusted marks a server whose TLS certificate does not verify.
var errUntrusted = errors.New("TLS certificate not trusted (check TlsCAFile and TlsServerName)")

// order is the endpoints to try: those up, in configured order; when none
// is up, all of them, since health may be stale.
func (s *Source) order() (endpoints []*endpoint, anyUp bool) {
	var down []*endpoint
	for _, ep := range s.endpoints {
		if ep.isUp() {
			endpoints = append(endpoints, ep)
		} else {
			down = append(down, ep)
		}
	}
	if len(endpoints) == 0 {
		return down, false
	}
	return endpoints, true
}

// Unsubscribe ends the agent's subscription with an Expires: 0 SUBSCRIBE,
// and deletes its stored dialog: nobody resumes it.
func (s *Source) Unsubscribe(ctx context.Context, a sources.Agent) error {
	if s.batches != nil {
		s.unsubscribeBatched(ctx, a)
		return nil
	}
	s.mu.Lock()
	delete(s.waiting, a.Key)
	delete(s.reported, a.Key)
	d := s.byAgent[a.Key]
	var req *sip.Request
	if d != nil {
		s.forget(d)
		if d.established() {
			req = d.request(0)
		}
	}
	s.mu.Unlock()
	if d != nil {
		s.unstore(ctx, d)
	}
	if req == nil {
		return nil
	}
	return s.end(ctx, d, req)
}

// end sends the dialog's un-SUBSCRIBE; a 481 says it is over already.
func (s *Source) end(ctx context.Context, d *dialog, req *sip.Request) error {
	res, err := s.send(ctx, d.ep, req)
	if err != nil {
		return fmt.Errorf("sip: unsubscribe %s: %w", d.agent.URI, err)
	}
	if res.StatusCode >= 300 && res.StatusCode != 481 {
		return fmt.Errorf("sip: unsubscribe %s: %d %s", d.agent.URI, res.StatusCode, res.Reason)
	}
	return nil
}

// Serves every sip: URI that no source before it in the routing order took.
func (*Source) Serves(uri schemas.AgentURI, _ string) bool { return strings.HasPrefix(uri.URI, "sip:") }

// Why says the rule: the sip: URIs no source before it serves.
func (*Source) Why(schemas.AgentURI, string) string {
	return "a sip: URI that no source before SIP serves"
}

// Describe tells the agent's dialog: endpoint, Call-ID and expiry.
func (s *Source) Describe(a sources.Agent, u *schemas.Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batches != nil {
		s.describeBatched(a, u)
		return
	}
	d := s.byAgent[a.Key]
	if d == nil {
		return
	}
	u.SIP = upstreamOf(d.ep, d.callID, d.expires)
}

// Health is up when any endpoint is.
func (s *Source) Health() sources.Health {
	s.mu.Lock()
	dialogs := len(s.byAgent)
	waiting := len(s.waiting)
	perEndpoint := map[string]int{}
	for _, d := range s.byAgent {
		perEndpoint[d.ep.cfg.Name]++
	}
	s.mu.Unlock()
	h := sources.Health{Stats: map[string]any{"dialogs": dialogs, "waiting_for_endpoint": waiting}}
	if s.batches != nil {
		h.Stats["dialogs"], h.Stats["batched_agents"], perEndpoint = s.batchStats()
	}
	var details []string
	for _, ep := range s.endpoints {
		up, detail := ep.status()
		h.Healthy = h.Healthy || up
		details = append(details, fmt.Sprintf("%s %s: %s", ep.cfg.Name, ep.uri.String(), detail))
		h.Stats[ep.cfg.Name+"_dialogs"] = perEndpoint[ep.cfg.Name]
	}
	h.Detail = strings.Join(details, "; ")
	return h
}

// send runs one transaction to the endpoint's pool, answering a digest
// challenge when the endpoint has a password.
func (s *Source) send(ctx context.Context, ep *endpoint, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	select {
	case <-s.serving:
	case <-ctx.Done():
		return nil, fmt.Errorf("SIP stack not serving yet: %w", ctx.Err())
	}
	req.SetDestination(ep.pool)
	req.SetTransport(s.transport)
	start := s.clock.Now()
	res, err := s.client.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) && ep.cfg.Password != "" {
		s.logTransaction(ep, req, res, err, start)
		res, err = s.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: ep.uri.User, Password: ep.cfg.Password})
	}
	s.logTransaction(ep, req, res, err, start)
	var untrusted *tls.CertificateVerificationError
	if errors.As(err, &untrusted) {
		return nil, fmt.Errorf("%s: %w: %w", ep.pool, errUntrusted, err)
	}
	return res, err
}

// logTransaction writes one client transaction at debug level: what was
// asked, of which dialog, the answer and the time it took; never a header
// that carries credentials, nor a body.
func (s *Source) logTransaction(ep *endpoint, req *sip.Request, res *sip.Response, err error, start time.Time) {
	e := s.log.Debug()
	if !e.Enabled() {
		return
	}
	e = e.Str("method", string(req.Method)).Str("call_id", callIDOf(req)).Str("endpoint", ep.cfg.Name).
		Dur("took", s.clock.Since(start))
	if res != nil {
		e = e.Int("status", res.StatusCode)
	}
	e.AnErr("error", err).Msg("SIP transaction")
}

// callIDOf is a message's Call-ID, empty when it has none.
func callIDOf(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// Metrics read the endpoints through sources.EndpointReporter.
var _ sources.EndpointReporter = (*Source)(nil)

// Endpoints tells how each endpoint stands, in configured order.
func (s *Source) Endpoints() []sources.EndpointStats {
	s.mu.Lock()
	perEndpoint := map[*endpoint]int{}
	for _, d := range s.byAgent {
		perEndpoint[d.ep]++
	}
	s.batchDialogs(perEndpoint)
	s.mu.Unlock()
	stats := make([]sources.EndpointStats, 0, len(s.endpoints))
	for _, ep := range s.endpoints {
		up, _ := ep.status()
		stats = append(stats, sources.EndpointStats{Name: ep.cfg.Name, Up: up, Dialogs: perEndpoint[ep]})
	}
	return stats
}
