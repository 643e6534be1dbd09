package graph

import "time"

// window counts requests in the last span: Graph's limit is a number of
// requests in any 30 s, which a token bucket would let through twice at
// its edges.
type window struct {
	span  time.Duration
	limit int
	times []time.Time // oldest first
}

func (w *window) drop(now time.Time) {
	i := 0
	for i < len(w.times) && !w.times[i].After(now.Add(-w.span)) {
		i++
	}
	w.times = w.times[i:]
}

// wait is how long until one more request fits.
func (w *window) wait(now time.Time) time.Duration {
	w.drop(now)
	if len(w.times) < w.limit {
		return 0
	}
	return w.times[0].Add(w.span).Sub(now)
}

func (w *window) take(now time.Time) { w.times = append(w.times, now) }

// untake gives the last request back: it was not made.
func (w *window) untake() { w.times = w.times[:len(w.times)-1] }

// pace is the spacing that spends the budget evenly over the span: a burst
// of the whole budget would leave every agent stale for the rest of it.
func (w *window) pace() time.Duration { return w.span / time.Duration(w.limit) }

func (w *window) used(now time.Time) int {
	w.drop(now)
	return len(w.times)
}
