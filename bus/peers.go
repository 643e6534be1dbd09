package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/schemas"
)

// Peers asks other workers by name, on presence.worker.<worker key>.*.
type Peers struct {
	conn *Conn
}

// Upstream asks the worker id for the agent's upstream subscription; nil
// when it holds none.
func (p *Peers) Upstream(ctx context.Context, id, key string) (*schemas.Upstream, error) {
	data, err := json.Marshal(schemas.UpstreamRequest{Key: key})
	if err != nil {
		return nil, err
	}
	msg, err := p.conn.NC.RequestWithContext(ctx, schemas.UpstreamSubject(id), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("worker %s is not listening", id)
	}
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", id, err)
	}
	var rep schemas.UpstreamReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("worker %s: reply is not JSON: %w", id, err)
	}
	return rep.Upstream, nil
}

// answerUpstream answers the other workers' questions about the upstream
// subscriptions this worker holds.
func (s *Service) answerUpstream(h Handler) nats.MsgHandler {
	return func(m *nats.Msg) {
		defer s.recoverPanic(m.Subject, func(string) {})
		var req schemas.UpstreamRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			s.log.Warn().Err(err).Str("subject", m.Subject).Msg("upstream question is not JSON")
			return
		}
		data, _ := json.Marshal(schemas.UpstreamReply{Upstream: h.Upstream(req.Key)})
		if err := m.Respond(data); err != nil {
			s.log.Warn().Err(err).Str("subject", m.Subject).Msg("could not answer upstream question")
		}
	}
}
