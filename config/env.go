package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
)

// Secret is a value that must never reach a log, an error or a status reply.
type Secret string

func (Secret) String() string { return "[redacted]" }

// GoString keeps the value out of %#v.
func (Secret) GoString() string { return "[redacted]" }

// Format keeps the value out of every other verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// MarshalText keeps the value out of JSON and zerolog output too.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// NATSAuth is how a client proves who it is to NATS and checks the server:
// presenced (joining an external NATS, or its own embedded server when that
// asks for authentication) and presencectl read the same variables.
type NATSAuth struct {
	// CredsFile is a .creds file: a user JWT and its nkey seed.
	CredsFile string `envconfig:"PRESENCE_NATS_CREDS" desc:"a .creds file (user JWT and nkey seed) to authenticate to NATS"`
	// NKeyFile holds a user nkey seed.
	NKeyFile string `envconfig:"PRESENCE_NATS_NKEY" desc:"a file with a user nkey seed to authenticate to NATS"`
	User     string `envconfig:"PRESENCE_NATS_USER" desc:"the NATS user name"`
	Password Secret `envconfig:"PRESENCE_NATS_PASSWORD" desc:"the NATS user's password"`
	// TLSCA verifies the server (system roots when empty); TLSCert and
	// TLSKey are the client's certificate for mutual TLS.
	TLSCA   string `envconfig:"PRESENCE_NATS_TLS_CA" desc:"the CA that signs the NATS server's certificate; empty: system roots"`
	TLSCert string `envconfig:"PRESENCE_NATS_TLS_CERT" desc:"our client certificate, for mutual TLS"`
	TLSKey  string `envconfig:"PRESENCE_NATS_TLS_KEY" desc:"the key of PRESENCE_NATS_TLS_CERT"`
}

// LoadNATSAuth reads the client's NATS credentials from the environment.
func LoadNATSAuth() (NATSAuth, error) {
	var a NATSAuth
	if err := envconfig.Process("", &a); err != nil {
		return NATSAuth{}, environmentError(err)
	}
	if err := a.validate(); err != nil {
		return NATSAuth{}, fmt.Errorf("config: environment: %w", err)
	}
	return a, nil
}

func (a NATSAuth) validate() error {
	ways := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeyFile != "", a.User != ""} {
		if set {
			ways++
		}
	}
	switch {
	case ways > 1:
		return errors.New("set only one of PRESENCE_NATS_CREDS, PRESENCE_NATS_NKEY and PRESENCE_NATS_USER")
	case a.Password != "" && a.User == "":
		return errors.New("PRESENCE_NATS_PASSWORD is set without PRESENCE_NATS_USER")
	case (a.TLSCert == "") != (a.TLSKey == ""):
		return errors.New("PRESENCE_NATS_TLS_CERT and PRESENCE_NATS_TLS_KEY go together (mutual TLS needs both)")
	}
	return nil
}

// MarshalZerologObject logs the files and the user; the password shows only
// whether it is set.
func (a NATSAuth) MarshalZerologObject(e *zerolog.Event) {
	e.Str("creds", a.CredsFile).Str("nkey", a.NKeyFile).Str("user", a.User).Bool("password_set", a.Password != "").
		Str("tls_ca", a.TLSCA).Str("tls_cert", a.TLSCert).Str("tls_key", a.TLSKey)
}

// RedactURLs masks the password of each URL in a comma-separated list, as
// NATS URLs and routes are written, so that the list can be logged. A user
// without a password is a NATS token, and masked too.
func RedactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, part := range parts {
		u, err := url.Parse(strings.TrimSpace(part))
		switch {
		case err == nil:
			if _, hasPassword := u.User.Password(); u.User != nil && !hasPassword {
				u.User = url.User("xxxxx")
			}
			parts[i] = u.Redacted()
		case strings.Contains(part, "@"):
			// Unparseable, and it may hold a password: nothing of it is shown.
			parts[i] = "[redacted]"
		}
	}
	return strings.Join(parts, ",")
}

