package bus_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/sources/attendant"
	"github.com/contactcenter/presence-provider/worker"
)

// benchProvider runs a provider with the attendant source on the real
// clock, with or without presence_history, and hands each event's key to
// arrived.
func benchProvider(b *testing.B, history bool, arrived func(key string)) *provtest.Env {
	b.Helper()
	cfg := provtest.Config()
	add := func(w *worker.Worker, clock clockwork.Clock) {
		w.AddSource(schemas.SourceAttendant, attendant.New(clock, []*regexp.Regexp{regexp.MustCompile(`@bench\.example$`)}))
	}
	var env *provtest.Env
	if history {
		env = provtest.StartOn(b, provtest.Server(b), cfg, clockwork.NewRealClock(), add)
	} else {
		env = provtest.StartWithoutHistory(b, provtest.Server(b), cfg, clockwork.NewRealClock(), add)
	}
	if _, err := env.Conn.NC.Subscribe(schemas.EventWildcard, func(m *nats.Msg) {
		arrived(strings.TrimPrefix(m.Subject, schemas.EventSubjectPrefix))
	}); err != nil {
		b.Fatal(err)
	}
	if err := env.Conn.NC.Flush(); err != nil {
		b.Fatal(err)
	}
	return env
}

// reportCPU reports the CPU per input since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkInputToEvent is one attendant input at a time, from the request
// to its event at a subscriber, with and without presence_history: what
// keeping the events adds to the input → event path (BENCHMARKS.md).
func BenchmarkInputToEvent(b *testing.B) {
	for _, history := range []bool{false, true} {
		b.Run(fmt.Sprintf("history=%v", history), func(b *testing.B) {
			events := make(chan string, 1)
			env := benchProvider(b, history, func(key string) { events <- key })
			key := schemas.Key("sip:agent@bench.example")
			ctx := context.Background()
			start := cpuTime(b)
			for i := 0; b.Loop(); i++ {
				in := schemas.AttendantInput{Availability: []string{"Busy", "Available"}[i%2]}
				if _, err := env.Client.Attendant(ctx, key, in); err != nil {
					b.Fatal(err)
				}
				select {
				case <-events:
				case <-time.After(10 * time.Second):
					b.Fatal("no event")
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkInputToEventParallel is 32 agents' inputs at once, each waiting
// for its reply and event: the throughput of the path, where the history's
// store competes for the CPU.
func BenchmarkInputToEventParallel(b *testing.B) {
	for _, history := range []bool{false, true} {
		b.Run(fmt.Sprintf("history=%v", history), func(b *testing.B) {
			const agents = 32
			waits := map[string]chan struct{}{}
			var keys []string
			for i := range agents {
				key := schemas.Key(fmt.Sprintf("sip:agent%d@bench.example", i))
				keys = append(keys, key)
				waits[key] = make(chan struct{}, 1)
			}
			env := benchProvider(b, history, func(key string) { waits[key] <- struct{}{} })
			var next atomic.Int32
			b.SetParallelism(agents / 2) // 2 cores: 32 goroutines
			b.ResetTimer()
			start := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				key := keys[next.Add(1)-1]
				ctx := context.Background()
				for i := 0; pb.Next(); i++ {
					in := schemas.AttendantInput{Availability: []string{"Busy", "Available"}[i%2]}
					if _, err := env.Client.Attendant(ctx, key, in); err != nil {
						b.Error(err)
						return
					}
					select {
					case <-waits[key]:
					case <-time.After(10 * time.Second):
						b.Error("no event")
						return
					}
				}
			})
			reportCPU(b, start)
		})
	}
}
