// Command ucc is a small UCC built on the client package: it subscribes its
// agents with a lease it renews, keeps their presence in memory with Watch,
// and prints who is routable whenever that changes. Run it beside a provider:
//
//	go run ./examples/ucc -ucc ucc_demo sip:agent1@attendant.example sip:agent2@attendant.example
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ucc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out, errs io.Writer) error {
	fs := flag.NewFlagSet("ucc", flag.ContinueOnError)
	fs.SetOutput(errs)
	url := fs.String("nats", "nats://127.0.0.1:4222", "NATS url")
	ucc := fs.String("ucc", "ucc_demo", "this UCC's id")
	lease := fs.Duration("lease", 5*time.Minute, "interest lease, renewed at half of it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("give the agents' URIs")
	}
	auth, err := config.LoadNATSAuth()
	if err != nil {
		return err
	}
	nc, err := client.Connect(*url, auth)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := client.New(nc)

	req := schemas.SubscribeRequest{UCC: *ucc, LeaseS: int(lease.Seconds())}
	for _, uri := range fs.Args() {
		req.Agents = append(req.Agents, schemas.AgentRef{URI: uri})
	}
	subscribe := func() error {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rep, err := c.Subscribe(rctx, req)
		if err != nil {
			return err
		}
		return client.Failed(rep)
	}
	if err := subscribe(); err != nil {
		return err
	}

	view := &agents{presence: map[string]schemas.Presence{}, out: out}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := c.Watch(wctx, fs.Args(), view.update, client.WithNotices(func(n client.Notice) {
		fmt.Fprintf(errs, "ucc: %s %v\n", n.Kind, n.Err)
	}))
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	view.print() // also when no agent has a presence yet

	renew := time.NewTicker(*lease / 2)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew.C:
			if err := subscribe(); err != nil {
				fmt.Fprintln(errs, "ucc: renewing the lease:", err)
			}
		}
	}
}

// agents is the UCC's view of its agents' presence.
type agents struct {
	mu       sync.Mutex
	presence map[string]schemas.Presence
	out      io.Writer
	last     string
}

func (a *agents) update(u client.Update) {
	a.mu.Lock()
	a.presence[u.URI] = u.Presence
	a.mu.Unlock()
	a.print()
}

// routable is an agent a call may go to now.
func routable(p schemas.Presence) bool {
	return (p.Availability == schemas.Available || p.Availability == schemas.AvailableIdle) && p.Modalities.Audio
}

// print writes who is routable when that changed.
func (a *agents) print() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var who []string
	for uri, p := range a.presence {
		if routable(p) {
			who = append(who, uri)
		}
	}
	slices.Sort(who)
	line := "routable: " + strings.Join(who, " ")
	if len(who) == 0 {
		line = "routable: nobody"
	}
	if line != a.last {
		a.last = line
		fmt.Fprintln(a.out, line)
	}
}
