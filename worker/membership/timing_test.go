package membership

import (
	"fmt"
	"testing"
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

// The fence falls at least a beat before the entry can lapse, and a failed
// beat leaves room for another one before the fence.
func TestTimingFencesBeforeTheLeaseLapses(t *testing.T) {
	for _, lease := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second, time.Hour, 10*time.Second + 1} {
		beat, fence := BeatEvery(lease), FenceAfter(lease)
		if fence+beat > lease {
			t.Errorf("lease %s: fenced after %s, a beat (%s) later is past the lapse", lease, fence, beat)
		}
		if fence < 2*beat {
			t.Errorf("lease %s: fenced after %s, before a second beat (%s apart) could renew", lease, fence, beat)
		}
	}
}

// A worker that leaves moves only the agents it owned; one that joins takes
// only agents, from anyone, that it now owns.
func TestOwnerMovesOnlyTheLeaversAgents(t *testing.T) {
	three, two := []string{"w0", "w1", "w2"}, []string{"w0", "w2"}
	owned := map[string]int{}
	for i := range 3000 {
		key := schemas.Key(fmt.Sprintf("sip:agent%d@example.com", i))
		before, after := Owner(key, three), Owner(key, two)
		owned[before]++
		if before != "w1" && after != before {
			t.Fatalf("%s moved from %s to %s when w1 left", key, before, after)
		}
		if after == "w1" {
			t.Fatalf("%s owned by w1, which left", key)
		}
		if again := Owner(key, []string{"w2", "w1", "w0"}); again != before {
			t.Fatalf("%s: owner %s by one order of the live workers, %s by another", key, before, again)
		}
	}
	for _, id := range three {
		if owned[id] < 800 {
			t.Errorf("%s owns %d of 3000 agents: the share is lopsided (%v)", id, owned[id], owned)
		}
	}
	if got := Owner("agent-1", nil); got != "" {
		t.Errorf("owner with no live worker = %q, want none", got)
	}
}
