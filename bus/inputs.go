package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// InputQueueOptions shape the presence_inputs stream (docs/contract.md,
// Inputs) and this worker's consumer of it.
type InputQueueOptions struct {
	// WorkerID names the consumer: a restarted worker with the same id
	// resumes where it stopped.
	WorkerID string
	// The queue's bounds; 0 sets none.
	MaxMsgs  int64
	MaxBytes int64
	MaxAge   time.Duration
	Replicas int
}

const (
	// consumerIdle is how long the consumer of a worker that stopped
	// pulling stays: long after the others took its agents over (a lease),
	// so that its ack floor keeps the inputs it left until they replayed them.
	consumerIdle = 5 * time.Minute
	// maxWaiting is how many core copies of inputs may wait for their
	// stream copy before a new input is refused at once, whatever the
	// queue's bound.
	maxWaiting = 1 << 20
	// replayIdle removes a replay's consumer its worker could not delete.
	replayIdle = 30 * time.Second
	// inputBatch is how many inputs the consumer and a replay read at once.
	inputBatch = 256
	// inputAppliers is how many agents' inputs are applied side by side;
	// one agent's inputs always go one after the other, in order.
	inputAppliers = 64
	// maxInHand and maxInHandBytes bound the inputs read and not yet
	// applied. An agent's inputs that wait together are stored in one
	// write, so the more are in hand under a backlog, the fewer writes.
	maxInHand      = 8192
	maxInHandBytes = 32 << 20
	// ackEvery acknowledges the consumer every so many applied inputs, and
	// whenever none is in hand.
	ackEvery = 128
	// queueCheck is how often the queue's fill is read, and its applied
	// inputs purged when it fills.
	queueCheck = 250 * time.Millisecond
	// purgeEvery purges applied inputs of a queue that is not filling.
	purgeEvery = 5 * time.Second
	// electionSlack is how long before the stream's leader was elected an
	// input found never stored is put down to the election rather than to
	// a full stream: the server's clock may differ a little from ours.
	electionSlack = 2 * time.Second
)

// inputQueue applies the inputs of the presence_inputs stream this worker
// serves, in order, and answers them.
type inputQueue struct {
	h       Handler
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	cons    jetstream.Consumer
	opts    InputQueueOptions
	replies *replies
	log     zerolog.Logger
	// full is set while the stream is at its bounds: a new input with a
	// reply subject is refused at once.
	full atomic.Bool
	// last is the highest stream sequence the consumer handled: a message
	// delivered again (a recreated consumer) is not handled twice.
	last atomic.Uint64
}

// probeSubject is what a worker publishes into the input queue to learn
// whether the inputs that wait were stored; it is no input.
const probeSubject = schemas.InputProbe

// consumerName is the worker's durable consumer: the worker id, made of
// the characters a consumer name may hold, and a hash that keeps two ids
// apart that differ only in the others.
func consumerName(id string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, id)
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return fmt.Sprintf("worker_%s_%08x", clean, h.Sum32())
}

// InputQueue is the presence_inputs stream and this worker's consumer of
// it, opened before the worker joins and applied once it serves.
type InputQueue struct{ q *inputQueue }

// OpenInputs creates (or updates) the stream and this worker's durable
// consumer. A worker opens it before it joins presence_workers: as soon as
// the others count it alive they leave it its agents' inputs, and only its
// consumer's ack floor keeps those from the purge until it reads them.
func (c *Conn) OpenInputs(ctx context.Context, opts InputQueueOptions, log zerolog.Logger) (*InputQueue, error) {
	cfg := jetstream.StreamConfig{
		Name:        schemas.StreamInputs,
		Description: "inputs on presence.in.> until every worker passed them",
		Subjects:    []string{schemas.InputWildcard},
		// The contract's reply is the only answer an input gets.
		NoAck:     true,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardNew,
		MaxMsgs:   opts.MaxMsgs,
		MaxBytes:  opts.MaxBytes,
		MaxAge:    opts.MaxAge,
		Replicas:  max(opts.Replicas, 1),
		Storage:   jetstream.FileStorage,
	}
	stream, err := c.createStream(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	waiting := int64(maxWaiting)
	if opts.MaxMsgs > 0 {
		waiting = min(opts.MaxMsgs, waiting)
	}
	q := &inputQueue{nc: c.NC, js: c.JS, stream: stream, opts: opts, log: log,
		replies: newReplies(c.NC, int(waiting))}
	if err := q.openConsumer(ctx); err != nil {
		return nil, err
	}
	return &InputQueue{q: q}, nil
}

func (q *inputQueue) openConsumer(ctx context.Context) error {
	cons, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:           consumerName(q.opts.WorkerID),
		Description:       "inputs for worker " + q.opts.WorkerID,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           time.Minute,
		MaxAckPending:     2 * maxInHand,
		InactiveThreshold: consumerIdle,
		Replicas:          max(q.opts.Replicas, 1),
	})
	if err != nil {
		return fmt.Errorf("bus: consumer of %s: %w", schemas.StreamInputs, err)
	}
	q.cons = cons
	return nil
}

