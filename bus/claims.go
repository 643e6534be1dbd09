package bus

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Claims is the presence_claims bucket.
type Claims struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
}

// Create takes the claim if nobody holds it.
func (s *Claims) Create(ctx context.Context, key string, c schemas.Claim) (uint64, bool, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return 0, false, err
	}
	rev, err := withLeader(ctx, leaderWait, schemas.BucketClaims, func(ctx context.Context) (uint64, error) {
		return s.kv.Create(ctx, key, data)
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, nil
	}
	return rev, err == nil, err
}

// Update rewrites a claim still at revision.
func (s *Claims) Update(ctx context.Context, key string, c schemas.Claim, revision uint64) (uint64, bool, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return 0, false, err
	}
	rev, err := withLeader(ctx, leaderWait, schemas.BucketClaims, func(ctx context.Context) (uint64, error) {
		return s.kv.Update(ctx, key, data, revision)
	})
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, nil
	}
	return rev, err == nil, err
}

// Get reads a claim.
func (s *Claims) Get(ctx context.Context, key string) (schemas.Claim, uint64, bool, error) {
	e, err := withLeader(ctx, leaderWait, schemas.BucketClaims, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return s.kv.Get(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schemas.Claim{}, 0, false, nil
	}
	if err != nil {
		return schemas.Claim{}, 0, false, err
	}
	var c schemas.Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return schemas.Claim{}, 0, false, err
	}
	return c, e.Revision(), true, nil
}

// Delete gives a claim up if it is still at revision.
func (s *Claims) Delete(ctx context.Context, key string, revision uint64) error {
	_, err := withLeader(ctx, leaderWait, schemas.BucketClaims, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.kv.Delete(ctx, key, jetstream.LastRevision(revision))
	})
	return err
}

// Watch streams every worker's claims.
func (s *Claims) Watch(ctx context.Context) (<-chan schemas.Change[schemas.Claim], error) {
	return watch(ctx, s.conn, s.kv, s.log, decodeJSON[schemas.Claim])
}
