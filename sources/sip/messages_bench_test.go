package sip_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/sfbtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/internal/testca"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/sip"
)

// messageCount counts, from the SIP source's debug lines, the messages of
// the subscriptions: each SUBSCRIBE and NOTIFY with its answer is two, a
// BENOTIFY (never answered) one. OPTIONS keep-alives, the same for both
// dialects, are left out.
type messageCount struct{ logs provtest.Logs }

func (m *messageCount) total() int {
	n := 0
	for _, line := range strings.Split(m.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"message":"SIP transaction"`) && strings.Contains(line, `"method":"SUBSCRIBE"`),
			strings.Contains(line, `"message":"SIP transaction answered"`) && strings.Contains(line, `"method":"NOTIFY"`):
			n += 2
		case strings.Contains(line, `"message":"SIP BENOTIFY received"`):
			n++
		}
	}
	return n
}

// BenchmarkSteadyStateMessages measures the SIP messages per agent-hour of
// 1,000 agents on one worker with no presence change: one dialog per agent
// at Kamailio (rfc) against batches at the test pool (mssip). Both run at a
// granted expiry of 4 s for a window of 8 refresh periods; the count per
// refresh period is scaled to the default subscriptionExpires of 600 s
// (refreshed at four fifths: 7.5 times an hour).
func BenchmarkSteadyStateMessages(b *testing.B) {
	const (
		agents   = 1000
		granted  = 4 * time.Second
		periods  = 8
		perHour  = 3600.0 / (0.8 * 600)
		interval = granted * 4 / 5
	)
	uris := make([]string, agents)
	for i := range uris {
		uris[i] = fmt.Sprintf("sip:agent%04d@example.com", i)
	}
	measure := func(b *testing.B, cfg sip.Config, setState func(string)) {
		for _, u := range uris {
			setState(u)
		}
		var count messageCount
		cfg.Expires = granted
		env, _ := providerLogging(b, cfg, nil, zerolog.New(&count.logs).Level(zerolog.DebugLevel))
		for i := 0; i < agents; i += 100 {
			env.Subscribe("ucc_app01", uris[i:i+100]...)
		}
		provtest.Eventually(b, "every agent active", func() bool {
			for _, u := range uris {
				if env.State(u) != schemas.StateActive {
					return false
				}
			}
			return true
		})
		b.ResetTimer()
		for b.Loop() {
			before := count.total()
			time.Sleep(periods * interval) // the window measured: real refreshes take real time
			per := float64(count.total()-before) / agents / periods * perHour
			b.ReportMetric(per, "msgs/agent-hour")
		}
	}
	b.Run("rfc", func(b *testing.B) {
		k := siptest.StartKamailio(b, siptest.KamailioOptions{SharedMemoryMB: 128})
		measure(b, sip.Config{Transport: "tcp", Application: appEndpoint(k.Addr())}, func(string) {})
	})
	b.Run("mssip", func(b *testing.B) {
		ca := testca.New(b, "contoso-ca")
		pool := sfbtest.Start(b, ca, serverName)
		pool.SetMaxExpires(granted)
		cert, key := ca.Issue("trustedapp", "127.0.0.1")
		measure(b, sip.Config{Transport: "tls", MSSIP: true, TLS: tlsConfig(b, ca.File, cert, key), Application: appEndpoint(pool.Addr())},
			func(u string) { pool.SetState(u, sfbtest.State{Availability: 3500}) })
	})
}
