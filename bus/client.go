package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/contactcenter/presence-provider/schemas"
)

// Client speaks the wire contract (docs/contract.md) to the presence
// service, for UCCs, tools and tests.
type Client struct {
	nc *nats.Conn
}

// NewClient wraps a connection.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// request sends a JSON request and decodes the reply; a micro error reply
// becomes the *schemas.Error it carries.
func request[Rep any](ctx context.Context, c *Client, subject string, req any) (Rep, error) {
	var rep Rep
	data, err := json.Marshal(req)
	if err != nil {
		return rep, err
	}
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return rep, fmt.Errorf("bus: %s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var e schemas.ErrorReply
		if json.Unmarshal(msg.Data, &e) == nil && e.Error != nil {
			return rep, e.Error
		}
		status, _ := strconv.Atoi(code)
		return rep, fmt.Errorf("bus: %s: error %d: %s", subject, status, msg.Header.Get(micro.ErrorHeader))
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("bus: %s: reply is not JSON: %w", subject, err)
	}
	return rep, nil
}

// Subscribe adds a UCC's interest in agents.
func (c *Client) Subscribe(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectSubscribe, req)
}

// Unsubscribe removes a UCC's interest in agents.
func (c *Client) Unsubscribe(ctx context.Context, req schemas.UnsubscribeRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectUnsub, req)
}

// Sync replaces a UCC's whole set of agents.
func (c *Client) Sync(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectSync, req)
}

// Get reads agents' current presence.
func (c *Client) Get(ctx context.Context, req schemas.GetRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectGet, req)
}

// Status reads the service's status.
func (c *Client) Status(ctx context.Context) (schemas.Status, error) {
	return request[schemas.Status](ctx, c, schemas.SubjectStatus, struct{}{})
}

// Attendant sends an AttendantService input and waits for its answer.
func (c *Client) Attendant(ctx context.Context, key string, in schemas.AttendantInput) (schemas.InputReply, error) {
	return request[schemas.InputReply](ctx, c, schemas.AttendantPrefix+key, in)
}

// PSTN reports a call state and waits for its answer.
func (c *Client) PSTN(ctx context.Context, key string, in schemas.PSTNInput) (schemas.InputReply, error) {
	return request[schemas.InputReply](ctx, c, schemas.PSTNPrefix+key, in)
}

// Watch calls fn with every presence event of the given agent keys, or of
// every agent when keys is empty, until the returned stop is called. Events
// whose seq is not above the last seen for the agent are dropped, as
// docs/contract.md, seq tells consumers to.
func (c *Client) Watch(keys []string, fn func(schemas.Event)) (stop func() error, err error) {
	events := make(chan *nats.Msg, 4096)
	var subs []*nats.Subscription
	subjects := []string{schemas.EventWildcard}
	if len(keys) > 0 {
		subjects = subjects[:0]
		for _, k := range keys {
			subjects = append(subjects, schemas.EventSubject(k))
		}
	}
	unsubscribe := func() error {
		for _, s := range subs {
			if err := s.Unsubscribe(); err != nil {
				return err
			}
		}
		return nil
	}
	for _, subject := range subjects {
		s, err := c.nc.ChanSubscribe(subject, events)
		if err != nil {
			_ = unsubscribe()
			return nil, fmt.Errorf("bus: watch %s: %w", subject, err)
		}
		subs = append(subs, s)
	}
	// Watching means the server sends the events already.
	if err := c.nc.Flush(); err != nil {
		_ = unsubscribe()
		return nil, fmt.Errorf("bus: watch: %w", err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		last := map[string]uint64{}
		for {
			select {
			case <-done:
				return
			case m := <-events:
				var ev schemas.Event
				if json.Unmarshal(m.Data, &ev) != nil || ev.Seq <= last[ev.Key] {
					continue
				}
				last[ev.Key] = ev.Seq
				fn(ev)
			}
		}
	}()
	return func() error {
		err := unsubscribe()
		close(done)
		<-finished
		return err
	}, nil
}
