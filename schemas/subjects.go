package schemas

// Subjects (docs/contract.md, Subjects).
const (
	// EventSubjectPrefix + key is where an agent's presence changes go.
	EventSubjectPrefix = "presence."
	// EventWildcard matches exactly the presence events.
	EventWildcard = "presence.*"

	ServiceName      = "presence"
	APISubjectPrefix = "presence.api."
	SubjectSubscribe = "presence.api.subscribe"
	SubjectUnsub     = "presence.api.unsubscribe"
	SubjectSync      = "presence.api.sync"
	SubjectGet       = "presence.api.get"
	SubjectStatus    = "presence.api.status"
	SubjectExplain   = "presence.api.explain"
	AttendantPrefix  = "presence.in.attendant."
	PSTNPrefix       = "presence.in.pstn."
	// InputWildcard is every input of every source; each worker takes all.
	InputWildcard = "presence.in.>"
	// InputProbe is no input: workers publish it, empty, through the input
	// queue to learn which inputs the queue did not store.
	InputProbe = "presence.in.probe"
)

// EventSubject is the subject of one agent's presence events.
func EventSubject(key string) string { return EventSubjectPrefix + key }

// KV buckets (docs/contract.md, KV buckets).
const (
	BucketState    = "presence_state"
	BucketInterest = "presence_interest"
	BucketClaims   = "presence_claims"
	BucketWorkers  = "presence_workers"
	BucketDialogs  = "presence_dialogs"
	BucketCalls    = "presence_calls"
)

// StreamInputs is the JetStream stream that keeps every input on
// presence.in.> until the agent's owner applied it (docs/contract.md, Inputs).
const StreamInputs = "presence_inputs"

// StreamHistory is the JetStream stream that keeps every presence event
// on presence.* for a while (docs/contract.md, History).
const StreamHistory = "presence_history"

// WorkerSubjectPrefix + worker key + "." + what is where one worker asks
// another by name (not in the service's queue group): explain asks the
// holder of an agent's claim for its upstream subscription.
const WorkerSubjectPrefix = "presence.worker."

// UpstreamSubject is where the worker of id answers for the upstream
// subscriptions it holds.
func UpstreamSubject(workerID string) string {
	return WorkerSubjectPrefix + Key(workerID) + ".upstream"
}

// InterestKey is the presence_interest key of one UCC's interest in one agent.
func InterestKey(agentKey, uccKey string) string { return agentKey + "." + uccKey }

// CallKey is the presence_calls key of one call on one agent; the agent's
// key is its first token.
func CallKey(agentKey, ucc, callID string) string {
	return agentKey + "." + Key(ucc) + "." + Key(callID)
}

// Change is a KV entry as a watcher sees it: a new value, or the key's
// deletion (Deleted, with Value zero).
type Change[T any] struct {
	Key      string
	Value    T
	Revision uint64
	Deleted  bool
	// Loaded marks, with no entry, that every entry the bucket held when
	// the watch began has been delivered.
	Loaded bool
}
