package config

import (
	"fmt"
	"os"
	"strings"
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

// Process holds the process settings (docs/product.md, Environment).
type Process struct {
	NATSURL            string `envconfig:"PRESENCE_NATS_URL"`
	EmbeddedListen     string `envconfig:"PRESENCE_EMBEDDED_LISTEN" default:"127.0.0.1:4222"`
	DataDir            string `envconfig:"PRESENCE_DATA_DIR" default:"./presence-data"`
	ConfigFile         string `envconfig:"PRESENCE_CONFIG"`
	WorkerID           string `envconfig:"PRESENCE_WORKER_ID"`
	LogLevel           string `envconfig:"PRESENCE_LOG_LEVEL" default:"info"`
	SIPAppPassword     Secret `envconfig:"PRESENCE_SIP_APP_PASSWORD"`
	SIPUserPassword    Secret `envconfig:"PRESENCE_SIP_USER_PASSWORD"`
	GraphBaseURL       string `envconfig:"PRESENCE_GRAPH_BASE_URL" default:"https://graph.microsoft.com/v1.0"`
	GraphAuthorityHost string `envconfig:"PRESENCE_GRAPH_AUTHORITY_HOST" default:"https://login.microsoftonline.com/"`
	// KVReplicas 0 means 1, or 3 when the embedded server joins a cluster.
	KVReplicas int `envconfig:"PRESENCE_KV_REPLICAS"`
	// SIPListen overrides UcmaPresenceSource Listen: workers that share one
	// Config.xml each need their own Contact address.
	SIPListen         string        `envconfig:"PRESENCE_SIP_LISTEN"`
	ServerName        string        `envconfig:"PRESENCE_SERVER_NAME"`
	ClusterName       string        `envconfig:"PRESENCE_CLUSTER_NAME" default:"presence"`
	ClusterListen     string        `envconfig:"PRESENCE_CLUSTER_LISTEN"`
	ClusterRoutes     string        `envconfig:"PRESENCE_CLUSTER_ROUTES"`
	UnsubscribeLinger time.Duration `envconfig:"PRESENCE_UNSUBSCRIBE_LINGER" default:"10s"`
	WorkerLease       time.Duration `envconfig:"PRESENCE_WORKER_LEASE" default:"10s"`
}

// MarshalZerologObject logs the settings; the secrets show only whether they are set.
func (p Process) MarshalZerologObject(e *zerolog.Event) {
	e.Str("nats_url", p.NATSURL).Str("embedded_listen", p.EmbeddedListen).Str("data_dir", p.DataDir).
		Str("config", p.ConfigFile).Str("worker_id", p.WorkerID).Str("log_level", p.LogLevel).
		Bool("sip_app_password_set", p.SIPAppPassword != "").Bool("sip_user_password_set", p.SIPUserPassword != "").
		Str("graph_base_url", p.GraphBaseURL).Str("graph_authority_host", p.GraphAuthorityHost).
		Int("kv_replicas", p.KVReplicas).Str("sip_listen", p.SIPListen).Str("server_name", p.ServerName).Str("cluster_name", p.ClusterName).
		Str("cluster_listen", p.ClusterListen).Str("cluster_routes", p.ClusterRoutes).Stringer("unsubscribe_linger", p.UnsubscribeLinger).Stringer("worker_lease", p.WorkerLease)
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