// Process holds the process settings (docs/product.md, Environment), read
// from PRESENCE_* variables. The tags are the one description of them:
// LoadProcess reads them and Usage prints them.
type Process struct {
	NATSURL string `envconfig:"PRESENCE_NATS_URL" desc:"NATS to join, comma-separated URLs; empty starts an embedded server"`
	NATSAuth
	// NATSConfig is a nats-server configuration file for the embedded
	// server: accounts, users, permissions, TLS, route authorization.
	NATSConfig string `envconfig:"PRESENCE_NATS_CONFIG" desc:"a nats-server configuration file for the embedded server (users, permissions, TLS, route authorization)"`
	// Insecure lets the embedded server listen beyond loopback, or open
	// routes, with no authentication.
	Insecure bool `envconfig:"PRESENCE_INSECURE" desc:"let the embedded server listen beyond loopback or open routes with no authentication"`
	// SyncInterval is how the embedded server's JetStream store reaches the
	// disk (docs/contract.md, Delivery).
	SyncInterval       SyncInterval `envconfig:"PRESENCE_SYNC_INTERVAL" default:"always" desc:"how the embedded server syncs JetStream writes to disk: always (before each acknowledgement) or every interval such as 2m (faster; an OS crash or power cut loses what was acknowledged since)"`
	EmbeddedListen     string       `envconfig:"PRESENCE_EMBEDDED_LISTEN" default:"127.0.0.1:4222" desc:"the embedded server's client address"`
	DataDir            string       `envconfig:"PRESENCE_DATA_DIR" default:"./presence-data" desc:"the embedded server's JetStream store; one presenced per directory"`
	ConfigFile         string       `envconfig:"PRESENCE_CONFIG" desc:"the product's Config.xml; empty runs the PSTN source alone"`
	WorkerID           string       `envconfig:"PRESENCE_WORKER_ID" desc:"this worker's name; empty: the one kept in PRESENCE_DATA_DIR/worker-id, or the host name with PRESENCE_NATS_URL"`
	LogLevel           string       `envconfig:"PRESENCE_LOG_LEVEL" default:"info" desc:"trace, debug, info, warn or error"`
	SIPAppPassword     Secret       `envconfig:"PRESENCE_SIP_APP_PASSWORD" desc:"digest password of the SIP application endpoint"`
	SIPUserPassword    Secret       `envconfig:"PRESENCE_SIP_USER_PASSWORD" desc:"digest password of the SIP user endpoint"`
	GraphBaseURL       string       `envconfig:"PRESENCE_GRAPH_BASE_URL" default:"https://graph.microsoft.com/v1.0" desc:"Microsoft Graph's address"`
	GraphAuthorityHost string       `envconfig:"PRESENCE_GRAPH_AUTHORITY_HOST" default:"https://login.microsoftonline.com/" desc:"Entra ID's token authority"`
	// KVReplicas 0 means 1, or 3 when the embedded server joins a cluster.
	KVReplicas int `envconfig:"PRESENCE_KV_REPLICAS" desc:"replicas of each KV bucket; empty means 1, or 3 in a cluster"`
	// SIPListen overrides UcmaPresenceSource Listen: workers that share one
	// Config.xml each need their own Contact address.
	SIPListen         string        `envconfig:"PRESENCE_SIP_LISTEN" desc:"the SIP stack's address, over UcmaPresenceSource Listen"`
	ServerName        string        `envconfig:"PRESENCE_SERVER_NAME" desc:"the embedded server's name, distinct per cluster node"`
	ClusterName       string        `envconfig:"PRESENCE_CLUSTER_NAME" default:"presence" desc:"the embedded servers' cluster name"`
	ClusterListen     string        `envconfig:"PRESENCE_CLUSTER_LISTEN" desc:"the embedded server's cluster address; set, it joins a cluster"`
	ClusterRoutes     string        `envconfig:"PRESENCE_CLUSTER_ROUTES" desc:"the other cluster nodes, comma-separated nats-route:// URLs"`
	UnsubscribeLinger time.Duration `envconfig:"PRESENCE_UNSUBSCRIBE_LINGER" default:"10s" desc:"how long an upstream subscription outlives its last UCC"`
	WorkerLease       time.Duration `envconfig:"PRESENCE_WORKER_LEASE" default:"10s" desc:"how long a silent worker keeps its agents; at least 3s"`
	// The input queue's bounds (docs/contract.md, Inputs): beyond them a new
	// input is refused with overloaded.
	InputQueueMaxMsgs  int64         `envconfig:"PRESENCE_INPUT_QUEUE_MAX_MSGS" default:"1000000" desc:"inputs the durable input queue holds at most"`
	InputQueueMaxBytes int64         `envconfig:"PRESENCE_INPUT_QUEUE_MAX_BYTES" default:"1073741824" desc:"bytes the durable input queue holds at most"`
	InputQueueMaxAge   time.Duration `envconfig:"PRESENCE_INPUT_QUEUE_MAX_AGE" default:"24h" desc:"how long an input waits in the durable input queue for a worker at most"`
	// The history's bounds (docs/contract.md, History): the oldest events go
	// first when either is reached.
	HistoryMaxAge   time.Duration `envconfig:"PRESENCE_HISTORY_MAX_AGE" default:"168h" desc:"how long presence_history keeps an event"`
	HistoryMaxBytes int64         `envconfig:"PRESENCE_HISTORY_MAX_BYTES" default:"2147483648" desc:"bytes presence_history holds at most; the oldest events go first"`
	// ShutdownTimeout bounds the stop after SIGTERM: orchestrators kill a
	// process that takes longer, leaving its claims to run out.
	ShutdownTimeout time.Duration `envconfig:"PRESENCE_SHUTDOWN_TIMEOUT" default:"10s" desc:"how long the stop after SIGTERM or SIGINT may take before the process exits anyway"`
	// HTTPListen is the operator's listener (metrics and probes); set to
	// empty, there is none.
	HTTPListen string `envconfig:"PRESENCE_HTTP_LISTEN" default:"127.0.0.1:8480" desc:"the address of /metrics, /healthz and /readyz; empty: no listener"`
	// Resume continues SIP subscription dialogs from worker to worker
	// (presence_dialogs); false ends them on every stop and handover.
	Resume     bool `envconfig:"PRESENCE_RESUME" default:"true" desc:"continue SIP subscription dialogs across handovers, failovers and restarts; false un-SUBSCRIBEs on stop"`
	ResumeRate int  `envconfig:"PRESENCE_RESUME_RATE" default:"200" desc:"SIP dialogs this worker resumes per second, apart from maxPresenceSubscriptionsPerSecond"`
}

