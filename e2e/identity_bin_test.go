package e2e

// Node identity is data, not a flag (issue 13, point 3): a storage node
// started under the id of a node that holds partitions, on an empty data
// directory, must refuse to start instead of serving empty reads.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// TestBinWipedNodeRefused writes keys to a 3-node RF 3 cluster, stops a
// node, wipes its data directory and starts it again under the same id. It
// must exit non-zero with the remedy, never become SERVING, and never
// answer a read: with the two intact nodes stopped too, reads at ONE fail
// instead of saying "not found".
func TestBinWipedNodeRefused(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3})
	cl := c.Client(t, faultClientOpts...)
	const table = "identity"
	createTableBin(t, cl, table)
	acked := map[string]ackedPut{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 300 {
		key, value := loadKey(i), []byte(fmt.Sprintf("value-%05d", i))
		v, err := cl.Put(ctx, table, []byte(key), nil, value)
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		acked[key] = ackedPut{value: value, version: v.Version}
	}

	victim := c.Nodes[1] // node id n2
	victim.Stop(t)
	victim.WipeDataDir(t)
	dir := victim.DataDir()
	for attempt := 1; attempt <= 2; attempt++ { // a refusal leaves nothing that lets the next start through
		out := victim.StartFails(t)
		for _, want := range []string{
			"data directory " + dir + " is empty but node id n2 holds 64 partitions in cluster e2e",
			"veltrix node replace n2",
			`Replacing a node`,
			"restore its data directory",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("start #%d of the wiped n2: log lacks %q:\n%s", attempt, want, out)
			}
		}
		if attempt == 1 {
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "refusing to start") {
					t.Logf("n2 said: %s", line)
				}
			}
		}
		if strings.Contains(out, "storage node serving") {
			t.Errorf("start #%d of the wiped n2 served:\n%s", attempt, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "IDENTITY")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused start stamped %s: %v", dir, err)
		}
	}

	// Only the refused node could answer now: every read must fail.
	c.Nodes[0].Stop(t)
	c.Nodes[2].Stop(t)
	one, err := client.New(ctx, c.RouterAddrs(), client.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	answered := 0
	for i := 0; i < 300; i += 10 {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		it, found, err := one.Get(rctx, table, []byte(loadKey(i)), nil, client.WithConsistency(kvv1.Consistency_CONSISTENCY_ONE))
		rcancel()
		if err == nil {
			answered++
			t.Errorf("read of %s at ONE with only the wiped n2 started answered found=%v %q; want an error", loadKey(i), found, it.Value)
		}
	}
	t.Logf("with n1 and n3 stopped and the wiped n2 refused, %d of 30 reads at ONE answered (want 0)", answered)

	// The intact nodes restart on their directories and have everything.
	c.Nodes[0].Restart(t)
	c.Nodes[2].Restart(t)
	waitReadable(t, cl, table, firstKey(acked), kvv1.Consistency_CONSISTENCY_ONE, 30*time.Second)
	verifyAcked(t, cl, table, acked, kvv1.Consistency_CONSISTENCY_QUORUM)
}
