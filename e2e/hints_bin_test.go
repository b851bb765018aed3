package e2e

// Hinted handoff with real processes and anti-entropy off, so hints are the
// only repair: a replica SIGKILLed while writes and deletes are acknowledged
// at QUORUM must, once it is back and the hints are replayed, answer every
// acknowledged key alone. With --hinted-handoff=false the same run leaves it
// without them, which shows the test can fail.

import (
	"context"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// noRepairArgs turn anti-entropy off (which needs a tombstone grace of at
// least a minute).
var noRepairArgs = []string{"--anti-entropy-interval", "-1s", "--tombstone-grace", "10m"}

// wrongAlone stops every node but c.Nodes[keep], reads every acknowledged
// key at ONE (only that node can answer), restarts the others and returns
// how many keys read wrong.
func wrongAlone(t *testing.T, c *framework.Cluster, cl *client.Client, table string, acked map[string]outcome, keep int) int {
	t.Helper()
	for i, n := range c.Nodes {
		if i != keep {
			n.Stop(t)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bad := 0
	for k, want := range acked {
		it, found, err := cl.Get(ctx, table, []byte(k), nil, client.WithConsistency(kvv1.Consistency_CONSISTENCY_ONE))
		switch {
		case err != nil:
			t.Fatalf("%s alone: get %s: %v", c.Nodes[keep].Name, k, err)
		case want.deleted && found, !want.deleted && (!found || string(it.Value) != want.value):
			bad++
			if bad <= 5 {
				t.Logf("%s alone: %s = %q (found %v), acknowledged %+v", c.Nodes[keep].Name, k, it.Value, found, want)
			}
		}
	}
	for i, n := range c.Nodes {
		if i != keep {
			n.Restart(t)
		}
	}
	return bad
}

func TestBinHintedHandoff(t *testing.T) {
	binTest(t)
	for _, tc := range []struct {
		name    string
		handoff bool
	}{{"on", true}, {"off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, StorageArgs: noRepairArgs,
				RouterArgs: []string{"--hinted-handoff=" + map[bool]string{true: "true", false: "false"}[tc.handoff]}})
			cl := c.Client(t, faultClientOpts...)
			createTableBin(t, cl, "hinted")
			victim := c.Nodes[2]
			victim.Kill(t)
			acked, failed := writeDeleteLoad(cl, "hinted", 0, 400, 4, kvv1.Consistency_CONSISTENCY_QUORUM, nil)
			if failed > 0 || len(acked) != 400 {
				t.Fatalf("QUORUM with one replica down: %d acknowledged, %d failed", len(acked), failed)
			}
			// Hints go out after each write answered: wait for the last.
			// Every put and delete (400 + 100) missed n3 once.
			var stored, held float64
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				stored = metricValue(t, c.Routers[0], `veltrix_router_hints_total{result="stored"}`)
				held = metricValue(t, c.Nodes[0], "veltrix_storage_hints_pending") + metricValue(t, c.Nodes[1], "veltrix_storage_hints_pending")
				if !tc.handoff || (stored == 500 && held == 500) || time.Now().After(end) {
					break
				}
			}
			t.Logf("router stored %v hints; n1 and n2 hold %v", stored, held)
			if tc.handoff && (stored != 500 || held != 500) {
				t.Fatalf("hints: router stored %v, nodes hold %v, want 500 (every put and delete once)", stored, held)
			}
			if !tc.handoff && stored+held != 0 {
				t.Fatalf("hints with --hinted-handoff=false: router stored %v, nodes hold %v", stored, held)
			}

			victim.Restart(t)
			deadline := time.Now().Add(60 * time.Second)
			for {
				pending := metricValue(t, c.Nodes[0], "veltrix_storage_hints_pending") + metricValue(t, c.Nodes[1], "veltrix_storage_hints_pending")
				if pending == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%v hints still pending 60s after %s returned", pending, victim.Name)
				}
				time.Sleep(200 * time.Millisecond)
			}
			replayed := metricValue(t, c.Nodes[0], "veltrix_storage_hints_replayed_total") + metricValue(t, c.Nodes[1], "veltrix_storage_hints_replayed_total")
			for _, n := range c.Nodes[:2] {
				for _, r := range []string{"age", "full", "moved", "gone", "invalid"} {
					if d := metricValue(t, n, `veltrix_storage_hints_dropped_total{reason="`+r+`"}`); d != 0 {
						t.Errorf("%s dropped %v hints (%s)", n.Name, d, r)
					}
				}
			}
			bad := wrongAlone(t, c, cl, "hinted", acked, 2)
			t.Logf("%d hints replayed; %s alone reads %d of %d keys wrong", int(replayed), victim.Name, bad, len(acked))
			switch {
			case tc.handoff && (bad != 0 || replayed != stored):
				t.Fatalf("with hinted handoff: %d keys wrong on %s, %v of %v hints replayed", bad, victim.Name, replayed, stored)
			case !tc.handoff && bad == 0:
				t.Fatalf("without hinted handoff or anti-entropy %s has every key: the test cannot tell", victim.Name)
			}
		})
	}
}
