package e2e

// A network partition, not a crash: one storage node is cut off from the
// routers and from its peers (both directions) while it keeps running,
// under a QUORUM write+delete load, then healed. Anti-entropy alone must
// bring it back to the records its peers acknowledged meanwhile.

import (
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func TestBinConvergeAfterPartition(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, StorageArgs: aeArgs, FaultProxies: true})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "partition")
	const victim = 2

	// Three phases of the load: before, during and after the cut. Only the
	// operations in flight when the cut comes may fail.
	load := func(from, to int, d time.Duration) (map[string]outcome, int) {
		stop := make(chan struct{})
		timer := time.AfterFunc(d, func() { close(stop) })
		defer timer.Stop()
		return writeDeleteLoad(cl, "partition", from, to, 6, kvv1.Consistency_CONSISTENCY_QUORUM, stop)
	}
	acked := map[string]outcome{}
	merge := func(m map[string]outcome) int {
		for k, o := range m {
			acked[k] = o
		}
		return len(m)
	}

	before, failedBefore := load(0, 1000, 1500*time.Millisecond)
	merge(before)

	// The cut comes while the load runs.
	type result struct {
		acked  map[string]outcome
		failed int
	}
	cutDone := make(chan result)
	go func() {
		a, f := load(100_000, 200_000, 4*time.Second)
		cutDone <- result{a, f}
	}()
	time.Sleep(300 * time.Millisecond)
	c.Partition(t, victim)
	cutAt := time.Now()
	during, failedAtCut := load(200_000, 300_000, 3*time.Second)
	nDuring := merge(during)
	r := <-cutDone
	merge(r.acked)
	if !c.Nodes[victim].Running() {
		t.Fatalf("%s stopped running while cut off", c.Nodes[victim].Name)
	}
	c.Heal(t)
	t.Logf("%s cut off for %v while running; %d QUORUM keys acknowledged while cut (0 failed), %d operations failed across the cut",
		c.Nodes[victim].Name, time.Since(cutAt).Round(time.Millisecond), nDuring, r.failed)
	if failedBefore > 0 {
		t.Errorf("%d QUORUM operations failed before the cut", failedBefore)
	}
	if failedAtCut > 0 {
		t.Errorf("%d QUORUM operations failed while %s was cut off (only the ones in flight at the cut may)", failedAtCut, c.Nodes[victim].Name)
	}
	if nDuring == 0 {
		t.Fatalf("no QUORUM write was acknowledged while %s was cut off", c.Nodes[victim].Name)
	}
	// The operations in flight at the cut are the ones the 6 workers held.
	if r.failed > 6 {
		t.Errorf("%d QUORUM operations failed across the cut; at most the 6 in flight may", r.failed)
	}

	after, failedAfter := load(300_000, 301_000, 1500*time.Millisecond)
	merge(after)
	if failedAfter > 0 {
		t.Errorf("%d QUORUM operations failed after the heal", failedAfter)
	}

	took := waitConverged(t, c, 60*time.Second)
	t.Logf("%d keys acknowledged; replicas converged %v after the heal", len(acked), took.Round(time.Millisecond))
	checkAlone(t, c, cl, "partition", acked, victim)
}
