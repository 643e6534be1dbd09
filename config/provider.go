// Package config reads the provider's settings: the PresenceProvider element
// of the product's Config.xml, and the process settings from the environment.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

// Provider is the PresenceProvider element of Config.xml.
type Provider struct {
	MaxSubscriptionsPerSecond int
	FailedResubscribeDelay    time.Duration
	MaxFailedResubscribeDelay time.Duration
	// MaxFailuresPerURI is 0 for "never give up".
	MaxFailuresPerURI int

	SIP       SIPSource
	PSTN      PSTNSource
	Attendant AttendantSource
	Graph     GraphSource
}

// SIPSource is the UcmaPresenceSource element.
type SIPSource struct {
	Enabled       bool
	ApplicationID string
	// Dialect is DialectRFC or DialectMSSIP: how the source speaks SIP.
	Dialect string
	// BatchSize is the most agents one mssip batch holds; 0 leaves the SIP
	// source's default.
	BatchSize int
	Transport string
	Listen    string
	// SubscriptionExpires is the SUBSCRIBE expiry asked for. Below the
	// worker lease, a killed worker's dialogs end before another worker
	// takes its agents.
	SubscriptionExpires time.Duration
	Application         Endpoint
	User                *Endpoint
	// TLSCAFile, TLSCertFile, TLSKeyFile and TLSServerName are the Tls
	// attributes, which only Transport tls takes.
	TLSCAFile, TLSCertFile, TLSKeyFile, TLSServerName string
	// TLS is built from them when the source is enabled with Transport tls.
	TLS *tls.Config
}

// Endpoint is an ApplicationEndpoint or UserEndpoint.
type Endpoint struct {
	URI      string
	PoolFQDN string
	Register bool
}

// PSTNSource is the PstnPresenceSource element.
type PSTNSource struct {
	Enabled bool
	// MaxCallDuration clears a call that never reported "ended".
	MaxCallDuration time.Duration
}

// AttendantSource is the AttendantServiceSource element.
type AttendantSource struct {
	Enabled  bool
	Patterns []*regexp.Regexp
}

// GraphSource is the MsGraphPresenceSource element.
type GraphSource struct {
	Enabled  bool
	Accounts []GraphAccount
	// RequestsPer30s is each account's request budget.
	RequestsPer30s int
	// BudgetPercent is the part of the budget the source spends.
	BudgetPercent int
	MinCycle      time.Duration
}

// GraphAccount is one app registration the Graph source polls with.
type GraphAccount struct {
	ID       string
	TenantID string
	// ClientID defaults to ID.
	ClientID        string
	ClientSecretEnv string
	CertificateFile string
}

// Secret reads the account's client secret from the variable ClientSecretEnv
// names; Config.xml never holds it.
func (a GraphAccount) Secret() Secret { return Secret(os.Getenv(a.ClientSecretEnv)) }

// Defaults of docs/product.md, Config.xml.
const (
	DefaultMaxSubscriptionsPerSecond = 15
	DefaultFailedResubscribeDelay    = 900 * time.Second
	DefaultMaxFailedResubscribeDelay = 28800 * time.Second
	DefaultMaxFailuresPerURI         = 3
	DefaultMaxCallDuration           = 4 * time.Hour
	DefaultGraphRequestsPer30s       = 1500
	DefaultGraphMinCycle             = time.Second
	DefaultGraphBudgetPercent        = 80
	DefaultClientSecretEnv           = "PRESENCE_GRAPH_CLIENT_SECRET"
	DefaultSIPTransport              = "tcp"
	DefaultSubscriptionExpires       = 600 * time.Second
)

// Dialects of UcmaPresenceSource: RFC 6665 with PIDF, one dialog per agent
// (the default), or Microsoft SIP as Skype for Business Server speaks it to
// a trusted application ([MS-SIP], [MS-PRES]).
const (
	DialectRFC   = "rfc"
	DialectMSSIP = "mssip"
)

// Default is the configuration when no Config.xml is given: only the PSTN
// source, the one that needs no settings.
func Default() Provider {
	return Provider{
		MaxSubscriptionsPerSecond: DefaultMaxSubscriptionsPerSecond,
		FailedResubscribeDelay:    DefaultFailedResubscribeDelay,
		MaxFailedResubscribeDelay: DefaultMaxFailedResubscribeDelay,
		MaxFailuresPerURI:         DefaultMaxFailuresPerURI,
		PSTN:                      PSTNSource{Enabled: true, MaxCallDuration: DefaultMaxCallDuration},
		SIP:                       SIPSource{Dialect: DialectRFC, Transport: DefaultSIPTransport, SubscriptionExpires: DefaultSubscriptionExpires},
		Graph: GraphSource{RequestsPer30s: DefaultGraphRequestsPer30s, BudgetPercent: DefaultGraphBudgetPercent,
			MinCycle: DefaultGraphMinCycle},
	}
}

