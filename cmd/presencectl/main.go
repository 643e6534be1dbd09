// Command presencectl is the Presence Provider's tool for people: subscribe
// and unsubscribe agents for a UCC, watch their presence, read the status,
// and play an attendant client or a UCC reporting PSTN calls.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
)

const usage = `usage: presencectl [-nats URL] [-timeout D] COMMAND ...

  subscribe   -ucc UCC [-lease S] URI[=TEAMS_UPN] ...   add the UCC's interest in agents
  unsubscribe -ucc UCC URI ...                          remove it
  sync        -ucc UCC [-lease S] URI[=TEAMS_UPN] ...   make the UCC's agents exactly these
  get         URI ...                                   current presence of agents
  status                                                workers, counts, source health
  watch       [URI ...]                                 print presence changes (all agents when none given)
  attendant   [-activity A] [-device D] URI AVAILABILITY   set an attendant presence
  call        -ucc UCC -call ID URI connected|ended     report a PSTN call

The NATS url defaults to $PRESENCE_NATS_URL, else nats://127.0.0.1:4222.
Credentials and TLS come from PRESENCE_NATS_CREDS, PRESENCE_NATS_NKEY,
PRESENCE_NATS_USER and PRESENCE_NATS_PASSWORD, PRESENCE_NATS_TLS_CA,
PRESENCE_NATS_TLS_CERT and PRESENCE_NATS_TLS_KEY (see docs/security.md).
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presencectl:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	global := flag.NewFlagSet("presencectl", flag.ContinueOnError)
	global.Usage = func() { fmt.Fprint(global.Output(), usage) }
	url := global.String("nats", envOr("PRESENCE_NATS_URL", "nats://127.0.0.1:4222"), "NATS url")
	timeout := global.Duration("timeout", 30*time.Second, "request timeout")
	if err := global.Parse(args); err != nil {
		return err
	}
	if global.NArg() == 0 {
		global.Usage()
		return errors.New("no command")
	}
	auth, err := config.LoadNATSAuth()
	if err != nil {
		return err
	}
	opts, err := bus.ClientOptions(auth)
	if err != nil {
		return err
	}
	// A request the server refuses (a permissions violation) would only
	// time out: the server's error ends the command at once instead.
	refused, stopRefused := context.WithCancelCause(context.Background())
	defer stopRefused(nil)
	nc, err := nats.Connect(*url, append(opts, nats.Name("presencectl"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				stopRefused(err)
				return
			}
			fmt.Fprintln(os.Stderr, "presencectl:", err)
		}))...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", config.RedactURLs(*url), err)
	}
	defer nc.Close()
	c := bus.NewClient(nc)
	ctx, cancel := context.WithTimeout(refused, *timeout)
	defer cancel()

	cmd, rest := global.Arg(0), global.Args()[1:]
	flags := flag.NewFlagSet(cmd, flag.ContinueOnError)
	ucc := flags.String("ucc", "", "UCC id")
	lease := flags.Int("lease", 0, "lease in seconds (0: until unsubscribed)")
	activity := flags.String("activity", "", "activity token")
	device := flags.String("device", "", "device")
	callID := flags.String("call", "", "call id")
	if err := flags.Parse(rest); err != nil {
		return err
	}
	uris := flags.Args()
	show := func(reply any, err error) error {
		if cause := context.Cause(refused); err != nil && cause != nil {
			return cause
		}
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(reply)
	}

	switch cmd {
	case "subscribe", "sync":
		// Never null: "sync" with no agents clears the UCC's agents.
		req := schemas.SubscribeRequest{UCC: *ucc, LeaseS: *lease, Agents: []schemas.AgentRef{}}
		for _, arg := range uris {
			uri, upn, _ := strings.Cut(arg, "=")
			req.Agents = append(req.Agents, schemas.AgentRef{URI: uri, TeamsUPN: upn})
		}
		call := c.Subscribe
		if cmd == "sync" {
			call = c.Sync
		}
		return show(call(ctx, req))
	case "unsubscribe":
		return show(c.Unsubscribe(ctx, schemas.UnsubscribeRequest{UCC: *ucc, URIs: uris}))
	case "get":
		return show(c.Get(ctx, schemas.GetRequest{URIs: uris}))
	case "status":
		return show(c.Status(ctx))
	case "attendant":
		if len(uris) != 2 {
			return errors.New("attendant takes URI AVAILABILITY")
		}
		key, err := keyOf(uris[0])
		if err != nil {
			return err
		}
		return show(c.Attendant(ctx, key, schemas.AttendantInput{Availability: uris[1], Activity: *activity, Device: *device}))
	case "call":
		if len(uris) != 2 {
			return errors.New("call takes URI connected|ended")
		}
		key, err := keyOf(uris[0])
		if err != nil {
			return err
		}
		return show(c.PSTN(ctx, key, schemas.PSTNInput{UCC: *ucc, CallID: *callID, State: uris[1]}))
	case "watch":
		cancel() // watch runs until interrupted, not for one timeout
		return watch(refused, c, uris, out)
	default:
		global.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func keyOf(raw string) (string, error) {
	u, err := schemas.ParseURI(raw)
	if err != nil {
		return "", err
	}
	return u.Key(), nil
}

// watch prints events until interrupted, or until the server refuses the
// subscription (refused ends with the server's error).
func watch(refused context.Context, c *bus.Client, uris []string, out io.Writer) error {
	var keys []string
	for _, raw := range uris {
		key, err := keyOf(raw)
		if err != nil {
			return err
		}
		keys = append(keys, key)
	}
	stop, err := c.Watch(keys, func(ev schemas.Event) {
		prev := "none"
		if ev.Previous != nil {
			prev = fmt.Sprintf("%s (%d)", ev.Previous.Availability, ev.Previous.AvailabilityValue)
		}
		fmt.Fprintf(out, "%s %s seq=%d %s -> %s (%d) activity=%q source=%s\n",
			ev.Presence.ObservedAt.Format(time.RFC3339), ev.URI, ev.Seq, prev,
			ev.Presence.Availability, ev.Presence.AvailabilityValue, ev.Presence.Activity, ev.Presence.Source)
	})
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(refused, syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	<-ctx.Done()
	err = stop()
	if cause := context.Cause(refused); cause != nil {
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
