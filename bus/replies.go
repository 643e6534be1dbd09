package bus

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A JetStream stream does not keep a message's reply subject, so the input
// queue's consumer cannot answer from what it reads. Each worker's core
// subscription to presence.in.> therefore sees the same inputs, and replies
// pairs its copies (reply subject and payload) with the stream's, subject
// by subject and in order.
//
// The server hands an input to the stream and to the core subscribers in
// one step, and the stream stores what it takes in the order it took it.
// So once the consumer reads an input whose core copy came at time a, a
// core copy that came before a - anchorMargin and is still unpaired was
// never stored (the stream was full): it is refused. The margin covers
// publishers whose inputs interleave on their way (a cluster's routes).

// Bounds of what replies keeps.
const (
	anchorMargin = time.Second
	// lateTTL is how long a stream copy waits for its core copy: the core
	// copy comes first but for a lagging subscription or a cluster route.
	lateTTL = 10 * time.Second
	// maxLatePerSubject bounds the stream copies waiting for a core copy
	// per subject.
	maxLatePerSubject = 16
	// parkedTTL is how long an input another worker should apply keeps its
	// reply subject, in case this worker applies it after all (the owner
	// died): a requester waits no longer than a request may take.
	parkedTTL = requestTimeout
	maxParked = 1 << 16
)

// ticket is one input's core copy, and its answer: who to answer (reply,
// once its core copy came; empty for none) and, once decided, what.
type ticket struct {
	subject string
	reply   string
	hash    uint64
	at      time.Time
	refused bool // its sender was told overloaded already
	paired  bool // no longer waiting: its stream copy came, or it was lost
	decided bool
	answer  *nats.Msg
}

type parked struct {
	seq uint64
	t   *ticket
}

// replies pairs core copies of inputs with the stream's; safe for use by
// the subscription callback and the consumer at once.
type replies struct {
	nc *nats.Conn
	// limit is how many core copies may wait for their stream copy; beyond
	// it a new input is refused at once.
	limit int

	mu      sync.Mutex
	waiting map[string][]*ticket // per subject: core copies, oldest first
	order   []*ticket            // every waiting core copy, oldest first (paired ones until they reach the front)
	count   int                  // waiting core copies
	late    map[string][]*ticket // per subject: stream copies without a core copy yet
	parked  map[uint64]*ticket   // by stream sequence: inputs left to another worker
	parkAge []parked             // parked, oldest first
}

func newReplies(nc *nats.Conn, limit int) *replies {
	return &replies{nc: nc, limit: limit, waiting: map[string][]*ticket{},
		late: map[string][]*ticket{}, parked: map[uint64]*ticket{}}
}

func hashOf(data []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(data)
	return h.Sum64()
}

