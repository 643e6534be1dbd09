package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// inputPending bounds the core copies of inputs waiting for the
	// subscription's callback: far beyond what it falls behind by, since
	// the callback only files reply subjects.
	inputPending      = 4 << 20
	inputPendingBytes = 1 << 30
)

// Handler answers the presence service's requests and inputs; the worker
// implements it.
type Handler interface {
	Subscribe(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error)
	Unsubscribe(ctx context.Context, req schemas.UnsubscribeRequest) (schemas.AgentsReply, error)
	Sync(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error)
	Get(ctx context.Context, req schemas.GetRequest) (schemas.AgentsReply, error)
	Status(ctx context.Context) (schemas.Status, error)
	Explain(ctx context.Context, req schemas.ExplainRequest) (schemas.Explanation, error)
	// Upstream describes the agent's upstream subscription this worker
	// holds, for another worker's explain; nil when it holds none.
	Upstream(key string) *schemas.Upstream
	InputHandler
}

// InputHandler applies the durable inputs (docs/contract.md, Inputs).
type InputHandler interface {
	// Input applies inputs of one agent and source, in order, each once;
	// every result's verdict is worker.NotMine when another worker serves
	// the agent, worker.Stale when the agents this worker serves changed
	// since the generation the inputs name.
	Input(ctx context.Context, ins []worker.QueuedInput) []worker.InputResult
	// ServedGeneration counts the changes of the agents this worker
	// serves; ServedChanged is signalled at each.
	ServedGeneration() uint64
	ServedChanged() <-chan struct{}
	// Serves reports whether this worker answers the agent's inputs now.
	Serves(key string) bool
}

// Service is the running presence micro service and input queue.
type Service struct {
	svc    micro.Service
	inputs *nats.Subscription
	// upstream answers other workers about this one's subscriptions.
	upstream *nats.Subscription
	// stopInputs ends the input queue's loops; done when they ended.
	stopInputs context.CancelFunc
	wg         sync.WaitGroup
	log        zerolog.Logger
}

// Serve starts the presence micro service on presence.api.*, in a queue
// group shared by every worker, and applies the inputs on presence.in.>
// through the input queue OpenInputs opened.
func (c *Conn) Serve(ctx context.Context, h Handler, version string, inputs *InputQueue, log zerolog.Logger) (*Service, error) {
	q := inputs.q
	q.h = h
	svc, err := micro.AddService(c.NC, micro.Config{
		Name:        schemas.ServiceName,
		Version:     version,
		Description: "one upstream presence subscription per agent for all UCCs",
	})
	if err != nil {
		return nil, fmt.Errorf("bus: presence service: %w", err)
	}
	s := &Service{svc: svc, log: log, stopInputs: func() {}}
	endpoints := map[string]micro.HandlerFunc{
		schemas.SubjectSubscribe: endpoint(ctx, s, h.Subscribe),
		schemas.SubjectUnsub:     endpoint(ctx, s, h.Unsubscribe),
		schemas.SubjectSync:      endpoint(ctx, s, h.Sync),
		schemas.SubjectGet:       endpoint(ctx, s, h.Get),
		schemas.SubjectStatus: endpoint(ctx, s, func(ctx context.Context, _ struct{}) (schemas.Status, error) {
			return h.Status(ctx)
		}),
		schemas.SubjectExplain: endpoint(ctx, s, h.Explain),
	}
	for subject, handler := range endpoints {
		name := strings.TrimPrefix(subject, schemas.APISubjectPrefix)
		if err := svc.AddEndpoint(name, handler, micro.WithEndpointSubject(subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("bus: endpoint %s: %w", subject, err)
		}
	}
	s.upstream, err = c.NC.Subscribe(schemas.UpstreamSubject(q.opts.WorkerID), s.answerUpstream(h))
	if err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("bus: %s: %w", schemas.UpstreamSubject(q.opts.WorkerID), err)
	}
	// Every worker sees every input's core copy, to answer it should it
	// apply the input.
	s.inputs, err = c.NC.Subscribe(schemas.InputWildcard, q.core)
	if err == nil {
		err = s.inputs.SetPendingLimits(inputPending, inputPendingBytes)
	}
	if err == nil {
		// Ready means the server routes requests and inputs here already.
		err = c.NC.Flush()
	}
	if err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("bus: inputs: %w", err)
	}
	loops, stop := context.WithCancel(ctx)
	s.stopInputs = stop
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		q.run(ctx, loops)
	}()
	go func() {
		defer s.wg.Done()
		q.keep(loops)
	}()
	return s, nil
}

// StopRequests stops taking presence.api requests; inputs still come, so
// that a worker handing its agents over answers theirs meanwhile.
func (s *Service) StopRequests() error {
	var err error
	if s.upstream != nil {
		err = s.upstream.Unsubscribe()
		s.upstream = nil
	}
	if s.svc.Stopped() {
		return err
	}
	return errors.Join(err, s.svc.Stop())
}

// Stop stops taking requests and inputs; the inputs in hand are finished
// first, the others wait in the stream for whoever serves their agents.
func (s *Service) Stop() error {
	err := s.StopRequests()
	if s.inputs != nil {
		err = errors.Join(err, s.inputs.Unsubscribe())
	}
	s.stopInputs()
	s.wg.Wait()
	return err
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
			respondError(r, s.log, schemas.AsError(err))
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

// statusOf is the micro error code: a caller's mistake is 400, ours 500,
// no room for an input or no leader 503.
func statusOf(e *schemas.Error) int {
	switch e.Code {
	case schemas.CodeInternal:
		return 500
	case schemas.CodeOverloaded, schemas.CodeUnavailable:
		return 503
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

// recoverPanic answers a request whose handler panicked and keeps the worker up.
func (s *Service) recoverPanic(subject string, answer func(string)) {
	if r := recover(); r != nil {
		s.log.Error().Str("subject", subject).Interface("panic", r).Stack().Msg("recovered from panic in handler")
		answer(fmt.Sprintf("handler failed: %v", r))
	}
}
