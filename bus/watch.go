package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

const (
	// rewatchTimeout bounds one attempt to make a watch's consumer again.
	rewatchTimeout = 2 * time.Second
	// rewatchWait spaces those attempts: a server that just came back may
	// not serve JetStream yet.
	rewatchWait = 100 * time.Millisecond
)

// watch streams a bucket's entries, the current ones first, as typed
// changes, until ctx ends; then it closes the channel. An entry that does not
// decode is logged and skipped: one bad value never stops the stream.
func watch[T any](ctx context.Context, conn *Conn, kv jetstream.KeyValue, log zerolog.Logger, decode func([]byte, uint64) (T, error)) (<-chan schemas.Change[T], error) {
	return watchUnknown(ctx, conn, kv, log, decode, nil)
}

// watchUnknown is watch that skips, undecoded, the entries known reports:
// those the watcher holds already (its own writes).
func watchUnknown[T any](ctx context.Context, conn *Conn, kv jetstream.KeyValue, log zerolog.Logger, decode func([]byte, uint64) (T, error),
	known func(key string, revision uint64) bool) (<-chan schemas.Change[T], error) {
	reconnected := conn.Reconnected()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	return follow(ctx, conn, kv, w, reconnected, 0, true, log, decode, known), nil
}

// watchCurrent is watch that returns the current entries apart, once they
// are all read, and streams only the changes after them.
func watchCurrent[T any](ctx context.Context, conn *Conn, kv jetstream.KeyValue, log zerolog.Logger, decode func([]byte, uint64) (T, error)) ([]schemas.Change[T], <-chan schemas.Change[T], error) {
	reconnected := conn.Reconnected()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), err)
	}
	var current []schemas.Change[T]
	var last uint64
	for {
		select {
		case <-ctx.Done():
			stopWatcher(w)
			return nil, nil, fmt.Errorf("bus: watch %s: %w", kv.Bucket(), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, fmt.Errorf("bus: watch %s ended while reading the current entries", kv.Bucket())
			}
			if e == nil { // the current entries are all read
				return current, follow(ctx, conn, kv, w, reconnected, last, false, log, decode, nil), nil
			}
			last = e.Revision()
			if ch, ok := change(kv, e, log, decode); ok {
				current = append(current, ch)
			}
		}
	}
}

// follow turns a watcher's entries into changes on a channel until ctx
// ends; then it stops the watcher and closes the channel. last is the
// revision of the last entry already delivered; with markLoaded, a Loaded
// change follows the entries the bucket held when the watch began.
//
// It survives NATS outages without missing a change. nats.go's ordered
// consumer notices a lost consumer only after two missed idle heartbeats
// (10 to 20 s); instead, whenever the connection comes back, or the
// consumer ends by itself, the watch is made again from the revision after
// the last one delivered. A bucket keeps each key's last message, delete
// markers included, so that resumption delivers every key written or
// deleted meanwhile, in order, and nothing twice. Entries known reports
// (nil: none) are skipped.
func follow[T any](ctx context.Context, conn *Conn, kv jetstream.KeyValue, w jetstream.KeyWatcher, reconnected <-chan struct{},
	last uint64, markLoaded bool, log zerolog.Logger, decode func([]byte, uint64) (T, error), known func(string, uint64) bool) <-chan schemas.Change[T] {
	log = log.With().Str("bucket", kv.Bucket()).Logger()
	out := make(chan schemas.Change[T], 1024)
	go func() {
		defer close(out)
		defer func() { stopWatcher(w) }()
		for {
			var e jetstream.KeyValueEntry
			restart := false
			select {
			case <-ctx.Done():
				return
			case <-reconnected:
				reconnected, restart = conn.Reconnected(), true
			case entry, ok := <-w.Updates():
				if !ok {
					restart = true
				}
				e = entry
			}
			if restart {
				stopWatcher(w)
				if w = rewatch(ctx, conn, kv, last+1, log); w == nil {
					return
				}
				continue
			}
			if e == nil { // the current entries are all delivered
				if !markLoaded {
					continue
				}
				markLoaded = false
				select {
				case out <- schemas.Change[T]{Loaded: true}:
				case <-ctx.Done():
					return
				}
				continue
			}
			last = e.Revision()
			if known != nil && e.Operation() == jetstream.KeyValuePut && known(e.Key(), last) {
				continue
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

// rewatch makes the watch again from revision from on, trying until it
// succeeds; it returns nil once ctx ends or the connection is closed for
// good.
func rewatch(ctx context.Context, conn *Conn, kv jetstream.KeyValue, from uint64, log zerolog.Logger) jetstream.KeyWatcher {
	for failures := 0; ; failures++ {
		if conn.NC.IsClosed() {
			return nil
		}
		attempt, cancel := context.WithTimeout(ctx, rewatchTimeout)
		w, err := kv.WatchAll(attempt, jetstream.ResumeFromRevision(from))
		cancel()
		if err == nil {
			log.Debug().Uint64("from_revision", from).Msg("KV watch resumed")
			return w
		}
		if ctx.Err() != nil {
			return nil
		}
		if failures == 0 {
			log.Info().Err(err).Msg("KV watch lost; making it again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rewatchWait):
		}
	}
}

// stopWatcher ends a watcher and drains what it still delivers, so that
// its subscription's goroutine, blocked on a full channel, can end.
func stopWatcher(w jetstream.KeyWatcher) {
	if w == nil {
		return
	}
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}

func decodeJSON[T any](data []byte, _ uint64) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