// RuleError is a Config.xml rule broken: it names the element, the attribute
// (empty when the rule is about the element) and the rule.
type RuleError struct {
	Element   string
	Attribute string
	Rule      string
}

func (e *RuleError) Error() string {
	if e.Attribute == "" {
		return fmt.Sprintf("config: element %s: %s", e.Element, e.Rule)
	}
	return fmt.Sprintf("config: element %s, attribute %s: %s", e.Element, e.Attribute, e.Rule)
}

// Load reads the PresenceProvider element of a Config.xml file, with a
// warning for each name in it the provider does not know.
func Load(path string) (Provider, []Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		return Provider{}, nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Provider{}, nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data)
}

// Parse reads the PresenceProvider element of a Config.xml document, with a
// warning for each name in it the provider does not know; other elements
// (License, ...) are ignored.
func Parse(data []byte) (Provider, []Warning, error) {
	if len(data) > MaxFileSize {
		return Provider{}, nil, fmt.Errorf("config: the file is over %d MiB, too big for a Config.xml", MaxFileSize>>20)
	}
	root, err := readTree(bytes.NewReader(data))
	if err != nil {
		return Provider{}, nil, err
	}
	pp := root.find("PresenceProvider")
	if pp == nil {
		return Provider{}, nil, &RuleError{Element: root.name, Rule: "has no PresenceProvider element"}
	}
	r := &reader{}
	p := Default()
	p.MaxSubscriptionsPerSecond = r.int(pp, "maxPresenceSubscriptionsPerSecond", p.MaxSubscriptionsPerSecond, 1, 10000)
	p.FailedResubscribeDelay = r.seconds(pp, "failedPresenceSubscriptionsResubscribeDelay", p.FailedResubscribeDelay, 1, 7*86400)
	p.MaxFailedResubscribeDelay = r.seconds(pp, "MaxFailedPresenceSubscriptionsResubscribeDelay", p.MaxFailedResubscribeDelay, 1, 7*86400)
	p.MaxFailuresPerURI = r.int(pp, "maxFailedPresenceSubscriptionsPerUri", p.MaxFailuresPerURI, 0, 1000)
	if _, given := pp.attr("MaxFailedPresenceSubscriptionsResubscribeDelay"); !given {
		// A first delay above the default cap raises the cap rather than
		// faulting an attribute the file does not have.
		p.MaxFailedResubscribeDelay = max(p.MaxFailedResubscribeDelay, p.FailedResubscribeDelay)
	}
	if r.err == nil && p.MaxFailedResubscribeDelay < p.FailedResubscribeDelay {
		r.fail(pp, "MaxFailedPresenceSubscriptionsResubscribeDelay", "must not be less than failedPresenceSubscriptionsResubscribeDelay")
	}
	if n := r.one(pp, "UcmaPresenceSource"); n != nil {
		p.SIP = r.sip(n)
	}
	if n := r.one(pp, "PstnPresenceSource"); n != nil {
		p.PSTN.Enabled = r.bool(n, "enabled", false)
		p.PSTN.MaxCallDuration = r.seconds(n, "maxCallDuration", p.PSTN.MaxCallDuration, 60, 7*86400)
	} else {
		p.PSTN.Enabled = false
	}
	if n := r.one(pp, "AttendantServiceSource"); n != nil {
		p.Attendant = r.attendant(n)
	}
	if n := r.one(pp, "MsGraphPresenceSource"); n != nil {
		p.Graph = r.graph(n)
	}
	if r.err != nil {
		return Provider{}, nil, r.err
	}
	return p, unknowns(pp), nil
}

// reader keeps the first broken rule, so that parsing reads on without
// checking after every attribute.
type reader struct{ err error }

func (r *reader) fail(n *node, attr, rule string) {
	if r.err == nil {
		r.err = &RuleError{Element: n.path(), Attribute: attr, Rule: rule}
	}
}

func (r *reader) one(parent *node, name string) *node {
	found := parent.all(name)
	if len(found) > 1 {
		r.fail(parent, "", "has more than one "+name+" element")
	}
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

func (r *reader) int(n *node, attr string, def, min, max int) int {
	s, ok := n.attr(attr)
	if !ok || s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		r.fail(n, attr, fmt.Sprintf("%q is not a whole number", s))
		return def
	}
	if v < min || v > max {
		r.fail(n, attr, fmt.Sprintf("%d is out of range %d to %d", v, min, max))
		return def
	}
	return v
}

func (r *reader) seconds(n *node, attr string, def time.Duration, min, max int) time.Duration {
	return time.Duration(r.int(n, attr, int(def/time.Second), min, max)) * time.Second
}

