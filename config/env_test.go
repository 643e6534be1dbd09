package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/config"
)

// processVars are the variables of Process, without the PRESENCE_ prefix.
var processVars = []string{
	"NATS_URL", "EMBEDDED_LISTEN", "DATA_DIR", "CONFIG", "WORKER_ID", "LOG_LEVEL",
	"SIP_APP_PASSWORD", "SIP_USER_PASSWORD", "GRAPH_BASE_URL", "GRAPH_AUTHORITY_HOST",
	"KV_REPLICAS", "UNSUBSCRIBE_LINGER", "WORKER_LEASE",
	"SERVER_NAME", "CLUSTER_NAME", "CLUSTER_LISTEN", "CLUSTER_ROUTES", "SIP_LISTEN", "SHUTDOWN_TIMEOUT",
	"NATS_CONFIG", "INSECURE", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD",
	"NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY", "HTTP_LISTEN",
	"INPUT_QUEUE_MAX_MSGS", "INPUT_QUEUE_MAX_BYTES", "INPUT_QUEUE_MAX_AGE", "RESUME", "RESUME_RATE",
	"HISTORY_MAX_AGE", "HISTORY_MAX_BYTES", "SYNC_INTERVAL",
}

// clearEnv unsets every process variable, with and without the prefix, for
// the test's duration.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range processVars {
		for _, name := range []string{"PRESENCE_" + v, v} {
			t.Setenv(name, "") // restores the old value after the test
			os.Unsetenv(name)
		}
	}
}

func TestLoadProcessDefaults(t *testing.T) {
	clearEnv(t)
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	want := config.Process{
		NATSURL:            "",
		EmbeddedListen:     "127.0.0.1:4222",
		DataDir:            "./presence-data",
		ConfigFile:         "",
		WorkerID:           "", // resolved once the data directory is held: workerid_test.go
		LogLevel:           "info",
		GraphBaseURL:       "https://graph.microsoft.com/v1.0",
		GraphAuthorityHost: "https://login.microsoftonline.com/",
		KVReplicas:         1,
		ClusterName:        "presence",
		UnsubscribeLinger:  10 * time.Second,
		WorkerLease:        10 * time.Second,
		ShutdownTimeout:    10 * time.Second,
		InputQueueMaxMsgs:  1_000_000,
		InputQueueMaxBytes: 1 << 30,
		InputQueueMaxAge:   24 * time.Hour,
		HistoryMaxAge:      7 * 24 * time.Hour,
		HistoryMaxBytes:    2 << 30,
		HTTPListen:         "127.0.0.1:8480",
		Resume:             true,
		ResumeRate:         200,
	}
	equal(t, "Process", p, want)
}

func TestLoadProcessReplicatesBucketsInACluster(t *testing.T) {
	clearEnv(t)
	t.Setenv("PRESENCE_CLUSTER_LISTEN", "127.0.0.1:6222")
	t.Setenv("PRESENCE_CLUSTER_ROUTES", "nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224")
	t.Setenv("PRESENCE_SERVER_NAME", "n1")
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	if p.KVReplicas != 3 || p.ClusterName != "presence" || p.ServerName != "n1" {
		t.Fatalf("clustered process: %+v; want 3 KV replicas by default", p)
	}
	t.Setenv("PRESENCE_KV_REPLICAS", "1")
	if p, err = config.LoadProcess(); err != nil || p.KVReplicas != 1 {
		t.Fatalf("PRESENCE_KV_REPLICAS=1 in a cluster: %+v, %v; want 1", p, err)
	}
}

