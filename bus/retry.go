package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/schemas"
)

// A stream or bucket with replicas has no leader for a few seconds after
// the node that led it stops or dies; a write meanwhile meets nobody to
// take it. Such a write is tried again until a leader is back, within a
// budget: an input's requester is still waiting for its answer, and a
// background write (a claim, a beat) has its own next turn.
const (
	// leaderWait is how long one operation waits for a leader before it
	// gives up with CodeUnavailable: an election takes a few seconds.
	leaderWait = 8 * time.Second
	// leaderAttempt bounds one try: a write sent to a leader that died
	// before it answered is never answered, and the next try finds the
	// new leader. Writes here are compare-and-set or idempotent, so a
	// try whose answer was lost is safe to make again.
	leaderAttempt = 2 * time.Second
	// The pauses between tries, doubling from the first to the last.
	firstLeaderPause = 50 * time.Millisecond
	maxLeaderPause   = time.Second
	// retryAfter is the wait an unavailable answer asks for.
	retryAfter = 2 * time.Second
)

// JetStream API error codes of a cluster without a leader to answer
// (nats-server's JSClusterNotAvailErr, JSClusterNotLeaderErr), which
// nats.go has no sentinels for.
const (
	jsClusterNotAvailable jetstream.ErrorCode = 10008
	jsClusterNotLeader    jetstream.ErrorCode = 10009
)

// noLeader tells whether err means nobody could take the operation yet: no
// stream leader (no responders, which jetstream's publish turns into "no
// response from stream" after its own tries), a cluster electing its meta
// leader, or a connection moving to another server. A timeout is not one:
// whether the write was made is unknown (withLeader handles its own).
func noLeader(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return false
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	case errors.As(err, &apiErr):
		return apiErr.ErrorCode == jsClusterNotAvailable || apiErr.ErrorCode == jsClusterNotLeader ||
			apiErr.Code == 503
	}
	return false
}

// withLeader runs op until it returns anything but a missing leader, trying
// again with back-off for up to budget (and while ctx lasts). A try that
// ran out of its own time (leaderAttempt) counts as a missing leader. When
// the budget runs out first, the error is an *schemas.Error with
// CodeUnavailable wrapping the last one.
func withLeader[T any](ctx context.Context, budget time.Duration, what string, op func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(budget)
	pause := firstLeaderPause
	for {
		attempt, cancel := context.WithTimeout(ctx, leaderAttempt)
		v, err := op(attempt)
		timedOut := err != nil && attempt.Err() != nil && ctx.Err() == nil
		cancel()
		if !noLeader(err) && !timedOut {
			return v, err
		}
		wait := min(pause, time.Until(deadline))
		if wait <= 0 {
			return v, noLeaderError(what, err)
		}
		select {
		case <-ctx.Done():
			return v, noLeaderError(what, err)
		case <-time.After(wait):
		}
		pause = min(2*pause, maxLeaderPause)
	}
}

// noLeaderError is the refusal of an operation that met no leader; it
// wraps the cause, and errors.As finds the contract error in it.
func noLeaderError(what string, cause error) error {
	return fmt.Errorf("%w: %w", noLeaderAnswer(what), cause)
}

// noLeaderAnswer is the contract error of an operation on what that found
// no JetStream leader in time.
func noLeaderAnswer(what string) *schemas.Error {
	secs := int(math.Ceil(retryAfter.Seconds()))
	return &schemas.Error{Code: schemas.CodeUnavailable,
		Message: fmt.Sprintf("%s has no NATS JetStream leader yet (the cluster is electing one); retry in %d s", what, secs)}
}

// isUnavailable tells whether err is (or wraps) a CodeUnavailable refusal.
func isUnavailable(err error) bool {
	var e *schemas.Error
	return errors.As(err, &e) && e.Code == schemas.CodeUnavailable
}
