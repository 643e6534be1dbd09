// Package graph is the Microsoft Teams presence source: it polls Microsoft
// Graph's getPresencesByUserId for agents with a Teams UPN, on one or more
// app registrations (accounts), within each account's request budget.
// Change notifications are not used: they need delegated permissions and a
// public HTTPS endpoint, which an app with tenant credentials does not have.
package graph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// Config is the MsGraphPresenceSource element with what the process adds.
type Config struct {
	// BaseURL is the Graph root; AuthorityHost the Entra ID authority.
	BaseURL, AuthorityHost string
	Accounts               []Account
	// RequestsPer30s is each account's budget, as Graph counts it.
	RequestsPer30s int
	// BudgetShare is the part of the budget the source spends, leaving
	// headroom for other callers of the app registration and for Graph's
	// own counting.
	BudgetShare float64
	// MinCycle is the shortest time between two reads of the same agent.
	MinCycle time.Duration
	// FailingAfter consecutive failed cycles make an account's agents
	// retrying, rather than silently stale.
	FailingAfter int
	// HTTPClient carries Graph and token requests; nil takes a client with
	// a 30 s timeout.
	HTTPClient *http.Client
}

// Account is one app registration.
type Account struct {
	ID, TenantID, ClientID string
	// Secret is the client secret's value; never logged.
	Secret string
	// CertificateFile, when set, authenticates with a certificate (PEM or
	// PKCS#12 without a password) instead of the secret.
	CertificateFile string
}

// Source polls the presence of agents with a Teams UPN.
type Source struct {
	cfg      Config
	clock    clockwork.Clock
	sink     sources.Sink
	log      zerolog.Logger
	accounts []*account

	mu     sync.Mutex
	agents map[string]*member // by agent key
	ids    map[string]string  // tenant + "/" + UPN → Entra object id
}

type member struct {
	agent   sources.Agent
	id      string
	account *account
	last    *schemas.Presence
	// lost is set while the account fails: the agent is retrying, and is
	// called back when the account answers again.
	lost    bool
	missing bool
	// polled is when Graph last answered for the user.
	polled time.Time
}

// account is one app registration's client, budget and health; its fields
// are guarded by Source.mu.
type account struct {
	cfg         Account
	client      *client
	budget      window
	pausedUntil time.Time
	nextRequest time.Time // the budget's pace
	failures    int
	lastError   string
	lastCycle   time.Duration
	requests    int
	// answers counts the requests made, by Graph's status (0: no answer).
	answers map[int]uint64
	// broken is set when the account has no usable credentials.
	broken error
}

// DefaultBudgetShare is the part of requestsPer30Seconds spent by default.
const DefaultBudgetShare = 0.8

// budgetSpan is Graph's 30 s window with a margin: Graph counts requests by
// the time they reach it, which network delays move, so counting over a
// longer span here keeps any 30 s at Graph within the budget.
const budgetSpan = 32 * time.Second

// New builds the credentials and clients of every account. It reads no
// secret from anywhere but cfg, and says none.
func New(cfg Config, clock clockwork.Clock, sink sources.Sink, log zerolog.Logger) (*Source, error) {
	if cfg.RequestsPer30s == 0 {
		cfg.RequestsPer30s = 1500
	}
	if cfg.MinCycle == 0 {
		cfg.MinCycle = time.Second
	}
	if cfg.BudgetShare == 0 {
		cfg.BudgetShare = DefaultBudgetShare
	}
	if cfg.FailingAfter == 0 {
		cfg.FailingAfter = 3
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if len(cfg.Accounts) == 0 {
		return nil, errors.New("graph: no account")
	}
	s := &Source{cfg: cfg, clock: clock, sink: sink, log: log.With().Str("source", "graph").Logger(),
		agents: map[string]*member{}, ids: map[string]string{}}
	for _, a := range cfg.Accounts {
		acct := &account{cfg: a, budget: window{span: budgetSpan, limit: max(1, int(float64(cfg.RequestsPer30s)*cfg.BudgetShare))}}
		cred, err := credential(a, cfg)
		if err != nil {
			// One account without credentials must not stop the provider:
			// it stays down, and its agents retry with the reason.
			acct.broken = fmt.Errorf("graph: account %s: %w: %w", a.ID, sources.ErrSourceDown, err)
			acct.failures, acct.lastError = cfg.FailingAfter, acct.broken.Error()
			// Said once, at start, with the fix: nothing else is wrong.
			s.log.Warn().Err(acct.broken).Str("account", a.ID).
				Msg("Graph account unusable: its agents retry until it has a credential; set the variable its ClientSecretEnv names (default PRESENCE_GRAPH_CLIENT_SECRET) or its CertificateFile, or set enabled=\"false\" on MsGraphPresenceSource")
		}
		acct.answers = map[int]uint64{}
		acct.client = &client{http: cfg.HTTPClient, base: strings.TrimRight(cfg.BaseURL, "/"), cred: cred,
			log: s.log.With().Str("account", a.ID).Logger(),
			answered: func(status int) {
				s.mu.Lock()
				defer s.mu.Unlock()
				acct.answers[status]++
			}}
		s.accounts = append(s.accounts, acct)
	}
	return s, nil
}

// credential is azidentity's, which caches tokens and renews them before
// they expire.
func credential(a Account, cfg Config) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost}, Transport: cfg.HTTPClient}
	if a.CertificateFile != "" {
		data, err := os.ReadFile(a.CertificateFile)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		certs, key, err := azidentity.ParseCertificates(data, nil)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", a.CertificateFile, err)
		}
		return azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	}
	if a.Secret == "" {
		return nil, errors.New("no client secret (set the variable named by ClientSecretEnv) and no CertificateFile")
	}
	return azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, a.Secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
}