// core takes the core copy of an input; it runs on the subscription's
// callback, so it only files the reply subject (or refuses at once).
func (q *inputQueue) core(m *nats.Msg) {
	answer := q.replies.arrive(m.Subject, m.Reply, m.Data, q.full.Load(), func() bool {
		return q.servesSubject(m.Subject)
	})
	q.send(answer)
}

func (q *inputQueue) servesSubject(subject string) bool {
	tokens := strings.Split(subject, ".")
	return len(tokens) == 4 && q.h.Serves(tokens[3])
}

func (q *inputQueue) send(m *nats.Msg) {
	if m == nil {
		return
	}
	if err := q.nc.PublishMsg(m); err != nil {
		q.log.Warn().Err(err).Str("reply", m.Subject).Msg("could not answer input")
	}
}

// queued is one stream message on its way through the consumer.
type queued struct {
	subject string
	data    []byte
	seq     uint64
	t       *ticket // nil when nobody is to be answered
	refused bool
	gen     uint64 // the ServedGeneration it is applied for
}

// run applies the stream in order until stop ends: the inputs the previous
// holders of this worker's agents left first, and again whenever the agents
// it serves change. Each agent's inputs wait in a queue of their own, and an
// applier takes all that wait for an agent at once: one agent's stay in
// order and a backlog is one write, while different agents' KV round trips
// overlap. The consumer is acknowledged up to the last input before which
// every one is done. ctx bounds the applying: what is in hand when stop
// ends is finished.
func (q *inputQueue) run(ctx, stop context.Context) {
	msgs := make(chan jetstream.Msg, inputBatch)
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		q.read(stop, msgs)
	}()
	defer reader.Wait()

	// Neither channel ever blocks: at most inputAppliers runs are out.
	work := make(chan []queued, inputAppliers)
	done := make(chan runResult, inputAppliers)
	var appliers sync.WaitGroup
	for range inputAppliers {
		appliers.Add(1)
		go func() {
			defer appliers.Done()
			for run := range work {
				current, left := q.applyUntil(ctx, stop, run[0].gen, run)
				done <- runResult{run: run, current: current, left: left}
			}
		}()
	}
	defer func() {
		close(work)
		appliers.Wait()
	}()
	// refusals are the answers refuseLost sends once the stream says why.
	var refusals sync.WaitGroup
	defer refusals.Wait()

	type inflight struct {
		seq  uint64
		msg  jetstream.Msg
		size int
	}
	var pending []inflight // read, in stream order
	var pendingBytes int
	finished := map[uint64]bool{}
	waiting := map[string][]queued{} // by subject, oldest first
	var ready []string               // subjects with inputs waiting and none out
	out := map[string]bool{}         // subjects with a run out
	var acked int
	gen := q.replay(ctx, stop)
	replay, stopping := false, false
	stopped := stop.Done()
	for {
		for len(out) < inputAppliers && len(ready) > 0 {
			subject := ready[0]
			ready = ready[1:]
			out[subject] = true
			work <- waiting[subject]
			delete(waiting, subject)
		}
		if stopping && len(out) == 0 {
			// What was in hand is finished; the consumer is not
			// acknowledged for it: whoever reads it again skips it.
			return
		}
		// While a replay waits for what is in hand, no new input starts.
		in := msgs
		if replay || stopping || len(pending) >= maxInHand || pendingBytes >= maxInHandBytes {
			in = nil
		}
		select {
		case <-stopped:
			stopping, stopped = true, nil
		case <-q.h.ServedChanged():
			replay = true
		case r := <-done:
			subject := r.run[0].subject
			delete(out, subject)
			if len(waiting[subject]) > 0 {
				ready = append(ready, subject)
			}
			for _, in := range r.run {
				finished[in.seq] = !slices.ContainsFunc(r.left, func(l queued) bool { return l.seq == in.seq })
			}
			replay = replay || !r.current
			var last jetstream.Msg
			for len(pending) > 0 && finished[pending[0].seq] {
				delete(finished, pending[0].seq)
				last = pending[0].msg
				pendingBytes -= pending[0].size
				pending, acked = pending[1:], acked+1
			}
			// Not while a replay is due: an input left to it (the agents
			// this worker serves changed under it) is read again from the
			// lowest ack floor, which an acknowledgement past it would lift
			// above it, and it would never be applied nor answered.
			if last != nil && !replay && !stopping && (acked >= ackEvery || len(pending) == 0) {
				acked = 0
				if err := last.Ack(); err != nil && stop.Err() == nil {
					q.log.Warn().Err(err).Msg("could not acknowledge inputs")
				}
			}
		case m := <-in:
			meta, err := m.Metadata()
			if err != nil || meta.Sequence.Stream <= q.last.Load() {
				continue
			}
			q.last.Store(meta.Sequence.Stream)
			in := queued{subject: m.Subject(), data: m.Data(), seq: meta.Sequence.Stream, gen: gen}
			var lost []*ticket
			in.t, lost = q.replies.take(in.subject, in.data)
			in.refused = in.t.refused
			q.refuseLost(ctx, &refusals, lost)
			pending = append(pending, inflight{seq: in.seq, msg: m, size: len(in.data)})
			pendingBytes += len(in.data)
			if len(waiting[in.subject]) == 0 && !out[in.subject] {
				ready = append(ready, in.subject)
			}
			waiting[in.subject] = append(waiting[in.subject], in)
		}
		if replay && !stopping && len(pending) == 0 {
			gen, replay = q.replay(ctx, stop), false
		}
	}
}

