package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// Limits on what the service reads.
const (
	// MaxRequestBytes fits 10,000 agents with long URIs and Teams UPNs.
	MaxRequestBytes = 4 << 20
	MaxInputBytes   = 16 << 10
	requestTimeout  = 60 * time.Second
	// inputShards lets inputs of different agents wait for their KV round
	// trips side by side; one agent's inputs always share a shard, in order.
	inputShards = 8
)

// Handler answers the presence service's requests and inputs; the worker
// implements it.
type Handler interface {
	Subscribe(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error)
	Unsubscribe(ctx context.Context, req schemas.UnsubscribeRequest) (schemas.AgentsReply, error)
	Sync(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error)
	Get(ctx context.Context, req schemas.GetRequest) (schemas.AgentsReply, error)
	Status(ctx context.Context) (schemas.Status, error)
	Input(ctx context.Context, source, key string, body []byte) (schemas.InputReply, error)
}

// Service is the running presence micro service and input subscription.
type Service struct {
	svc    micro.Service
	inputs *nats.Subscription
	shards []chan *nats.Msg
	done   chan struct{} // closed when the shards stop
	wg     sync.WaitGroup
	log    zerolog.Logger
}

// Serve starts the presence micro service on presence.api.*, in a queue
// group shared by every worker, and takes inputs on presence.in.>.
func (c *Conn) Serve(ctx context.Context, h Handler, version string, log zerolog.Logger) (*Service, error) {
	svc, err := micro.AddService(c.NC, micro.Config{
		Name:        schemas.ServiceName,
		Version:     version,
		Description: "one upstream presence subscription per agent for all UCCs",
	})
	if err != nil {
		return nil, fmt.Errorf("bus: presence service: %w", err)
	}
	s := &Service{svc: svc, log: log, done: make(chan struct{})}
	endpoints := map[string]micro.HandlerFunc{
		schemas.SubjectSubscribe: endpoint(ctx, s, h.Subscribe),
		schemas.SubjectUnsub:     endpoint(ctx, s, h.Unsubscribe),
		schemas.SubjectSync:      endpoint(ctx, s, h.Sync),
		schemas.SubjectGet:       endpoint(ctx, s, h.Get),
		schemas.SubjectStatus: endpoint(ctx, s, func(ctx context.Context, _ struct{}) (schemas.Status, error) {
			return h.Status(ctx)
		}),
	}
	for subject, handler := range endpoints {
		name := strings.TrimPrefix(subject, schemas.APISubjectPrefix)
		if err := svc.AddEndpoint(name, handler, micro.WithEndpointSubject(subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("bus: endpoint %s: %w", subject, err)
		}
	}
	for range inputShards {
		shard := make(chan *nats.Msg, 256)
		s.shards = append(s.shards, shard)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case m := <-shard:
					s.input(ctx, h, m)
				case <-s.done:
					return
				}
			}
		}()
	}
	// Every worker takes every input: the agent's owner answers, the others
	// keep their sources' state (a PSTN agent's calls) current.
	s.inputs, err = c.NC.Subscribe(schemas.InputWildcard, func(m *nats.Msg) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(m.Subject))
		select {
		case s.shards[h.Sum32()%inputShards] <- m:
		case <-s.done:
		}
	})
	if err == nil {
		// Ready means the server routes requests here already.
		err = c.NC.Flush()
	}
	if err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("bus: inputs: %w", err)
	}
	return s, nil
}

// StopRequests stops taking presence.api requests; inputs still come, so
// that a worker handing its agents over answers theirs meanwhile.
func (s *Service) StopRequests() error {
	if s.svc.Stopped() {
		return nil
	}
	return s.svc.Stop()
}