// Subscribe resolves the agent's UPN (cached) and adds the agent to the
// polling of the account with the fewest agents.
func (s *Source) Subscribe(ctx context.Context, a sources.Agent) error {
	if a.TeamsUPN == "" {
		return &sources.PermanentError{Err: fmt.Errorf("graph: %s has no Teams UPN", a.URI)}
	}
	s.mu.Lock()
	m := s.agents[a.Key]
	if m == nil {
		// Reserved now, so that agents subscribing side by side spread
		// evenly; the cycle skips it until its id is known.
		m = &member{agent: a, account: s.leastLoaded()}
		s.agents[a.Key] = m
	}
	acct := m.account
	failing := acct.failures >= s.cfg.FailingAfter
	reason := acct.lastError
	s.mu.Unlock()
	if acct.broken != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if m.id == "" && s.agents[a.Key] == m {
			delete(s.agents, a.Key)
		}
		return acct.broken
	}
	id, err := s.resolve(ctx, acct, a.TeamsUPN)
	if err != nil && failing {
		// The account's own trouble, not the user's: no count toward giving up.
		err = fmt.Errorf("graph: account %s keeps failing: %w (%w)", acct.cfg.ID, sources.ErrSourceDown, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents[a.Key] != m {
		return errors.New("graph: unsubscribed while subscribing")
	}
	switch {
	case err != nil && failing:
		// Kept, marked lost: the account's recovery calls the agent back,
		// and the next attempt resolves the user.
		m.lost = true
		return err
	case err != nil:
		if m.id == "" {
			delete(s.agents, a.Key)
		}
		return err
	}
	m.id, m.agent = id, a
	if failing {
		// Kept, marked lost: the account's recovery calls the agent back.
		m.lost = true
		return fmt.Errorf("graph: account %s keeps failing: %s: %w", acct.cfg.ID, reason, sources.ErrSourceDown)
	}
	m.lost = false
	return nil
}

func (s *Source) leastLoaded() *account {
	count := map[*account]int{}
	for _, m := range s.agents {
		count[m.account]++
	}
	var best *account
	for _, acct := range s.accounts {
		if best == nil || (best.broken != nil && acct.broken == nil) ||
			((acct.broken == nil) == (best.broken == nil) && count[acct] < count[best]) {
			best = acct
		}
	}
	return best
}

func (s *Source) resolve(ctx context.Context, acct *account, upn string) (string, error) {
	cacheKey := acct.cfg.TenantID + "/" + schemas.ASCIILower(upn)
	s.mu.Lock()
	id, ok := s.ids[cacheKey]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	err := s.request(ctx, acct, false, func(ctx context.Context) (err error) {
		id, err = acct.client.userID(ctx, upn)
		return err
	})
	if isStatus(err, http.StatusNotFound) {
		return "", &sources.PermanentError{Err: fmt.Errorf("graph: Teams UPN %s is not a user of tenant %s", upn, acct.cfg.TenantID)}
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.ids[cacheKey] = id
	s.mu.Unlock()
	return id, nil
}

// Unsubscribe stops polling the agent.
func (s *Source) Unsubscribe(_ context.Context, a sources.Agent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.agents, a.Key)
	return nil
}

// errNothingToAsk is a budgeted call's answer when, after waiting for the
// budget, nothing is left to ask: the request is not made nor counted.
var errNothingToAsk = errors.New("graph: nothing to ask")

// request runs one Graph call; a presence call (budgeted) within the
// account's budget, which is Graph's limit for the presence endpoints (user
// lookups have the directory's own, higher limits), at the budget's pace. A
// 429 pauses the whole account for its Retry-After and the call is made
// again.
func (s *Source) request(ctx context.Context, acct *account, budgeted bool, call func(context.Context) error) error {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		wait := acct.pausedUntil.Sub(now)
		if budgeted {
			wait = max(wait, acct.budget.wait(now), acct.nextRequest.Sub(now))
		}
		if wait <= 0 && budgeted {
			acct.budget.take(now)
			acct.nextRequest = now.Add(acct.budget.pace())
			acct.requests++
		}
		s.mu.Unlock()
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.clock.After(wait):
			}
			continue
		}
		err := call(ctx)
		if errors.Is(err, errNothingToAsk) {
			s.mu.Lock()
			acct.budget.untake()
			acct.nextRequest = now
			acct.requests--
			s.mu.Unlock()
			return nil
		}
		var h *httpError
		if !errors.As(err, &h) || h.Status != http.StatusTooManyRequests {
			return err
		}
		pause := max(h.RetryAfter, time.Second)
		s.mu.Lock()
		acct.pausedUntil = s.clock.Now().Add(pause)
		s.mu.Unlock()
		s.log.Warn().Str("account", acct.cfg.ID).Dur("retry_after", pause).Msg("Graph throttled the account (429); pausing it")
	}
}

