package schemas

import "time"

// MaxAgentsPerRequest bounds one subscribe, sync, unsubscribe or get request.
const MaxAgentsPerRequest = 10000

// Source names, as they appear in replies, claims and presence.
const (
	SourceGraph     = "graph"
	SourceAttendant = "attendant"
	SourcePSTN      = "pstn"
	SourceSIP       = "sip"
	SourceNone      = "none"
)

// State is where an agent's upstream subscription stands.
type State string

const (
	// StatePending: queued by the throttle or waiting for an owner.
	StatePending State = "pending"
	StateActive  State = "active"
	// StateRetrying: in back-off after a failure.
	StateRetrying State = "retrying"
	// StateFailed: the per-URI failure limit was reached; only a new
	// subscribe from a UCC tries again.
	StateFailed      State = "failed"
	StateUnsupported State = "unsupported"
)

// AgentRef names an agent in a subscribe or sync request.
type AgentRef struct {
	URI      string `json:"uri"`
	TeamsUPN string `json:"teams_upn,omitempty"`
}

// SubscribeRequest is the body of presence.api.subscribe and presence.api.sync.
type SubscribeRequest struct {
	UCC    string     `json:"ucc"`
	Agents []AgentRef `json:"agents"`
	// LeaseS is 0 for "until unsubscribed"; otherwise the interest ends
	// unless the UCC subscribes again within this many seconds.
	LeaseS int `json:"lease_s"`
}

// UnsubscribeRequest is the body of presence.api.unsubscribe.
type UnsubscribeRequest struct {
	UCC  string   `json:"ucc"`
	URIs []string `json:"uris"`
}

// GetRequest is the body of presence.api.get.
type GetRequest struct {
	URIs []string `json:"uris"`
}

