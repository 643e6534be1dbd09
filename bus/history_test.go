package bus_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// The history's bounds are the stream's, changed bounds update it, and an
// unchanged stream is opened without an update.
func TestHistoryStreamTakesItsBounds(t *testing.T) {
	ns := provtest.Server(t)
	conn, err := bus.Connect("", ns, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	var updates atomic.Int32
	if _, err := conn.NC.Subscribe("$JS.API.STREAM.UPDATE."+schemas.StreamHistory, func(*nats.Msg) { updates.Add(1) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(opts bus.HistoryOptions) {
		t.Helper()
		if _, err := conn.HistoryStream(ctx, opts, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		s, err := conn.JS.Stream(ctx, schemas.StreamHistory)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxAge != opts.MaxAge || cfg.MaxBytes != opts.MaxBytes || cfg.Discard != jetstream.DiscardOld ||
			!slices.Equal(cfg.Subjects, []string{schemas.EventWildcard}) || !cfg.AllowDirect || cfg.Storage != jetstream.FileStorage {
			t.Errorf("presence_history config %+v; want max age %s, max bytes %d, discard old, presence.*, direct gets, on file",
				cfg, opts.MaxAge, opts.MaxBytes)
		}
	}
	check(bus.HistoryOptions{MaxAge: 7 * 24 * time.Hour, MaxBytes: 2 << 30, Replicas: 1})
	check(bus.HistoryOptions{MaxAge: time.Hour, MaxBytes: 1 << 20, Replicas: 1})
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	// nats.go creates a stream by trying an update first: count from here.
	before := updates.Load()
	if before < 2 {
		t.Fatalf("%d updates seen for a creation and a change of bounds; the test does not see them", before)
	}
	check(bus.HistoryOptions{MaxAge: time.Hour, MaxBytes: 1 << 20, Replicas: 1})
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := updates.Load() - before; n != 0 {
		t.Errorf("%d updates when opened with the same bounds; want none: an unchanged stream is not updated", n)
	}
}
