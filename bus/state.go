package bus

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// States is the presence_state bucket and the presence.<key> events.
type States struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
}

func decodeEvent(data []byte, rev uint64) (schemas.Event, error) {
	var ev schemas.Event
	err := json.Unmarshal(data, &ev)
	ev.Seq = rev
	return ev, err
}

// Load returns the agent's current event with Seq set to its revision.
func (s *States) Load(ctx context.Context, key string) (schemas.Event, bool, error) {
	e, err := withLeader(ctx, leaderWait, schemas.BucketState, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return s.kv.Get(ctx, key)
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schemas.Event{}, false, nil
	}
	if err != nil {
		return schemas.Event{}, false, err
	}
	ev, err := decodeEvent(e.Value(), e.Revision())
	return ev, err == nil, err
}

// Swap stores ev if the entry is still at revision; the stored event carries
// no seq, since its revision is only known once it is stored.
func (s *States) Swap(ctx context.Context, ev schemas.Event, revision uint64) (uint64, bool, error) {
	ev.Seq = 0
	data, err := json.Marshal(ev)
	if err != nil {
		return 0, false, err
	}
	rev, err := withLeader(ctx, leaderWait, schemas.BucketState, func(ctx context.Context) (uint64, error) {
		if revision == 0 {
			return s.kv.Create(ctx, ev.Key, data)
		}
		return s.kv.Update(ctx, ev.Key, data, revision)
	})
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, nil
	}
	return rev, err == nil, err
}

// Publish sends the event to presence.<key>, without the stored entry's
// input position.
func (s *States) Publish(ev schemas.Event) error {
	ev.InputSeq = 0
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return s.conn.NC.Publish(schemas.EventSubject(ev.Key), data)
}

// Watch streams the bucket's events, Seq set, but for those known reports
// (the watcher's own writes, which it holds already when their answer came
// before the entry): decoding every entry took 7 % of the input bench's CPU.
func (s *States) Watch(ctx context.Context, known func(key string, revision uint64) bool) (<-chan schemas.Change[schemas.Event], error) {
	return watchUnknown(ctx, s.conn, s.kv, s.log, decodeEvent, known)
}
