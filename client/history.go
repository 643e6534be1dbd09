package client

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

// HistoryOptions choose which of an agent's past events History returns.
type HistoryOptions struct {
	// Since leaves out the events stored before it; zero reads from the
	// oldest the history keeps.
	Since time.Time
	// AfterSeq leaves out the events whose seq is not above it: the last
	// seq a UCC saw of the agent, to replay what it missed.
	AfterSeq uint64
	// Last keeps only the last n events; 0 keeps them all.
	Last int
}

// historyBatch is how many events one direct get returns at most.
const historyBatch = 256

// directGetSubject answers batched reads of presence_history by subject;
// the stream allows direct gets, so that a reader needs no consumer (and no
// permission to make one).
const directGetSubject = "$JS.API.DIRECT.GET." + schemas.StreamHistory

// History reads an agent's past events from presence_history, oldest first,
// each once and in seq order (docs/contract.md, History): an event
// published twice (by two workers in a hand-over) is returned once. A UCC
// that missed events while disconnected reads them with AfterSeq set to the
// last seq it saw.
func (c *Client) History(ctx context.Context, uri string, opts HistoryOptions) ([]schemas.HistoryEntry, error) {
	key, err := Key(uri)
	if err != nil {
		return nil, err
	}
	subject := schemas.EventSubject(key)
	var out []schemas.HistoryEntry
	last := opts.AfterSeq
	req := directGet{NextBySubject: subject, Batch: historyBatch}
	if !opts.Since.IsZero() {
		since := opts.Since.UTC()
		req.StartTime = &since
	}
	for {
		entries, next, more, err := c.historyBatch(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("client: history of %s: %w", uri, err)
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
		req = directGet{NextBySubject: subject, Batch: historyBatch, Seq: next}
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

// historyBatch sends one direct get and reads its answers up to the end of
// the batch; next is the stream sequence to go on from, more whether the
// stream holds more of the subject there.
func (c *Client) historyBatch(ctx context.Context, req directGet) (entries []schemas.HistoryEntry, next uint64, more bool, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, false, err
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishRequest(directGetSubject, inbox, body); err != nil {
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
