package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
)

// Calls is the presence_calls bucket: the PSTN calls in progress.
type Calls struct {
	kv   jetstream.KeyValue
	conn *Conn
	log  zerolog.Logger
}

// Put records a call and returns its revision.
func (s *Calls) Put(ctx context.Context, key string, c schemas.Call) (uint64, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	rev, err := withLeader(ctx, leaderWait, schemas.BucketCalls, func(ctx context.Context) (uint64, error) {
		return s.kv.Put(ctx, key, data)
	})
	if err != nil {
		return 0, fmt.Errorf("bus: put call: %w", err)
	}
	return rev, nil
}

// callMarkerTTL is how long the marker of an ended call stays in the
// bucket: every call id is new, so markers kept for ever would pile up. A
// watcher cut off from NATS for longer misses the deletion.
const callMarkerTTL = 24 * time.Hour

// Delete removes a call, only at revision unless revision is 0, and returns
// the revision of the deletion; deleted is false when the call changed
// first. It writes the KV purge marker itself, as KeyValue.Purge does with
// PurgeTTL, since that keeps the marker's revision to itself: a watcher
// needs it to tell the deletion from the writes before it.
func (s *Calls) Delete(ctx context.Context, key string, revision uint64) (uint64, bool, error) {
	m := nats.NewMsg(kvSubjectPrefix(s.kv.Bucket()) + key)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if revision != 0 {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(revision, 10))
	}
	ack, err := withLeader(ctx, leaderWait, schemas.BucketCalls, func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.conn.JS.PublishMsg(ctx, m, jetstream.WithMsgTTL(callMarkerTTL))
	})
	var apiErr *jetstream.APIError
	// A replicated bucket answers a compare-and-set conflict with its own code.
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("bus: delete call: %w", err)
	}
	return ack.Sequence, true, nil
}

// Watch returns every call now, then streams the changes after them.
func (s *Calls) Watch(ctx context.Context) ([]schemas.Change[schemas.Call], <-chan schemas.Change[schemas.Call], error) {
	return watchCurrent(ctx, s.conn, s.kv, s.log, decodeJSON[schemas.Call])
}
