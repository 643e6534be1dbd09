package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/schemas"
)

// explain prints the provider's explanation of one agent for a person.
func explain(e *env, _ *cmdFlags, args []string) error {
	ex, err := e.c.Explain(e.ctx, args[0])
	if err != nil {
		return err
	}
	if e.opts.json {
		return e.printJSON(ex)
	}
	return printExplanation(e.out, ex)
}

func printExplanation(out io.Writer, ex schemas.Explanation) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "agent\t%s\n", ex.URI)
	fmt.Fprintf(tw, "subject\t%s\n", ex.Subject)
	fmt.Fprintf(tw, "route\t%s (%s)\n", ex.Route.Source, ex.Route.Rule)
	if ex.Presence == nil {
		fmt.Fprintf(tw, "presence\tnone known\n")
	} else {
		fmt.Fprintf(tw, "presence\t%s seq=%d observed %s by %s\n", presence(ex.Presence), ex.Seq, stamp(ex.Presence.ObservedAt), ex.Presence.Source)
	}
	if len(ex.Interests) == 0 {
		fmt.Fprintf(tw, "interests\tnone\n")
	}
	for i, in := range ex.Interests {
		label := ""
		if i == 0 {
			label = fmt.Sprintf("interests (%d)", len(ex.Interests))
		}
		lease := "no lease"
		if in.LeaseS > 0 {
			lease = fmt.Sprintf("lease %ds, ends %s", in.LeaseS, stamp(in.At.Add(time.Duration(in.LeaseS)*time.Second)))
		}
		extra := ""
		if in.TeamsUPN != "" {
			extra = " teams_upn=" + in.TeamsUPN
		}
		fmt.Fprintf(tw, "%s\t%s since %s, %s%s\n", label, in.UCC, stamp(in.At), lease, extra)
	}
	if c := ex.Claim; c == nil {
		fmt.Fprintf(tw, "claim\tnone\n")
	} else {
		line := fmt.Sprintf("worker %s since %s, %s %s", c.Worker, stamp(c.Since), c.Source, c.State)
		if c.Failures > 0 {
			line += fmt.Sprintf(", %d failures", c.Failures)
		}
		if c.Reason != "" {
			line += fmt.Sprintf(", last: %s", c.Reason)
		}
		fmt.Fprintf(tw, "claim\t%s\n", line)
	}
	if u := ex.Upstream; u == nil {
		fmt.Fprintf(tw, "upstream\tnone\n")
	} else {
		fmt.Fprintf(tw, "upstream\t%s %s, held by %s\n", u.Source, u.State, u.Worker)
		if u.Failures > 0 {
			fmt.Fprintf(tw, "\t%d consecutive failures\n", u.Failures)
		}
		if u.NextRetry != nil {
			fmt.Fprintf(tw, "\tnext retry %s\n", stamp(*u.NextRetry))
		}
		if u.LastError != "" {
			at := ""
			if u.LastErrorAt != nil {
				at = " at " + stamp(*u.LastErrorAt)
			}
			fmt.Fprintf(tw, "\tlast error%s: %s\n", at, u.LastError)
		}
		if s := u.SIP; s != nil {
			expires := "not granted yet"
			if s.Expires != nil {
				expires = stamp(*s.Expires)
			}
			fmt.Fprintf(tw, "\tSIP endpoint %s, Call-ID %s, expires %s\n", s.Endpoint, s.CallID, expires)
		}
		if g := u.Graph; g != nil {
			poll := "never"
			if g.LastPoll != nil {
				poll = stamp(*g.LastPoll)
			}
			fmt.Fprintf(tw, "\tGraph account %s, user id %s, last poll %s\n", g.Account, dash(g.UserID), poll)
		}
	}
	for _, n := range ex.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	fmt.Fprintf(tw, "answered by\tworker %s\n", ex.Worker)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nlast changes (%d, oldest first):\n", len(ex.Changes))
	return printChanges(out, ex.Changes)
}

// history prints an agent's past changes, oldest first.
func history(e *env, f *cmdFlags, args []string) error {
	opts := client.HistoryOptions{AfterSeq: f.after}
	if f.since > 0 {
		opts.Since = time.Now().Add(-f.since)
	}
	changes, err := e.c.History(e.ctx, args[0], opts)
	if err != nil {
		return err
	}
	if e.opts.json {
		if changes == nil {
			changes = []schemas.HistoryEntry{}
		}
		return e.printJSON(changes)
	}
	if len(changes) == 0 {
		fmt.Fprintln(e.out, "no changes kept")
		return nil
	}
	return printChanges(e.out, changes)
}

// printChanges writes one line per change, as watch does.
func printChanges(out io.Writer, changes []schemas.HistoryEntry) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, c := range changes {
		ev := c.Event
		from := "none"
		if ev.Previous != nil {
			from = presence(ev.Previous)
		}
		fmt.Fprintf(tw, "%s\tseq=%d\t%s -> %s\tsource=%s\n", stamp(c.At), ev.Seq, from, presence(&ev.Presence), ev.Presence.Source)
	}
	return tw.Flush()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
