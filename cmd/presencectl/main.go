// Command presencectl is the Presence Provider's tool for people and
// scripts: subscribe and unsubscribe agents for a UCC, watch their presence,
// read the status, and play an attendant client or a UCC reporting PSTN
// calls. It is built on the client package, as a Go UCC would be.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/internal/buildinfo"
	"github.com/contactcenter/presence-provider/schemas"
)

// Exit statuses: a script tells a refusal from a mistake on the line.
const (
	exitOK     = 0
	exitFailed = 1 // the request, or an entry of its reply, failed
	exitUsage  = 2
)

func main() {
	// An interrupt ends watch and subscribe -wait, and any request under way.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags every command takes, before or after it.
type options struct {
	url     string
	timeout time.Duration
	json    bool
}

// register adds the flags to fs with their values so far as defaults: the
// command's flags must not undo those given before the command.
func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "nats", o.url, "NATS `url`: $PRESENCE_NATS_URL, else nats://127.0.0.1:4222")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "how long a request may take")
	fs.BoolVar(&o.json, "json", o.json, "print the provider's reply as JSON")
}

// command is one subcommand: its usage line, what it does, its own flags,
// and what it runs once the line is read.
type command struct {
	name, args, what string
	flags            func(fs *flag.FlagSet, f *cmdFlags)
	// minArgs and maxArgs bound the arguments after the flags (-1: any).
	minArgs, maxArgs int
	// local commands need no NATS.
	local bool
	run   func(e *env, f *cmdFlags, args []string) error
	// more, when set, adds to the command's help what its arguments take.
	more func(w io.Writer)
}

// cmdFlags holds every subcommand flag; each command registers its own.
type cmdFlags struct {
	ucc, activity, device, callID string
	lease                         int
	wait                          bool
	since                         time.Duration
	after                         uint64
}

var commands = []command{
	{name: "subscribe", args: "-ucc UCC [-lease S] [-wait] URI[=TEAMS_UPN] ...", what: "add the UCC's interest in agents",
		flags: func(fs *flag.FlagSet, f *cmdFlags) { uccFlag(fs, f); leaseFlag(fs, f); waitFlag(fs, f) }, minArgs: 1, maxArgs: -1, run: subscribeWith(false)},
	{name: "unsubscribe", args: "-ucc UCC URI ...", what: "remove the UCC's interest in agents",
		flags: uccFlag, minArgs: 1, maxArgs: -1, run: unsubscribe},
	{name: "sync", args: "-ucc UCC [-lease S] [-wait] [URI[=TEAMS_UPN] ...]", what: "make the UCC's agents exactly these (none: clear them)",
		flags: func(fs *flag.FlagSet, f *cmdFlags) { uccFlag(fs, f); leaseFlag(fs, f); waitFlag(fs, f) }, maxArgs: -1, run: subscribeWith(true)},
	{name: "get", args: "URI ...", what: "the current presence of agents", minArgs: 1, maxArgs: -1, run: get},
	{name: "status", what: "workers, counts, source health (operator role)", run: status},
	{name: "explain", args: "URI", what: "why an agent shows what it shows: route, interests, claim, upstream, changes (operator role)",
		minArgs: 1, maxArgs: 1, run: explain},
	{name: "history", args: "[-since D] [-after SEQ] URI", what: "an agent's past presence changes, oldest first",
		flags: func(fs *flag.FlagSet, f *cmdFlags) {
			fs.DurationVar(&f.since, "since", 0, "only the changes of this last `duration`, e.g. 1h (0: all kept)")
			fs.Uint64Var(&f.after, "after", 0, "only the changes after this `seq` (the last one seen)")
		}, minArgs: 1, maxArgs: 1, run: history},
	{name: "watch", args: "[URI ...]", what: "print agents' presence, then every change (all agents when none given)", maxArgs: -1, run: watch},
	{name: "attendant", args: "[-activity A] [-device D] URI AVAILABILITY", what: "set an AttendantService agent's presence",
		flags: func(fs *flag.FlagSet, f *cmdFlags) {
			fs.StringVar(&f.activity, "activity", "", "activity token, e.g. InACall")
			fs.StringVar(&f.device, "device", "", "device, e.g. Computer")
		}, minArgs: 2, maxArgs: 2, run: attendantInput, more: availabilityHelp},
	{name: "call", args: "-ucc UCC -call ID URI connected|ended", what: "report a call on a PSTN agent",
		flags: func(fs *flag.FlagSet, f *cmdFlags) {
			uccFlag(fs, f)
			fs.StringVar(&f.callID, "call", "", "the call's `id`")
		}, minArgs: 2, maxArgs: 2, run: pstnCall},
	{name: "version", what: "print presencectl's version and the commit it was built from", local: true, run: printVersion},
}

func uccFlag(fs *flag.FlagSet, f *cmdFlags) { fs.StringVar(&f.ucc, "ucc", "", "the UCC's `id`") }
func leaseFlag(fs *flag.FlagSet, f *cmdFlags) {
	fs.IntVar(&f.lease, "lease", 0, "lease in `seconds` (0: until unsubscribed)")
}
func waitFlag(fs *flag.FlagSet, f *cmdFlags) {
	fs.BoolVar(&f.wait, "wait", false, "wait until every agent is active or failed, showing progress")
}