func TestLoadProcessReadsEnvironment(t *testing.T) {
	clearEnv(t)
	set := map[string]string{
		"PRESENCE_NATS_URL":             "nats://a:4222,nats://b:4222",
		"PRESENCE_EMBEDDED_LISTEN":      "0.0.0.0:14222",
		"PRESENCE_DATA_DIR":             "/var/lib/presence",
		"PRESENCE_CONFIG":               "/etc/ucc/Config.xml",
		"PRESENCE_WORKER_ID":            "node-1.example_A=",
		"PRESENCE_LOG_LEVEL":            "debug",
		"PRESENCE_SIP_APP_PASSWORD":     "app-pw",
		"PRESENCE_SIP_USER_PASSWORD":    "user-pw",
		"PRESENCE_GRAPH_BASE_URL":       "http://127.0.0.1:9999/v1.0",
		"PRESENCE_GRAPH_AUTHORITY_HOST": "http://127.0.0.1:9998/",
		"PRESENCE_KV_REPLICAS":          "3",
		"PRESENCE_UNSUBSCRIBE_LINGER":   "1m",
		"PRESENCE_WORKER_LEASE":         "30s",
		"PRESENCE_SHUTDOWN_TIMEOUT":     "3s",
		"PRESENCE_HTTP_LISTEN":          "", // set empty: no listener
		"PRESENCE_RESUME":               "false",
		"PRESENCE_RESUME_RATE":          "50",
		"PRESENCE_HISTORY_MAX_AGE":      "24h",
		"PRESENCE_HISTORY_MAX_BYTES":    "104857600",
		"PRESENCE_SYNC_INTERVAL":        "2m",
	}
	for k, v := range set {
		t.Setenv(k, v)
	}
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Process", p, config.Process{
		NATSURL:            "nats://a:4222,nats://b:4222",
		EmbeddedListen:     "0.0.0.0:14222",
		DataDir:            "/var/lib/presence",
		ConfigFile:         "/etc/ucc/Config.xml",
		WorkerID:           "node-1.example_A=",
		LogLevel:           "debug",
		SIPAppPassword:     "app-pw",
		SIPUserPassword:    "user-pw",
		ClusterName:        "presence",
		GraphBaseURL:       "http://127.0.0.1:9999/v1.0",
		GraphAuthorityHost: "http://127.0.0.1:9998/",
		KVReplicas:         3,
		UnsubscribeLinger:  time.Minute,
		WorkerLease:        30 * time.Second,
		ShutdownTimeout:    3 * time.Second,
		InputQueueMaxMsgs:  1_000_000,
		InputQueueMaxBytes: 1 << 30,
		InputQueueMaxAge:   24 * time.Hour,
		HistoryMaxAge:      24 * time.Hour,
		HistoryMaxBytes:    100 << 20,
		HTTPListen:         "",
		ResumeRate:         50,
		SyncInterval:       config.SyncInterval(2 * time.Minute),
	})
}

