package sfbtest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/contactcenter/presence-provider/internal/sfbtest"
	"github.com/contactcenter/presence-provider/internal/testca"
)

const (
	poolFQDN = "pool.contoso.com"
	appURI   = "sip:ucc_presenceprovider01@contoso.com"
)

// watcher is a trusted application's SIP stack, made with sipgo alone:
// a client showing its certificate, and a TLS listener that takes only the
// pool's connections and collects the BENOTIFYs they carry.
type watcher struct {
	client   *sipgo.Client
	contact  sip.Uri
	uri      sip.Uri
	benotify chan *sip.Request
}

func tlsConf(t *testing.T, ca *testca.CA, name string) *tls.Config {
	t.Helper()
	certFile, keyFile := ca.Issue(name, name, "127.0.0.1")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ClientCAs: roots, MinVersion: tls.VersionTLS12}
}

func newWatcher(t *testing.T, ca *testca.CA) *watcher {
	t.Helper()
	conf := tlsConf(t, ca, "trustedapp.contoso.com")
	client := conf.Clone()
	client.ServerName = poolFQDN
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(client),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := conf.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	tl := tls.NewListener(l, server)
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{benotify: make(chan *sip.Request, 16)}
	srv.OnRequest(sfbtest.BENOTIFY, func(req *sip.Request, _ sip.ServerTransaction) { w.benotify <- req })
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(tl)
	}()
	t.Cleanup(func() {
		_ = tl.Close()
		<-done
		_ = ua.Close()
	})
	if w.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(quiet), sipgo.WithClientHostname("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := strconv.Atoi(port)
	w.contact = sip.Uri{Scheme: "sips", Host: "127.0.0.1", Port: p, UriParams: sip.NewParams()}
	if err := sip.ParseUri(appURI, &w.uri); err != nil {
		t.Fatal(err)
	}
	return w
}

// batchBody is a batchSub of [MS-PRES] schema 6.8 for agents and categories.
func batchBody(agents []string, categories ...string) []byte {
	var b strings.Builder
	b.WriteString(`<batchSub xmlns="http://schemas.microsoft.com/2006/01/sip/batch-subscribe" uri="` + appURI + `" name="">`)
	b.WriteString(`<action name="subscribe" id="1"><adhocList>`)
	for _, a := range agents {
		b.WriteString(`<resource uri="` + a + `"/>`)
	}
	b.WriteString(`</adhocList><categoryList xmlns="http://schemas.microsoft.com/2006/09/sip/categorylist">`)
	for _, c := range categories {
		b.WriteString(`<category name="` + c + `"/>`)
	}
	b.WriteString(`</categoryList></action></batchSub>`)
	return []byte(b.String())
}

// subscribe is the batched SUBSCRIBE of [MS-SIP] 3.3.4.1; edit changes it
// before it leaves.
func (w *watcher) subscribe(t *testing.T, pool *sfbtest.Pool, agents []string, edit func(*sip.Request)) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.SUBSCRIBE, *w.uri.Clone())
	from := &sip.FromHeader{Address: *w.uri.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *w.uri.Clone(), Params: sip.NewParams()})
	id := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&id)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: *w.contact.Clone()})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Accept", sfbtest.ContentCategories+", "+sfbtest.ContentRLMI+", multipart/related"))
	req.AppendHeader(sip.NewHeader("Supported", "eventlist, ms-benotify, ms-piggyback-first-notify"))
	req.AppendHeader(sip.NewHeader("Proxy-Require", "ms-benotify"))
	req.AppendHeader(sip.NewHeader("Require", "adhoclist, categoryList"))
	req.AppendHeader(sip.NewHeader("Content-Type", sfbtest.ContentBatch))
	expires := sip.ExpiresHeader(600)
	req.AppendHeader(&expires)
	req.SetBody(batchBody(agents, "state"))
	if edit != nil {
		edit(req)
	}
	return w.send(t, pool, req)
}

