package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// BucketOptions shape the buckets (docs/contract.md, KV buckets).
type BucketOptions struct {
	Replicas int
	// WorkerLease is how long a worker's entry lives without a beat.
	WorkerLease time.Duration
	// Memory keeps the buckets in memory; benchmarks compare it with files.
	Memory bool
}

// Stores are the stores over the buckets: the worker's, and the PSTN
// source's calls.
type Stores struct {
	worker.Stores
	Calls *Calls
}

// Buckets creates (or updates) the five buckets of docs/contract.md and
// returns the stores over them.
func (c *Conn) Buckets(ctx context.Context, opts BucketOptions, log zerolog.Logger) (Stores, error) {
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, cfg := range []jetstream.KeyValueConfig{
		{Bucket: schemas.BucketState, Description: "current presence event of each agent"},
		{Bucket: schemas.BucketInterest, Description: "interest of each UCC in each agent"},
		{Bucket: schemas.BucketClaims, Description: "the one worker that holds each agent's upstream subscription"},
		// A bucket-wide TTL, renewed by every write of an entry: per-key
		// TTLs are lost on update. Limit markers let a watcher see a
		// worker's lease run out.
		{Bucket: schemas.BucketWorkers, Description: "liveness of workers", TTL: opts.WorkerLease,
			LimitMarkerTTL: max(opts.WorkerLease, time.Second)},
		// Marker TTLs let ended calls' markers go (Calls.Delete).
		{Bucket: schemas.BucketCalls, Description: "PSTN calls in progress", LimitMarkerTTL: callMarkerTTL},
	} {
		cfg.History = 1
		cfg.Replicas = opts.Replicas
		cfg.Storage = storage
		kv, err := c.createBucket(ctx, cfg, log)
		if err != nil {
			return Stores{}, fmt.Errorf("bus: bucket %s: %w", cfg.Bucket, err)
		}
		kvs[cfg.Bucket] = kv
	}
	self, err := thisProcess()
	if err != nil {
		return Stores{}, err
	}
	return Stores{
		Stores: worker.Stores{
			State:    &States{kv: kvs[schemas.BucketState], conn: c, log: log},
			Interest: &Interests{kv: kvs[schemas.BucketInterest], conn: c, log: log},
			Claims:   &Claims{kv: kvs[schemas.BucketClaims], conn: c, log: log},
			Workers:  &Workers{kv: kvs[schemas.BucketWorkers], conn: c, log: log, self: self},
			Peers:    &Peers{conn: c},
		},
		Calls: &Calls{kv: kvs[schemas.BucketCalls], conn: c, log: log},
	}, nil
}

// keyValue opens a bucket that is as cfg asks, and creates or updates it
// otherwise. An update of an unchanged bucket is not sent: the server
// rewrites its store's configuration even then, which nats-server 2.15
// does without a lock against consumers (watches) being made meanwhile.
func (c *Conn) keyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	stream, err := c.JS.Stream(ctx, kvStream(cfg.Bucket))
	switch {
	case err == nil:
		have := stream.CachedInfo().Config
		if have.MaxAge == cfg.TTL && have.MaxMsgsPerSubject == int64(cfg.History) && have.Replicas == max(cfg.Replicas, 1) &&
			have.SubjectDeleteMarkerTTL == cfg.LimitMarkerTTL && have.Description == cfg.Description && have.Storage == cfg.Storage {
			return c.JS.KeyValue(ctx, cfg.Bucket)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		// Created, not updated into being, as streams are (see stream):
		// one made meanwhile by another worker with the same settings is
		// taken as it is.
		kv, err := c.JS.CreateKeyValue(ctx, cfg)
		if err == nil {
			return kv, c.awaitLeader(ctx, kvStream(cfg.Bucket))
		}
		if !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, err
		}
	}
	return c.JS.CreateOrUpdateKeyValue(ctx, cfg)
}

// StartupWait is how long start-up waits for JetStream to answer: the
// nodes of a cluster started together elect their leaders meanwhile.
const StartupWait = 2 * time.Minute

// unavailable tells an error of a JetStream that does not answer yet (no
// leader, a leader being elected) from an answer.
func unavailable(err error) bool {
	return noLeader(err) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// createBucket retries until ctx ends: a node of a cluster that starts
// before its peers has no JetStream leader to answer yet.
func (c *Conn) createBucket(ctx context.Context, cfg jetstream.KeyValueConfig, log zerolog.Logger) (jetstream.KeyValue, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := c.keyValue(attempt, cfg)
		cancel()
		if err == nil {
			return kv, nil
		}
		log.Info().Err(err).Str("bucket", cfg.Bucket).Msg("JetStream not ready yet; trying again")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// kvStream is the stream that holds a bucket's entries.
func kvStream(bucket string) string { return "KV_" + bucket }

// kvSubjectPrefix is the subject of a bucket's entries, less the key.
func kvSubjectPrefix(bucket string) string { return "$KV." + bucket + "." }

// liveEntries reads a bucket's entries whose keys match filter and hold a
// value. The keys come from one snapshot of the stream's subjects: a key
// listing walks the entries with a consumer, and misses one rewritten while
// it walks (a worker's beat, a lease renewal).
func liveEntries(ctx context.Context, c *Conn, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	stream, err := c.JS.Stream(ctx, kvStream(kv.Bucket()))
	if err != nil {
		return nil, err
	}
	prefix := kvSubjectPrefix(kv.Bucket())
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(prefix+filter))
	if err != nil {
		return nil, err
	}
	// In key order, so that what lists them reads the same each time.
	subjects := slices.Sorted(maps.Keys(info.State.Subjects))
	var entries []jetstream.KeyValueEntry
	for _, subject := range subjects {
		key := strings.TrimPrefix(subject, prefix)
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Deleted: its marker is the subject's last message.
		case err != nil:
			return nil, fmt.Errorf("%s %s: %w", kv.Bucket(), key, err)
		default:
			entries = append(entries, e)
		}
	}
	return entries, nil
}
