package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources"
)

// Limits on what a request may carry.
const (
	MaxUCCBytes      = 256
	MaxTeamsUPNBytes = 256
	MaxLeaseSeconds  = 7 * 86400
)

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

func badRequest(format string, args ...any) *schemas.Error {
	return &schemas.Error{Code: schemas.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func checkUCC(ucc string) error {
	switch {
	case ucc == "":
		return badRequest("ucc is mandatory")
	case len(ucc) > MaxUCCBytes:
		return badRequest("ucc is longer than %d bytes", MaxUCCBytes)
	}
	if err := schemas.CheckText("ucc", ucc); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

func checkCount(n int) error {
	if n > schemas.MaxAgentsPerRequest {
		return badRequest("%d agents in one request; at most %d", n, schemas.MaxAgentsPerRequest)
	}
	return nil
}

func checkTeamsUPN(upn string) error {
	if upn == "" {
		return nil
	}
	user, domain, ok := strings.Cut(upn, "@")
	if !ok || user == "" || domain == "" || len(upn) > MaxTeamsUPNBytes || strings.ContainsFunc(upn, unicode.IsSpace) {
		return &schemas.Error{Code: schemas.CodeInvalidUPN,
			Message: fmt.Sprintf("teams_upn %q is not user@domain of at most %d bytes", upn, MaxTeamsUPNBytes)}
	}
	if err := schemas.CheckText("teams_upn", upn); err != nil {
		return &schemas.Error{Code: schemas.CodeInvalidUPN, Message: err.Error()}
	}
	return nil
}

// checkSyncAgents refuses a sync that does not say which agents the UCC
// keeps: a missing (or null) agents field would clear them all. An explicit
// empty list still clears.
func checkSyncAgents(agents []schemas.AgentRef) error {
	if agents == nil {
		return badRequest("sync needs the agents field; an empty list [] clears the UCC's agents")
	}
	return nil
}

// Subscribe adds a UCC's interest in agents. Each agent is answered on its
// own: a bad entry fails alone.
func (w *Worker) Subscribe(ctx context.Context, req schemas.SubscribeRequest) (_ schemas.AgentsReply, err error) {
	defer w.countRequest(EndpointSubscribe, &err)
	return w.addInterests(ctx, req)
}

// addInterests is Subscribe, and the first half of Sync.
func (w *Worker) addInterests(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error) {
	if err := checkUCC(req.UCC); err != nil {
		return schemas.AgentsReply{}, err
	}
	if err := checkCount(len(req.Agents)); err != nil {
		return schemas.AgentsReply{}, err
	}
	if req.LeaseS < 0 || req.LeaseS > MaxLeaseSeconds {
		return schemas.AgentsReply{}, badRequest("lease_s %d is out of range 0 to %d", req.LeaseS, MaxLeaseSeconds)
	}
	now := w.clock.Now().UTC()
	reply := schemas.AgentsReply{Agents: make([]schemas.AgentResult, len(req.Agents))}
	var puts []schemas.Interest
	var putAt []int // reply index of each put
	written := map[string]bool{}

	w.mu.Lock()
	for i, ref := range req.Agents {
		u, err := schemas.ParseURI(ref.URI)
		if err == nil {
			err = checkTeamsUPN(ref.TeamsUPN)
		}
		if err != nil {
			reply.Agents[i] = schemas.AgentResult{URI: ref.URI, Error: schemas.AsError(err)}
			continue
		}
		reply.Agents[i] = w.result(u, ref.TeamsUPN, true)
		key := u.Key()
		in := schemas.Interest{UCC: req.UCC, URI: u.URI, TeamsUPN: ref.TeamsUPN, LeaseS: req.LeaseS, At: now, PSTN: u.PSTN}
		// Always written, even when the watched index already has it: the
		// index may lag a delete, and a write is what retries a failed agent.
		if written[key] {
			continue
		}
		written[key] = true
		puts = append(puts, in)
		putAt = append(putAt, i)
	}
	w.mu.Unlock()

	for i, err := range w.stores.Interest.Put(ctx, puts) {
		r := &reply.Agents[putAt[i]]
		if err != nil {
			r.Error = &schemas.Error{Code: schemas.CodeInternal, Message: "interest not stored: " + err.Error()}
			continue
		}
		w.log.Info().Str("ucc", req.UCC).Str("uri", r.URI).Str("source", r.Source).Msg("subscribe")
	}
	return reply, nil
}

// result describes an agent for a reply. subscribing says a UCC subscribes
// it now, which retries an agent that had failed. The caller holds w.mu.
func (w *Worker) result(u schemas.AgentURI, teamsUPN string, subscribing bool) schemas.AgentResult {
	key := u.Key()
	a := w.agents[key]
	if a != nil {
		u.PSTN = u.PSTN || a.pstn
		if teamsUPN == "" {
			teamsUPN = a.TeamsUPN
		}
	}
	r := schemas.AgentResult{URI: u.URI, Key: key, Subject: schemas.EventSubject(key), Source: w.route(u, teamsUPN)}
	if ev, ok := w.presence.get(key); ok {
		p := ev.Presence
		r.Presence, r.Seq = &p, ev.Seq
	}
	r.State = w.stateOf(a, key, r.Source, subscribing)
	return r
}

// stateOf is the state of the subscription of the agent of key (a is nil
// for one the worker does not know) routed to source; the caller holds w.mu.
func (w *Worker) stateOf(a *agent, key, source string, subscribing bool) schemas.State {
	interested := subscribing || (a != nil && a.wanted())
	claim, claimed := w.claims[key]
	_, fed := w.fed(source)
	var state schemas.State
	switch {
	case source == schemas.SourceNone:
		state = schemas.StateUnsupported
	case !interested && !claimed:
		// Nobody subscribes the agent: there is no subscription to describe.
	case fed:
		state = schemas.StateActive
	case a != nil && a.life.phase != phaseIdle && a.life.phase != phaseElsewhere:
		state = a.life.state()
	case claimed:
		state = claim.State
	default:
		state = schemas.StatePending
	}
	if subscribing && state == schemas.StateFailed {
		state = schemas.StatePending
	}
	return state
}

// Unsubscribe removes a UCC's interest in agents.
func (w *Worker) Unsubscribe(ctx context.Context, req schemas.UnsubscribeRequest) (_ schemas.AgentsReply, err error) {
	defer w.countRequest(EndpointUnsubscribe, &err)
	if err := checkUCC(req.UCC); err != nil {
		return schemas.AgentsReply{}, err
	}
	if err := checkCount(len(req.URIs)); err != nil {
		return schemas.AgentsReply{}, err
	}
	uccKey := schemas.Key(req.UCC)
	reply := schemas.AgentsReply{Agents: make([]schemas.AgentResult, len(req.URIs))}
	for i, raw := range req.URIs {
		u, err := schemas.ParseURI(raw)
		if err != nil {
			reply.Agents[i] = schemas.AgentResult{URI: raw, Error: schemas.AsError(err)}
			continue
		}
		key := u.Key()
		reply.Agents[i] = schemas.AgentResult{URI: u.URI, Key: key, Subject: schemas.EventSubject(key)}
		if _, err := w.stores.Interest.Delete(ctx, key, uccKey, 0); err != nil {
			reply.Agents[i].Error = &schemas.Error{Code: schemas.CodeInternal, Message: "interest not removed: " + err.Error()}
			continue
		}
		w.log.Info().Str("ucc", req.UCC).Str("uri", u.URI).Msg("unsubscribe")
	}
	return reply, nil
}

// Sync makes the UCC's interests exactly the agents of the request.
func (w *Worker) Sync(ctx context.Context, req schemas.SubscribeRequest) (_ schemas.AgentsReply, err error) {
	defer w.countRequest(EndpointSync, &err)
	if err := checkSyncAgents(req.Agents); err != nil {
		return schemas.AgentsReply{}, err
	}
	reply, err := w.addInterests(ctx, req)
	if err != nil {
		return reply, err
	}
	// Every agent of the request stays, even one whose write failed now:
	// only what could not be read is not the UCC's.
	keep := map[string]bool{}
	for _, r := range reply.Agents {
		if r.Key != "" {
			keep[r.Key] = true
		}
	}
	uccKey := schemas.Key(req.UCC)
	held, err := w.stores.Interest.AgentsOf(ctx, uccKey)
	if err != nil {
		return schemas.AgentsReply{}, fmt.Errorf("list interests of %s: %w", req.UCC, err)
	}
	for _, key := range held {
		if keep[key] {
			continue
		}
		if _, err := w.stores.Interest.Delete(ctx, key, uccKey, 0); err != nil {
			return schemas.AgentsReply{}, fmt.Errorf("remove interest of %s: %w", req.UCC, err)
		}
		w.log.Info().Str("ucc", req.UCC).Str("key", key).Msg("unsubscribe by sync")
	}
	return reply, nil
}

// Get answers the current presence of agents.
func (w *Worker) Get(_ context.Context, req schemas.GetRequest) (_ schemas.AgentsReply, err error) {
	defer w.countRequest(EndpointGet, &err)
	if err := checkCount(len(req.URIs)); err != nil {
		return schemas.AgentsReply{}, err
	}
	reply := schemas.AgentsReply{Agents: make([]schemas.AgentResult, len(req.URIs))}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, raw := range req.URIs {
		u, err := schemas.ParseURI(raw)
		if err != nil {
			reply.Agents[i] = schemas.AgentResult{URI: raw, Error: schemas.AsError(err)}
			continue
		}
		reply.Agents[i] = w.result(u, "", false)
	}
	return reply, nil
}

// QueuedInput is one input of a fed source (presence.in.<source>.<key>) as
// the durable input queue holds it (docs/contract.md, Inputs).
type QueuedInput struct {
	Source, Key string
	Body        []byte
	// Pos is the input's sequence in the queue; 0 for none.
	Pos uint64
	// Generation is the ServedGeneration the caller decided by.
	Generation uint64
	// Refused is an input its sender was told was refused (overloaded):
	// its position is recorded, so that nobody applies it later, and
	// nothing else.
	Refused bool
}

// ServedGeneration counts the changes of the agents this worker serves;
// ServedChanged is signalled at each.
func (w *Worker) ServedGeneration() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.members.Generation
}

// ServedChanged is signalled whenever ServedGeneration grows.
func (w *Worker) ServedChanged() <-chan struct{} { return w.lease.ServedChanged() }

// Serves reports whether this worker answers the agent's inputs now.
func (w *Worker) Serves(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.servedBy(key)
}

// Verdict is what the worker made of a queued input: whether the result is
// its answer, or the input is not this worker's to apply now.
type Verdict uint8

const (
	// Applied: the input is this worker's, and Reply or Err answers it: it
	// was applied now or before, or refused with the contract error in
	// Err.
	Applied Verdict = iota
	// NotMine: another worker serves the agent; that one applies the input
	// and answers it.
	NotMine
	// Stale: the agents this worker serves changed since the Generation
	// the input names. The inputs their previous owners left come first,
	// so this one is left, unapplied, for the replay of them.
	Stale
)

// String names the verdict for logs and test failures.
func (v Verdict) String() string {
	switch v {
	case Applied:
		return "applied"
	case NotMine:
		return "not mine"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// InputResult is what became of one QueuedInput: Reply and Err mean
// something only when the verdict is Applied.
type InputResult struct {
	Verdict Verdict
	Reply   schemas.InputReply
	Err     error
}

// Input applies inputs of one agent and source, in order, each once: an
// input at or below the position recorded for the agent was applied
// already, and is answered with the agent's current seq. The presence they
// lead to is stored in one write, so that a backlog costs one write per
// agent: the events show the last, every input is answered with its seq.
// A verdict other than Applied, and an error of them all (a bad key), is in
// every result.
func (w *Worker) Input(ctx context.Context, ins []QueuedInput) []InputResult {
	out := w.input(ctx, ins)
	for i, r := range out {
		if ins[i].Refused || r.Verdict != Applied {
			continue // not this worker's to apply now, or not applied
		}
		source := ins[i].Source
		if spec, ok := sources.Lookup(source); !ok || !spec.Fed() {
			source = InputSourceUnknown
		}
		w.obs.Input(source, requestResult(r.Err))
	}
	return out
}

func (w *Worker) input(ctx context.Context, ins []QueuedInput) []InputResult {
	out := make([]InputResult, len(ins))
	if len(ins) == 0 {
		return out
	}
	fail := func(err error) []InputResult {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	leave := func(v Verdict) []InputResult {
		for i := range out {
			out[i].Verdict = v
		}
		return out
	}
	source, key := ins[0].Source, ins[0].Key
	spec, known := sources.Lookup(source)
	if !known || !spec.Fed() {
		return fail(badRequest("no source takes inputs named %q", source))
	}
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return fail(&schemas.Error{Code: schemas.CodeInvalidURI, Message: fmt.Sprintf("key %q is not base64url", key)})
	}
	u, err := schemas.ParseURI(string(raw))
	if err != nil {
		return fail(err)
	}
	if u.Key() != key {
		return fail(&schemas.Error{Code: schemas.CodeInvalidURI,
			Message: fmt.Sprintf("key %q is not the key of a normalised URI (%s is %s)", key, u.URI, u.Key())})
	}
	w.mu.Lock()
	if ins[0].Generation != w.members.Generation {
		w.mu.Unlock()
		return leave(Stale)
	}
	route := w.result(u, "", false).Source
	mine := w.servedBy(key)
	w.mu.Unlock()
	if !mine {
		return leave(NotMine)
	}
	agent := sources.Agent{URI: u.URI, Key: key}
	f, enabled := w.fed(source)
	storing := w.storeLock(key)
	storing.Lock()
	defer storing.Unlock()
	cur, found := w.presence.get(key)
	var p *schemas.Presence
	var pos uint64
	var stored []int // the results that take the write's seq
inputs:
	for i, in := range ins {
		switch {
		case found && in.Pos != 0 && cur.InputSeq >= in.Pos:
			out[i].Reply = schemas.InputReply{OK: true, Seq: cur.Seq}
			if in.Pos == cur.InputSeq {
				w.republish(cur)
			}
			continue
		case in.Refused:
			// Its sender was told it was refused: its position is
			// recorded, so that nobody applies it later.
		case !enabled || route != source:
			out[i].Err = &schemas.Error{Code: spec.NotServed, Message: fmt.Sprintf("%s is served by source %s, not %s", u.URI, route, source)}
		default:
			next, err := f.Input(ctx, agent, in.Body)
			if waitsForLeader(err) {
				// Not applied: it and the agent's later inputs wait for
				// a leader, in order, none recorded as passed.
				for j := i; j < len(ins); j++ {
					out[j].Err = err
				}
				break inputs
			}
			if err != nil {
				out[i].Err = err
				break
			}
			p = &next
		}
		pos = max(pos, in.Pos)
		if out[i].Err == nil {
			stored = append(stored, i)
		}
	}
	if p == nil && pos == 0 {
		return out
	}
	seq, _, err := w.writePresence(ctx, agent, p, pos)
	for _, i := range stored {
		out[i] = InputResult{Reply: schemas.InputReply{OK: true, Seq: seq}, Err: err}
		if err != nil {
			out[i].Reply = schemas.InputReply{}
		}
	}
	return out
}

// waitsForLeader tells whether err refuses for want of a NATS JetStream
// leader (CodeUnavailable): what met it is to be tried again, not refused.
func waitsForLeader(err error) bool {
	var e *schemas.Error
	return errors.As(err, &e) && e.Code == schemas.CodeUnavailable
}

// countRequest tells the observer how a request ended.
func (w *Worker) countRequest(endpoint string, err *error) {
	w.obs.Request(endpoint, requestResult(*err))
}

// Status tells operators what this worker and the service hold.
func (w *Worker) Status(ctx context.Context) (_ schemas.Status, err error) {
	defer w.countRequest(EndpointStatus, &err)
	workers, err := w.stores.Workers.List(ctx)
	if err != nil {
		return schemas.Status{}, fmt.Errorf("list workers: %w", err)
	}
	st := schemas.Status{Worker: w.cfg.ID, Workers: workers, Sources: map[string]schemas.SourceStatus{}}
	st.Sources[schemas.SourceNone] = schemas.SourceStatus{States: map[schemas.State]int{}}
	for _, spec := range sources.Registry() {
		ss := schemas.SourceStatus{States: map[schemas.State]int{}}
		if s, ok := w.sources[spec.Name]; ok {
			h := s.Health()
			ss.Enabled, ss.Healthy, ss.Detail, ss.Stats = true, h.Healthy, h.Detail, h.Stats
		}
		st.Sources[spec.Name] = ss
	}
	c := w.Counts()
	st.Agents, st.Interests, st.Queued = c.Agents, c.Interests, c.Queued
	for source, states := range c.States {
		if ss, ok := st.Sources[source]; ok {
			maps.Copy(ss.States, states)
		}
	}
	return st, nil
}