func (w *watcher) send(t *testing.T, pool *sfbtest.Pool, req *sip.Request) *sip.Response {
	t.Helper()
	req.SetTransport("TLS")
	req.SetDestination(pool.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := w.client.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

type rlmi struct {
	URI       string `xml:"uri,attr"`
	Version   int    `xml:"version,attr"`
	FullState bool   `xml:"fullState,attr"`
	Resources []struct {
		URI      string `xml:"uri,attr"`
		Instance struct {
			State  string `xml:"state,attr"`
			Reason string `xml:"reason,attr"`
			CID    string `xml:"cid,attr"`
		} `xml:"instance"`
	} `xml:"resource"`
}

// list reads a multipart/related list body with the standard library: the
// RLMI root, and the other parts by Content-ID.
func list(t *testing.T, contentType string, body []byte) (rlmi, map[string]string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/related" || params["type"] != sfbtest.ContentRLMI || params["start"] != "resourceList" {
		t.Fatalf("content type %q: %v", contentType, err)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var index rlmi
	parts := map[string]string{}
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p)
		cid := strings.Trim(p.Header.Get("Content-ID"), "<>")
		if cid == "resourceList" {
			if err := xml.Unmarshal(data, &index); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if ct := p.Header.Get("Content-Type"); ct != sfbtest.ContentCategories {
			t.Fatalf("part %s is %q", cid, ct)
		}
		parts[cid] = string(data)
	}
	return index, parts
}

// The first state of every agent the pool knows comes in the 200 OK; an
// agent it does not know is terminated; a change reaches the batch as a
// BENOTIFY over the pool's own TLS connection; Expires: 0 ends the batch.
func TestBatchedSubscription(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	w := newWatcher(t, ca)
	const agent1, agent2, ghost = "sip:agent1@contoso.com", "sip:agent2@contoso.com", "sip:ghost@contoso.com"
	pool.SetState(agent1, sfbtest.State{Availability: 6500, Activity: "on-the-phone", Device: "computer"})
	pool.SetState(agent2, sfbtest.State{Availability: 15500})

	res := w.subscribe(t, pool, []string{agent1, agent2, ghost}, nil)
	if res.StatusCode != 200 {
		t.Fatalf("answer %d %s", res.StatusCode, res.Reason)
	}
	if h := res.GetHeader("Require"); h == nil || h.Value() != "eventlist" {
		t.Fatalf("Require %v; want eventlist", h)
	}
	index, parts := list(t, res.ContentType().Value(), res.Body())
	if index.URI != appURI || !index.FullState || len(index.Resources) != 3 || len(parts) != 2 {
		t.Fatalf("index %+v, %d parts", index, len(parts))
	}
	for i, want := range []struct{ uri, state, reason, body string }{
		{agent1, "active", "", `<availability>6500</availability><activity token="on-the-phone"/><device>computer</device>`},
		{agent2, "active", "", `<availability>15500</availability>`},
		{ghost, "terminated", "noresource", ""},
	} {
		r := index.Resources[i]
		if r.URI != want.uri || r.Instance.State != want.state || r.Instance.Reason != want.reason {
			t.Fatalf("resource %d: %+v; want %+v", i, r, want)
		}
		if want.body == "" {
			continue
		}
		if part := parts[r.Instance.CID]; !strings.Contains(part, `uri="`+want.uri+`"`) || !strings.Contains(part, want.body) {
			t.Fatalf("%s: part %q", want.uri, part)
		}
	}
	batches := pool.Batches()
	if len(batches) != 1 || len(batches[0].Agents) != 3 || batches[0].CallID != res.CallID().Value() {
		t.Fatalf("batches %+v", batches)
	}

	pool.SetState(agent2, sfbtest.State{Availability: 3500})
	var ben *sip.Request
	select {
	case ben = <-w.benotify:
	case <-time.After(10 * time.Second):
		t.Fatal("no BENOTIFY")
	}
	if ben.CallID().Value() != batches[0].CallID || ben.ContentType() == nil {
		t.Fatalf("BENOTIFY outside the batch's dialog:\n%s", ben)
	}
	index, parts = list(t, ben.ContentType().Value(), ben.Body())
	if index.FullState || index.Version != 2 || len(index.Resources) != 1 || index.Resources[0].URI != agent2 || len(parts) != 1 {
		t.Fatalf("BENOTIFY index %+v, parts %v", index, parts)
	}
	if part := parts[index.Resources[0].Instance.CID]; !strings.Contains(part, "<availability>3500</availability>") {
		t.Fatalf("BENOTIFY part %q", part)
	}

	end := w.subscribe(t, pool, nil, func(req *sip.Request) {
		id := sip.CallIDHeader(batches[0].CallID)
		req.ReplaceHeader(&id)
		to := req.To()
		tag, _ := res.To().Params.Get("tag")
		to.Params.Add("tag", tag)
		req.CSeq().SeqNo = 2
		expires := sip.ExpiresHeader(0)
		req.ReplaceHeader(&expires)
		req.SetBody(nil)
	})
	if end.StatusCode != 200 || len(pool.Batches()) != 0 {
		t.Fatalf("un-SUBSCRIBE: %d, batches %+v", end.StatusCode, pool.Batches())
	}
}

// What a real pool refuses, it refuses here, with the answer that says why.
func TestBatchRefusals(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	w := newWatcher(t, ca)
	for _, tc := range []struct {
		name    string
		edit    func(*sip.Request)
		status  int
		header  string
		listing string
	}{
		{"without Require: adhoclist", func(r *sip.Request) { r.RemoveHeader("Require") }, 421, "Require", "adhoclist"},
		{"adhoclist without categoryList", func(r *sip.Request) { r.ReplaceHeader(sip.NewHeader("Require", "adhoclist")) }, 421, "Require", "categoryList"},
		{"a PIDF body", func(r *sip.Request) { r.ReplaceHeader(sip.NewHeader("Content-Type", "application/pidf+xml")) }, 415, "Accept", sfbtest.ContentBatch},
		{"another event", func(r *sip.Request) { r.ReplaceHeader(sip.NewHeader("Event", "dialog")) }, 489, "Allow-Events", "presence"},
		{"to an agent, not to itself", func(r *sip.Request) { r.Recipient.User = "agent1" }, 403, "", ""},
		{"no state category", func(r *sip.Request) { r.SetBody(batchBody([]string{"sip:agent1@contoso.com"}, "note")) }, 400, "", ""},
		{"not a batchSub", func(r *sip.Request) { r.SetBody([]byte("<presence/>")) }, 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := w.subscribe(t, pool, []string{"sip:agent1@contoso.com"}, tc.edit)
			if res.StatusCode != tc.status {
				t.Fatalf("answer %d %s; want %d", res.StatusCode, res.Reason, tc.status)
			}
			if tc.header != "" {
				if h := res.GetHeader(tc.header); h == nil || !strings.Contains(h.Value(), tc.listing) {
					t.Fatalf("%s: %v; want it to list %s", tc.header, h, tc.listing)
				}
			}
		})
	}
	if n := len(pool.Batches()); n != 0 {
		t.Fatalf("%d batches after refusals", n)
	}
}

