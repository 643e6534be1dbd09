// Package sfbtest is a local Skype for Business Server front-end pool for
// tests of the SIP source's mssip dialect: no pool can run here, so this
// one speaks the wire format of the specifications, each behaviour after
// the section named here.
//
//   - Mutual TLS ([MS-SIP] 3.3, trusted application): the pool serves a
//     certificate the test's CA signs and takes a connection only with a
//     client certificate that CA vouches for; a client without one never
//     gets to send SIP.
//   - Batched subscriptions ([MS-SIP] 3.3.4.1 and example 4.3; [MS-PRES]
//     2.2.2.4.1 and schema 6.8): a SUBSCRIBE to the watcher's own URI
//     (Request-URI, From and To alike) with Event: presence, Require:
//     adhoclist and categoryList, and an
//     application/msrtc-adrl-categorylist+xml body: a batchSub whose
//     subscribe action lists the resources (adhocList) and the categories
//     (categoryList, state at least).
//   - Refusals: a batch without Require: adhoclist is answered 421
//     Extension Required with the Require header it needs (RFC 3261
//     section 21.4.15; the specs do not say which answer a pool gives, and
//     a pool would otherwise take it as a subscription to the watcher's own
//     presence, which is never what a batch means); another body type 415
//     with the Accept it takes (RFC 3261 section 21.4.13); another event
//     489 (RFC 6665 section 8.3.1); a Request-URI other than the watcher
//     403, since a batch is always addressed to oneself ([MS-SIP] 3.3.4.1);
//     a body that is no batchSub, or lacks the state category, 400.
//   - The first state piggybacked in the 200 OK ([MS-SIP] 3.3.5.1 and
//     example 4.3, Supported: ms-piggyback-first-notify): multipart/related
//     with type application/rlmi+xml and start=resourceList, the RLMI index
//     (RFC 4662 section 5.2) with one resource and instance per agent, then
//     one application/msrtc-event-categories+xml part per agent the pool
//     knows ([MS-PRES] categories schema: categories uri, category name state,
//     aggregateState). An agent the pool does not know is an instance
//     terminated with reason noresource (RFC 4662 section 5.2) and no part.
//   - Updates as BENOTIFY ([MS-SIP] 3.5 and example 4.4, ms-benotify): a
//     best-effort NOTIFY in the dialog that is never answered, sent to the
//     watcher's Contact over a TLS connection of the pool's own, showing the
//     pool's certificate, with a partial RLMI index (fullState false, the
//     version one higher) and the changed agent's categories; or, after
//     UseNotify, the same as a NOTIFY, which the watcher answers (RFC 6665
//     section 4.1.3).
//   - Faults a real pool shows: a 400 for a whole batch that names one bad
//     URI (Reject; the pool does not say which, so the watcher must find
//     it); 503 with Retry-After while overloaded (Unavailable; RFC 3261
//     section 21.5.4); an instance state resubscribe in the 200, with
//     poolFqdn naming the pool to batch the agent at or without it to
//     subscribe it alone (Resubscribe; [MS-PRES] 3.4.5.1.3), the agent
//     then left out of the batch.
//   - A single category SUBSCRIBE ([MS-PRES] 3.4.5.1.3, after a
//     resubscribe without poolFqdn): To and the batchSub's one resource are
//     the agent, with no Require: adhoclist; the 200 and the BENOTIFYs
//     carry its categories document alone, an unknown agent is 404.
//   - A limit of category subscriptions per agent, as the pool's
//     MaxCategorySubscription setting (one subscription per watcher and
//     category; default 1,000, up to 3,000): past it, the agent's instance in the 200 is terminated with reason
//     rejected (RFC 4662 section 5.2; which reason a real pool gives, the
//     specs do not say) and the batch does not hold it.
//   - Refresh and end (RFC 6665 sections 4.1.2.1 and 4.1.2.3): a SUBSCRIBE
//     in the dialog refreshes it, and adds the resources its body lists
//     with their first state in the 200; Expires: 0 ends the batch; a
//     SUBSCRIBE in a dialog the pool does not hold (after Restart, or past
//     its expiry, when the pool drops it) is 481 (RFC 3261 section 12.2.2).
package sfbtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/contactcenter/presence-provider/internal/testca"
)