// Run polls every account until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, acct := range s.accounts {
		if acct.broken != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.poll(ctx, acct)
		}()
	}
	wg.Wait()
	return nil
}

// poll reads the account's agents once per cycle: no sooner than MinCycle
// after the last cycle began, later while the account backs off.
func (s *Source) poll(ctx context.Context, acct *account) {
	for {
		start := s.clock.Now()
		err := s.cycle(ctx, acct)
		if ctx.Err() != nil {
			return
		}
		wait := s.cfg.MinCycle - s.clock.Since(start)
		s.mu.Lock()
		acct.lastCycle = s.clock.Since(start)
		if err != nil {
			acct.failures++
			acct.lastError = err.Error()
			wait = max(wait, s.backoff(acct.failures))
		}
		failures := acct.failures
		s.mu.Unlock()
		switch {
		case err != nil:
			s.log.Warn().Err(err).Str("account", acct.cfg.ID).Int("failures", failures).Msg("Graph poll failed")
			if failures == s.cfg.FailingAfter {
				s.loseAgents(acct, err)
			}
		default:
			s.recovered(acct)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(wait):
		}
	}
}

// backoff spaces the cycles of a failing account: the cycle doubled per
// failure, up to thirty cycles.
func (s *Source) backoff(failures int) time.Duration {
	return min(s.cfg.MinCycle<<min(failures, 5), 30*s.cfg.MinCycle)
}

// cycle reads every agent of the account in batches of MaxIDsPerRequest.
// Each batch is read again from the members once the budget lets it go:
// an agent unsubscribed while the account waited is not asked for.
func (s *Source) cycle(ctx context.Context, acct *account) error {
	s.mu.Lock()
	ids := s.members(acct, nil)
	s.mu.Unlock()
	for batch := range slices.Chunk(slices.Sorted(maps.Keys(ids)), MaxIDsPerRequest) {
		var got []graphPresence
		var byID map[string][]*member
		err := s.request(ctx, acct, true, func(ctx context.Context) (err error) {
			s.mu.Lock()
			byID = s.members(acct, batch)
			s.mu.Unlock()
			if len(byID) == 0 {
				return errNothingToAsk
			}
			got, err = acct.client.presences(ctx, slices.Sorted(maps.Keys(byID)))
			return err
		})
		if err != nil {
			return err
		}
		s.deliver(acct, slices.Sorted(maps.Keys(byID)), got, byID)
	}
	return nil
}

// members maps the Graph ids of the account's agents to them, all of them
// or those of ids; the caller holds s.mu.
func (s *Source) members(acct *account, ids []string) map[string][]*member {
	var wanted map[string]bool
	if ids != nil {
		wanted = make(map[string]bool, len(ids))
		for _, id := range ids {
			wanted[id] = true
		}
	}
	byID := map[string][]*member{}
	for _, m := range s.agents {
		if m.account == acct && m.id != "" && (ids == nil || wanted[m.id]) {
			byID[m.id] = append(byID[m.id], m)
		}
	}
	return byID
}

// deliver hands changed presences to the worker and reports users Graph
// left out of its answer.
func (s *Source) deliver(acct *account, batch []string, got []graphPresence, byID map[string][]*member) {
	now := s.clock.Now()
	answered := map[string]graphPresence{}
	for _, g := range got {
		answered[g.ID] = g
	}
	var changed []*member
	var presences []schemas.Presence
	s.mu.Lock()
	for _, id := range batch {
		g, ok := answered[id]
		for _, m := range byID[id] {
			if s.agents[m.agent.Key] != m || m.lost {
				continue // unsubscribed meanwhile, or retrying
			}
			if !ok {
				if !m.missing {
					s.log.Warn().Str("uri", m.agent.URI).Str("upn", m.agent.TeamsUPN).Str("account", acct.cfg.ID).
						Msg("Graph left the user out of its answer; presence kept")
				}
				m.missing = true
				continue
			}
			m.missing = false
			m.polled = now
			p := toPresence(g, now)
			if m.last == nil || !m.last.SameAs(p) {
				m.last = &p
				changed = append(changed, m)
				presences = append(presences, p)
			}
		}
	}
	s.mu.Unlock()
	for i, m := range changed {
		s.sink.Observe(m.agent, presences[i])
	}
}

