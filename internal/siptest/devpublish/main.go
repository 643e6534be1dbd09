// Command devpublish PUBLISHes an agent's presence to a presence server, as
// a SIP client of the agent would.
//
//	go run ./internal/siptest/devpublish -server 127.0.0.1:5060 sip:agent1@example.com open on-the-phone
//
// The second argument is the PIDF basic status (open or closed); the third,
// optional, an RPID activity (on-the-phone, busy, away, meeting, vacation...).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/contactcenter/presence-provider/internal/siptest"
)

func main() {
	server := flag.String("server", "127.0.0.1:5060", "presence server host:port (UDP)")
	expires := flag.Int("expires", 3600, "publication lifetime in seconds")
	flag.Parse()
	if flag.NArg() < 2 {
		fmt.Fprintln(os.Stderr, "usage: devpublish [-server host:port] AGENT-URI open|closed [ACTIVITY]")
		os.Exit(2)
	}
	agent, basic, activity := flag.Arg(0), flag.Arg(1), flag.Arg(2)
	etag, err := siptest.Publish(*server, agent, "", siptest.PIDF(agent, basic, activity, ""), *expires)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devpublish:", err)
		os.Exit(1)
	}
	fmt.Printf("published %s %s %s (SIP-ETag %s)\n", agent, basic, activity, etag)
}
