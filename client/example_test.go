package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/config"
	"github.com/contactcenter/presence-provider/schemas"
)

// dial joins the examples' provider; a UCC passes its own NATS url and the
// credentials config.LoadNATSAuth reads from PRESENCE_NATS_*.
func dial() *client.Client {
	nc, err := client.Connect(exampleURL, config.NATSAuth{})
	if err != nil {
		panic(err)
	}
	return client.New(nc)
}

func ExampleConnect() {
	auth, err := config.LoadNATSAuth() // PRESENCE_NATS_USER, _PASSWORD, _CREDS, _NKEY, _TLS_*
	if err != nil {
		fmt.Println(err)
		return
	}
	nc, err := client.Connect(exampleURL, auth)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	fmt.Println(nc.IsConnected())
	// Output: true
}

func ExampleClient_Subscribe() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := c.Subscribe(ctx, schemas.SubscribeRequest{UCC: "ucc_app01", Agents: []schemas.AgentRef{
		{URI: "SIP:Agent1@Attendant.Example"}, {URI: "tel:+31 6 1234 5678"}, {URI: "agent3"},
	}})
	if err != nil {
		fmt.Println(err) // the whole request was refused
		return
	}
	for _, r := range rep.Agents {
		if err := client.EntryError(r); err != nil {
			fmt.Println(r.URI, "failed:", errors.Is(err, client.ErrInvalidURI))
			continue
		}
		fmt.Println(r.URI, r.Source, r.State, r.Subject)
	}
	// Output:
	// sip:agent1@attendant.example attendant active presence.c2lwOmFnZW50MUBhdHRlbmRhbnQuZXhhbXBsZQ
	// tel:+31612345678 pstn active presence.dGVsOiszMTYxMjM0NTY3OA
	// agent3 failed: true
}

func ExampleClient_Sync() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Afterwards ucc_sync's agents are exactly these two.
	rep, err := c.Sync(ctx, schemas.SubscribeRequest{UCC: "ucc_sync", Agents: []schemas.AgentRef{
		{URI: "sip:agent1@attendant.example"}, {URI: "sip:agent2@attendant.example"},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(rep.Agents), client.Failed(rep))
	// Output: 2 <nil>
}

func ExampleClient_Unsubscribe() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Removing an interest the UCC does not hold is not an error.
	rep, err := c.Unsubscribe(ctx, schemas.UnsubscribeRequest{UCC: "ucc_sync", URIs: []string{"sip:agent2@attendant.example", "sip:nobody@attendant.example"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(client.Failed(rep))
	// Output: <nil>
}

func ExampleClient_Attendant() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, err := client.Key("sip:agent4@attendant.example")
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "busy", Activity: "InACall"})
	fmt.Println(rep.OK, rep.Seq > 0, err)
	// An availability the contract does not know is refused.
	_, err = c.Attendant(ctx, key, schemas.AttendantInput{Availability: "Sleepy"})
	fmt.Println(errors.Is(err, client.ErrInvalidInput))
	// Output:
	// true true <nil>
	// true
}

func ExampleClient_PSTN() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, _ := client.Key("tel:+31612345678")
	rep, err := c.PSTN(ctx, key, schemas.PSTNInput{UCC: "ucc_app01", CallID: "c-1", State: schemas.CallConnected})
	fmt.Println(rep.OK, err)
	// A SIP agent takes no PSTN calls.
	sip, _ := client.Key("sip:agent1@attendant.example")
	_, err = c.PSTN(ctx, sip, schemas.PSTNInput{UCC: "ucc_app01", CallID: "c-2", State: schemas.CallConnected})
	fmt.Println(errors.Is(err, client.ErrNotPSTNAgent))
	// Output:
	// true <nil>
	// true
}

func ExampleClient_Get() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, _ := client.Key("sip:agent5@attendant.example")
	if _, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "Away"}); err != nil {
		fmt.Println(err)
		return
	}
	rep, err := c.Get(ctx, schemas.GetRequest{URIs: []string{"sip:agent5@attendant.example"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := rep.Agents[0]
	fmt.Println(r.URI, r.Presence.Availability, r.Presence.AvailabilityValue, r.Seq > 0)
	// Output: sip:agent5@attendant.example Away 15500 true
}

func ExampleClient_Status() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Worker, st.Sources[schemas.SourceAttendant].Enabled, st.Sources[schemas.SourceSIP].Enabled)
	// Output: worker-a true false
}

func ExampleClient_Watch() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const agent = "sip:agent6@attendant.example"
	key, _ := client.Key(agent)
	if _, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "Available"}); err != nil {
		fmt.Println(err)
		return
	}
	updates := make(chan client.Update, 16)
	w, err := c.Watch(ctx, []string{agent}, func(u client.Update) { updates <- u })
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = w.Stop() }()
	// First the current presence, read from the provider...
	u := <-updates
	fmt.Println(u.URI, u.Presence.Availability, u.CatchUp)
	// ...then every change, as its event arrives.
	if _, err := c.Attendant(ctx, key, schemas.AttendantInput{Availability: "DoNotDisturb"}); err != nil {
		fmt.Println(err)
		return
	}
	u = <-updates
	fmt.Println(u.URI, u.Previous.Availability, "->", u.Presence.Availability, u.CatchUp)
	// Output:
	// sip:agent6@attendant.example Available true
	// sip:agent6@attendant.example Available -> DoNotDisturb false
}

func ExampleParseURI() {
	u, err := client.ParseURI("sip:+31612345678@GW.example.com;user=phone")
	fmt.Println(u.URI, u.PSTN, u.Key(), err)
	_, err = client.ParseURI("mailto:agent1@example.com")
	fmt.Println(errors.Is(err, client.ErrInvalidURI), err)
	// Output:
	// sip:+31612345678@gw.example.com true c2lwOiszMTYxMjM0NTY3OEBndy5leGFtcGxlLmNvbQ <nil>
	// true invalid_uri: uri "mailto:agent1@example.com": scheme "mailto" is not sip, sips or tel
}

func ExampleKey() {
	key, err := client.Key("  SIP:User1@Domain.COM  ")
	fmt.Println(key, err)
	fmt.Println(schemas.EventSubject(key))
	// Output:
	// c2lwOnVzZXIxQGRvbWFpbi5jb20 <nil>
	// presence.c2lwOnVzZXIxQGRvbWFpbi5jb20
}

func ExampleError() {
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A request refused as a whole is an *Error too.
	_, err := c.Subscribe(ctx, schemas.SubscribeRequest{Agents: []schemas.AgentRef{{URI: "sip:a@b.example"}}})
	var e *client.Error
	fmt.Println(errors.Is(err, client.ErrBadRequest), errors.As(err, &e) && e.Message == "ucc is mandatory")
	// Output: true true
}