// probe sends one OPTIONS over a TLS connection made with conf: the
// answer's status line, or what stopped it.
func probe(addr string, conf *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("OPTIONS sip:" + poolFQDN + " SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK-probe\r\n" +
		"From: <sip:probe@contoso.com>;tag=1\r\nTo: <sip:" + poolFQDN + ">\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// A client without a certificate from the CA the pool trusts never gets to
// send SIP: the connection ends in the handshake. The same probe with the
// CA's certificate is answered, so the refusals are the certificate's doing.
func TestPoolRefusesClientsWithoutCertificate(t *testing.T) {
	ca, other := testca.New(t, "contoso-ca"), testca.New(t, "other-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	trusted := tlsConf(t, ca, "probe")
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"the CA's certificate", trusted.Certificates, "SIP/2.0 200 OK"},
		{"no certificate", nil, ""},
		{"a certificate of another CA", tlsConf(t, other, "stranger").Certificates, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := probe(pool.Addr(), &tls.Config{RootCAs: trusted.RootCAs, ServerName: poolFQDN, Certificates: tc.certs, MinVersion: tls.VersionTLS12})
			if tc.want != "" && (err != nil || line != tc.want) {
				t.Fatalf("%q, %v; want %q", line, err, tc.want)
			}
			if tc.want == "" && err == nil {
				t.Fatalf("the pool answered %q to a client it does not trust", line)
			}
		})
	}
}

