package config

import (
	"fmt"
	"io"
	"os"
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

// Process holds the process settings (docs/product.md, Environment), read
// from PRESENCE_* variables. The tags are the one description of them:
// LoadProcess reads them and Usage prints them.
type Process struct {
	NATSURL            string `envconfig:"PRESENCE_NATS_URL" desc:"NATS to join, comma-separated URLs; empty starts an embedded server"`
	EmbeddedListen     string `envconfig:"PRESENCE_EMBEDDED_LISTEN" default:"127.0.0.1:4222" desc:"the embedded server's client address"`
	DataDir            string `envconfig:"PRESENCE_DATA_DIR" default:"./presence-data" desc:"the embedded server's JetStream store; one presenced per directory"`
	ConfigFile         string `envconfig:"PRESENCE_CONFIG" desc:"the product's Config.xml; empty runs the PSTN source alone"`
	WorkerID           string `envconfig:"PRESENCE_WORKER_ID" desc:"this worker's name; empty means host-pid"`
	LogLevel           string `envconfig:"PRESENCE_LOG_LEVEL" default:"info" desc:"trace, debug, info, warn or error"`
	SIPAppPassword     Secret `envconfig:"PRESENCE_SIP_APP_PASSWORD" desc:"digest password of the SIP application endpoint"`
	SIPUserPassword    Secret `envconfig:"PRESENCE_SIP_USER_PASSWORD" desc:"digest password of the SIP user endpoint"`
	GraphBaseURL       string `envconfig:"PRESENCE_GRAPH_BASE_URL" default:"https://graph.microsoft.com/v1.0" desc:"Microsoft Graph's address"`
	GraphAuthorityHost string `envconfig:"PRESENCE_GRAPH_AUTHORITY_HOST" default:"https://login.microsoftonline.com/" desc:"Entra ID's token authority"`
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
	// ShutdownTimeout bounds the stop after SIGTERM: orchestrators kill a
	// process that takes longer, leaving its claims to run out.
	ShutdownTimeout time.Duration `envconfig:"PRESENCE_SHUTDOWN_TIMEOUT" default:"10s" desc:"how long the stop after SIGTERM or SIGINT may take before the process exits anyway"`
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
	e.Str("nats_url", p.NATSURL).Str("embedded_listen", p.EmbeddedListen).Str("data_dir", p.DataDir).
		Str("config", p.ConfigFile).Str("worker_id", p.WorkerID).Str("log_level", p.LogLevel).
		Bool("sip_app_password_set", p.SIPAppPassword != "").Bool("sip_user_password_set", p.SIPUserPassword != "").
		Str("graph_base_url", p.GraphBaseURL).Str("graph_authority_host", p.GraphAuthorityHost).
		Int("kv_replicas", p.KVReplicas).Str("sip_listen", p.SIPListen).Str("server_name", p.ServerName).Str("cluster_name", p.ClusterName).
		Str("cluster_listen", p.ClusterListen).Str("cluster_routes", p.ClusterRoutes).Stringer("unsubscribe_linger", p.UnsubscribeLinger).Stringer("worker_lease", p.WorkerLease).
		Stringer("shutdown_timeout", p.ShutdownTimeout)
}

// LoadProcess reads the process settings from the environment.
func LoadProcess() (Process, error) {
	var p Process
	// The tags name whole variables: with a prefix, envconfig would fall back
	// to the unprefixed names (CONFIG, NATS_URL...) that other programs set.
	if err := envconfig.Process("", &p); err != nil {
		return Process{}, fmt.Errorf("config: environment: %w", err)
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
	if p.WorkerID == "" {
		host, _ := os.Hostname()
		p.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if !validWorkerID(p.WorkerID) {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_WORKER_ID %q may hold only A-Z a-z 0-9 - _ = and inner dots (it is a KV key)", p.WorkerID)
	}
	if p.WorkerLease < 3*time.Second {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_WORKER_LEASE %s is under 3s", p.WorkerLease)
	}
	if p.ShutdownTimeout < time.Second {
		return Process{}, fmt.Errorf("config: environment: PRESENCE_SHUTDOWN_TIMEOUT %s is under 1s", p.ShutdownTimeout)
	}
	return p, nil
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
