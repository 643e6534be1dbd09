package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/schemas"
)

// durable holds the settings of the durable input path's phase.
var durable struct {
	inputs, agents   int
	window, overload time.Duration
	maxMsgs          int64
}

// durablePath measures the inputs through the presence_inputs stream: the
// sustained rate beside raw JetStream publishes of the same size, the
// latency at 1,000/s and at 80 % of the sustained rate, and 10 times the
// sustained rate offered for a while.
func durablePath(p *provider) error {
	if err := rawJetStream(p, durable.inputs); err != nil {
		return err
	}
	sustained, err := sustainedRate(p, durable.inputs)
	if err != nil {
		return err
	}
	for _, rate := range []float64{1000, 0.8 * sustained} {
		if err := latencyAt(p, rate, durable.window); err != nil {
			return err
		}
	}
	return overload(p, 10*sustained, durable.overload)
}

// inputBody is an attendant input whose activity names it: every input
// changes the agent's presence, so each gives one event.
func inputBody(prefix string, n int) []byte {
	return []byte(`{"availability":"Busy","activity":"` + prefix + strconv.Itoa(n) + `"}`)
}

// rawJetStream publishes n messages of an input's size into a stream like
// presence_inputs (file storage, no acknowledgement), and n synchronous
// acknowledged publishes into another, from one client.
func rawJetStream(p *provider, n int) error {
	ctx := context.Background()
	js := p.conn.JS
	body := inputBody("n", n)
	measure := func(name string, noAck bool, publish func(subject string) error) (float64, error) {
		s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, NoAck: noAck})
		if err != nil {
			return 0, err
		}
		defer func() { _ = js.DeleteStream(ctx, name) }()
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := publish(name + ".in." + strconv.Itoa(i%1000)); err != nil {
				return 0, err
			}
		}
		for {
			info, err := s.Info(ctx)
			if err != nil {
				return 0, err
			}
			if info.State.Msgs >= uint64(n) {
				break
			}
			if time.Since(start) > 5*time.Minute {
				return 0, fmt.Errorf("%s holds %d of %d messages", name, info.State.Msgs, n)
			}
			time.Sleep(time.Millisecond)
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	stored, err := measure("bench_raw_core", true, func(subject string) error { return p.conn.NC.Publish(subject, body) })
	if err != nil {
		return err
	}
	async, err := measure("bench_raw_async", false, func(subject string) error {
		for {
			_, err := js.PublishAsync(subject, body)
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return err
			}
			// A server that syncs each write acknowledges slower than one
			// client publishes: wait for the window to drain.
			<-js.PublishAsyncComplete()
		}
	})
	if err != nil {
		return err
	}
	sync, err := measure("bench_raw_sync", false, func(subject string) error {
		_, err := js.Publish(ctx, subject, body)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("raw JetStream, %d messages of %d bytes, file storage, one client:\n", n, len(body))
	fmt.Printf("  core publishes stored by a NoAck stream (as inputs are): %.0f msgs/s\n", stored)
	fmt.Printf("  async acknowledged publishes: %.0f msgs/s\n", async)
	fmt.Printf("  synchronous acknowledged publishes: %.0f msgs/s\n", sync)
	rawRates = [3]float64{stored, async, sync}
	return nil
}

// rawRates are the raw figures of this run, for the ratios.
var rawRates [3]float64

// applied follows the inputs of one phase (activity prefix + number, to
// agent number % agents) to the events that show them: an event shows its
// input and the inputs of the agent before it, which a backlog stores in
// one write. seen is called with the sending time of each input shown.
type applied struct {
	prefix string
	agents int
	mu     sync.Mutex
	sent   map[int][]sentInput // per agent, oldest first
	count  int
	seen   func(sentAt time.Time)
}

type sentInput struct {
	n  int
	at time.Time
}

func (a *applied) send(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent[n%a.agents] = append(a.sent[n%a.agents], sentInput{n: n, at: time.Now()})
}

func (a *applied) event(ev schemas.Event) {
	rest, ok := strings.CutPrefix(ev.Presence.Activity, a.prefix)
	n, err := strconv.Atoi(rest)
	if !ok || err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.sent[n%a.agents]
	for len(q) > 0 && q[0].n <= n {
		a.seen(q[0].at)
		a.count++
		q = q[1:]
	}
	a.sent[n%a.agents] = q
}

func (a *applied) shown() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// follow starts following a phase's inputs.
func follow(p *provider, prefix string, agents int, seen func(time.Time)) (*applied, func() error, error) {
	a := &applied{prefix: prefix, agents: agents, sent: map[int][]sentInput{}, seen: seen}
	w, err := p.client.Watch(context.Background(), nil, func(u client.Update) { a.event(u.Event) })
	if err != nil {
		return nil, nil, err
	}
	return a, w.Stop, nil
}

// sustainedRate publishes n inputs over durable.agents agents without reply
// subjects as fast as the client can, and times them until every one shows
// in an event. Few agents give each a backlog, which is stored in one write;
// as many agents as inputs give none.
func sustainedRate(p *provider, n int) (float64, error) {
	a, stop, err := follow(p, "s", durable.agents, func(time.Time) {})
	if err != nil {
		return 0, err
	}
	defer stop()
	start := time.Now()
	for i := 0; i < n; i++ {
		a.send(i)
		key := schemas.Key(fmt.Sprintf("sip:sustained%07d@bench.example", i%durable.agents))
		if err := p.conn.NC.Publish(schemas.AttendantPrefix+key, inputBody("s", i)); err != nil {
			return 0, err
		}
	}
	for deadline := time.Now().Add(10 * time.Minute); a.shown() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d inputs shown in events", a.shown(), n)
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	fmt.Printf("durable inputs through one worker: %d inputs over %d agents, all stored and shown in events in %s: %.0f inputs/s\n",
		n, durable.agents, time.Since(start).Round(time.Millisecond), rate)
	fmt.Printf("  ratio to stored core publishes %.2f, to async publishes %.2f, to synchronous publishes %.2f\n",
		rate/rawRates[0], rate/rawRates[1], rate/rawRates[2])
	return rate, nil
}

// pace publishes at rate per second for window, calling send with each
// input's number, and returns how many it sent.
func pace(rate float64, window time.Duration, send func(n int) error) (int, error) {
	start := time.Now()
	sent := 0
	for time.Since(start) < window {
		for due := int(time.Since(start).Seconds() * rate); sent < due; sent++ {
			if err := send(sent); err != nil {
				return sent, err
			}
		}
		time.Sleep(time.Millisecond)
	}
	return sent, nil
}

// latencyAt offers inputs at rate for window and times each from its
// publish to the event that shows it.
func latencyAt(p *provider, rate float64, window time.Duration) error {
	var mu sync.Mutex
	var took []time.Duration
	a, stop, err := follow(p, fmt.Sprintf("l%.0f-", rate), 1000, func(at time.Time) {
		mu.Lock()
		took = append(took, time.Since(at))
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer stop()
	sent, err := pace(rate, window, func(n int) error {
		key := schemas.Key(fmt.Sprintf("sip:latency%04d@bench.example", n%1000))
		a.send(n)
		return p.conn.NC.Publish(schemas.AttendantPrefix+key, inputBody(a.prefix, n))
	})
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Minute); a.shown() < sent; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("latency at %.0f/s: %d of %d inputs shown", rate, a.shown(), sent)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(took)
	pct := func(q float64) time.Duration { return took[int(q*float64(len(took)-1))].Round(time.Microsecond) }
	fmt.Printf("latency input -> event at %.0f inputs/s for %s (%d inputs): p50 %s, p99 %s, max %s\n",
		rate, window, sent, pct(0.5), pct(0.99), pct(1))
	return nil
}

// overload offers requests at rate for window and counts their answers:
// ok within the window, ok later (queued, applied later), overloaded, any
// other answer, and none (silently lost).
func overload(p *provider, rate float64, window time.Duration) error {
	nc := p.conn.NC
	inbox := nats.NewInbox()
	var okIn, okLater, refused, other atomic.Int64
	var ended atomic.Bool
	sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
		var rep schemas.InputReply
		switch {
		case json.Unmarshal(m.Data, &rep) != nil:
			other.Add(1)
		case rep.OK && ended.Load():
			okLater.Add(1)
		case rep.OK:
			okIn.Add(1)
		case rep.Error != nil && rep.Error.Code == schemas.CodeOverloaded:
			refused.Add(1)
		default:
			other.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	offered, err := pace(rate, window, func(n int) error {
		key := schemas.Key(fmt.Sprintf("sip:overload%05d@bench.example", n%2000))
		return nc.PublishRequest(schemas.AttendantPrefix+key, inbox+"."+strconv.Itoa(n), inputBody("o", n))
	})
	if err != nil {
		return err
	}
	ended.Store(true)
	offeredFor := window
	answered := func() int64 { return okIn.Load() + okLater.Load() + refused.Load() + other.Load() }
	// Wait until every input is answered, or no answer came for 30 s.
	last, lastAt := answered(), time.Now()
	for answered() < int64(offered) && time.Since(lastAt) < 30*time.Second {
		time.Sleep(100 * time.Millisecond)
		if a := answered(); a != last {
			last, lastAt = a, time.Now()
		}
	}
	drained := time.Since(lastAt)
	fmt.Printf("overload: %d requests offered at %.0f/s (10x the sustained rate) for %s, queue bound %d inputs:\n",
		offered, rate, offeredFor, durable.maxMsgs)
	fmt.Printf("  ok within the window %d; queued and applied later %d; refused overloaded %d; other answers %d; unanswered (silently lost) %d\n",
		okIn.Load(), okLater.Load(), refused.Load(), other.Load(), int64(offered)-answered())
	if drained >= 30*time.Second && answered() < int64(offered) {
		return errors.New("overload: inputs left unanswered")
	}
	return nil
}
