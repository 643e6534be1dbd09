package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Workers is the presence_workers bucket. Its bucket-wide TTL ends a worker
// that stops beating. The store writes this process's entry: it stamps the
// entry with the process (instance, host, pid) and writes it with
// compare-and-set, so that two live processes never hold one id.
type Workers struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
	// self names this process in the entry.
	self process

	mu  sync.Mutex
	rev uint64 // the revision of this process's last write of its entry; 0: none
}

// process is what names one running presenced in its entry.
type process struct {
	instance, host string
	pid            int
}

func thisProcess() (process, error) {
	token := make([]byte, 8)
	if _, err := rand.Read(token); err != nil {
		return process{}, fmt.Errorf("bus: worker instance: %w", err)
	}
	host, _ := os.Hostname()
	return process{instance: hex.EncodeToString(token), host: host, pid: os.Getpid()}, nil
}

func (p process) stamp(w schemas.WorkerInfo) schemas.WorkerInfo {
	w.Instance, w.Host, w.PID = p.instance, p.host, p.pid
	return w
}

// IDInUseError is the refusal of a worker id another live process holds.
type IDInUseError struct {
	Holder schemas.WorkerInfo
}

func (e *IDInUseError) Error() string {
	h := e.Holder
	return fmt.Sprintf("bus: worker id %q is in use by process %d on host %s (started %s); one presenced per PRESENCE_WORKER_ID",
		h.ID, h.PID, h.Host, h.Started.Format(time.RFC3339))
}

// Join writes the entry of a worker that starts. An entry of its id left by
// another process is taken over at once when that process ran on this host
// and is gone (no process has its pid, or it had this process's pid: a
// container restarted). A process on this host that still runs is refused
// at once. Of an entry from another host nothing can be proved: Join waits
// for it to end with its lease, and refuses as soon as its holder beats.
//
// A JetStream that does not answer yet is waited for, up to StartupWait.
func (s *Workers) Join(ctx context.Context, w schemas.WorkerInfo) error {
	ctx, cancel := context.WithTimeout(ctx, StartupWait)
	defer cancel()
	for {
		err := s.join(ctx, w)
		if !unavailable(err) || ctx.Err() != nil {
			return err
		}
		s.log.Info().Err(err).Str("bucket", schemas.BucketWorkers).Msg("JetStream not ready yet; trying again")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

func (s *Workers) join(ctx context.Context, w schemas.WorkerInfo) error {
	w = s.self.stamp(w)
	data, err := json.Marshal(w)
	if err != nil {
		return err
	}
	for {
		e, err := s.kv.Get(ctx, w.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rev, err := s.kv.Create(ctx, w.ID, data)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another process came first: look at it
			}
			if err != nil {
				return fmt.Errorf("bus: join as worker %s: %w", w.ID, err)
			}
			s.setRev(rev)
			return nil
		}
		if err != nil {
			return fmt.Errorf("bus: join as worker %s: %w", w.ID, err)
		}
		var held schemas.WorkerInfo
		_ = json.Unmarshal(e.Value(), &held) // an unreadable entry proves nothing either way
		held.ID = w.ID
		switch {
		case held.Host == s.self.host && held.Instance != "" && (held.PID == s.self.pid || !running(held.PID)):
			rev, err := s.kv.Update(ctx, w.ID, data, e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			if err != nil {
				return fmt.Errorf("bus: join as worker %s: %w", w.ID, err)
			}
			s.log.Info().Str("worker", w.ID).Int("pid", held.PID).Time("started", held.Started).
				Msg("worker id taken back from this worker's earlier process, which is gone")
			s.setRev(rev)
			return nil
		case held.Host == s.self.host && held.Instance != "":
			return &IDInUseError{Holder: held}
		}
		s.log.Warn().Str("worker", w.ID).Str("host", held.Host).Int("pid", held.PID).
			Msg("worker id last used by a process this one cannot check (on another host, or an older presenced): waiting for its lease to end, refusing if it beats")
		if err := s.awaitEnd(ctx, held, e.Revision()); err != nil {
			return err
		}
	}
}

// awaitEnd waits until the entry at revision ends (deleted, or its lease
// run out), or fails when its holder writes it again.
func (s *Workers) awaitEnd(ctx context.Context, held schemas.WorkerInfo, revision uint64) error {
	watcher, err := s.kv.Watch(ctx, held.ID, jetstream.ResumeFromRevision(revision+1))
	if err != nil {
		return fmt.Errorf("bus: join as worker %s: %w", held.ID, err)
	}
	defer stopWatcher(watcher)
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: join as worker %s: %w", held.ID, ctx.Err())
		case e, ok := <-watcher.Updates():
			switch {
			case !ok:
				return fmt.Errorf("bus: join as worker %s: the watch ended", held.ID)
			case e == nil:
				continue
			case e.Operation() != jetstream.KeyValuePut:
				return nil
			}
			var now schemas.WorkerInfo
			if json.Unmarshal(e.Value(), &now) == nil && now.Instance == held.Instance {
				return &IDInUseError{Holder: held}
			}
			return nil // another process took it meanwhile: Join looks again
		}
	}
}

func (s *Workers) setRev(rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev = rev
}

// Beat records the worker as alive for one more lease. It writes over the
// revision this process wrote last, so that a process whose id another one
// has taken since (after this one could not beat for a whole lease) fails
// with an *IDInUseError rather than share the id.
func (s *Workers) Beat(ctx context.Context, w schemas.WorkerInfo) error {
	w = s.self.stamp(w)
	data, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if err := s.beat(ctx, w, data); err != nil {
		if why := s.conn.Refused(); why != nil {
			return fmt.Errorf("%w (NATS refuses the connection: %w)", err, why)
		}
		return err
	}
	return nil
}

// Refused is why the server refuses the connection while it is down, or
// nil (Conn.Refused): what a fenced worker says.
func (s *Workers) Refused() error { return s.conn.Refused() }

// beat writes data as w's entry over the revision this process wrote last.
func (s *Workers) beat(ctx context.Context, w schemas.WorkerInfo, data []byte) error {
	s.mu.Lock()
	rev := s.rev
	s.mu.Unlock()
	for range 3 {
		written, err := withLeader(ctx, leaderWait, schemas.BucketWorkers, func(ctx context.Context) (uint64, error) {
			if rev == 0 {
				return s.kv.Create(ctx, w.ID, data)
			}
			return s.kv.Update(ctx, w.ID, data, rev)
		})
		if err == nil {
			s.setRev(written)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		// Not where this process left it: its lease ran out, or a write
		// whose answer was lost moved it, or another process holds it.
		e, err := withLeader(ctx, leaderWait, schemas.BucketWorkers, func(ctx context.Context) (jetstream.KeyValueEntry, error) {
			return s.kv.Get(ctx, w.ID)
		})
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev = 0
			continue
		case err != nil:
			return err
		}
		var held schemas.WorkerInfo
		if json.Unmarshal(e.Value(), &held) != nil || held.Instance != s.self.instance {
			held.ID = w.ID
			return &IDInUseError{Holder: held}
		}
		rev = e.Revision()
	}
	return fmt.Errorf("bus: worker %s: its entry changed under every beat", w.ID)
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
	entries, err := liveEntries(ctx, s.conn, s.kv, ">")
	if err != nil {
		return nil, fmt.Errorf("bus: list workers: %w", err)
	}
	out := []schemas.WorkerInfo{}
	for _, e := range entries {
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
