package membership

import (
	"hash/fnv"
	"time"
)

// beatsPerLease is how many beats a lease spans: with three, a beat that
// fails (a NATS that stalls for a moment) is followed by another well before
// the entry lapses.
const beatsPerLease = 3

// BeatEvery is how far apart a worker renews a lease of the given length; it
// also bounds each beat and each read of the live workers, so that one stuck
// call cannot push the next beat out.
func BeatEvery(lease time.Duration) time.Duration { return lease / beatsPerLease }

// FenceAfter is how long a worker may go without a successful beat before it
// ends every upstream subscription: two thirds of the lease, so that it
// holds nothing a beat's time before its entry can lapse and another worker
// take its agents. Two workers never hold one agent upstream.
func FenceAfter(lease time.Duration) time.Duration {
	return lease * (beatsPerLease - 1) / beatsPerLease
}

// Owner is the live worker whose share an agent is: rendezvous hashing, so
// a worker that joins or leaves moves only the agents it gains or loses.
// It is "" when no worker is live.
func Owner(key string, live []string) string {
	var best string
	var bestScore uint64
	for _, id := range live {
		h := fnv.New64a()
		_, _ = h.Write([]byte(id))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if score := h.Sum64(); best == "" || score > bestScore {
			best, bestScore = id, score
		}
	}
	return best
}
