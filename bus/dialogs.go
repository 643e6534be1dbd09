package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Dialogs is the presence_dialogs bucket: each agent's SIP subscription
// dialog, for the agent's next holder to resume.
type Dialogs struct {
	kv jetstream.KeyValue
}

// DialogBucket creates (or updates) presence_dialogs with the other
// buckets' options.
func (c *Conn) DialogBucket(ctx context.Context, opts BucketOptions, log zerolog.Logger) (*Dialogs, error) {
	cfg := jetstream.KeyValueConfig{Bucket: schemas.BucketDialogs, History: 1, Replicas: opts.Replicas,
		Description: "each agent's SIP subscription dialog, for its next holder to resume", Storage: jetstream.FileStorage}
	if opts.Memory {
		cfg.Storage = jetstream.MemoryStorage
	}
	kv, err := c.createBucket(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", cfg.Bucket, err)
	}
	return &Dialogs{kv: kv}, nil
}

// Put records the agent's dialog; only the agent's holder writes it.
func (s *Dialogs) Put(ctx context.Context, key string, d schemas.Dialog) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = withLeader(ctx, leaderWait, schemas.BucketDialogs, func(ctx context.Context) (uint64, error) {
		return s.kv.Put(ctx, key, data)
	})
	return err
}

// Get reads the agent's dialog.
func (s *Dialogs) Get(ctx context.Context, key string) (schemas.Dialog, bool, error) {
	e, err := withLeader(ctx, leaderWait, schemas.BucketDialogs, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return s.kv.Get(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schemas.Dialog{}, false, nil
	}
	if err != nil {
		return schemas.Dialog{}, false, err
	}
	var d schemas.Dialog
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return schemas.Dialog{}, false, fmt.Errorf("bus: %s %s: %w", schemas.BucketDialogs, key, err)
	}
	return d, true, nil
}

// Delete forgets the agent's dialog.
func (s *Dialogs) Delete(ctx context.Context, key string) error {
	_, err := withLeader(ctx, leaderWait, schemas.BucketDialogs, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.kv.Delete(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
