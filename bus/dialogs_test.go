package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/schemas"
)

// A dialog stored for an agent reads back whole, and is gone once deleted.
func TestDialogBucketKeepsAgentDialogs(t *testing.T) {
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	conn, err := bus.Connect("", ns.Server, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialogs, err := conn.DialogBucket(ctx, bus.BucketOptions{Replicas: 1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	key := schemas.Key("sip:agent1@example.com")
	if _, found, err := dialogs.Get(ctx, key); err != nil || found {
		t.Fatalf("an agent with no dialog: found %v, %v", found, err)
	}
	want := schemas.Dialog{Endpoint: "application", CallID: "c1", LocalTag: "l1", RemoteTag: "r1",
		Target: "sip:127.0.0.1:5060", RouteSet: []string{"sip:proxy.example.com;lr"}, CSeq: 18,
		Expires: time.Date(2026, 11, 24, 10, 10, 0, 0, time.UTC)}
	if err := dialogs.Put(ctx, key, want); err != nil {
		t.Fatal(err)
	}
	got, found, err := dialogs.Get(ctx, key)
	if err != nil || !found || got.CallID != want.CallID || got.CSeq != want.CSeq || !got.Expires.Equal(want.Expires) ||
		len(got.RouteSet) != 1 || got.RouteSet[0] != want.RouteSet[0] || got.Target != want.Target {
		t.Fatalf("read back %+v, %v, %v; want %+v", got, found, err, want)
	}
	if err := dialogs.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := dialogs.Delete(ctx, key); err != nil {
		t.Fatalf("deleting a dialog twice: %v", err)
	}
	if _, found, err := dialogs.Get(ctx, key); err != nil || found {
		t.Fatalf("after the delete: found %v, %v", found, err)
	}
}