func (r *reader) bool(n *node, attr string, def bool) bool {
	s, ok := n.attr(attr)
	if !ok || s == "" {
		return def
	}
	v, err := strconv.ParseBool(strings.ToLower(s))
	if err != nil {
		r.fail(n, attr, fmt.Sprintf("%q is not true or false", s))
		return def
	}
	return v
}

func (r *reader) str(n *node, attr string, mandatory bool) string {
	s, _ := n.attr(attr)
	if s == "" && mandatory {
		r.fail(n, attr, "is mandatory")
	}
	return s
}

func (r *reader) sipURI(n *node, attr string, mandatory bool) string {
	s := r.str(n, attr, mandatory)
	if s == "" {
		return ""
	}
	u, err := schemas.ParseURI(s)
	if err != nil || !strings.HasPrefix(u.URI, "sip:") {
		r.fail(n, attr, fmt.Sprintf("%q is not a sip URI", s))
		return ""
	}
	return u.URI
}

// hostPort accepts "host" or "host:port", as PoolFqdn does; portRequired
// demands the port, as a listen address does.
func (r *reader) hostPort(n *node, attr string, portRequired bool) string {
	s := r.str(n, attr, false)
	if s == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	bare := err != nil // no port given; an IPv6 address then needs brackets
	if bare {
		host, port = s, ""
	}
	portOK := bare && !portRequired
	if p, err := strconv.Atoi(port); err == nil && p >= 0 && p <= 65535 {
		portOK = true
	}
	if !portOK || (host == "" && !portRequired) || strings.ContainsAny(host, "/ ") || (bare && strings.Contains(host, ":")) {
		form := "host or host:port"
		if portRequired {
			form = "host:port"
		}
		r.fail(n, attr, fmt.Sprintf("%q is not %s", s, form))
		return ""
	}
	return s
}

func (r *reader) sip(n *node) SIPSource {
	s := SIPSource{Enabled: r.bool(n, "enabled", false)}
	s.ApplicationID = r.str(n, "ApplicationId", s.Enabled)
	s.Dialect = strings.ToLower(r.str(n, "Dialect", false))
	switch s.Dialect {
	case "":
		s.Dialect = DialectRFC
	case DialectRFC, DialectMSSIP:
	default:
		r.fail(n, "Dialect", fmt.Sprintf("%q is not %s or %s", s.Dialect, DialectRFC, DialectMSSIP))
	}
	s.Transport = strings.ToLower(r.str(n, "Transport", false))
	switch s.Transport {
	case "":
		s.Transport = DefaultSIPTransport
	case "udp", "tcp", "tls":
	default:
		r.fail(n, "Transport", fmt.Sprintf("%q is not udp, tcp or tls", s.Transport))
	}
	s.Listen = r.hostPort(n, "Listen", true)
	s.BatchSize = r.int(n, "batchSize", 0, 1, 1000)
	if s.BatchSize != 0 && s.Dialect != DialectMSSIP {
		r.fail(n, "batchSize", fmt.Sprintf("is only used with Dialect mssip; Dialect is %s", s.Dialect))
	}
	s.SubscriptionExpires = r.seconds(n, "subscriptionExpires", DefaultSubscriptionExpires, 2, 86400)
	apps := n.all("ApplicationEndpoint")
	if len(apps) != 1 && (s.Enabled || len(apps) > 1) {
		r.fail(n, "", fmt.Sprintf("must contain exactly one ApplicationEndpoint element, has %d", len(apps)))
	}
	if len(apps) > 0 {
		s.Application = r.endpoint(apps[0], "OwnerUri", s.Enabled)
		if s.Dialect == DialectMSSIP && s.Application.Register {
			// A trusted application is neither registered nor challenged ([MS-SIP] 3.3).
			r.fail(apps[0], "Register", "a trusted application does not register; Dialect is mssip")
		}
	}
	s.TLSCAFile = r.str(n, "TlsCAFile", false)
	s.TLSCertFile = r.str(n, "TlsCertFile", false)
	s.TLSKeyFile = r.str(n, "TlsKeyFile", false)
	s.TLSServerName = r.str(n, "TlsServerName", false)
	s.TLS = r.sipTLS(n, s)
	users := n.all("UserEndpoint")
	if len(users) > 1 {
		r.fail(n, "", fmt.Sprintf("must contain at most one UserEndpoint element, has %d", len(users)))
	}
	if len(users) > 0 {
		user := r.endpoint(users[0], "UserUri", s.Enabled)
		s.User = &user
	}
	return s
}

