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

// Workers is the presence_workers bucket. Its bucket-wide TTL ends a worker
// that stops beating.
type Workers struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
}

// Beat records the worker as alive for one more lease.
func (s *Workers) Beat(ctx context.Context, w schemas.WorkerInfo) error {
	data, err := json.Marshal(w)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, w.ID, data)
	return err
}

// Alive reports whether a worker's lease runs.
func (s *Workers) Alive(ctx context.Context, id string) (bool, error) {
	_, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns the live workers.
func (s *Workers) List(ctx context.Context) ([]schemas.WorkerInfo, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: list workers: %w", err)
	}
	out := []schemas.WorkerInfo{}
	for id := range lister.Keys() {
		e, err := s.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bus: worker %s: %w", id, err)
		}
		var w schemas.WorkerInfo
		if err := json.Unmarshal(e.Value(), &w); err != nil {
			continue
		}
		out = append(out, w)
	}
	return out, nil
}

// Leave ends this worker's lease at once.
func (s *Workers) Leave(ctx context.Context, id string) error {
	return s.kv.Delete(ctx, id)
}

// Watch streams the workers' entries as they beat, leave and go.
func (s *Workers) Watch(ctx context.Context) (<-chan schemas.Change[schemas.WorkerInfo], error) {
	return watch(ctx, s.conn, s.kv, s.log, decodeJSON[schemas.WorkerInfo])
}