// The faults a test asks for: a 400 for a batch naming a rejected URI, a
// 503 with Retry-After, and a resubscribe instance naming another pool.
func TestPoolFaults(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	w := newWatcher(t, ca)
	const good, bad = "sip:agent1@contoso.com", "sip:bad@contoso.com"
	pool.SetState(good, sfbtest.State{Availability: 3500})
	pool.Reject(bad)
	if res := w.subscribe(t, pool, []string{good, bad}, nil); res.StatusCode != 400 {
		t.Fatalf("a batch naming a rejected URI: %d", res.StatusCode)
	}
	pool.Unavailable(1, 30*time.Second)
	res := w.subscribe(t, pool, []string{good}, nil)
	if h := res.GetHeader("Retry-After"); res.StatusCode != 503 || h == nil || h.Value() != "30" {
		t.Fatalf("unavailable: %d, Retry-After %v", res.StatusCode, h)
	}
	pool.Resubscribe(good, "pool2.contoso.com")
	res = w.subscribe(t, pool, []string{good}, nil)
	if res.StatusCode != 200 {
		t.Fatalf("after the fault: %d", res.StatusCode)
	}
	index, parts := list(t, res.ContentType().Value(), res.Body())
	if len(index.Resources) != 1 || index.Resources[0].Instance.State != "resubscribe" || len(parts) != 0 ||
		!strings.Contains(string(res.Body()), `poolFqdn="pool2.contoso.com"`) {
		t.Fatalf("resubscribe: %+v\n%s", index, res.Body())
	}
	if b := pool.Batches(); len(b) != 1 || len(b[0].Agents) != 0 {
		t.Fatalf("batches %+v; want the agent left out", b)
	}
}

// A single category SUBSCRIBE goes to the agent, without Require:
// adhoclist, and names that agent alone; its 200 carries the agent's
// categories document, and an agent the pool does not know is 404.
func TestSingleCategorySubscription(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	w := newWatcher(t, ca)
	const agent = "sip:agent1@contoso.com"
	pool.SetState(agent, sfbtest.State{Availability: 9500, Activity: "in-a-conference"})
	to := func(uri string) func(*sip.Request) {
		return func(r *sip.Request) {
			var u sip.Uri
			if err := sip.ParseUri(uri, &u); err != nil {
				t.Fatal(err)
			}
			r.Recipient = u
			r.To().Address = u
			r.RemoveHeader("Require")
		}
	}
	res := w.subscribe(t, pool, []string{agent}, to(agent))
	if res.StatusCode != 200 || res.ContentType() == nil || res.ContentType().Value() != sfbtest.ContentCategories ||
		!strings.Contains(string(res.Body()), `<availability>9500</availability><activity token="in-a-conference"/>`) {
		t.Fatalf("single SUBSCRIBE: %d %v\n%s", res.StatusCode, res.ContentType(), res.Body())
	}
	if b := pool.Batches(); len(b) != 1 || !b[0].Single {
		t.Fatalf("batches %+v; want one single category subscription", b)
	}
	if res := w.subscribe(t, pool, []string{agent, "sip:agent2@contoso.com"}, to(agent)); res.StatusCode != 400 {
		t.Fatalf("a single SUBSCRIBE naming two agents: %d", res.StatusCode)
	}
	if res := w.subscribe(t, pool, []string{"sip:nobody@contoso.com"}, to("sip:nobody@contoso.com")); res.StatusCode != 404 {
		t.Fatalf("a single SUBSCRIBE to an unknown agent: %d", res.StatusCode)
	}
}

// Past an agent's limit of category subscriptions, a batch that asks for it
// gets it terminated (rejected) and does not hold it.
func TestMaxCategorySubscriptions(t *testing.T) {
	ca := testca.New(t, "contoso-ca")
	pool := sfbtest.Start(t, ca, poolFQDN)
	w := newWatcher(t, ca)
	const agent = "sip:agent1@contoso.com"
	pool.SetState(agent, sfbtest.State{Availability: 3500})
	pool.SetMaxCategorySubscriptions(1)
	for i, want := range []string{"active", "terminated"} {
		res := w.subscribe(t, pool, []string{agent}, nil)
		index, _ := list(t, res.ContentType().Value(), res.Body())
		if in := index.Resources[0].Instance; in.State != want || (want == "terminated" && in.Reason != "rejected") {
			t.Fatalf("subscription %d: instance %+v; want %s", i+1, in, want)
		}
	}
	held := 0
	for _, b := range pool.Batches() {
		held += len(b.Agents)
	}
	if held != 1 {
		t.Fatalf("the agent is held %d times; want once, within its limit", held)
	}
}