func TestLoadProcessRejects(t *testing.T) {
	tests := []struct {
		name, variable, value, message string
	}{
		{"unknown log level", "PRESENCE_LOG_LEVEL", "loud", "PRESENCE_LOG_LEVEL"},
		{"log level with spaces", "PRESENCE_LOG_LEVEL", "de bug", "PRESENCE_LOG_LEVEL"},
		{"worker id with a space", "PRESENCE_WORKER_ID", "worker 1", "PRESENCE_WORKER_ID"},
		{"worker id with a slash", "PRESENCE_WORKER_ID", "a/b", "PRESENCE_WORKER_ID"},
		{"worker id with a wildcard", "PRESENCE_WORKER_ID", "a*", "PRESENCE_WORKER_ID"},
		{"worker id with >", "PRESENCE_WORKER_ID", "a>", "PRESENCE_WORKER_ID"},
		{"worker id with a colon", "PRESENCE_WORKER_ID", "host:1", "PRESENCE_WORKER_ID"},
		{"worker id with two dots", "PRESENCE_WORKER_ID", "a..b", "PRESENCE_WORKER_ID"},
		{"worker id with a leading dot", "PRESENCE_WORKER_ID", ".a", "PRESENCE_WORKER_ID"},
		{"worker id with a trailing dot", "PRESENCE_WORKER_ID", "a.", "PRESENCE_WORKER_ID"},
		{"worker id not ASCII", "PRESENCE_WORKER_ID", "wörker", "PRESENCE_WORKER_ID"},
		{"kv replicas negative", "PRESENCE_KV_REPLICAS", "-1", "PRESENCE_KV_REPLICAS"},
		{"kv replicas 6", "PRESENCE_KV_REPLICAS", "6", "PRESENCE_KV_REPLICAS"},
		{"kv replicas not a number", "PRESENCE_KV_REPLICAS", "three", `PRESENCE_KV_REPLICAS "three" is not a whole number`},
		{"worker lease under 3s", "PRESENCE_WORKER_LEASE", "2s", "PRESENCE_WORKER_LEASE"},
		{"worker lease not a duration", "PRESENCE_WORKER_LEASE", "ten", `PRESENCE_WORKER_LEASE "ten" is not a duration: use a unit, e.g. 10s`},
		{"linger without a unit", "PRESENCE_UNSUBSCRIBE_LINGER", "10", `PRESENCE_UNSUBSCRIBE_LINGER "10" is not a duration: use a unit, e.g. 10s`},
		{"input queue of no inputs", "PRESENCE_INPUT_QUEUE_MAX_MSGS", "0", "PRESENCE_INPUT_QUEUE_MAX_MSGS"},
		{"input queue of 1 KiB", "PRESENCE_INPUT_QUEUE_MAX_BYTES", "1024", "PRESENCE_INPUT_QUEUE_MAX_BYTES"},
		{"input queue age 1s", "PRESENCE_INPUT_QUEUE_MAX_AGE", "1s", "PRESENCE_INPUT_QUEUE_MAX_AGE"},
		{"history age 1s", "PRESENCE_HISTORY_MAX_AGE", "1s", "PRESENCE_HISTORY_MAX_AGE"},
		{"history of 1 KiB", "PRESENCE_HISTORY_MAX_BYTES", "1024", "PRESENCE_HISTORY_MAX_BYTES"},
		{"shutdown timeout zero", "PRESENCE_SHUTDOWN_TIMEOUT", "0s", "PRESENCE_SHUTDOWN_TIMEOUT"},
		{"shutdown timeout not a duration", "PRESENCE_SHUTDOWN_TIMEOUT", "soon", "PRESENCE_SHUTDOWN_TIMEOUT \"soon\" is not a duration: use a unit"},
		{"resume rate zero", "PRESENCE_RESUME_RATE", "0", "PRESENCE_RESUME_RATE"},
		{"resume not a bool", "PRESENCE_RESUME", "maybe", `PRESENCE_RESUME "maybe" is not true or false`},
		{"sync interval neither always nor a duration", "PRESENCE_SYNC_INTERVAL", "sometimes", "PRESENCE_SYNC_INTERVAL"},
		{"sync interval zero", "PRESENCE_SYNC_INTERVAL", "0s", "PRESENCE_SYNC_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tt.variable, tt.value)
			p, err := config.LoadProcess()
			if err == nil {
				t.Fatalf("%s=%q accepted: %+v", tt.variable, tt.value, p)
			}
			if !strings.Contains(err.Error(), tt.message) || !strings.HasPrefix(err.Error(), "config: environment: ") {
				t.Errorf("error %q does not name %s", err, tt.message)
			}
			equal(t, "Process on error", p, config.Process{})
		})
	}
}

// TestUsageListsEveryVariable: the usage comes from Process's tags, so a
// variable added there is listed with its default and a description.
func TestUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := config.Usage(&buf); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			lines[f[0]] = line
		}
	}
	fields := processFields()
	for _, f := range fields {
		line, ok := lines[f.Tag.Get("envconfig")]
		if !ok {
			t.Errorf("usage lacks %s:\n%s", f.Tag.Get("envconfig"), buf.String())
			continue
		}
		def := f.Tag.Get("default")
		if def == "" {
			def = "-"
		}
		if fields := strings.Fields(line); fields[1] != def || !strings.Contains(line, f.Tag.Get("desc")) || f.Tag.Get("desc") == "" {
			t.Errorf("usage line %q; want default %q and the field's description", line, def)
		}
	}
	if len(processVars) != len(fields) {
		t.Errorf("processVars has %d names, Process %d fields", len(processVars), len(fields))
	}
}