// Stop stops taking requests and inputs; those in hand are finished first.
func (s *Service) Stop() error {
	err := s.StopRequests()
	if s.inputs != nil {
		err = errors.Join(err, s.inputs.Drain())
		// Drain ends in the background; the shards close once no callback can feed them.
		for deadline := time.Now().Add(10 * time.Second); s.inputs.IsValid() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Inputs still queued in the shards are handled before they stop.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && s.queued() > 0; {
		time.Sleep(5 * time.Millisecond)
	}
	close(s.done)
	s.wg.Wait()
	return err
}

func (s *Service) queued() int {
	n := 0
	for _, shard := range s.shards {
		n += len(shard)
	}
	return n
}

// endpoint decodes a request, calls the handler and answers: bad input with
// the micro error headers and a bad_request body, a failure with 500.
func endpoint[Req, Rep any](ctx context.Context, s *Service, handle func(context.Context, Req) (Rep, error)) micro.HandlerFunc {
	return func(r micro.Request) {
		defer s.recoverPanic(r.Subject(), func(msg string) { respondError(r, s.log, internalError(msg)) })
		data := r.Data()
		if len(data) > MaxRequestBytes {
			respondError(r, s.log, &schemas.Error{Code: schemas.CodeBadRequest,
				Message: fmt.Sprintf("request of %d bytes; at most %d", len(data), MaxRequestBytes)})
			return
		}
		var req Req
		if len(data) > 0 || !isEmptyStruct(req) {
			if err := json.Unmarshal(data, &req); err != nil {
				respondError(r, s.log, &schemas.Error{Code: schemas.CodeBadRequest, Message: "request body is not the JSON of " + r.Subject() + ": " + err.Error()})
				return
			}
		}
		callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		rep, err := handle(callCtx, req)
		if err != nil {
			respondError(r, s.log, toContractError(err))
			return
		}
		if err := r.RespondJSON(rep); err != nil {
			s.log.Error().Err(err).Str("subject", r.Subject()).Msg("could not answer request")
		}
	}
}

func isEmptyStruct(v any) bool {
	_, ok := v.(struct{})
	return ok
}

func internalError(msg string) *schemas.Error {
	return &schemas.Error{Code: schemas.CodeInternal, Message: msg}
}

func toContractError(err error) *schemas.Error {
	var e *schemas.Error
	if errors.As(err, &e) {
		return e
	}
	return internalError(err.Error())
}

// statusOf is the micro error code: a caller's mistake is 400, ours 500.
func statusOf(e *schemas.Error) int {
	if e.Code == schemas.CodeInternal {
		return 500
	}
	return 400
}

func respondError(r micro.Request, log zerolog.Logger, e *schemas.Error) {
	body, _ := json.Marshal(schemas.ErrorReply{Error: e})
	if err := r.Error(strconv.Itoa(statusOf(e)), headerText(e.Message), body); err != nil {
		log.Error().Err(err).Str("subject", r.Subject()).Msg("could not answer request")
	}
}

// headerText keeps an error message on its header line: a line break in it
// would end the header and corrupt the message.
func headerText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// input handles presence.in.<source>.<key>, answering when asked.
func (s *Service) input(ctx context.Context, h Handler, m *nats.Msg) {
	reply := func(rep schemas.InputReply) {
		if m.Reply == "" {
			return
		}
		data, _ := json.Marshal(rep)
		if err := m.Respond(data); err != nil {
			s.log.Warn().Err(err).Str("subject", m.Subject).Msg("could not answer input")
		}
	}
	// A refusal carries the micro service error headers, as a request's
	// does, so that a client tells it from a success without reading JSON.
	fail := func(e *schemas.Error) {
		s.log.Warn().Str("subject", m.Subject).Str("code", e.Code).Str("error", e.Message).Msg("input refused")
		if m.Reply == "" {
			return
		}
		data, _ := json.Marshal(schemas.InputReply{Error: e})
		answer := &nats.Msg{Data: data, Header: nats.Header{}}
		answer.Header.Set(micro.ErrorHeader, headerText(e.Message))
		answer.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(statusOf(e)))
		if err := m.RespondMsg(answer); err != nil {
			s.log.Warn().Err(err).Str("subject", m.Subject).Msg("could not answer input")
		}
	}
	defer s.recoverPanic(m.Subject, func(msg string) { fail(internalError(msg)) })
	tokens := strings.Split(m.Subject, ".")
	if len(tokens) != 4 {
		fail(&schemas.Error{Code: schemas.CodeBadRequest, Message: "input subject is not presence.in.<source>.<key>"})
		return
	}
	if len(m.Data) > MaxInputBytes {
		fail(&schemas.Error{Code: schemas.CodeBadRequest, Message: fmt.Sprintf("input of %d bytes; at most %d", len(m.Data), MaxInputBytes)})
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	rep, err := h.Input(callCtx, tokens[2], tokens[3], m.Data)
	if errors.Is(err, worker.ErrNotOwner) {
		return
	}
	if err != nil {
		fail(toContractError(err))
		return
	}
	reply(rep)
}

// recoverPanic answers a request whose handler panicked and keeps the worker up.
func (s *Service) recoverPanic(subject string, answer func(string)) {
	if r := recover(); r != nil {
		s.log.Error().Str("subject", subject).Interface("panic", r).Stack().Msg("recovered from panic in handler")
		answer(fmt.Sprintf("handler failed: %v", r))
	}
}