// Content types of the batch's request and of its answers.
const (
	ContentBatch      = "application/msrtc-adrl-categorylist+xml"
	ContentCategories = "application/msrtc-event-categories+xml"
	ContentRLMI       = "application/rlmi+xml"
	// BENOTIFY is [MS-SIP]'s best-effort NOTIFY (3.5), never answered.
	BENOTIFY sip.RequestMethod = "BENOTIFY"
)

// boundary separates the parts of the pool's multipart bodies, as in
// [MS-SIP] 3.3.5.1's example.
const boundary = "50UBfW7LSCVLtggUPe5z"

// defaultMaxExpires is the longest subscription the pool grants unless a
// test says otherwise.
const defaultMaxExpires = 3600

// State is an agent's aggregate state as the pool publishes it.
type State struct {
	// Availability is the aggregate availability number ([MS-PRES] state schema).
	Availability int
	// Activity is the activity token (on-the-phone, in-a-meeting, ...).
	Activity string
	// Device is where the state was published (computer, deskphone, ...).
	Device string
}

// Batch is one batched subscription dialog the pool holds.
type Batch struct {
	CallID  string
	Watcher string
	Agents  []string
	Expires time.Time

	// Single is a single category subscription to one agent.
	Single bool

	contact  sip.Uri
	notifier sip.Uri // the To of the SUBSCRIBE: the From of notifications
	single   bool
	poolTag  string
	watchTag string
	watchURI sip.Uri
	cseq     uint32
	version  uint64
}

// Answer is what the pool answered one SUBSCRIBE, for tests to check.
type Answer struct {
	CallID string
	Status int
	// Agents are the resources the request's batchSub listed.
	Agents []string
}

// Pool is the fake front-end pool of one test.
type Pool struct {
	t        testing.TB
	ca       *testca.CA
	fqdn     string
	listener net.Listener
	ua       *sipgo.UserAgent
	server   *sipgo.Server
	client   *sipgo.Client

	mu      sync.Mutex
	states  map[string]State
	batches map[string]*Batch // by Call-ID
	answers []Answer
	sent    int // BENOTIFYs sent
	// bad are URIs whose batches are answered 400.
	bad map[string]bool
	// unavailable counts the batch requests still to answer 503, with
	// retryAfter seconds.
	unavailable, retryAfter int
	// resubscribe are agents whose next instance says resubscribe, with
	// the poolFqdn to name (empty: none).
	resubscribe map[string]string
	// maxExpires is the longest subscription granted, in seconds.
	maxExpires int
	// maxCategorySubscriptions is each agent's limit of category
	// subscriptions; 0 is none.
	maxCategorySubscriptions int
	// doubles are the agents a batch took while another live batch held
	// them, each time it happened.
	doubles []string
	// notify sends updates as NOTIFY, which is answered, not BENOTIFY;
	// notified are the answers.
	notify   bool
	notified []int
}

// Start runs a pool whose certificate ca signs for fqdn (and 127.0.0.1),
// taking only clients whose certificates ca signs, on a free port.
func Start(t testing.TB, ca *testca.CA, fqdn string) *Pool {
	t.Helper()
	return StartAt(t, ca, fqdn, "127.0.0.1:0")
}

// StartAt is Start listening on addr: a pool that comes up where a watcher
// already looks for it.
func StartAt(t testing.TB, ca *testca.CA, fqdn, addr string) *Pool {
	t.Helper()
	certFile, keyFile := ca.Issue(fqdn, fqdn, "127.0.0.1")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	p := &Pool{t: t, ca: ca, fqdn: fqdn, states: map[string]State{}, batches: map[string]*Batch{}, bad: map[string]bool{},
		resubscribe: map[string]string{}, maxExpires: defaultMaxExpires,
		listener: tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots})}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The pool's own connections to watchers show the same certificate.
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("sfbtest"), sipgo.WithUserAgenTLSConfig(&tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12}),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
	if err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	if p.server, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(quiet)); err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	if p.client, err = sipgo.NewClient(p.ua, sipgo.WithClientLogger(quiet), sipgo.WithClientHostname("127.0.0.1")); err != nil {
		t.Fatalf("sfbtest: %v", err)
	}
	p.server.OnSubscribe(p.onSubscribe)
	p.server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.server.ServeTLS(p.listener)
	}()
	t.Cleanup(func() {
		_ = p.listener.Close()
		<-done
		_ = p.ua.Close()
	})
	return p
}

// Addr is host:port of the pool's TLS listener.
func (p *Pool) Addr() string { return p.listener.Addr().String() }

