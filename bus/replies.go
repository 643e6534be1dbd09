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

// Bounds of what replies keeps.
const (
	// lateTTL is how long a stream copy waits for its core copy: the core
	// copy comes first but for a lagging subscription or a cluster route.
	lateTTL = 10 * time.Second
	// maxLatePerSubject bounds the stream copies waiting for a core copy
	// per subject: inputs without a reply subject never get one.
	maxLatePerSubject = 16
	// parkedTTL is how long an input another worker should apply keeps its
	// reply subject, in case this worker applies it after all (the owner
	// died): a requester waits no longer than a request may take.
	parkedTTL = requestTimeout
	maxParked = 1 << 16
)

// ticket is one input's answer: who to answer (reply, once its core copy
// came) and, once decided, what.
type ticket struct {
	reply   string
	hash    uint64
	at      time.Time
	refused bool // its sender was told overloaded already
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
	// limit bounds the core copies waiting for their stream copy; beyond
	// it a new input is refused at once.
	limit int

	mu      sync.Mutex
	waiting map[string][]*ticket // per subject: core copies, oldest first
	count   int
	late    map[string][]*ticket // per subject: stream copies without a core copy yet
	parked  map[uint64]*ticket   // by stream sequence: inputs left to another worker
	order   []parked             // parked, oldest first
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

// arrive takes the core copy of an input that carries a reply subject.
// refuse tells whether to answer overloaded at once; it is asked only when
// the queue looks full (full) or too many copies wait here. It returns the
// answer to send, if any.
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
		if t.decided && t.answer != nil {
			return addressed(t.answer, reply)
		}
		return nil
	}
	t := &ticket{reply: reply, hash: h, at: time.Now()}
	var answer *nats.Msg
	if (full || r.count >= r.limit) && refuse() {
		t.reply, t.refused = "", true
		answer = addressed(inputError(overloaded()), reply)
	}
	if r.count < 2*r.limit {
		r.waiting[subject] = append(r.waiting[subject], t)
		r.count++
	}
	return answer
}

// take pairs the stream copy of an input with its core copy: the first
// waiting one of the subject with the same payload. The copies before it
// were never stored (the queue was full); they are returned to be refused.
// Without a core copy yet, the ticket waits for it among the late ones.
func (r *replies) take(subject string, data []byte) (t *ticket, lost []*ticket) {
	h := hashOf(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.waiting[subject]
	for i, w := range q {
		if w.hash != h {
			continue
		}
		for _, l := range q[:i] {
			if !l.refused {
				lost = append(lost, l)
			}
		}
		if i+1 == len(q) {
			delete(r.waiting, subject)
		} else {
			r.waiting[subject] = q[i+1:]
		}
		r.count -= i + 1
		return w, lost
	}
	t = &ticket{hash: h, at: time.Now()}
	l := r.late[subject]
	if len(l) >= maxLatePerSubject {
		l = l[1:]
	}
	r.late[subject] = append(l, t)
	return t, nil
}

// lostBefore removes and returns, per subject, the core copies that came
// before cutoff and are still waiting: the stream never stored them.
func (r *replies) lostBefore(cutoff time.Time) map[string][]*ticket {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lost map[string][]*ticket
	for subject, q := range r.waiting {
		i := 0
		for i < len(q) && q[i].at.Before(cutoff) {
			i++
		}
		if i == 0 {
			continue
		}
		if lost == nil {
			lost = map[string][]*ticket{}
		}
		for _, t := range q[:i] {
			if !t.refused {
				lost[subject] = append(lost[subject], t)
			}
		}
		r.count -= i
		if i == len(q) {
			delete(r.waiting, subject)
		} else {
			r.waiting[subject] = q[i:]
		}
	}
	return lost
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
	if len(r.order) >= maxParked {
		delete(r.parked, r.order[0].seq)
		r.order = r.order[1:]
	}
	r.parked[seq] = t
	r.order = append(r.order, parked{seq: seq, t: t})
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
// did not come, parked tickets older than a request may take, and core
// copies older than the queue keeps anything.
func (r *replies) sweep(now time.Time, maxAge time.Duration) {
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
	for i < len(r.order) && now.Sub(r.order[i].t.at) > parkedTTL {
		if r.parked[r.order[i].seq] == r.order[i].t {
			delete(r.parked, r.order[i].seq)
		}
		i++
	}
	r.order = r.order[i:]
	for subject, q := range r.waiting {
		i := 0
		for i < len(q) && now.Sub(q[i].at) > maxAge {
			i++
		}
		r.count -= i
		if i == len(q) {
			delete(r.waiting, subject)
		} else {
			r.waiting[subject] = q[i:]
		}
	}
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