// runResult is a run of one agent's inputs an applier is done with; current
// is false when the agents this worker serves changed under it. left are
// those it stopped before it could store (no leader): never acknowledged,
// they are for whoever reads the stream next.
type runResult struct {
	run     []queued
	current bool
	left    []queued
}

// read feeds the consumer's messages to run until ctx ends, opening the
// consumer again if NATS lost it.
func (q *inputQueue) read(ctx context.Context, out chan<- jetstream.Msg) {
	for ctx.Err() == nil {
		it, err := q.cons.Messages(jetstream.PullMaxMessages(4 * inputBatch))
		if err == nil {
			stop := context.AfterFunc(ctx, it.Stop)
			for {
				m, err := it.Next()
				if err != nil {
					if ctx.Err() == nil {
						q.log.Warn().Err(err).Msg("input consumer stopped; opening it again")
					}
					break
				}
				select {
				case out <- m:
				case <-ctx.Done():
				}
			}
			stop()
			it.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := q.openConsumer(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn().Err(err).Msg("could not open the input consumer")
		}
	}
}

// refuseLost answers the inputs that were never stored, when this worker
// serves their agent, on a goroutine of its own that owner waits for: it
// asks the stream why.
// An input that came before the stream's leader was elected (or while it
// has none) found no leader and is refused unavailable; a later one found
// the stream full and is refused overloaded.
func (q *inputQueue) refuseLost(ctx context.Context, owner *sync.WaitGroup, lost []*ticket) {
	var mine []*ticket
	for _, t := range lost {
		if q.servesSubject(t.subject) {
			mine = append(mine, t)
		}
	}
	if len(mine) == 0 {
		return
	}
	owner.Add(1)
	go func() {
		defer owner.Done()
		ask, cancel := context.WithTimeout(ctx, leaderAttempt)
		info, err := q.stream.Info(ask)
		cancel()
		var elected time.Time
		switch {
		case err != nil && unavailable(err):
			elected = time.Now()
		case err == nil && info.Cluster != nil && info.Cluster.LeaderSince != nil:
			elected = *info.Cluster.LeaderSince
		}
		leaderless := noLeaderAnswer(schemas.StreamInputs)
		leaderless.Message += "; the input was not stored: send it again"
		for _, t := range mine {
			refusal := overloaded()
			if elected.After(t.at.Add(-electionSlack)) {
				refusal = leaderless
			}
			q.send(addressed(inputError(refusal), t.reply))
		}
	}()
}

// apply applies a replay's inputs, each agent's in order, and reports
// whether the agents this worker serves changed under it: then the inputs
// it left, and their tickets, are for the next replay.
func (q *inputQueue) apply(ctx, stop context.Context, gen uint64, todo []queued) (changed bool) {
	var stale atomic.Bool
	var wg sync.WaitGroup
	slots := make(chan struct{}, inputAppliers)
	for _, run := range bySubject(todo) {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if current, left := q.applyUntil(ctx, stop, gen, run); !current || len(left) > 0 {
				stale.Store(true)
			}
		}()
	}
	wg.Wait()
	return stale.Load()
}

