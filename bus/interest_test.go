package bus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/contactcenter/presence-provider/bus"
	"github.com/contactcenter/presence-provider/internal/provtest"
	"github.com/contactcenter/presence-provider/schemas"
)

// TestAgentsOfSeesEveryInterestWhileRenewed: a UCC's interests listed while
// they are written again (lease renewals do) are all listed; one missed is
// one a sync would leave behind.
func TestAgentsOfSeesEveryInterestWhileRenewed(t *testing.T) {
	ns := provtest.Server(t)
	conn, err := bus.Connect("", ns, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	stores, err := conn.Buckets(ctx, bus.BucketOptions{Replicas: 1, WorkerLease: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ucc := schemas.Key("ucc1")
	var ins []schemas.Interest
	for i := range 50 {
		ins = append(ins, schemas.Interest{UCC: "ucc1", URI: "sip:a" + strconv.Itoa(i) + "@x"})
	}
	for _, e := range stores.Interest.Put(ctx, ins) {
		if e != nil {
			t.Fatal(e)
		}
	}
	// One deleted is not listed.
	if _, err := stores.Interest.Delete(ctx, schemas.Key(ins[0].URI), ucc, 0); err != nil {
		t.Fatal(err)
	}
	renewed := ins[1:]
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			stores.Interest.Put(ctx, renewed)
		}
	}()
	defer close(stop)
	for range 200 {
		got, err := stores.Interest.AgentsOf(ctx, ucc)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(renewed) {
			t.Fatalf("listed %d of the UCC's %d interests while they were renewed", len(got), len(renewed))
		}
	}
}
