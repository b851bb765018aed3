package e2e

// A network partition, not a crash: one storage node is cut off from the
// routers and from its peers (both directions) while it keeps running,
// under a QUORUM write+delete load, then healed. Anti-entropy alone must
// bring it back to the records its peers acknowledged meanwhile.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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
	// Past the replies in flight at the cut, the victim's anti-entropy must
	// pull nothing until the heal.
	time.Sleep(500 * time.Millisecond)
	pulledAtCut := pulled(t, c.Nodes[victim])
	rounds := func() float64 { return metricValue(t, c.Nodes[0], "veltrix_storage_repair_rounds_total") }
	roundsAtCut := rounds()
	during, failedAtCut := load(200_000, 300_000, 3*time.Second)
	nDuring := merge(during)
	r := <-cutDone
	merge(r.acked)
	if !c.Nodes[victim].Running() {
		t.Fatalf("%s stopped running while cut off", c.Nodes[victim].Name)
	}
	assertCutOff(t, c, victim, pulledAtCut)
	t.Logf("%s ran %v anti-entropy rounds while %s was cut off", c.Nodes[0].Name, rounds()-roundsAtCut, c.Nodes[victim].Name)
	c.Heal(t)
	healAt := time.Now()
	t.Logf("%s cut off for %v while running; %d QUORUM keys acknowledged while cut (%d failed), %d operations failed across the cut",
		c.Nodes[victim].Name, healAt.Sub(cutAt).Round(time.Millisecond), nDuring, failedAtCut, r.failed)
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

	waitConverged(t, c, 60*time.Second)
	t.Logf("%d keys acknowledged; replicas converged %v after the heal (a 1.5 s load ran after it)", len(acked), time.Since(healAt).Round(time.Millisecond))
	checkAlone(t, c, cl, "partition", acked, victim)
}

// assertCutOff checks that the cut holds both ways: over four of its
// anti-entropy rounds the victim pulls nothing from its peers. (Whether the
// other two converge meanwhile is not checked: the partitions the victim
// leads have no other repair leader while its etcd lease holds.)
func assertCutOff(t *testing.T, c *framework.Cluster, victim int, pulledAtCut float64) {
	t.Helper()
	time.Sleep(2 * time.Second)
	if n := pulled(t, c.Nodes[victim]) - pulledAtCut; n != 0 {
		t.Fatalf("%s pulled %v records from its peers while cut off: the cut is not symmetric", c.Nodes[victim].Name, n)
	}
}

// pulled is how many records p's anti-entropy has pulled from its peers.
func pulled(t *testing.T, p *framework.Process) float64 {
	return metricValue(t, p, `veltrix_storage_repair_keys_total{direction="pulled"}`)
}

// metricValue scrapes one series (name{labels} as exposed) from p's
// /metrics.
func metricValue(t testing.TB, p *framework.Process, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.Port("metrics-addr"))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.Name, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.Name, url, err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", p.Name, series, err)
			}
			return f
		}
	}
	t.Fatalf("%s: no series %s in /metrics", p.Name, series)
	return 0
}
