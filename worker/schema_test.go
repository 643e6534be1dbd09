package worker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/schemas/schematest"
)

// TestRunningProviderSpeaksTheSchemas validates, byte for byte, what a
// running provider answers, publishes and stores against the
// JSON Schemas of docs/contract.md.
func TestRunningProviderSpeaksTheSchemas(t *testing.T) {
	v := schematest.Validator(t)
	env := startAll(t, provtest.Config())
	nc := env.Conn.NC
	const agent = "sip:agent@workstreampeople.com"
	key := keyOf(agent)

	events := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(schemas.EventWildcard, events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	request := func(subject, schema, body string) {
		t.Helper()
		v.Validate(t, schema, rawRequest(t, env, subject, []byte(body)).Data)
	}
	request(schemas.SubjectSubscribe, "agents-reply.schema.json", `{"ucc":"ucc_app01","agents":[{"uri":"`+agent+`"},{"uri":"tel:+31612345678"},{"uri":"sip:x@anywhere.now","teams_upn":"x@contoso.com"},{"uri":"bad"}],"lease_s":60}`)
	request(schemas.AttendantPrefix+key, "input-reply.schema.json", `{"availability":"Busy","activity":"InACall","device":"Computer"}`)
	request(schemas.AttendantPrefix+key, "input-reply.schema.json", `{"availability":"Away"}`)
	request(schemas.AttendantPrefix+key, "input-reply.schema.json", `{"availability":"Lunch"}`)
	request(schemas.PSTNPrefix+keyOf("tel:+31612345678"), "input-reply.schema.json", `{"ucc":"ucc_app01","call_id":"c1","state":"connected"}`)
	request(schemas.SubjectGet, "agents-reply.schema.json", `{"uris":["`+agent+`","sip:nobody@anywhere.now","tel:1"]}`)
	request(schemas.SubjectSync, "agents-reply.schema.json", `{"ucc":"ucc_app02","agents":[{"uri":"`+agent+`"}]}`)
	request(schemas.SubjectUnsub, "agents-reply.schema.json", `{"ucc":"ucc_app02","uris":["`+agent+`","bad"]}`)
	request(schemas.SubjectSubscribe, "error-reply.schema.json", `{"agents":[]}`)
	env.AdvanceUntil("every upstream subscription up", func() bool {
		st, err := env.Client.Status(env.Ctx())
		return err == nil && st.Sources["graph"].States[schemas.StateActive] == 1
	})
	request(schemas.SubjectStatus, "status.schema.json", ``)
	// Explain, once the history holds the agent's two changes: a fed agent,
	// an upstream one (graph) with its claim, one nobody knows, and a bad URI.
	provtest.Eventually(t, "the changes in the history", func() bool {
		ex, err := env.Client.Explain(env.Ctx(), agent)
		return err == nil && len(ex.Changes) == 2
	})
	request(schemas.SubjectExplain, "explanation.schema.json", `{"uri":"`+agent+`"}`)
	request(schemas.SubjectExplain, "explanation.schema.json", `{"uri":"sip:x@anywhere.now"}`)
	request(schemas.SubjectExplain, "explanation.schema.json", `{"uri":"sip:nobody@nowhere.example"}`)
	request(schemas.SubjectExplain, "error-reply.schema.json", `{"uri":"bad"}`)

	for n := 0; n < 4; n++ { // Busy, Away, the PSTN agent's Available and Busy
		select {
		case m := <-events:
			v.Validate(t, "event.schema.json", m.Data)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d events", n)
		}
	}

	ctx := env.Ctx()
	for bucket, schema := range map[string]string{
		schemas.BucketState:    "state-entry.schema.json",
		schemas.BucketInterest: "interest.schema.json",
		schemas.BucketClaims:   "claim.schema.json",
		schemas.BucketWorkers:  "worker.schema.json",
		schemas.BucketCalls:    "call.schema.json",
	} {
		kv, err := env.Conn.JS.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for k := range lister.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			v.Validate(t, schema, e.Value())
			count++
		}
		if count == 0 {
			t.Fatalf("bucket %s is empty; nothing was validated", bucket)
		}
	}
}