// SyncInterval is how often the embedded server syncs its JetStream writes
// to disk; 0 is "always": each write is synced before it is acknowledged.
type SyncInterval time.Duration

// syncAlways is SyncInterval's word for 0, as in nats-server's sync_interval.
const syncAlways = "always"

// Decode reads "always" or a positive duration.
func (s *SyncInterval) Decode(v string) error {
	if strings.EqualFold(v, syncAlways) {
		*s = 0
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("PRESENCE_SYNC_INTERVAL %q is neither %s nor a positive duration such as 2m", v, syncAlways)
	}
	*s = SyncInterval(d)
	return nil
}

func (s SyncInterval) String() string {
	if s == 0 {
		return syncAlways
	}
	return time.Duration(s).String()
}

// usageFormat lays the variables out one a line, for Usage.
const usageFormat = `Environment:
{{range .}}  {{usage_key .}}	{{if usage_default .}}{{usage_default .}}{{else}}-{{end}}	{{usage_description .}}
{{end}}`

// Usage writes every PRESENCE_* variable, its default and what it does.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if err := envconfig.Usagef("", &Process{}, tw, usageFormat); err != nil {
		return fmt.Errorf("config: usage: %w", err)
	}
	return tw.Flush()
}

// MarshalZerologObject logs the settings; the secrets show only whether they are set.
func (p Process) MarshalZerologObject(e *zerolog.Event) {
	e.Str("nats_url", RedactURLs(p.NATSURL)).Object("nats_auth", p.NATSAuth).Str("nats_config", p.NATSConfig).
		Bool("insecure", p.Insecure).Stringer("sync_interval", p.SyncInterval).Str("embedded_listen", p.EmbeddedListen).Str("data_dir", p.DataDir).
		Str("config", p.ConfigFile).Str("worker_id", p.WorkerID).Str("log_level", p.LogLevel).
		Bool("sip_app_password_set", p.SIPAppPassword != "").Bool("sip_user_password_set", p.SIPUserPassword != "").
		Str("graph_base_url", p.GraphBaseURL).Str("graph_authority_host", p.GraphAuthorityHost).
		Int("kv_replicas", p.KVReplicas).Str("sip_listen", p.SIPListen).Str("server_name", p.ServerName).Str("cluster_name", p.ClusterName).
		Str("cluster_listen", p.ClusterListen).Str("cluster_routes", RedactURLs(p.ClusterRoutes)).Stringer("unsubscribe_linger", p.UnsubscribeLinger).Stringer("worker_lease", p.WorkerLease).
		Stringer("shutdown_timeout", p.ShutdownTimeout).Int64("input_queue_max_msgs", p.InputQueueMaxMsgs).
		Int64("input_queue_max_bytes", p.InputQueueMaxBytes).Stringer("input_queue_max_age", p.InputQueueMaxAge).
		Str("http_listen", p.HTTPListen).
		Stringer("history_max_age", p.HistoryMaxAge).Int64("history_max_bytes", p.HistoryMaxBytes).
		Bool("resume", p.Resume).Int("resume_rate", p.ResumeRate)
}

