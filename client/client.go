// Package client is the Go client of the Presence Provider, for UCCs, tools
// and tests. It speaks the wire contract of docs/contract.md over a NATS
// connection and depends on nats.go, the wire types of schemas and the
// credentials of config only: importing it links no NATS server.
//
// A UCC subscribes its agents with Subscribe (or Sync), then follows them
// with Watch, which delivers each agent's current presence and then every
// change in seq order, catching up after a reconnect or a provider restart.
// Requests refused as a whole return an *Error; a reply's failed entries
// carry theirs, which Failed and EntryError return as *Error too, so that
// errors.Is(err, ErrInvalidURI) and the other sentinels tell codes apart.
//
// Operators read what the service holds for one agent with Explain, and
// anyone allowed reads an agent's past events with History.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
)

// Client sends the contract's requests and inputs over one connection.
type Client struct {
	nc *nats.Conn
}

// New wraps a connection the caller owns and closes.
func New(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Connect joins NATS at url (a comma-separated list for a cluster) with the
// credentials a, as config.LoadNATSAuth reads them from PRESENCE_NATS_*, and
// reconnects for ever, through server restarts and authorization errors
// alike: nats.go would otherwise close the connection for good after the
// same authorization error twice, and a password being rotated on the
// server side would end a UCC's watch. The errors meanwhile reach the
// connection's error handler and a Watch's notices. opts come last, so they
// can override that.
func Connect(url string, a config.NATSAuth, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := AuthOptions(a)
	if err != nil {
		return nil, err
	}
	base := []nats.Option{nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort()}
	nc, err := nats.Connect(url, append(append(base, auth...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: connect %s: %w", config.RedactURLs(url), err)
	}
	return nc, nil
}

// request sends a JSON request and decodes the reply; an error reply
// becomes the *Error it carries.
func request[Rep any](ctx context.Context, c *Client, subject string, req any) (Rep, error) {
	var rep Rep
	data, err := json.Marshal(req)
	if err != nil {
		return rep, fmt.Errorf("client: %s: %w", subject, err)
	}
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return rep, fmt.Errorf("client: %s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var e schemas.ErrorReply
		if json.Unmarshal(msg.Data, &e) == nil && e.Error != nil {
			return rep, fromWire(e.Error, "")
		}
		status, _ := strconv.Atoi(code)
		return rep, fmt.Errorf("client: %s: error %d: %s", subject, status, msg.Header.Get(micro.ErrorHeader))
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("client: %s: reply is not JSON: %w", subject, err)
	}
	return rep, nil
}

// Subscribe adds a UCC's interest in agents. The reply has one entry per
// agent, in request order; Failed tells whether any failed.
func (c *Client) Subscribe(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectSubscribe, req)
}

// Unsubscribe removes a UCC's interest in agents.
func (c *Client) Unsubscribe(ctx context.Context, req schemas.UnsubscribeRequest) (schemas.AgentsReply, error) {
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectUnsub, req)
}

// Sync makes a UCC's agents exactly those of req; nil Agents is sent as
// none, which clears them.
func (c *Client) Sync(ctx context.Context, req schemas.SubscribeRequest) (schemas.AgentsReply, error) {
	if req.Agents == nil {
		req.Agents = []schemas.AgentRef{}
	}
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectSync, req)
}

// Get reads agents' current presence, each entry with its seq.
func (c *Client) Get(ctx context.Context, req schemas.GetRequest) (schemas.AgentsReply, error) {
	if req.URIs == nil {
		req.URIs = []string{}
	}
	return request[schemas.AgentsReply](ctx, c, schemas.SubjectGet, req)
}

// Status reads the service's status (the operator role's request).
func (c *Client) Status(ctx context.Context) (schemas.Status, error) {
	return request[schemas.Status](ctx, c, schemas.SubjectStatus, struct{}{})
}

// Explain asks why an agent shows what it shows (the operator role's
// request): its route, interests, claim, upstream subscription, presence
// and last changes.
func (c *Client) Explain(ctx context.Context, uri string) (schemas.Explanation, error) {
	return request[schemas.Explanation](ctx, c, schemas.SubjectExplain, schemas.ExplainRequest{URI: uri})
}

// Attendant sends an AttendantService input for the agent of key (see Key)
// and waits for its answer, whose Seq is the agent's seq afterwards.
func (c *Client) Attendant(ctx context.Context, key string, in schemas.AttendantInput) (schemas.InputReply, error) {
	return request[schemas.InputReply](ctx, c, schemas.AttendantPrefix+key, in)
}

// PSTN reports a call on the PSTN agent of key (see Key) and waits for its
// answer.
func (c *Client) PSTN(ctx context.Context, key string, in schemas.PSTNInput) (schemas.InputReply, error) {
	return request[schemas.InputReply](ctx, c, schemas.PSTNPrefix+key, in)
}