// arrive takes the core copy of an input (reply empty: none to answer).
// refuse tells whether to answer overloaded at once; it is asked only for
// a copy with a reply subject when the queue looks full (full) or too many
// copies wait here. It returns the answer to send, if any.
func (r *replies) arrive(subject, reply string, data []byte, full bool, refuse func() bool) *nats.Msg {
	h := hashOf(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range r.late[subject] {
		if t.hash != h {
			continue
		}
		r.late[subject] = deleteAt(r.late[subject], i)
		t.reply = reply
		if t.decided && t.answer != nil && reply != "" {
			return addressed(t.answer, reply)
		}
		return nil
	}
	t := &ticket{subject: subject, reply: reply, hash: h, at: time.Now()}
	var answer *nats.Msg
	if reply != "" && (full || r.count >= r.limit) && refuse() {
		t.reply, t.refused = "", true
		answer = addressed(inputError(overloaded()), reply)
	}
	// Kept even beyond the limit: a refused input must not be applied
	// should the stream have stored it after all.
	r.waiting[subject] = append(r.waiting[subject], t)
	r.order = append(r.order, t)
	r.count++
	return answer
}

// take pairs the stream copy of an input with its core copy: the first
// waiting one of the subject with the same payload. The core copies that
// came well before it and still wait were never stored: they are returned,
// those with someone to answer, to be refused. Without a core copy yet,
// the ticket waits for one among the late ones.
func (r *replies) take(subject string, data []byte) (t *ticket, lost []*ticket) {
	h := hashOf(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.waiting[subject]
	for i, w := range q {
		if w.hash != h {
			continue
		}
		r.unwait(subject, i)
		return w, r.lostBefore(w.at.Add(-anchorMargin))
	}
	t = &ticket{subject: subject, hash: h, at: time.Now()}
	l := r.late[subject]
	if len(l) >= maxLatePerSubject {
		l = l[1:]
	}
	r.late[subject] = append(l, t)
	return t, nil
}

// unwait takes the i-th waiting core copy of subject out; the caller holds
// r.mu.
func (r *replies) unwait(subject string, i int) {
	q := r.waiting[subject]
	q[i].paired = true
	r.count--
	if len(q) == 1 {
		delete(r.waiting, subject)
	} else {
		r.waiting[subject] = append(q[:i:i], q[i+1:]...)
	}
}

// lostBefore takes out the core copies that came before cutoff and still
// wait, and returns those with someone to answer; the caller holds r.mu.
func (r *replies) lostBefore(cutoff time.Time) (lost []*ticket) {
	for len(r.order) > 0 {
		t := r.order[0]
		if !t.paired {
			if !t.at.Before(cutoff) {
				break
			}
			// Older copies of its subject were taken out before it.
			r.unwait(t.subject, 0)
			if t.reply != "" && !t.refused {
				lost = append(lost, t)
			}
		}
		r.order[0] = nil
		r.order = r.order[1:]
	}
	return lost
}

// stale reports whether a core copy has waited longer than twice the
// anchor margin: a probe through the stream tells whether it was stored.
func (r *replies) stale(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.order {
		if !t.paired {
			return now.Sub(t.at) > 2*anchorMargin
		}
	}
	return false
}

// finish decides a ticket's answer (nil: none from this worker) and
// returns the message to send now, if its reply subject is known.
func (r *replies) finish(t *ticket, answer *nats.Msg) *nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.decided, t.answer = true, answer
	if answer == nil || t.reply == "" {
		return nil
	}
	return addressed(answer, t.reply)
}

// park keeps a ticket of an input another worker should apply, by its
// stream sequence, in case this worker applies it later.
func (r *replies) park(seq uint64, t *ticket) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.decided, t.answer = true, nil
	if t.refused {
		return
	}
	if len(r.parkAge) >= maxParked {
		delete(r.parked, r.parkAge[0].seq)
		r.parkAge = r.parkAge[1:]
	}
	r.parked[seq] = t
	r.parkAge = append(r.parkAge, parked{seq: seq, t: t})
}

// unpark returns the ticket parked at seq, if any, and forgets it.
func (r *replies) unpark(seq uint64) (*ticket, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.parked[seq]
	delete(r.parked, seq)
	return t, ok
}

// sweep forgets what can no longer be paired: stream copies whose core copy
// did not come, and parked tickets older than a request may take.
func (r *replies) sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for subject, l := range r.late {
		i := 0
		for i < len(l) && now.Sub(l[i].at) > lateTTL {
			i++
		}
		if i == len(l) {
			delete(r.late, subject)
		} else {
			r.late[subject] = l[i:]
		}
	}
	i := 0
	for i < len(r.parkAge) && now.Sub(r.parkAge[i].t.at) > parkedTTL {
		if r.parked[r.parkAge[i].seq] == r.parkAge[i].t {
			delete(r.parked, r.parkAge[i].seq)
		}
		i++
	}
	r.parkAge = r.parkAge[i:]
}

func deleteAt(l []*ticket, i int) []*ticket {
	if len(l) == 1 {
		return nil
	}
	return append(l[:i:i], l[i+1:]...)
}

// addressed is a copy of answer sent to reply.
func addressed(answer *nats.Msg, reply string) *nats.Msg {
	return &nats.Msg{Subject: reply, Data: answer.Data, Header: answer.Header}
}
