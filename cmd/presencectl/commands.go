package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
)

// errReported ends a command whose failures are already on stderr.
var errReported = errors.New("reported")

func checkArgs(c command, fs *flag.FlagSet, f *cmdFlags, args []string) error {
	switch {
	case len(args) < c.minArgs:
		return fmt.Errorf("too few arguments")
	case c.maxArgs >= 0 && len(args) > c.maxArgs:
		return fmt.Errorf("too many arguments: %s", strings.Join(args[c.maxArgs:], " "))
	case fs.Lookup("ucc") != nil && f.ucc == "":
		return errors.New("-ucc is mandatory")
	case fs.Lookup("call") != nil && f.callID == "":
		return errors.New("-call is mandatory")
	}
	return nil
}

func connect(ctx context.Context, opts options, stdout, stderr io.Writer) (*env, func(), error) {
	auth, err := config.LoadNATSAuth()
	if err != nil {
		return nil, nil, err
	}
	refused, stop := context.WithCancelCause(ctx)
	// A server that refuses the credentials refuses each reconnect, every
	// couple of seconds: say so once, and again only when the error
	// changes or after the connection was back.
	var mu sync.Mutex
	var told string
	nc, err := client.Connect(opts.url, auth, nats.Name("presencectl"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				stop(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if err.Error() != told {
				told = err.Error()
				fmt.Fprintln(stderr, "presencectl:", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			mu.Lock()
			defer mu.Unlock()
			told = ""
		}))
	if err != nil {
		stop(nil)
		return nil, nil, err
	}
	e := &env{opts: opts, c: client.New(nc), out: stdout, err: stderr, refused: refused}
	return e, func() { nc.Close(); stop(nil) }, nil
}

// printJSON writes a reply as the provider sent it.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// agents prints a reply, one line per agent that succeeded, and each failed
// entry's code and message on stderr.
func (e *env) agents(cmd string, rep schemas.AgentsReply) error {
	if e.opts.json {
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
		if cmd == "unsubscribe" {
			for _, r := range rep.Agents {
				if r.Error == nil {
					fmt.Fprintf(tw, "%s\tunsubscribed\n", r.URI)
				}
			}
		} else if len(rep.Agents) == 0 || slices.ContainsFunc(rep.Agents, func(r schemas.AgentResult) bool { return r.Error == nil }) {
			fmt.Fprintln(tw, "AGENT\tSOURCE\tSTATE\tPRESENCE\tSEQ")
			for _, r := range rep.Agents {
				if r.Error == nil {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.URI, r.Source, dash(string(r.State)), presence(r.Presence), seq(r.Seq))
				}
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	failed := false
	for _, r := range rep.Agents {
		if err := client.EntryError(r); err != nil {
			failed = true
			fmt.Fprintf(e.err, "presencectl %s: agent %q: %v\n", cmd, r.URI, err)
		}
	}
	if failed {
		return errReported
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seq(s uint64) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

// presence reads as `Busy (6500) InACall`, or "none" when none is known.
func presence(p *schemas.Presence) string {
	if p == nil {
		return "none"
	}
	s := fmt.Sprintf("%s (%d)", p.Availability, p.AvailabilityValue)
	if p.Activity != "" {
		s += " " + p.Activity
	}
	return s
}

func agentRefs(args []string) []schemas.AgentRef {
	refs := []schemas.AgentRef{} // never null: sync with none clears the UCC's agents
	for _, arg := range args {
		uri, upn, _ := strings.Cut(arg, "=")
		refs = append(refs, schemas.AgentRef{URI: uri, TeamsUPN: upn})
	}
	return refs
}

// subscribeWith runs subscribe, or sync.
func subscribeWith(sync bool) func(e *env, f *cmdFlags, args []string) error {
	return func(e *env, f *cmdFlags, args []string) error {
		req := schemas.SubscribeRequest{UCC: f.ucc, LeaseS: f.lease, Agents: agentRefs(args)}
		call, cmd := e.c.Subscribe, "subscribe"
		if sync {
			call, cmd = e.c.Sync, "sync"
		}
		rep, err := call(e.ctx, req)
		if err != nil {
			return err
		}
		printed := e.agents(cmd, rep)
		if !f.wait {
			return printed
		}
		if err := e.wait(rep); err != nil {
			return err
		}
		return printed
	}
}

func unsubscribe(e *env, f *cmdFlags, args []string) error {
	rep, err := e.c.Unsubscribe(e.ctx, schemas.UnsubscribeRequest{UCC: f.ucc, URIs: args})
	if err != nil {
		return err
	}
	return e.agents("unsubscribe", rep)
}

func get(e *env, _ *cmdFlags, args []string) error {
	rep, err := e.c.Get(e.ctx, schemas.GetRequest{URIs: args})
	if err != nil {
		return err
	}
	return e.agents("get", rep)
}

// sourceOrder is the routing order, in which status lists the sources.
var sourceOrder = []string{schemas.SourceGraph, schemas.SourceAttendant, schemas.SourcePSTN, schemas.SourceSIP, schemas.SourceNone}

func status(e *env, _ *cmdFlags, _ []string) error {
	st, err := e.c.Status(e.ctx)
	if err != nil {
		return err
	}
	if e.opts.json {
		return e.printJSON(st)
	}
	var workers []string
	for _, w := range st.Workers {
		s := fmt.Sprintf("%s (since %s)", w.ID, w.Started.Format(time.RFC3339))
		if w.Leaving {
			s += " leaving"
		}
		workers = append(workers, s)
	}
	fmt.Fprintf(e.out, "answered by worker %s; workers: %s\n", st.Worker, strings.Join(workers, ", "))
	fmt.Fprintf(e.out, "agents: %d  interests: %d  queued: %d\n\n", st.Agents, st.Interests, st.Queued)
	names := make([]string, 0, len(st.Sources))
	for name := range st.Sources {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := slices.Index(sourceOrder, names[i]), slices.Index(sourceOrder, names[j])
		if a != b {
			return uint(a) < uint(b) // unknown names (-1) last
		}
		return names[i] < names[j]
	})
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tENABLED\tHEALTHY\tAGENTS\tDETAIL")
	for _, name := range names {
		s := st.Sources[name]
		var states []string
		for state, n := range s.States {
			states = append(states, fmt.Sprintf("%s=%d", state, n))
		}
		sort.Strings(states)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, yes(s.Enabled), yes(s.Healthy), dash(strings.Join(states, " ")), schemas.SourceText(name, s))
	}
	return tw.Flush()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func attendantInput(e *env, f *cmdFlags, args []string) error {
	key, err := client.Key(args[0])
	if err != nil {
		return err
	}
	rep, err := e.c.Attendant(e.ctx, key, schemas.AttendantInput{Availability: args[1], Activity: f.activity, Device: f.device})
	return e.input(rep, err)
}

func pstnCall(e *env, f *cmdFlags, args []string) error {
	key, err := client.Key(args[0])
	if err != nil {
		return err
	}
	rep, err := e.c.PSTN(e.ctx, key, schemas.PSTNInput{UCC: f.ucc, CallID: f.callID, State: args[1]})
	return e.input(rep, err)
}

func (e *env) input(rep schemas.InputReply, err error) error {
	if err != nil {
		return err
	}
	if e.opts.json {
		return e.printJSON(rep)
	}
	fmt.Fprintf(e.out, "stored, seq %d\n", rep.Seq)
	return nil
}

// wait polls the agents of a subscribe reply until each is active, failed
// or unsupported, drawing a bar on a terminal and plain lines otherwise.
func (e *env) wait(rep schemas.AgentsReply) error {
	var uris []string
	for _, r := range rep.Agents {
		if r.Error == nil {
			uris = append(uris, r.URI)
		}
	}
	if len(uris) == 0 {
		return nil
	}
	ctx := e.refused
	tty := isTerminal(e.err)
	last := ""
	for {
		counts := map[schemas.State]int{}
		var failed []string
		for i := 0; i < len(uris); i += schemas.MaxAgentsPerRequest {
			rctx, cancel := context.WithTimeout(ctx, e.opts.timeout)
			got, err := e.c.Get(rctx, schemas.GetRequest{URIs: uris[i:min(i+schemas.MaxAgentsPerRequest, len(uris))]})
			cancel()
			if err != nil {
				return err
			}
			for _, r := range got.Agents {
				counts[r.State]++
				if r.State == schemas.StateFailed {
					failed = append(failed, r.URI)
				}
			}
		}
		done := counts[schemas.StateActive] + counts[schemas.StateFailed] + counts[schemas.StateUnsupported]
		line := fmt.Sprintf("%d/%d settled: %d active, %d failed, %d unsupported, %d waiting",
			done, len(uris), counts[schemas.StateActive], counts[schemas.StateFailed], counts[schemas.StateUnsupported], len(uris)-done)
		switch {
		case tty:
			const width = 30
			filled := width * done / len(uris)
			fmt.Fprintf(e.err, "\r[%s%s] %s", strings.Repeat("#", filled), strings.Repeat("-", width-filled), line)
		case line != last:
			fmt.Fprintln(e.err, line)
		}
		last = line
		if done == len(uris) {
			if tty {
				fmt.Fprintln(e.err)
			}
			for _, uri := range failed {
				fmt.Fprintf(e.err, "presencectl: agent %s: failed (gave up; a new subscribe tries again)\n", uri)
			}
			if len(failed) > 0 {
				return errReported
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(e.err)
			}
			return context.Cause(ctx)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watch prints the agents' presence and then every change until
// interrupted, and says on stderr when the provider or NATS goes away.
func watch(e *env, _ *cmdFlags, args []string) error {
	print := func(u client.Update) {
		p := u.Presence
		if e.opts.json {
			_ = json.NewEncoder(e.out).Encode(u.Event)
			return
		}
		from := "now"
		if !u.CatchUp {
			from = "none ->"
			if u.Previous != nil {
				from = fmt.Sprintf("%s (%d) ->", u.Previous.Availability, u.Previous.AvailabilityValue)
			}
		}
		fmt.Fprintf(e.out, "%s %s seq=%d %s %s (%d) activity=%q source=%s\n",
			p.ObservedAt.Format(time.RFC3339), u.URI, u.Seq, from, p.Availability, p.AvailabilityValue, p.Activity, p.Source)
	}
	notice := func(n client.Notice) {
		switch n.Kind {
		case client.Disconnected:
			switch {
			case errors.Is(n.Err, nats.ErrConnectionClosed):
				fmt.Fprintf(e.err, "presencectl watch: the connection to NATS closed for good (%v)\n", n.Err)
			case n.Err != nil:
				fmt.Fprintf(e.err, "presencectl watch: NATS still out of reach: %v; retrying\n", n.Err)
			default:
				fmt.Fprintln(e.err, "presencectl watch: lost NATS (the provider went away?); reconnecting")
			}
		case client.Reconnected:
			fmt.Fprintln(e.err, "presencectl watch: NATS is back")
		case client.ProviderGone:
			fmt.Fprintf(e.err, "presencectl watch: the provider does not answer (%v); changes may be missed until it is back\n", n.Err)
		case client.CaughtUp:
			fmt.Fprintf(e.err, "presencectl watch: the provider answers; caught up, %d agents changed meanwhile\n", n.Changed)
		}
	}
	w, err := e.c.Watch(e.ctx, args, print, client.WithNotices(notice))
	if err != nil {
		return err
	}
	select {
	case <-e.refused.Done(): // an interrupt, or the server's refusal
	case <-w.Done(): // nothing more can come
		_ = w.Stop()
		return w.Err()
	}
	err = w.Stop()
	if cause := context.Cause(e.refused); errors.Is(cause, nats.ErrPermissionViolation) {
		return cause
	}
	return err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