// LoadProcess reads the process settings from the environment.
func LoadProcess() (Process, error) {
	var p Process
	// The tags name whole variables: with a prefix, envconfig would fall back
	// to the unprefixed names (CONFIG, NATS_URL...) that other programs set.
	if err := envconfig.Process("", &p); err != nil {
		return Process{}, environmentError(err)
	}
	if err := p.validate(); err != nil {
		return Process{}, fmt.Errorf("config: environment: %w", err)
	}
	if p.NATSConfig != "" && p.NATSURL != "" {
		return Process{}, errors.New("config: environment: PRESENCE_NATS_CONFIG configures the embedded NATS server, which does not run with PRESENCE_NATS_URL; set one of them")
	}
	if _, err := zerolog.ParseLevel(p.LogLevel); err != nil {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_LOG_LEVEL %q is not a zerolog level", p.LogLevel)
	}
	if p.KVReplicas == 0 {
		p.KVReplicas = 1
		if p.ClusterListen != "" {
			p.KVReplicas = 3
		}
	}
	if p.KVReplicas < 1 || p.KVReplicas > 5 {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_KV_REPLICAS %d is out of range 1 to 5", p.KVReplicas)
	}
	// An empty id is resolved once the data directory is this process's
	// (ResolveWorkerID).
	if p.WorkerID != "" && !validWorkerID(p.WorkerID) {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_WORKER_ID %q may hold only A-Z a-z 0-9 - _ = and inner dots (it is a KV key)", p.WorkerID)
	}
	if p.WorkerLease < 3*time.Second {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_WORKER_LEASE %s is under 3s", p.WorkerLease)
	}
	if p.ResumeRate < 1 {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_RESUME_RATE %d is under 1", p.ResumeRate)
	}
	if p.InputQueueMaxMsgs < 1 {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_INPUT_QUEUE_MAX_MSGS %d is under 1", p.InputQueueMaxMsgs)
	}
	if p.InputQueueMaxBytes < 1<<20 {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_INPUT_QUEUE_MAX_BYTES %d is under 1 MiB (1048576)", p.InputQueueMaxBytes)
	}
	if p.InputQueueMaxAge < time.Minute {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_INPUT_QUEUE_MAX_AGE %s is under 1m", p.InputQueueMaxAge)
	}
	if p.HistoryMaxAge < time.Minute {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_HISTORY_MAX_AGE %s is under 1m", p.HistoryMaxAge)
	}
	if p.HistoryMaxBytes < 1<<20 {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_HISTORY_MAX_BYTES %d is under 1 MiB (1048576)", p.HistoryMaxBytes)
	}
	if p.ShutdownTimeout < time.Second {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_SHUTDOWN_TIMEOUT %s is under 1s", p.ShutdownTimeout)
	}
	return p, nil
}

// environmentError says which variable holds a value of the wrong kind and
// what it takes, instead of envconfig's Go type names.
func environmentError(err error) error {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("config: environment: %w", err)
	}
	var takes string
	switch pe.TypeName {
	case "time.Duration":
		takes = "a duration: use a unit, e.g. 10s, 1m30s or 24h"
	case "bool":
		takes = "true or false"
	case "int", "int64":
		takes = "a whole number"
	default:
		takes = "a " + pe.TypeName
	}
	return fmt.Errorf("config: environment: %s %q is not %s (%w)", pe.KeyName, pe.Value, takes, pe.Err)
}

func validWorkerID(id string) bool {
	if id == "" || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_=.", c)
		if !ok {
			return false
		}
	}
	return true
}
