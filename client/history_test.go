package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

func seqsOf(entries []schemas.HistoryEntry) []uint64 {
	var seqs []uint64
	for _, e := range entries {
		seqs = append(seqs, e.Event.Seq)
	}
	return seqs
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A UCC replays from the history what it missed: from a seq, from a time,
// each event once, and the history outlives a restart of the provider.
func TestHistoryReplaysWhatAUCCMissed(t *testing.T) {
	p := startProvider(t)
	c := client.New(p.connect())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const agent = "sip:replay@attendant.example"
	key, _ := client.Key(agent)
	var seqs []uint64
	input := func(a schemas.Availability) {
		t.Helper()
		var rep schemas.InputReply
		provtest.Eventually(t, "the input applied", func() bool {
			var err error
			rep, err = c.Attendant(ctx, key, schemas.AttendantInput{Availability: string(a)})
			return err == nil
		})
		seqs = append(seqs, rep.Seq)
	}
	history := func(want int, opts client.HistoryOptions) []schemas.HistoryEntry {
		t.Helper()
		var got []schemas.HistoryEntry
		provtest.Eventually(t, "the events in the history", func() bool {
			var err error
			got, err = c.History(ctx, agent, opts)
			return err == nil && len(got) >= want
		})
		return got
	}
	for _, a := range []schemas.Availability{schemas.Available, schemas.Busy, schemas.Away} {
		input(a)
	}
	all := history(3, client.HistoryOptions{})
	if !equalSeqs(seqsOf(all), seqs) || all[0].Event.Presence.Availability != schemas.Available ||
		all[2].Event.Previous == nil || all[2].Event.Previous.Availability != schemas.Busy {
		t.Fatalf("history %v; want the three events %v in order", seqsOf(all), seqs)
	}
	if got, _ := c.History(ctx, agent, client.HistoryOptions{AfterSeq: seqs[0]}); !equalSeqs(seqsOf(got), seqs[1:]) {
		t.Errorf("after seq %d: %v; want %v", seqs[0], seqsOf(got), seqs[1:])
	}
	if got, _ := c.History(ctx, agent, client.HistoryOptions{Since: all[1].At}); !equalSeqs(seqsOf(got), seqs[1:]) {
		t.Errorf("since %s: %v; want %v", all[1].At, seqsOf(got), seqs[1:])
	}
	if got, _ := c.History(ctx, agent, client.HistoryOptions{Since: all[2].At.Add(time.Nanosecond)}); len(got) != 0 {
		t.Errorf("since after the last: %v; want none", seqsOf(got))
	}
	if got, _ := c.History(ctx, agent, client.HistoryOptions{Last: 1}); !equalSeqs(seqsOf(got), seqs[2:]) {
		t.Errorf("last 1: %v; want %v", seqsOf(got), seqs[2:])
	}
	// An event published twice (two workers in a hand-over) is replayed once.
	again, err := json.Marshal(all[2].Event)
	if err != nil {
		t.Fatal(err)
	}
	nc := p.connect()
	if err := nc.Publish(schemas.EventSubject(key), again); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	p.stop()
	p.start()
	input(schemas.Offline)
	got := history(4, client.HistoryOptions{})
	if !equalSeqs(seqsOf(got), seqs) {
		t.Errorf("after a restart: %v; want %v, each once", seqsOf(got), seqs)
	}

	if got, err := c.History(ctx, "sip:nobody@attendant.example", client.HistoryOptions{}); err != nil || len(got) != 0 {
		t.Errorf("history of an agent without events: %v, %v; want none", seqsOf(got), err)
	}
	if _, err := c.History(ctx, "sip:@attendant.example", client.HistoryOptions{}); !errors.Is(err, client.ErrInvalidURI) {
		t.Errorf("history of a bad URI: %v; want invalid_uri", err)
	}
}