// CA is the authority the pool trusts and its certificate comes from:
// another pool of the same topology starts with it.
func (p *Pool) CA() *testca.CA { return p.ca }

// FQDN is the name in the pool's certificate.
func (p *Pool) FQDN() string { return p.fqdn }

// SetState publishes an agent's state: the agent is known to the pool from
// now on, and every batch holding it gets a BENOTIFY.
func (p *Pool) SetState(uri string, st State) {
	p.mu.Lock()
	p.states[strings.ToLower(uri)] = st
	p.expire()
	var reqs []*sip.Request
	for _, b := range p.batches {
		if slices.Contains(b.Agents, uri) {
			reqs = append(reqs, p.benotify(b, uri, st))
		}
	}
	p.sent += len(reqs)
	p.mu.Unlock()
	for _, req := range reqs {
		if req.Method == sip.NOTIFY {
			p.notifyOne(req)
			continue
		}
		if err := p.client.WriteRequest(req); err != nil {
			p.t.Logf("sfbtest: BENOTIFY %s: %v", req.Recipient.String(), err)
		}
	}
}

// notifyOne sends a NOTIFY and records its answer (0: none came).
func (p *Pool) notifyOne(req *sip.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status := 0
	if res, err := p.client.Do(ctx, req); err == nil {
		status = res.StatusCode
	} else {
		p.t.Logf("sfbtest: NOTIFY %s: %v", req.Recipient.String(), err)
	}
	p.mu.Lock()
	p.notified = append(p.notified, status)
	p.mu.Unlock()
}

// UseNotify sends the updates from now on as NOTIFY (answered) instead of
// BENOTIFY.
func (p *Pool) UseNotify() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = true
}

// Notified are the watchers' answers to the NOTIFYs sent, in order.
func (p *Pool) Notified() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.notified)
}

// SetMaxExpires caps the subscriptions the pool grants from now on.
func (p *Pool) SetMaxExpires(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxExpires = int(d / time.Second)
}

// SetMaxCategorySubscriptions limits the category subscriptions each agent
// takes, as the pool's MaxCategorySubscription does (one per batch holding
// the agent, since a batch asks for the state category alone).
func (p *Pool) SetMaxCategorySubscriptions(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxCategorySubscriptions = n
}

// Restart forgets every batch, as a pool restarting does: their refreshes
// are answered 481.
func (p *Pool) Restart() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches = map[string]*Batch{}
}

// Reject makes every batch request naming uri be answered 400.
func (p *Pool) Reject(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bad[strings.ToLower(uri)] = true
}

// Unavailable answers the next n batch requests 503 with Retry-After.
func (p *Pool) Unavailable(n int, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unavailable, p.retryAfter = n, int(retryAfter/time.Second)
}

// Resubscribe makes the next answer or BENOTIFY naming uri say
// resubscribe, with poolFqdn if not empty, and drops the agent from its
// batch.
func (p *Pool) Resubscribe(uri, poolFqdn string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resubscribe[strings.ToLower(uri)] = poolFqdn
}

// expire drops the batches whose subscription ran out unrefreshed (RFC
// 6665 section 4.1.2.1): a dead watcher's batches end at their expiry.
// Callers hold p.mu.
func (p *Pool) expire() {
	now := time.Now()
	for id, b := range p.batches {
		if !b.Expires.IsZero() && now.After(b.Expires) {
			delete(p.batches, id)
		}
	}
}

// Batches are the live batches the pool holds now, by Call-ID order.
func (p *Pool) Batches() []Batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire()
	out := make([]Batch, 0, len(p.batches))
	for _, b := range p.batches {
		c := *b
		c.Agents, c.Single = slices.Clone(b.Agents), b.single
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Batch) int { return strings.Compare(a.CallID, b.CallID) })
	return out
}

// Doubles lists, each time it happened, an agent that a batch took while
// another live batch held it: what a watcher's hand-over must never do.
func (p *Pool) Doubles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.doubles)
}

// Answers are the pool's answers to SUBSCRIBEs, in order.
func (p *Pool) Answers() []Answer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.answers)
}

// Sent counts the BENOTIFYs the pool sent.
func (p *Pool) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// batchSub is the batch body of [MS-PRES] schema 6.8.
type batchSub struct {
	XMLName xml.Name `xml:"batchSub"`
	URI     string   `xml:"uri,attr"`
	Action  []struct {
		Name      string `xml:"name,attr"`
		Resources []struct {
			URI string `xml:"uri,attr"`
		} `xml:"adhocList>resource"`
		Categories []struct {
			Name string `xml:"name,attr"`
		} `xml:"categoryList>category"`
	} `xml:"action"`
}