// AgentResult is one agent of a reply, in request order.
type AgentResult struct {
	URI      string    `json:"uri"`
	Key      string    `json:"key,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Source   string    `json:"source,omitempty"`
	State    State     `json:"state,omitempty"`
	Presence *Presence `json:"presence"`
	// Seq is the seq of Presence, 0 when Presence is nil: a UCC catching up
	// after a reconnect keeps it only when it is above the last it saw.
	Seq   uint64 `json:"seq,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// AgentsReply answers subscribe, sync, unsubscribe and get.
type AgentsReply struct {
	Agents []AgentResult `json:"agents"`
}

// ErrorReply answers a request that could not be read at all.
type ErrorReply struct {
	Error *Error `json:"error"`
}

// AttendantInput is the body of presence.in.attendant.<key>.
type AttendantInput struct {
	Availability string `json:"availability"`
	// AvailabilityValue is optional; 0 takes the availability's default.
	AvailabilityValue int    `json:"availability_value,omitempty"`
	Activity          string `json:"activity,omitempty"`
	Device            string `json:"device,omitempty"`
}

// Call states a UCC reports for a PSTN agent.
const (
	CallConnected = "connected"
	CallEnded     = "ended"
)

// PSTNInput is the body of presence.in.pstn.<key>.
type PSTNInput struct {
	UCC    string `json:"ucc"`
	CallID string `json:"call_id"`
	State  string `json:"state"`
}

// InputReply answers an input that carried a reply subject.
type InputReply struct {
	OK    bool   `json:"ok,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// Interest is the value of presence_interest <key>.<ucc key>: one UCC's
// interest in one agent.
type Interest struct {
	UCC      string    `json:"ucc"`
	URI      string    `json:"uri"`
	TeamsUPN string    `json:"teams_upn,omitempty"`
	LeaseS   int       `json:"lease_s"`
	At       time.Time `json:"at"`
	// PSTN keeps what normalising the URI dropped (sip:+E164@host;user=phone).
	PSTN bool `json:"pstn,omitempty"`
}

// Call is the value of presence_calls <key>.<ucc key>.<call id key>: one
// call in progress on a PSTN agent.
type Call struct {
	UCC    string `json:"ucc"`
	CallID string `json:"call_id"`
	// Connected is when the call was last reported connected; its safety
	// limit counts from here.
	Connected time.Time `json:"connected"`
}

// Claim is the value of presence_claims <key>: the one worker that holds the
// agent's upstream subscription, and how that subscription stands.
type Claim struct {
	Worker   string    `json:"worker"`
	Source   string    `json:"source"`
	Endpoint string    `json:"endpoint,omitempty"`
	Since    time.Time `json:"since"`
	State    State     `json:"state"`
	Failures int       `json:"failures,omitempty"`
	// Reason is the last failure, for operators.
	Reason string `json:"reason,omitempty"`
}

// Dialog is the value of presence_dialogs <key>: what any worker needs to
// continue an agent's SIP subscription dialog with an in-dialog refresh.
type Dialog struct {
	Endpoint  string `json:"endpoint"`
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag"`
	RemoteTag string `json:"remote_tag"`
	// Target is the remote target (the server's Contact); RouteSet is the
	// route set, in the order requests carry it.
	Target   string   `json:"target"`
	RouteSet []string `json:"route_set,omitempty"`
	// CSeq is above every CSeq the holder sent or may send without writing
	// the entry again: the next holder starts above it.
	CSeq    uint32    `json:"cseq"`
	Expires time.Time `json:"expires"`
	// AskedS is the expiry, in seconds, the holder's SUBSCRIBEs ask for
	// (the server's Min-Expires after a 423): a holder gone just after a
	// refresh may have extended the dialog by this much past Expires. Zero
	// (written before it existed): the configured expiry.
	AskedS int `json:"asked_s,omitempty"`
}

// WorkerInfo is the value of presence_workers <worker id>.
type WorkerInfo struct {
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	// Leaving is set by a worker that is stopping: it still holds claims,
	// but owns no agent any more.
	Leaving bool `json:"leaving,omitempty"`
	// Instance, Host and PID name the process that holds the id: a random
	// token drawn at each start, the host name and the process id. They
	// tell a worker restarted under its own id from a second live process
	// that would share it.
	Instance string `json:"instance,omitempty"`
	Host     string `json:"host,omitempty"`
	PID      int    `json:"pid,omitempty"`
}

// Status answers presence.api.status.
type Status struct {
	Worker    string                  `json:"worker"`
	Workers   []WorkerInfo            `json:"workers"`
	Agents    int                     `json:"agents"`
	Interests int                     `json:"interests"`
	Queued    int                     `json:"queued"`
	Sources   map[string]SourceStatus `json:"sources"`
}

// SourceStatus is one source's share of the status.
type SourceStatus struct {
	Enabled bool          `json:"enabled"`
	Healthy bool          `json:"healthy"`
	Detail  string        `json:"detail,omitempty"`
	States  map[State]int `json:"states"`
	// Stats are figures particular to the source (budget in use, cycle length...).
	Stats map[string]any `json:"stats,omitempty"`
}

// ExplainRequest is the body of presence.api.explain.
type ExplainRequest struct {
	URI string `json:"uri"`
}

// ExplainChanges is how many of the agent's last changes an explanation
// carries.
const ExplainChanges = 20

// Explanation answers presence.api.explain: what the service holds for one
// agent and why, for operators (docs/contract.md, Explain).
type Explanation struct {
	URI     string `json:"uri"`
	Key     string `json:"key"`
	Subject string `json:"subject"`
	// Worker is the worker that answered.
	Worker string `json:"worker"`
	Route  Route  `json:"route"`
	// Interests are the UCCs' interests in the agent, as presence_interest holds them.
	Interests []Interest `json:"interests"`
	// Claim is the agent's claim as presence_claims holds it; nil when
	// nobody holds one (input-fed sources take none).
	Claim *Claim `json:"claim"`
	// Upstream is the subscription as its holder has it in memory; nil
	// when nobody holds one, or the holder did not answer (Notes says).
	Upstream *Upstream `json:"upstream"`
	Presence *Presence `json:"presence"`
	Seq      uint64    `json:"seq,omitempty"`
	// Changes are the agent's last ExplainChanges events from
	// presence_history, oldest first.
	Changes []HistoryEntry `json:"changes"`
	// Notes are findings in words: nobody subscribes the agent, the
	// holder did not answer, history is off.
	Notes []string `json:"notes,omitempty"`
}

// Route is the source an agent takes its presence from, and the rule that
// chose it.
type Route struct {
	Source string `json:"source"`
	Rule   string `json:"rule"`
}

// Upstream is an agent's upstream subscription as the worker holding it
// sees it.
type Upstream struct {
	// Worker holds the subscription and told.
	Worker   string `json:"worker"`
	Source   string `json:"source"`
	State    State  `json:"state"`
	Failures int    `json:"failures,omitempty"`
	// NextRetry is when the back-off ends, while the state is retrying.
	NextRetry   *time.Time `json:"next_retry,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// SIP and Graph are what those sources hold for the agent.
	SIP   *SIPUpstream   `json:"sip,omitempty"`
	Graph *GraphUpstream `json:"graph,omitempty"`
}

// SIPUpstream is an agent's SIP subscription dialog.
type SIPUpstream struct {
	Endpoint string `json:"endpoint"`
	CallID   string `json:"call_id"`
	// Expires is when the server ends the subscription unless refreshed;
	// absent until the server answered.
	Expires *time.Time `json:"expires,omitempty"`
}

// GraphUpstream is how the Graph source reads an agent.
type GraphUpstream struct {
	Account string `json:"account"`
	// UserID is the user's Graph object id; absent until resolved.
	UserID string `json:"user_id,omitempty"`
	// LastPoll is when Graph last answered for the user.
	LastPoll *time.Time `json:"last_poll,omitempty"`
}

// UpstreamRequest is the body of presence.worker.<worker key>.upstream:
// one worker asks the holder of an agent's claim for its subscription.
type UpstreamRequest struct {
	Key string `json:"key"`
}

// UpstreamReply answers an UpstreamRequest; Upstream is nil when the
// worker holds no subscription of the agent.
type UpstreamReply struct {
	Upstream *Upstream `json:"upstream"`
}

// HistoryEntry is one event as presence_history keeps it.
type HistoryEntry struct {
	// At is when the stream stored the event.
	At    time.Time `json:"at"`
	Event Event     `json:"event"`
}
