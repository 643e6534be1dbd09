package sip_test

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/internal/siptest"
	"github.com/contactcenter/presence-provider/schemas"
	sipsource "github.com/contactcenter/presence-provider/sources/sip"
)

// arrivals records when each recipient first got a delivery in this round;
// a repeat (a retransmitted NOTIFY) does not count again.
type arrivals struct {
	mu    sync.Mutex
	round map[string]time.Time
}

func newArrivals() *arrivals { return &arrivals{round: map[string]time.Time{}} }

func (a *arrivals) add(recipient string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, seen := a.round[recipient]; !seen {
		a.round[recipient] = t
	}
}

// take waits until n recipients have the delivery and starts a new round.
func (a *arrivals) take(n int, timeout time.Duration) ([]time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		a.mu.Lock()
		if len(a.round) >= n {
			var got []time.Time
			for _, t := range a.round {
				got = append(got, t)
			}
			a.round = map[string]time.Time{}
			a.mu.Unlock()
			return got, nil
		}
		have := len(a.round)
		a.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d arrived", have, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// directWatchers subscribes n watchers at Kamailio from one SIP socket and
// records when each NOTIFY with a body arrives.
func directWatchers(b *testing.B, kamailio, presentity string, n int, got *arrivals) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	b.Cleanup(func() { _ = ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	client, _ := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(conn.LocalAddr().String()))
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if len(req.Body()) > 0 {
			got.add(req.CallID().Value(), time.Now())
		}
	})
	go func() { _ = srv.ServeUDP(conn) }()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c, _ := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); c != nil {
			break
		}
	}
	host, portText, _ := net.SplitHostPort(conn.LocalAddr().String())
	var port int
	fmt.Sscan(portText, &port)
	var target sip.Uri
	if err := sip.ParseUri(presentity, &target); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		watcher := sip.Uri{Scheme: "sip", User: fmt.Sprintf("watcher%03d", i), Host: "example.com"}
		req := sip.NewRequest(sip.SUBSCRIBE, target)
		from := &sip.FromHeader{Address: watcher, Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(10))
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: target})
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: watcher.User, Host: host, Port: port}})
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Accept", "application/pidf+xml"))
		expires := sip.ExpiresHeader(3600)
		req.AppendHeader(&expires)
		req.SetDestination(kamailio)
		res, err := client.Do(b.Context(), req)
		if err != nil || res.StatusCode >= 300 {
			b.Fatalf("direct watcher %d: %v %v", i, res, err)
		}
	}
}

func percentiles(all []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(all)
	return all[len(all)/2], all[len(all)*99/100]
}

// BenchmarkNotifyFanOut compares, for one PUBLISH at Kamailio, the time until
// each of 100 UCCs has the change through the provider (one SIP
// subscription, then NATS) with the time until each of 100 watchers that
// subscribed at Kamailio directly has its NOTIFY. Run it with a fixed count:
//
//	go test -run '^$' -bench NotifyFanOut -benchtime 200x ./sources/sip/
func BenchmarkNotifyFanOut(b *testing.B) {
	const fans = 100
	const agent = "sip:fanout@example.com"
	k := siptest.StartKamailio(b, siptest.KamailioOptions{SharedMemoryMB: 256})
	env, _ := provider(b, sipsource.Config{Transport: "udp", Application: appEndpoint(k.Addr())}, nil)

	ucc := newArrivals()
	for i := range fans {
		name := fmt.Sprintf("ucc%03d", i)
		sub, err := env.Conn.NC.Subscribe(schemas.EventSubject(schemas.Key(agent)), func(*nats.Msg) { ucc.add(name, time.Now()) })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	_ = env.Conn.NC.Flush()
	env.Subscribe("ucc_app01", agent)
	provtest.Eventually(b, "active", func() bool {
		rep, err := env.Client.Get(env.Ctx(), schemas.GetRequest{URIs: []string{agent}})
		return err == nil && rep.Agents[0].State == schemas.StateActive
	})
	direct := newArrivals()
	directWatchers(b, k.Addr(), agent, fans, direct)

	etag := k.Publish(b, agent, siptest.PIDF(agent, "open", "", ""), 3600)
	if _, err := ucc.take(fans, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	if _, err := direct.take(fans, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	var viaProvider, viaKamailio []time.Duration
	bodies := []string{siptest.PIDF(agent, "open", "busy", ""), siptest.PIDF(agent, "open", "away", "")}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		etag = k.ModifyPublish(b, agent, etag, bodies[i%2], 3600)
		u, err := ucc.take(fans, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		d, err := direct.take(fans, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		for j := range fans {
			viaProvider = append(viaProvider, u[j].Sub(start))
			viaKamailio = append(viaKamailio, d[j].Sub(start))
		}
	}
	b.StopTimer()
	p50, p99 := percentiles(viaProvider)
	k50, k99 := percentiles(viaKamailio)
	b.ReportMetric(float64(p50.Microseconds()), "provider-p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "provider-p99-µs")
	b.ReportMetric(float64(k50.Microseconds()), "kamailio-direct-p50-µs")
	b.ReportMetric(float64(k99.Microseconds()), "kamailio-direct-p99-µs")
}