// applyUntil applies a run of one subject's inputs (see applyRun) and
// applies again, with pauses, those whose write met no JetStream leader,
// until they are stored or stop ends; left are those still not stored
// then. Their requesters were answered unavailable; each input, stored in
// presence_inputs, is applied once a leader is back.
func (q *inputQueue) applyUntil(ctx, stop context.Context, gen uint64, run []queued) (current bool, left []queued) {
	pause := firstLeaderPause
	for {
		current, again := q.applyRun(ctx, gen, run)
		if !current || len(again) == 0 {
			return current, nil
		}
		q.log.Info().Str("subject", run[0].subject).Int("inputs", len(again)).
			Msg("inputs met no JetStream leader; applying them again once one is back")
		select {
		case <-stop.Done():
			return true, again
		case <-time.After(pause):
		}
		pause = min(2*pause, maxLeaderPause)
		run = again
	}
}

// applyRun applies inputs of one subject, in order, and answers them;
// false means the agents this worker serves changed since gen: the inputs
// are left to the replay. again are the inputs whose write met no
// JetStream leader in time: answered unavailable, they are to be applied
// again, with nobody left to answer.
func (q *inputQueue) applyRun(ctx context.Context, gen uint64, run []queued) (current bool, again []queued) {
	answers := make([]*nats.Msg, len(run))
	park := false
	defer func() {
		if r := recover(); r != nil {
			q.log.Error().Str("subject", run[0].subject).Interface("panic", r).Stack().Msg("recovered from panic in input")
			for i := range answers {
				answers[i] = inputError(internalError(fmt.Sprintf("handler failed: %v", r)))
			}
			current, park, again = true, false, nil
		}
		for i, in := range run {
			switch {
			case in.t == nil:
			case park:
				q.replies.park(in.seq, in.t)
			default:
				q.send(q.replies.finish(in.t, answers[i]))
			}
		}
	}()
	subject := run[0].subject
	if subject == probeSubject {
		return true, nil
	}
	tokens := strings.Split(subject, ".")
	if len(tokens) != 4 {
		for i := range answers {
			answers[i] = inputError(&schemas.Error{Code: schemas.CodeBadRequest, Message: "input subject is not presence.in.<source>.<key>"})
		}
		return true, nil
	}
	var ins []worker.QueuedInput
	var at []int // the run's index of each of ins
	for i, in := range run {
		if len(in.data) > MaxInputBytes {
			answers[i] = inputError(&schemas.Error{Code: schemas.CodeBadRequest, Message: fmt.Sprintf("input of %d bytes; at most %d", len(in.data), MaxInputBytes)})
			continue
		}
		ins = append(ins, worker.QueuedInput{Source: tokens[2], Key: tokens[3], Body: in.data,
			Pos: in.seq, Generation: gen, Refused: in.refused})
		at = append(at, i)
	}
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	for j, res := range q.h.Input(callCtx, ins) {
		i := at[j]
		switch {
		case res.Verdict == worker.Stale:
			park = true
			return false, nil
		case res.Verdict == worker.NotMine:
			park = true
			return true, nil
		case run[i].refused:
		case isUnavailable(res.Err):
			answers[i] = inputError(storedUnavailable())
			retry := run[i]
			retry.t = nil
			again = append(again, retry)
		case res.Err != nil:
			e := schemas.AsError(res.Err)
			q.log.Warn().Str("subject", subject).Str("code", e.Code).Str("error", e.Message).Msg("input refused")
			answers[i] = inputError(e)
		default:
			data, _ := json.Marshal(res.Reply)
			answers[i] = &nats.Msg{Data: data}
		}
	}
	return true, again
}

// bySubject groups inputs by subject, each group in order, the groups in
// the order of their first input.
func bySubject(ins []queued) [][]queued {
	at := map[string]int{}
	var groups [][]queued
	for _, in := range ins {
		i, ok := at[in.subject]
		if !ok {
			i = len(groups)
			at[in.subject] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], in)
	}
	return groups
}

