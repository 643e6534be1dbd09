package worker

import "time"

// backoff is the exponential sequence of docs/product.md (Back-off and giving
// up): first, doubling each failure, capped at max ([10, 20, 40, ..., max]
// for first 10 s).
type backoff struct {
	first, max time.Duration
}

// delay is the wait after the given count of consecutive failures (1 or more).
func (b backoff) delay(failures int) time.Duration {
	d := b.first
	for i := 1; i < failures && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}