// loseAgents makes a failing account's agents retrying.
func (s *Source) loseAgents(acct *account, err error) {
	s.mu.Lock()
	var lost []sources.Agent
	for _, m := range s.agents {
		if m.account == acct && !m.lost {
			m.lost = true
			lost = append(lost, m.agent)
		}
	}
	s.mu.Unlock()
	s.log.Error().Err(err).Str("account", acct.cfg.ID).Int("agents", len(lost)).Msg("Graph account keeps failing; its agents are retrying")
	for _, a := range lost {
		s.sink.Lost(a, fmt.Errorf("graph account %s keeps failing: %w (%w)", acct.cfg.ID, sources.ErrSourceDown, err))
	}
}

// recovered calls back the agents an account lost, now that it answers.
func (s *Source) recovered(acct *account) {
	s.mu.Lock()
	wasFailing := acct.failures >= s.cfg.FailingAfter
	acct.failures, acct.lastError = 0, ""
	var back []sources.Agent
	for _, m := range s.agents {
		if m.account == acct && m.lost {
			back = append(back, m.agent)
		}
	}
	s.mu.Unlock()
	if wasFailing {
		s.log.Info().Str("account", acct.cfg.ID).Int("agents", len(back)).Msg("Graph account answers again")
	}
	for _, a := range back {
		s.sink.Lost(a, fmt.Errorf("graph account %s answers again: %w", acct.cfg.ID, sources.ErrTerminated))
	}
}

// Serves every agent whose UCCs gave a Teams UPN.
func (*Source) Serves(_ schemas.AgentURI, teamsUPN string) bool { return teamsUPN != "" }

// Why says that a UCC gave the agent's Teams UPN.
func (*Source) Why(schemas.AgentURI, string) string { return "teams_upn set and the source is on" }

// Describe tells the agent's account, Graph id and last poll.
func (s *Source) Describe(a sources.Agent, u *schemas.Upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.agents[a.Key]
	if m == nil {
		return
	}
	g := &schemas.GraphUpstream{UserID: m.id}
	if m.account != nil {
		g.Account = m.account.cfg.ID
	}
	if !m.polled.IsZero() {
		polled := m.polled.UTC()
		g.LastPoll = &polled
	}
	u.Graph = g
}

// Metrics read the accounts through sources.AccountReporter.
var _ sources.AccountReporter = (*Source)(nil)

// Accounts tells how each account stands, in configured order.
func (s *Source) Accounts() []sources.AccountStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	stats := make([]sources.AccountStats, 0, len(s.accounts))
	for _, acct := range s.accounts {
		stats = append(stats, sources.AccountStats{ID: acct.cfg.ID, Requests: maps.Clone(acct.answers),
			BudgetUsed: float64(acct.budget.used(now)) / float64(s.cfg.RequestsPer30s), LastCycle: acct.lastCycle})
	}
	return stats
}

// Health tells, per account, the agents, the last cycle's length and the
// budget in use.
func (s *Source) Health() sources.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	h := sources.Health{Stats: map[string]any{}}
	agents := map[*account]int{}
	missing := 0
	for _, m := range s.agents {
		agents[m.account]++
		if m.missing {
			missing++
		}
	}
	var details []string
	var stats []map[string]any
	for _, acct := range s.accounts {
		ok := acct.failures < s.cfg.FailingAfter
		h.Healthy = h.Healthy || ok
		state := "polling"
		if acct.failures > 0 {
			state = fmt.Sprintf("%d failed cycles: %s", acct.failures, acct.lastError)
		}
		details = append(details, fmt.Sprintf("account %s: %s", acct.cfg.ID, state))
		st := map[string]any{
			"id": acct.cfg.ID, "tenant": acct.cfg.TenantID, "agents": agents[acct],
			"cycle_ms": acct.lastCycle.Milliseconds(), "requests_last_30s": acct.budget.used(now),
			"budget_per_30s": s.cfg.RequestsPer30s, "requests_total": acct.requests, "failures": acct.failures,
		}
		if acct.pausedUntil.After(now) {
			st["paused_ms"] = acct.pausedUntil.Sub(now).Milliseconds()
		}
		stats = append(stats, st)
	}
	h.Detail = strings.Join(details, "; ")
	h.Stats["accounts"] = stats
	h.Stats["users_missing_from_answers"] = missing
	return h
}