// replay applies, before anything newer, what the stream holds above the
// lowest ack floor of all consumers for the agents this worker serves now:
// the inputs a dead or leaving owner did not apply. It returns the
// generation of the agents it applied them for; it gives up when stop ends.
func (q *inputQueue) replay(ctx, stop context.Context) uint64 {
	for {
		gen := q.h.ServedGeneration()
		changed, err := q.replayFrom(ctx, stop, gen)
		if err == nil && !changed {
			return gen
		}
		if err != nil && stop.Err() == nil {
			q.log.Warn().Err(err).Msg("could not replay the inputs left by other workers; trying again")
		}
		select {
		case <-stop.Done():
			return gen
		case <-time.After(retryReplay(err)):
		}
	}
}

// retryReplay is the pause before a replay starts again: none when the
// agents changed under it, a second after a failure.
func retryReplay(err error) time.Duration {
	if err == nil {
		return 0
	}
	return time.Second
}

func (q *inputQueue) replayFrom(ctx, stop context.Context, gen uint64) (changed bool, err error) {
	var last uint64
	floor, err := withLeader(ctx, leaderWait, schemas.StreamInputs, func(ctx context.Context) (floor uint64, err error) {
		floor, last, err = q.bounds(ctx)
		return floor, err
	})
	if err != nil || last <= floor {
		return false, err
	}
	oc, err := withLeader(ctx, leaderWait, schemas.StreamInputs, func(ctx context.Context) (jetstream.Consumer, error) {
		return q.js.OrderedConsumer(ctx, schemas.StreamInputs, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: floor + 1,
			InactiveThreshold: replayIdle})
	})
	if err != nil {
		return false, err
	}
	defer func() {
		if info := oc.CachedInfo(); info != nil {
			_ = q.stream.DeleteConsumer(context.WithoutCancel(ctx), info.Name)
		}
	}()
	for done := false; !done; {
		batch, err := oc.Fetch(inputBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return false, err
		}
		var todo []queued
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			in := queued{subject: m.Subject(), data: m.Data(), seq: meta.Sequence.Stream}
			if t, ok := q.replies.unpark(in.seq); ok {
				in.t = t
			}
			todo = append(todo, in)
			done = done || in.seq >= last
		}
		if batch.Error() != nil {
			return false, batch.Error()
		}
		if len(todo) == 0 {
			break // the rest is gone (purged or aged out)
		}
		if q.apply(ctx, stop, gen, todo) {
			return true, nil
		}
	}
	return false, nil
}

// bounds are the lowest ack floor of the stream's consumers (below it,
// every worker passed every input) and the stream's last sequence.
func (q *inputQueue) bounds(ctx context.Context) (floor, last uint64, err error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	floor = info.State.FirstSeq - min(info.State.FirstSeq, 1)
	if f, ok, err := q.ackFloor(ctx); err != nil {
		return 0, 0, err
	} else if ok {
		floor = max(floor, f)
	}
	return floor, info.State.LastSeq, nil
}

// ackFloor is the lowest ack floor of the stream's consumers; ok is false
// when it has none.
func (q *inputQueue) ackFloor(ctx context.Context) (floor uint64, ok bool, err error) {
	lister := q.stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Config.Durable == "" {
			continue // a replay's ordered consumer
		}
		if !ok || info.AckFloor.Stream < floor {
			floor, ok = info.AckFloor.Stream, true
		}
	}
	return floor, ok, lister.Err()
}

// keep reads the stream's fill a few times a second, purges the inputs
// every consumer passed, and forgets replies that can no longer be paired,
// until ctx ends.
func (q *inputQueue) keep(ctx context.Context) {
	tick := time.NewTicker(queueCheck)
	defer tick.Stop()
	lastPurge := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		info, err := q.stream.Info(ctx)
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn().Err(err).Msg("could not read the input queue")
			}
			continue
		}
		st := info.State
		filling := atLeast(st.Msgs*2, q.opts.MaxMsgs) || atLeast(st.Bytes*2, q.opts.MaxBytes)
		if filling || time.Since(lastPurge) >= purgeEvery {
			lastPurge = time.Now()
			if purged, err := q.purge(ctx); err != nil {
				if ctx.Err() == nil {
					q.log.Warn().Err(err).Msg("could not purge applied inputs")
				}
			} else if purged > 0 && filling {
				if info, err = q.stream.Info(ctx); err == nil {
					st = info.State
				}
			}
		}
		q.full.Store(atLeast(st.Msgs, q.opts.MaxMsgs) || atLeast(st.Bytes+MaxInputBytes, q.opts.MaxBytes))
		if q.replies.stale(time.Now()) {
			// Whether the inputs that wait were stored shows once the
			// consumer reads something stored after them.
			if err := q.nc.Publish(probeSubject, nil); err != nil && ctx.Err() == nil {
				q.log.Warn().Err(err).Msg("could not probe the input queue")
			}
		}
		q.replies.sweep(time.Now())
	}
}