// processFields are the fields of config.Process that name a variable,
// those of the structs it embeds included.
func processFields() []reflect.StructField {
	var fields []reflect.StructField
	for _, f := range reflect.VisibleFields(reflect.TypeFor[config.Process]()) {
		if !f.Anonymous {
			fields = append(fields, f)
		}
	}
	return fields
}

// The variables of docs/product.md, Environment all have the PRESENCE_
// prefix; an unrelated variable of the same name without it must not be read.
func TestLoadProcessIgnoresUnprefixed(t *testing.T) {
	clearEnv(t)
	t.Setenv("CONFIG", "/etc/other-program.xml")
	t.Setenv("NATS_URL", "nats://someone-else:4222")
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	if p.ConfigFile != "" || p.NATSURL != "" {
		t.Fatalf("env.go LoadProcess: envconfig falls back to the variable named by the envconfig tag without the prefix: "+
			"with PRESENCE_CONFIG and PRESENCE_NATS_URL unset, CONFIG and NATS_URL are read (ConfigFile %q, NATSURL %q)",
			p.ConfigFile, p.NATSURL)
	}
}

const appPassword, userPassword = "s3cr3t-app-pw", "s3cr3t-user-pw"

func processWithSecrets(t *testing.T) config.Process {
	t.Helper()
	clearEnv(t)
	t.Setenv("PRESENCE_SIP_APP_PASSWORD", appPassword)
	t.Setenv("PRESENCE_SIP_USER_PASSWORD", userPassword)
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	if string(p.SIPAppPassword) != appPassword || string(p.SIPUserPassword) != userPassword {
		t.Fatalf("passwords not read: %q %q", string(p.SIPAppPassword), string(p.SIPUserPassword))
	}
	return p
}

func assertNoSecret(t *testing.T, how, out string) {
	t.Helper()
	if strings.Contains(out, appPassword) || strings.Contains(out, userPassword) {
		t.Errorf("%s shows a password: %s", how, out)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	p := processWithSecrets(t)
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%x", "%X", "%10s"} {
		assertNoSecret(t, "fmt "+verb+" of Process", fmt.Sprintf(verb, p))
		assertNoSecret(t, "fmt "+verb+" of *Process", fmt.Sprintf(verb, &p))
		assertNoSecret(t, "fmt "+verb+" of Secret", fmt.Sprintf(verb, p.SIPAppPassword))
	}
	if got := fmt.Sprint(p.SIPAppPassword); got != "[redacted]" {
		t.Errorf("Secret prints as %q", got)
	}
	assertNoSecret(t, "fmt of an error wrapping Process", fmt.Errorf("start with %v: %w", p, os.ErrClosed).Error())

	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "json.Marshal", string(data))
	if !strings.Contains(string(data), `"SIPAppPassword":"[redacted]"`) {
		t.Errorf("json.Marshal: %s", data)
	}

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("process", p).Msg("object")
	log.Info().Interface("process", p).Msg("interface")
	log.Info().Any("process", &p).Msg("any")
	log.Info().Stringer("password", p.SIPAppPassword).Msg("stringer")
	log.Info().Interface("password", p.SIPUserPassword).Msg("secret")
	log.Info().Msgf("process %v", p)
	log.Info().Fields(map[string]any{"password": p.SIPAppPassword}).Msg("fields")
	out := buf.String()
	assertNoSecret(t, "zerolog", out)
	if !strings.Contains(out, `"sip_app_password_set":true`) || !strings.Contains(out, `"sip_user_password_set":true`) {
		t.Errorf("the Process object does not say the passwords are set:\n%s", out)
	}
	if strings.Count(out, "\n") != 7 {
		t.Errorf("zerolog wrote %d lines, want 7:\n%s", strings.Count(out, "\n"), out)
	}
}

