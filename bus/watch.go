package bus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// watch streams a bucket's entries, the current ones first, as typed
// changes, until ctx ends; then it closes the channel. An entry that does not
// decode is logged and skipped: one bad value never stops the stream.
func watch[T any](ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger, decode func([]byte, uint64) (T, error)) (<-chan schemas.Change[T], error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	return follow(ctx, kv, w, log, decode), nil
}

// watchCurrent is watch that returns the current entries apart, once they
// are all read, and streams only the changes after them.
func watchCurrent[T any](ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger, decode func([]byte, uint64) (T, error)) ([]schemas.Change[T], <-chan schemas.Change[T], error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	var current []schemas.Change[T]
	for {
		select {
		case <-ctx.Done():
			_ = w.Stop()
			return nil, nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, fmt.Errorf("bus: watch %s ended while reading the current entries", kv.Bucket())
			}
			if e == nil { // the current entries are all read
				return current, follow(ctx, kv, w, log, decode), nil
			}
			if ch, ok := change(kv, e, log, decode); ok {
				current = append(current, ch)
			}
		}
	}
}

// follow turns a watcher's entries into changes on a channel until ctx
// ends or the watcher does; then it stops the watcher and closes the channel.
func follow[T any](ctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher, log zerolog.Logger, decode func([]byte, uint64) (T, error)) <-chan schemas.Change[T] {
	out := make(chan schemas.Change[T], 1024)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e jetstream.KeyValueEntry
			select {
			case <-ctx.Done():
				return
			case entry, ok := <-w.Updates():
				if !ok {
					return
				}
				e = entry
			}
			if e == nil {
				continue // the current entries are all delivered
			}
			ch, ok := change(kv, e, log, decode)
			if !ok {
				continue
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// change decodes one entry; ok is false for one that does not decode, which
// it logs.
func change[T any](kv jetstream.KeyValue, e jetstream.KeyValueEntry, log zerolog.Logger, decode func([]byte, uint64) (T, error)) (schemas.Change[T], bool) {
	ch := schemas.Change[T]{Key: e.Key(), Revision: e.Revision()}
	if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
		ch.Deleted = true
		return ch, true
	}
	var err error
	if ch.Value, err = decode(e.Value(), e.Revision()); err != nil {
		log.Warn().Err(err).Str("bucket", kv.Bucket()).Str("key", e.Key()).Msg("undecodable KV entry skipped")
		return ch, false
	}
	return ch, true
}

func decodeJSON[T any](data []byte, _ uint64) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