// atLeast reports whether n reached bound; a bound of 0 or less is none.
func atLeast(n uint64, bound int64) bool { return bound > 0 && n >= uint64(bound) }

// purge removes the inputs every consumer passed; with no consumer it
// removes nothing, so that inputs wait for the next worker.
func (q *inputQueue) purge(ctx context.Context) (uint64, error) {
	floor, ok, err := q.ackFloor(ctx)
	if err != nil || !ok || floor == 0 {
		return 0, err
	}
	info, err := q.stream.Info(ctx)
	if err != nil || info.State.FirstSeq > floor {
		return 0, err
	}
	if err := q.stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return 0, err
	}
	return floor + 1 - info.State.FirstSeq, nil
}

// storedUnavailable answers an input that is stored but met no leader for
// the agent's presence in time.
func storedUnavailable() *schemas.Error {
	e := noLeaderAnswer(schemas.BucketState)
	e.Message += "; the input is kept and applied, in order, once a leader is back"
	return e
}

func overloaded() *schemas.Error {
	return &schemas.Error{Code: schemas.CodeOverloaded,
		Message: "the input queue is full; the input was not stored, send it again later"}
}

// inputError is a refusal with the micro service error headers, as a
// request's, so that a client tells it from a success without reading JSON.
func inputError(e *schemas.Error) *nats.Msg {
	data, _ := json.Marshal(schemas.InputReply{Error: e})
	m := &nats.Msg{Data: data, Header: nats.Header{}}
	m.Header.Set(micro.ErrorHeader, headerText(e.Message))
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(statusOf(e)))
	return m
}

// awaitLeader returns once the stream has a leader: a create that another
// node made first is answered before the stream has one, and until then
// nothing can be stored in it.
func (c *Conn) awaitLeader(ctx context.Context, name string) error {
	for {
		stream, err := c.JS.Stream(ctx, name)
		if err != nil {
			return err
		}
		if cl := stream.CachedInfo().Cluster; cl == nil || cl.Leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: stream %s has no leader yet: %w", name, ctx.Err())
		case <-time.After(leaderPoll):
		}
	}
}

// leaderPoll spaces the looks for a new stream's leader.
const leaderPoll = 100 * time.Millisecond

// createStream opens or creates a stream (see stream), trying again until
// ctx ends: a node of a cluster that starts before its peers has no
// JetStream leader to answer yet.
func (c *Conn) createStream(ctx context.Context, cfg jetstream.StreamConfig, log zerolog.Logger) (jetstream.Stream, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err := c.stream(attempt, cfg)
		cancel()
		if err == nil {
			return stream, nil
		}
		log.Info().Err(err).Str("stream", cfg.Name).Msg("JetStream not ready yet; trying again")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: stream %s: %w", cfg.Name, err)
		case <-time.After(time.Second):
		}
	}
}

// stream opens a stream that is as cfg asks, creates it when there is none,
// and updates it otherwise; an unchanged stream is not updated (see
// keyValue). A missing stream is created, never updated into being: workers
// that start together all create it, which the server takes as one when
// their configurations agree, where an update from the second would rewrite
// the store under the first one's consumers.
func (c *Conn) stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	stream, err := c.JS.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = c.JS.CreateStream(ctx, cfg)
		if err == nil {
			return stream, c.awaitLeader(ctx, cfg.Name)
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, err
		}
		stream, err = c.JS.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, err
	}
	have := stream.CachedInfo().Config
	if slices.Equal(have.Subjects, cfg.Subjects) && have.NoAck == cfg.NoAck && have.Retention == cfg.Retention &&
		have.Discard == cfg.Discard && have.MaxMsgs == cfg.MaxMsgs && have.MaxBytes == cfg.MaxBytes &&
		have.MaxAge == cfg.MaxAge && have.Replicas == cfg.Replicas && have.Storage == cfg.Storage &&
		have.AllowDirect == cfg.AllowDirect {
		return stream, nil
	}
	return c.JS.UpdateStream(ctx, cfg)
}