// fmt calls String() only for %v %s %q %x %X: %#v (Go syntax) and a wrong
// verb such as %d print the underlying string. Secret needs a Format method
// to stay hidden there too.
func TestSecretOtherVerbs(t *testing.T) {
	p := processWithSecrets(t)
	for _, verb := range []string{"%#v", "%d"} {
		if out := fmt.Sprintf(verb, p); strings.Contains(out, appPassword) {
			t.Fatalf("env.go Secret implements String but not fmt.Formatter (or GoStringer): fmt %s of Process shows the password: %s", verb, out)
		}
	}
}

func TestLoadNATSAuth(t *testing.T) {
	clearEnv(t)
	t.Setenv("PRESENCE_NATS_USER", "ucc")
	t.Setenv("PRESENCE_NATS_PASSWORD", "nats-pw")
	t.Setenv("PRESENCE_NATS_TLS_CA", "/etc/ca.pem")
	t.Setenv("PRESENCE_NATS_TLS_CERT", "/etc/me.pem")
	t.Setenv("PRESENCE_NATS_TLS_KEY", "/etc/me-key.pem")
	want := config.NATSAuth{User: "ucc", Password: "nats-pw", TLSCA: "/etc/ca.pem", TLSCert: "/etc/me.pem", TLSKey: "/etc/me-key.pem"}
	a, err := config.LoadNATSAuth()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "NATSAuth", a, want)
	p, err := config.LoadProcess()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "Process.NATSAuth", p.NATSAuth, want)

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("process", p).Msg("")
	if strings.Contains(buf.String(), "nats-pw") || !strings.Contains(buf.String(), `"password_set":true`) {
		t.Errorf("the process line shows the NATS password, or not that it is set: %s", buf.String())
	}
}

func TestLoadNATSAuthRejects(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		message string
	}{
		{"creds and user", map[string]string{"PRESENCE_NATS_CREDS": "a.creds", "PRESENCE_NATS_USER": "u"}, "only one of"},
		{"nkey and creds", map[string]string{"PRESENCE_NATS_CREDS": "a.creds", "PRESENCE_NATS_NKEY": "a.nk"}, "only one of"},
		{"password alone", map[string]string{"PRESENCE_NATS_PASSWORD": "pw"}, "PRESENCE_NATS_PASSWORD is set without PRESENCE_NATS_USER"},
		{"certificate without key", map[string]string{"PRESENCE_NATS_TLS_CERT": "c.pem"}, "PRESENCE_NATS_TLS_CERT and PRESENCE_NATS_TLS_KEY"},
		{"key without certificate", map[string]string{"PRESENCE_NATS_TLS_KEY": "k.pem"}, "PRESENCE_NATS_TLS_CERT and PRESENCE_NATS_TLS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			for what, load := range map[string]func() error{
				"LoadNATSAuth": func() error { _, err := config.LoadNATSAuth(); return err },
				"LoadProcess":  func() error { _, err := config.LoadProcess(); return err },
			} {
				if err := load(); err == nil || !strings.Contains(err.Error(), tt.message) || strings.Contains(err.Error(), "pw") {
					t.Errorf("%s: %v; want an error saying %q", what, err, tt.message)
				}
			}
		})
	}
	clearEnv(t)
	t.Setenv("PRESENCE_NATS_URL", "nats://nats:4222")
	t.Setenv("PRESENCE_NATS_CONFIG", "nats.conf")
	if _, err := config.LoadProcess(); err == nil || !strings.Contains(err.Error(), "PRESENCE_NATS_CONFIG") {
		t.Errorf("PRESENCE_NATS_CONFIG with PRESENCE_NATS_URL: %v; want an error", err)
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"nats://a:4222,nats://b:4222":   "nats://a:4222,nats://b:4222",
		"nats://u:pw@a:4222,nats://b:1": "nats://u:xxxxx@a:4222,nats://b:1",
		"nats-route://route:pw@n2:6222": "nats-route://route:xxxxx@n2:6222",
		"nats://s3cr3t-token@a:4222":    "nats://xxxxx@a:4222",
		"nats://u:p%w@a:4222":           "[redacted]",
	} {
		if got := config.RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q; want %q", in, got, want)
		}
	}
}
