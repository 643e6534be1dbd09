package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactcenter/presence-provider/schemas"
)

func TestNoLeaderTellsAnElectionFromAFault(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"none", nil, false},
		{"no responders", nats.ErrNoResponders, true},
		{"no response from stream, wrapped", fmt.Errorf("store presence of x: %w", jetstream.ErrNoStreamResponse), true},
		{"reconnecting", nats.ErrConnectionReconnecting, true},
		{"cluster not available", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"not the leader", &jetstream.APIError{Code: 500, ErrorCode: 10009, Description: "JetStream cluster can not handle request"}, true},
		{"jetstream not enabled yet", jetstream.ErrJetStreamNotEnabled, true},
		{"revision mismatch", jetstream.ErrKeyRevisionMismatch, false},
		{"key exists", jetstream.ErrKeyExists, false},
		{"key not found", jetstream.ErrKeyNotFound, false},
		{"stream not found", jetstream.ErrStreamNotFound, false},
		{"bad request", &jetstream.APIError{Code: 400, ErrorCode: 10003, Description: "bad request"}, false},
		{"timeout: unknown whether written", nats.ErrTimeout, false},
		{"deadline", context.DeadlineExceeded, false},
		{"connection closed", nats.ErrConnectionClosed, false},
		{"permission", nats.ErrPermissionViolation, false},
		{"other", errors.New("disk full"), false},
	}
	for _, tt := range tests {
		if got := noLeader(tt.err); got != tt.want {
			t.Errorf("%s: noLeader(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestWithLeaderWaitsForALeaderNotForAFault(t *testing.T) {
	ctx := context.Background()
	tries := 0
	v, err := withLeader(ctx, time.Minute, "b", func(context.Context) (int, error) {
		if tries++; tries < 3 {
			return 0, jetstream.ErrNoStreamResponse
		}
		return 7, nil
	})
	if err != nil || v != 7 || tries != 3 {
		t.Errorf("after two tries without a leader: %d, %v after %d tries; want 7 after 3", v, err, tries)
	}

	tries = 0
	fault := errors.New("disk full")
	if _, err := withLeader(ctx, time.Minute, "b", func(context.Context) (int, error) { tries++; return 0, fault }); !errors.Is(err, fault) || tries != 1 {
		t.Errorf("a fault: %v after %d tries; want it at once", err, tries)
	}

	tries = 0
	_, err = withLeader(ctx, 200*time.Millisecond, "presence_state", func(context.Context) (int, error) {
		tries++
		return 0, nats.ErrNoResponders
	})
	var e *schemas.Error
	if !errors.As(err, &e) || e.Code != schemas.CodeUnavailable || !errors.Is(err, nats.ErrNoResponders) || tries < 2 {
		t.Errorf("no leader within the budget: %v after %d tries; want unavailable wrapping no responders", err, tries)
	}

	// A try whose answer never comes is abandoned and made again.
	tries = 0
	v, err = withLeader(ctx, time.Minute, "b", func(ctx context.Context) (int, error) {
		if tries++; tries == 1 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 1, nil
	})
	if err != nil || v != 1 || tries != 2 {
		t.Errorf("a try never answered: %d, %v after %d tries; want 1 after 2", v, err, tries)
	}

	// The caller's own deadline ends the waiting.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := withLeader(short, time.Minute, "b", func(context.Context) (int, error) { return 0, nats.ErrNoResponders }); !isUnavailable(err) {
		t.Errorf("caller's deadline: %v; want unavailable", err)
	}
}
