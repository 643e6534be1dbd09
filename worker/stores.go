package worker

import (
	"context"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker/membership"
)

// StateStore is the presence_state bucket and the events that go out with it.
type StateStore interface {
	// Load returns the agent's current event, its Seq set to the entry's revision.
	Load(ctx context.Context, key string) (ev schemas.Event, found bool, err error)
	// Swap writes ev if the agent's entry is still at revision (0: no entry
	// yet). swapped is false when another writer came first.
	Swap(ctx context.Context, ev schemas.Event, revision uint64) (newRevision uint64, swapped bool, err error)
	Publish(ev schemas.Event) error
	// Watch streams every stored event, but for those known reports.
	Watch(ctx context.Context, known func(key string, revision uint64) bool) (<-chan schemas.Change[schemas.Event], error)
}

// InterestStore is the presence_interest bucket.
type InterestStore interface {
	// Put writes interests; the error of each entry is at its index.
	Put(ctx context.Context, interests []schemas.Interest) []error
	// Delete removes one interest; revision 0 removes whatever is there,
	// otherwise only that revision: deleted is false when a renewal came
	// first.
	Delete(ctx context.Context, agentKey, uccKey string, revision uint64) (deleted bool, err error)
	// AgentsOf lists the agent keys of one UCC's interests.
	AgentsOf(ctx context.Context, uccKey string) ([]string, error)
	// Of lists the interests of the UCCs in one agent.
	Of(ctx context.Context, agentKey string) ([]schemas.Interest, error)
	Watch(ctx context.Context) (<-chan schemas.Change[schemas.Interest], error)
}

// ClaimStore is the presence_claims bucket. Claims are taken and given up
// through it (membership.ClaimStore).
type ClaimStore interface {
	membership.ClaimStore
	Watch(ctx context.Context) (<-chan schemas.Change[schemas.Claim], error)
}

// WorkerStore is the presence_workers bucket: who is alive. The lease
// joins, beats and lists through it (membership.Store).
type WorkerStore interface {
	membership.Store
	Leave(ctx context.Context, id string) error
	// Watch streams workers beating, leaving and gone.
	Watch(ctx context.Context) (<-chan schemas.Change[schemas.WorkerInfo], error)
}

// HistoryStore is the presence_history stream.
type HistoryStore interface {
	// Last returns the agent's last n events, oldest first.
	Last(ctx context.Context, uri string, n int) ([]schemas.HistoryEntry, error)
}

// Peers asks other workers by name.
type Peers interface {
	// Upstream asks the worker id for the agent's upstream subscription it
	// holds; nil when it holds none.
	Upstream(ctx context.Context, id, key string) (*schemas.Upstream, error)
}
