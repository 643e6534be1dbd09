package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Interests is the presence_interest bucket.
type Interests struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
}

// Put writes the interests as one burst of asynchronous publishes and then
// waits for every acknowledgement: a KV put each, one round trip in all.
func (s *Interests) Put(ctx context.Context, interests []schemas.Interest) []error {
	errs := make([]error, len(interests))
	futures := make([]jetstream.PubAckFuture, len(interests))
	for i, in := range interests {
		data, err := json.Marshal(in)
		if err != nil {
			errs[i] = err
			continue
		}
		key := schemas.InterestKey(schemas.Key(in.URI), schemas.Key(in.UCC))
		futures[i], errs[i] = s.conn.JS.PublishAsync(kvSubjectPrefix(s.kv.Bucket())+key, data)
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return errs
}

// Delete removes one interest, only at revision unless revision is 0.
func (s *Interests) Delete(ctx context.Context, agentKey, uccKey string, revision uint64) (bool, error) {
	var opts []jetstream.KVDeleteOpt
	if revision != 0 {
		opts = append(opts, jetstream.LastRevision(revision))
	}
	err := s.kv.Delete(ctx, schemas.InterestKey(agentKey, uccKey), opts...)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	return err == nil, err
}

// AgentsOf lists the agent keys one UCC has interest in.
func (s *Interests) AgentsOf(ctx context.Context, uccKey string) ([]string, error) {
	entries, err := liveEntries(ctx, s.conn, s.kv, "*."+uccKey)
	if err != nil {
		return nil, fmt.Errorf("bus: list interests: %w", err)
	}
	agents := make([]string, 0, len(entries))
	for _, e := range entries {
		agent, _, _ := strings.Cut(e.Key(), ".")
		agents = append(agents, agent)
	}
	return agents, nil
}

// Of reads the interests of the UCCs in one agent.
func (s *Interests) Of(ctx context.Context, agentKey string) ([]schemas.Interest, error) {
	entries, err := liveEntries(ctx, s.conn, s.kv, agentKey+".*")
	if err != nil {
		return nil, fmt.Errorf("bus: list interests: %w", err)
	}
	interests := []schemas.Interest{}
	for _, e := range entries {
		in, err := decodeJSON[schemas.Interest](e.Value(), e.Revision())
		if err != nil {
			return nil, fmt.Errorf("bus: interest %s: %w", e.Key(), err)
		}
		interests = append(interests, in)
	}
	return interests, nil
}

// Watch streams interests as they come and go.
func (s *Interests) Watch(ctx context.Context) (<-chan schemas.Change[schemas.Interest], error) {
	return watch(ctx, s.conn, s.kv, s.log, decodeJSON[schemas.Interest])
}
