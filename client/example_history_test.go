package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/schemas"
)

func ExampleClient_History() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const agent = "sip:agent7@attendant.example"
	key, _ := client.Key(agent)
	var seen uint64 // the last seq this UCC saw of the agent
	for _, a := range []string{"Available", "Busy", "Away"} {
		rep, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: a})
		if err != nil {
			fmt.Println(err)
			return
		}
		if seen == 0 {
			seen = rep.Seq
		}
	}
	// Back after a disconnect, the UCC replays what came after seen. The
	// stream stores each event as it passes, a moment after the input's
	// answer, so this example asks until both are there.
	var missed []schemas.HistoryEntry
	for len(missed) < 2 {
		var err error
		if missed, err = c.History(ctx, agent, client.HistoryOptions{AfterSeq: seen}); err != nil {
			fmt.Println(err)
			return
		}
		select {
		case <-ctx.Done():
			fmt.Println(ctx.Err())
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, e := range missed {
		fmt.Println(e.Event.Previous.Availability, "->", e.Event.Presence.Availability, e.Event.Seq > seen)
	}
	// Output:
	// Available -> Busy true
	// Busy -> Away true
}

func ExampleClient_Explain() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const agent = "sip:agent8@attendant.example"
	rep, err := c.Subscribe(ctx, schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{{URI: agent}}})
	if err == nil {
		err = client.Failed(rep)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	ex, err := c.Explain(ctx, agent)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ex.Route.Source, "because", ex.Route.Rule)
	for _, in := range ex.Interests {
		fmt.Println("wanted by", in.UCC)
	}
	// The attendant's inputs feed the agent: nobody claims it or holds an
	// upstream subscription.
	fmt.Println(ex.Claim == nil, ex.Upstream == nil)
	// Output:
	// attendant because attendant: pattern `@attendant\.example$` matched
	// wanted by ucc_app01
	// true true
}
