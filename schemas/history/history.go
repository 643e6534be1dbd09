// Package history reads presence_history as docs/contract.md, History says:
// batched direct gets by an agent's event subject, so that a reader needs no
// consumer (and no permission to make one). The Go client and the worker's
// explain both read it here.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/schemas"
)

// Options choose which of an agent's past events Read returns.
type Options struct {
	// Since leaves out the events stored before it; zero reads from the
	// oldest the history keeps.
	Since time.Time
	// AfterSeq leaves out the events whose seq is not above it: the last
	// seq a UCC saw of the agent, to replay what it missed.
	AfterSeq uint64
	// Last keeps only the last n events; 0 keeps them all.
	Last int
}

// batch is how many events one direct get returns at most.
const batch = 256

// directGetSubject answers batched reads of presence_history by subject;
// the stream allows direct gets, so that a reader needs no consumer (and no
// permission to make one).
const directGetSubject = "$JS.API.DIRECT.GET." + schemas.StreamHistory

// Read reads the past events of the agent whose key is key from
// presence_history, oldest first, each once and in seq order
// (docs/contract.md, History): an event published twice (by two workers in a
// hand-over) is returned once.
func Read(ctx context.Context, nc *nats.Conn, key string, opts Options) ([]schemas.HistoryEntry, error) {
	subject := schemas.EventSubject(key)
	var out []schemas.HistoryEntry
	last := opts.AfterSeq
	req := directGet{NextBySubject: subject, Batch: batch}
	if !opts.Since.IsZero() {
		since := opts.Since.UTC()
		req.StartTime = &since
	}
	for {
		entries, next, more, err := readBatch(ctx, nc, req)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Event.Seq <= last {
				continue
			}
			last = e.Event.Seq
			out = append(out, e)
			if opts.Last > 0 && len(out) > 2*opts.Last {
				out = append(out[:0], out[len(out)-opts.Last:]...)
			}
		}
		if !more {
			break
		}
		req = directGet{NextBySubject: subject, Batch: batch, Seq: next}
	}
	if opts.Last > 0 && len(out) > opts.Last {
		out = out[len(out)-opts.Last:]
	}
	return out, nil
}

// directGet is JetStream's direct get request, batched.
type directGet struct {
	Seq           uint64     `json:"seq,omitempty"`
	NextBySubject string     `json:"next_by_subj"`
	Batch         int        `json:"batch"`
	StartTime     *time.Time `json:"start_time,omitempty"`
}

// readBatch sends one direct get and reads its answers up to the end of
// the batch; next is the stream sequence to go on from, more whether the
// stream holds more of the subject there.
func readBatch(ctx context.Context, nc *nats.Conn, req directGet) (entries []schemas.HistoryEntry, next uint64, more bool, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, false, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(directGetSubject, inbox, body); err != nil {
		return nil, 0, false, err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, false, err
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404":
			return entries, 0, false, nil // nothing (more) of the subject
		case "204":
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return entries, next, pending > 0, nil
		case "503":
			return nil, 0, false, errors.New("no answer from " + schemas.StreamHistory + " (no history on this NATS)")
		default:
			return nil, 0, false, fmt.Errorf("%s answered %s %s", schemas.StreamHistory, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return nil, 0, false, fmt.Errorf("%s: a message without its sequence", schemas.StreamHistory)
		}
		at, err := time.Parse(time.RFC3339Nano, m.Header.Get(nats.JSTimeStamp))
		if err != nil {
			return nil, 0, false, fmt.Errorf("%s: message %d: time stamp: %w", schemas.StreamHistory, seq, err)
		}
		next = seq + 1
		var ev schemas.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			continue // not an event of the contract: nothing to replay
		}
		entries = append(entries, schemas.HistoryEntry{At: at.UTC(), Event: ev})
	}
}
