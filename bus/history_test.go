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

// The history's bounds are the stream's; a missing stream is created (not
// updated into being), changed bounds update it, and an unchanged stream is
// opened without an update.
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
	// Created, not updated into being; then updated once for the new bounds.
	if n := updates.Load(); n != 1 {
		t.Fatalf("%d updates for a creation and a change of bounds; want 1", n)
	}
	check(bus.HistoryOptions{MaxAge: time.Hour, MaxBytes: 1 << 20, Replicas: 1})
	if err := conn.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 1 {
		t.Errorf("%d updates after opening it with the same bounds; want still 1: an unchanged stream is not updated", n)
	}
}

// Workers that start together all create the streams and buckets; none
// updates what another just made (an update rewrites the store under the
// consumers the other is making).
func TestWorkersStartingTogetherUpdateNothing(t *testing.T) {
	ns := provtest.Server(t)
	watcher, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Close)
	var updates atomic.Int32
	if _, err := watcher.Subscribe("$JS.API.STREAM.UPDATE.>", func(*nats.Msg) { updates.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			conn, err := bus.Connect("", ns, "test", zerolog.Nop())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			_, err = conn.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: time.Minute}, zerolog.Nop())
			if err == nil {
				_, err = conn.HistoryStream(ctx, bus.HistoryOptions{MaxAge: time.Hour, MaxBytes: 1 << 20, Replicas: 1}, zerolog.Nop())
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 0 {
		t.Errorf("%d stream updates from 8 workers starting together; want none", n)
	}
}
