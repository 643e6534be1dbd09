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
			ch := schemas.Change[T]{Key: e.Key(), Revision: e.Revision()}
			var err error
			if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
				ch.Deleted = true
			} else if ch.Value, err = decode(e.Value(), e.Revision()); err != nil {
				log.Warn().Err(err).Str("bucket", kv.Bucket()).Str("key", e.Key()).Msg("undecodable KV entry skipped")
				continue
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func decodeJSON[T any](data []byte, _ uint64) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