// refuse answers a SUBSCRIBE with an error status and records it.
func (p *Pool) refuse(req *sip.Request, tx sip.ServerTransaction, status int, reason string, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	p.mu.Lock()
	p.answers = append(p.answers, Answer{CallID: callID(req), Status: status})
	p.mu.Unlock()
	_ = tx.Respond(res)
}

func (p *Pool) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	if ev := req.GetHeader("Event"); ev == nil || !strings.EqualFold(strings.TrimSpace(strings.Split(ev.Value(), ";")[0]), "presence") {
		p.refuse(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "presence"))
		return
	}
	p.mu.Lock()
	p.expire()
	expires := p.maxExpires
	b := p.batches[callID(req)]
	inDialog := b != nil && req.To() != nil && toTag(req) == b.poolTag
	p.mu.Unlock()
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = min(n, expires)
		}
	}
	if !inDialog && toTag(req) != "" {
		// A dialog the pool does not hold (it restarted, or ended it).
		p.refuse(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if inDialog && expires == 0 {
		p.mu.Lock()
		delete(p.batches, b.CallID)
		p.answers = append(p.answers, Answer{CallID: b.CallID, Status: 200})
		p.mu.Unlock()
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=timeout"))
		_ = tx.Respond(res)
		return
	}
	var agents []string
	// A SUBSCRIBE to someone else is a single category subscription
	// ([MS-PRES] 3.4.5.1.3): its To and its one resource are the agent.
	single := (b != nil && b.single) || (req.To() != nil && req.From() != nil && !sameURI(req.To().Address, req.From().Address))
	if len(req.Body()) > 0 || !inDialog {
		if !single && (!hasToken(req, "Require", "adhoclist") || !hasToken(req, "Require", "categoryList")) {
			p.refuse(req, tx, 421, "Extension Required", sip.NewHeader("Require", "adhoclist, categoryList"))
			return
		}
		if ct := req.ContentType(); ct == nil || !strings.EqualFold(strings.TrimSpace(strings.Split(ct.Value(), ";")[0]), ContentBatch) {
			p.refuse(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", ContentBatch))
			return
		}
		from := req.From()
		if !single && (from == nil || (!inDialog && !sameURI(req.Recipient, from.Address))) {
			p.refuse(req, tx, 403, "Forbidden: a batch is addressed to the watcher itself")
			return
		}
		var doc batchSub
		if err := xml.NewDecoder(bytes.NewReader(req.Body())).Decode(&doc); err != nil || len(doc.Action) != 1 || doc.Action[0].Name != "subscribe" {
			p.refuse(req, tx, 400, "Bad Request: not a batchSub with one subscribe action")
			return
		}
		state := false
		for _, c := range doc.Action[0].Categories {
			state = state || c.Name == "state"
		}
		if !state {
			p.refuse(req, tx, 400, "Bad Request: categoryList lacks state")
			return
		}
		for _, r := range doc.Action[0].Resources {
			agents = append(agents, strings.TrimSpace(r.URI))
		}
		if single {
			var to sip.Uri
			if len(agents) != 1 || sip.ParseUri(agents[0], &to) != nil || !sameURI(to, req.To().Address) {
				p.refuse(req, tx, 400, "Bad Request: a single category SUBSCRIBE names its To alone")
				return
			}
		}
		p.mu.Lock()
		unavailable, retryAfter := p.unavailable > 0, p.retryAfter
		if unavailable {
			p.unavailable--
		}
		bad := slices.ContainsFunc(agents, func(a string) bool { return p.bad[strings.ToLower(a)] })
		p.mu.Unlock()
		if unavailable {
			p.refuse(req, tx, 503, "Service Unavailable", sip.NewHeader("Retry-After", strconv.Itoa(retryAfter)))
			return
		}
		if bad {
			p.refuse(req, tx, 400, "Bad Request: a resource URI is not valid")
			return
		}
	}
	p.accept(req, tx, b, inDialog, single, agents, expires)
}

// accept answers 200 with the first state of the agents asked for, and
// keeps the batch.
func (p *Pool) accept(req *sip.Request, tx sip.ServerTransaction, b *Batch, inDialog, single bool, agents []string, expires int) {
	p.mu.Lock()
	if single && !inDialog {
		if _, known := p.states[strings.ToLower(agents[0])]; !known {
			p.mu.Unlock()
			p.refuse(req, tx, 404, "Not Found")
			return
		}
	}
	if !inDialog {
		contact := req.Contact()
		if contact == nil {
			p.mu.Unlock()
			p.refuse(req, tx, 400, "Bad Request: no Contact")
			return
		}
		b = &Batch{CallID: callID(req), Watcher: req.From().Address.String(), contact: *contact.Address.Clone(),
			poolTag: sip.GenerateTagN(16), watchURI: *req.From().Address.Clone(), notifier: *req.To().Address.Clone(), single: single}
		b.watchTag, _ = req.From().Params.Get("tag")
		p.batches[b.CallID] = b
	}
	for _, a := range agents {
		if !slices.Contains(b.Agents, a) {
			b.Agents = append(b.Agents, a)
		}
		for _, other := range p.batches {
			if other != b && slices.ContainsFunc(other.Agents, func(x string) bool { return strings.EqualFold(x, a) }) {
				p.doubles = append(p.doubles, a)
			}
		}
	}
	b.Expires = time.Now().Add(time.Duration(expires) * time.Second)
	var body []byte
	contentType := listContentType
	switch {
	case single && len(agents) > 0:
		body, contentType = []byte(categories(agents[0], p.states[strings.ToLower(agents[0])])), ContentCategories
	case len(agents) > 0:
		b.version++
		body = p.listBody(b, agents, true)
	}
	p.answers = append(p.answers, Answer{CallID: b.CallID, Status: 200, Agents: agents})
	poolTag := b.poolTag
	p.mu.Unlock()

	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if to := res.To(); to != nil && toTag(req) == "" {
		to.Params.Add("tag", poolTag)
	}
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sips", Host: "127.0.0.1", Port: p.port(), UriParams: sip.NewParams()}})
	expiresHeader := sip.ExpiresHeader(uint32(expires))
	res.AppendHeader(&expiresHeader)
	res.AppendHeader(sip.NewHeader("Event", "presence"))
	res.AppendHeader(sip.NewHeader("Subscription-State", fmt.Sprintf("active;expires=%d", expires)))
	res.AppendHeader(sip.NewHeader("Supported", "ms-benotify, ms-piggyback-first-notify"))
	if len(body) > 0 {
		if !single {
			res.AppendHeader(sip.NewHeader("Require", "eventlist"))
		}
		res.AppendHeader(sip.NewHeader("Content-Type", contentType))
	}
	_ = tx.Respond(res)
}

// listContentType is the multipart type of [MS-SIP] 3.3.5.1's example.
var listContentType = fmt.Sprintf(`multipart/related; type="%s"; start=resourceList; boundary=%s`, ContentRLMI, boundary)

// listBody is the RLMI index of agents and a categories part for each the
// pool knows. Callers hold p.mu.
func (p *Pool) listBody(b *Batch, agents []string, full bool) []byte {
	var index, parts bytes.Buffer
	fmt.Fprintf(&index, `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="%s" version="%d" fullState="%t">`, xmlText(b.Watcher), b.version, full)
	for i, a := range agents {
		st, known := p.states[strings.ToLower(a)]
		if pool, moved := p.resubscribe[strings.ToLower(a)]; moved {
			delete(p.resubscribe, strings.ToLower(a))
			b.Agents = slices.DeleteFunc(b.Agents, func(x string) bool { return strings.EqualFold(x, a) })
			attr := ""
			if pool != "" {
				attr = ` poolFqdn="` + xmlText(pool) + `"`
			}
			fmt.Fprintf(&index, `<resource uri="%s"><instance id="%d" state="resubscribe"%s/></resource>`, xmlText(a), i, attr)
			continue
		}
		if !known {
			fmt.Fprintf(&index, `<resource uri="%s"><instance id="%d" state="terminated" reason="noresource"/></resource>`, xmlText(a), i)
			continue
		}
		if full && p.maxCategorySubscriptions > 0 && p.holders(a, b) >= p.maxCategorySubscriptions {
			b.Agents = slices.DeleteFunc(b.Agents, func(x string) bool { return strings.EqualFold(x, a) })
			fmt.Fprintf(&index, `<resource uri="%s"><instance id="%d" state="terminated" reason="rejected"/></resource>`, xmlText(a), i)
			continue
		}
		cid := fmt.Sprintf("%d.%d@%s", b.version, i, p.fqdn)
		fmt.Fprintf(&index, `<resource uri="%s"><instance id="%d" state="active" cid="%s"/></resource>`, xmlText(a), i, cid)
		fmt.Fprintf(&parts, "--%s\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <%s>\r\nContent-Type: %s\r\n\r\n%s\r\n",
			boundary, cid, ContentCategories, categories(a, st))
	}
	index.WriteString(`</list>`)
	var out bytes.Buffer
	fmt.Fprintf(&out, "--%s\r\nContent-Transfer-Encoding: binary\r\nContent-ID: resourceList\r\nContent-Type: %s\r\n\r\n%s\r\n",
		boundary, ContentRLMI, index.String())
	out.Write(parts.Bytes())
	fmt.Fprintf(&out, "--%s--\r\n", boundary)
	return out.Bytes()
}

// holders counts the batches other than b that hold agent a. Callers hold
// p.mu.
func (p *Pool) holders(a string, b *Batch) int {
	n := 0
	for _, other := range p.batches {
		if other != b && slices.ContainsFunc(other.Agents, func(x string) bool { return strings.EqualFold(x, a) }) {
			n++
		}
	}
	return n
}

// categories is the agent's categories document with its aggregate state
// ([MS-PRES] categories and state schemas).
func categories(uri string, st State) string {
	var inner strings.Builder
	fmt.Fprintf(&inner, "<availability>%d</availability>", st.Availability)
	if st.Activity != "" {
		fmt.Fprintf(&inner, `<activity token="%s"/>`, xmlText(st.Activity))
	}
	if st.Device != "" {
		fmt.Fprintf(&inner, "<device>%s</device>", xmlText(st.Device))
	}
	return fmt.Sprintf(`<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="%s">`+
		`<category name="state" instance="1" publishTime="%s" container="300" version="1" expireType="static">`+
		`<state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" manual="false" xsi:type="aggregateState">%s</state>`+
		`</category></categories>`, xmlText(uri), time.Now().UTC().Format(time.RFC3339), inner.String())
}

// benotify is the BENOTIFY telling batch b of one agent's new state.
// Callers hold p.mu.
func (p *Pool) benotify(b *Batch, agent string, st State) *sip.Request {
	b.version++
	b.cseq++
	p.states[strings.ToLower(agent)] = st
	method := BENOTIFY
	if p.notify {
		method = sip.NOTIFY
	}
	req := sip.NewRequest(method, *b.contact.Clone())
	from := &sip.FromHeader{Address: *b.notifier.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", b.poolTag)
	to := &sip.ToHeader{Address: *b.watchURI.Clone(), Params: sip.NewParams()}
	if b.watchTag != "" {
		to.Params.Add("tag", b.watchTag)
	}
	id := sip.CallIDHeader(b.CallID)
	maxForwards := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&id)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: b.cseq, MethodName: method})
	req.AppendHeader(&maxForwards)
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	remaining := max(0, int(time.Until(b.Expires)/time.Second))
	req.AppendHeader(sip.NewHeader("Subscription-State", fmt.Sprintf("active;expires=%d", remaining)))
	if b.single {
		req.AppendHeader(sip.NewHeader("Content-Type", ContentCategories))
		req.SetBody([]byte(categories(agent, st)))
	} else {
		req.AppendHeader(sip.NewHeader("Require", "eventlist"))
		req.AppendHeader(sip.NewHeader("Content-Type", listContentType))
		req.SetBody(p.listBody(b, []string{agent}, false))
	}
	req.SetTransport("TLS")
	req.SetDestination(net.JoinHostPort(b.contact.Host, strconv.Itoa(b.contact.Port)))
	return req
}

func (p *Pool) port() int {
	_, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	return n
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func toTag(req *sip.Request) string {
	if to := req.To(); to != nil {
		tag, _ := to.Params.Get("tag")
		return tag
	}
	return ""
}

// hasToken reports whether any header name lists token (case-insensitive).
func hasToken(req *sip.Request, name, token string) bool {
	for _, h := range req.GetHeaders(name) {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

func sameURI(a, b sip.Uri) bool {
	return strings.EqualFold(a.User, b.User) && strings.EqualFold(a.Host, b.Host)
}

// xmlText escapes s for an attribute or text node.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