// sipTLS checks the Tls attributes and, for an enabled source with Transport
// tls, loads the files they name: a TLS transport that lacks what it needs
// stops start-up rather than run in clear.
func (r *reader) sipTLS(n *node, s SIPSource) *tls.Config {
	given := map[string]string{"TlsCAFile": s.TLSCAFile, "TlsCertFile": s.TLSCertFile,
		"TlsKeyFile": s.TLSKeyFile, "TlsServerName": s.TLSServerName}
	if s.Transport != "tls" {
		for _, attr := range []string{"TlsCAFile", "TlsCertFile", "TlsKeyFile", "TlsServerName"} {
			if given[attr] != "" {
				r.fail(n, attr, fmt.Sprintf("is only used with Transport tls; Transport is %s", s.Transport))
			}
		}
		return nil
	}
	if !s.Enabled {
		return nil
	}
	const why = "is mandatory with Transport tls: the listener that receives NOTIFYs over TLS serves this certificate"
	if s.TLSCertFile == "" {
		r.fail(n, "TlsCertFile", why)
	}
	if s.TLSKeyFile == "" {
		r.fail(n, "TlsKeyFile", why)
	}
	certPEM := r.file(n, "TlsCertFile", s.TLSCertFile)
	keyPEM := r.file(n, "TlsKeyFile", s.TLSKeyFile)
	if certPEM == nil || keyPEM == nil {
		return nil
	}
	if block, _ := pem.Decode(certPEM); block == nil || block.Type != "CERTIFICATE" {
		r.fail(n, "TlsCertFile", fmt.Sprintf("%q holds no PEM certificate", s.TLSCertFile))
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		r.fail(n, "TlsKeyFile", fmt.Sprintf("%q is not the key of TlsCertFile %q: %v", s.TLSKeyFile, s.TLSCertFile, err))
		return nil
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, ServerName: s.TLSServerName, MinVersion: tls.VersionTLS12}
	if s.TLSCAFile != "" {
		caPEM := r.file(n, "TlsCAFile", s.TLSCAFile)
		conf.RootCAs = x509.NewCertPool()
		if caPEM != nil && !conf.RootCAs.AppendCertsFromPEM(caPEM) {
			r.fail(n, "TlsCAFile", fmt.Sprintf("%q holds no PEM certificate", s.TLSCAFile))
		}
	}
	return conf
}

// file reads a file an attribute names; nil when it is not given or cannot
// be read.
func (r *reader) file(n *node, attr, path string) []byte {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // it names the path again
		}
		r.fail(n, attr, fmt.Sprintf("cannot read %q: %v", path, err))
		return nil
	}
	return data
}

func (r *reader) endpoint(n *node, uriAttr string, mandatory bool) Endpoint {
	return Endpoint{
		URI:      r.sipURI(n, uriAttr, mandatory),
		PoolFQDN: r.hostPort(n, "PoolFqdn", false),
		Register: r.bool(n, "Register", false),
	}
}

func (r *reader) attendant(n *node) AttendantSource {
	a := AttendantSource{Enabled: r.bool(n, "enabled", false)}
	matches := n.all("Match")
	if len(matches) == 0 && a.Enabled {
		r.fail(n, "", "must contain one or more Match elements")
	}
	for _, m := range matches {
		pattern := r.str(m, "pattern", true)
		if pattern == "" {
			continue
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			r.fail(m, "pattern", fmt.Sprintf("%q is not a valid regular expression: %v", pattern, err))
			continue
		}
		a.Patterns = append(a.Patterns, re)
	}
	return a
}

func (r *reader) graph(n *node) GraphSource {
	g := GraphSource{
		Enabled:        r.bool(n, "enabled", false),
		RequestsPer30s: r.int(n, "requestsPer30Seconds", DefaultGraphRequestsPer30s, 1, 100000),
		BudgetPercent:  r.int(n, "budgetPercent", DefaultGraphBudgetPercent, 1, 100),
		MinCycle:       r.seconds(n, "minCycleSeconds", DefaultGraphMinCycle, 1, 86400),
	}
	var accounts []*node
	if list := r.one(n, "Accounts"); list != nil {
		accounts = list.all("Account")
	}
	if len(accounts) == 0 && g.Enabled {
		r.fail(n, "", "must contain an Accounts element with one or more Account elements")
	}
	seen := map[string]bool{}
	for _, a := range accounts {
		acc := GraphAccount{
			ID:              r.str(a, "Id", true),
			TenantID:        r.str(a, "TenantId", true),
			ClientID:        r.str(a, "ClientId", false),
			ClientSecretEnv: r.str(a, "ClientSecretEnv", false),
			CertificateFile: r.str(a, "CertificateFile", false),
		}
		if acc.ClientID == "" {
			acc.ClientID = acc.ID
		}
		if acc.ClientSecretEnv == "" {
			acc.ClientSecretEnv = DefaultClientSecretEnv
		}
		if seen[acc.ID] {
			r.fail(a, "Id", fmt.Sprintf("%q is used by more than one Account", acc.ID))
		}
		seen[acc.ID] = true
		g.Accounts = append(g.Accounts, acc)
	}
	return g
}
