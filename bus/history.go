package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/schemas/history"
)

// HistoryOptions bound the presence_history stream (docs/contract.md, History).
type HistoryOptions struct {
	MaxAge   time.Duration
	MaxBytes int64
	Replicas int
}

// History is the presence_history stream: every event on presence.*, kept
// by the server as it passes, until the bounds drop the oldest.
type History struct {
	nc *nats.Conn
}

// HistoryStream creates (or updates) presence_history. The stream stores the
// events the workers publish anyway, with no acknowledgement to wait for: the
// input → event path costs the server a write, not the worker a round trip.
func (c *Conn) HistoryStream(ctx context.Context, opts HistoryOptions, log zerolog.Logger) (*History, error) {
	_, err := c.createStream(ctx, historyConfig(opts), log)
	if err != nil {
		return nil, err
	}
	return &History{nc: c.NC}, nil
}

// historyConfig is presence_history's configuration for opts.
func historyConfig(opts HistoryOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.StreamHistory,
		Description: "every presence event on presence.*, for a while",
		Subjects:    []string{schemas.EventWildcard},
		NoAck:       true,
		Retention:   jetstream.LimitsPolicy,
		// A record: when full, the oldest events make room.
		Discard:  jetstream.DiscardOld,
		MaxMsgs:  -1,
		MaxBytes: opts.MaxBytes,
		MaxAge:   opts.MaxAge,
		Replicas: max(opts.Replicas, 1),
		Storage:  jetstream.FileStorage,
		// Readers (UCCs replaying, explain) use direct gets: no consumer to
		// make, and a permission that only reads.
		AllowDirect: true,
	}
}

// Last returns the agent's last n events, oldest first.
func (h *History) Last(ctx context.Context, uri string, n int) ([]schemas.HistoryEntry, error) {
	entries, err := history.Read(ctx, h.nc, schemas.Key(uri), history.Options{Last: n})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", uri, err)
	}
	return entries, nil
}