const footer = `
Flags may come before or after the command and its arguments; -- ends them.
Credentials and TLS come from PRESENCE_NATS_CREDS, PRESENCE_NATS_NKEY,
PRESENCE_NATS_USER and PRESENCE_NATS_PASSWORD, PRESENCE_NATS_TLS_CA,
PRESENCE_NATS_TLS_CERT and PRESENCE_NATS_TLS_KEY (see docs/security.md).
Exit status: 0 done, 1 the request or an agent of its reply failed (the
code and message on stderr), 2 a mistake on the command line.
`

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: presencectl [-nats URL] [-timeout D] [-json] COMMAND ...")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.what)
	}
	fmt.Fprintln(w, "  help        this text; help COMMAND: the command's usage")
	fmt.Fprint(w, footer)
}

func commandUsage(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: presencectl %s %s\n\n%s.\n", c.name, c.args, c.what)
	if c.more != nil {
		fmt.Fprintln(w)
		c.more(w)
	}
	fmt.Fprint(w, "\nflags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, footer)
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// env is what a command runs with.
type env struct {
	opts     options
	c        *client.Client
	out, err io.Writer
	// refused ends with the server's error when it refuses an action (a
	// permissions violation), which would otherwise only time out.
	refused context.Context
	ctx     context.Context
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts := options{url: envOr("PRESENCE_NATS_URL", "nats://127.0.0.1:4222"), timeout: 30 * time.Second}
	global := flag.NewFlagSet("presencectl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	opts.register(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintln(stderr, "presencectl:", err)
		usage(stderr)
		return exitUsage
	}
	if global.NArg() == 0 {
		usage(stderr)
		fmt.Fprintln(stderr, "presencectl: no command")
		return exitUsage
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			usage(stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"-h"}
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "presencectl: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	var f cmdFlags
	fs := newFlagSet(cmd, &opts, &f)
	positional, err := parseAnywhere(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(stdout, cmd, fs)
		return exitOK
	}
	if err == nil {
		err = checkArgs(cmd, fs, &f, positional)
	}
	if err != nil {
		fmt.Fprintf(stderr, "presencectl %s: %v\n", name, err)
		commandUsage(stderr, cmd, fs)
		return exitUsage
	}

	if cmd.local {
		if err := cmd.run(&env{opts: opts, out: stdout, err: stderr, ctx: ctx}, &f, positional); err != nil {
			fmt.Fprintf(stderr, "presencectl %s: %v\n", name, err)
			return exitFailed
		}
		return exitOK
	}
	e, closeConn, err := connect(ctx, opts, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "presencectl:", withHint(err, opts.url))
		return exitFailed
	}
	defer closeConn()
	var cancel context.CancelFunc
	e.ctx, cancel = context.WithTimeout(e.refused, opts.timeout)
	defer cancel()
	if err := cmd.run(e, &f, positional); err != nil {
		if cause := context.Cause(e.refused); cause != nil {
			err = cause
		}
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "presencectl %s: %v\n", name, withHint(err, opts.url))
		}
		return exitFailed
	}
	return exitOK
}

// availabilityHelp lists what AVAILABILITY takes, from the contract's types.
func availabilityHelp(w io.Writer) {
	fmt.Fprintln(w, "AVAILABILITY is one of these (in any case), each owning a range of the")
	fmt.Fprintln(w, "Skype for Business scale; the provider stores the default in brackets:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, b := range schemas.Availabilities() {
		var band string
		switch {
		case b.Name == schemas.Unknown:
			band = "0"
		case b.To == 0:
			band = fmt.Sprintf("%d and above", b.From)
		default:
			band = fmt.Sprintf("%d-%d", b.From, b.To)
		}
		fmt.Fprintf(tw, "  %s\t%s\t(%d)\n", b.Name, band, b.Value)
	}
	_ = tw.Flush()
}

func printVersion(e *env, _ *cmdFlags, _ []string) error {
	_, err := fmt.Fprintln(e.out, buildinfo.Line("presencectl"))
	return err
}

// startHint is how a newcomer gets a provider to talk to.
const startHint = "start one (PRESENCE_CONFIG=examples/Config.xml go run ./cmd/presenced), " +
	"or set PRESENCE_NATS_URL (or -nats) to the NATS the provider uses"

// withHint adds what to do when there is no NATS or no provider at url.
func withHint(err error, url string) error {
	switch {
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("%w: no NATS answers at %s, so no provider runs there: %s", err, config.RedactURLs(url), startHint)
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: NATS at %s answers, but no provider listens on it: %s", err, config.RedactURLs(url), startHint)
	}
	return err
}

// newFlagSet holds the command's flags and the ones every command takes.
func newFlagSet(c command, o *options, f *cmdFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("presencectl "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.register(fs)
	if c.flags != nil {
		c.flags(fs, f)
	}
	return fs
}

// parseAnywhere reads flags wherever they stand among the arguments, so
// that `subscribe -ucc u1 sip:a@b.c -lease 30` leases rather than taking
// -lease and 30 for agents; after --, everything is an argument.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if args = fs.Args(); len(args) == 0 {
			return append(positional, tail...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}
