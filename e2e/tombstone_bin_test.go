package e2e

// A delete must stay a delete on a replica that was away when it happened,
// however long it was away: tombstones older than the grace on two replicas
// and absent on the third are not purged until anti-entropy has given them
// to the third, and after repair the item stays deleted everywhere.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
)

func TestBinTombstoneOutlivesAbsentReplica(t *testing.T) {
	binTest(t)
	const partitions = 64
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Partitions: partitions, StorageArgs: []string{
		"--anti-entropy-interval", "300ms", "--tombstone-grace", "1s", "--purge-interval", "200ms", "--anti-entropy-clock-skew", "100ms"}})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "tombs")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tbl, err := cl.DescribeTable(ctx, "tombs")
	if err != nil {
		t.Fatal(err)
	}
	all := client.WithConsistency(kvv1.Consistency_CONSISTENCY_ALL)
	var keys []string
	for i := range 40 {
		k := fmt.Sprintf("doomed-%02d", i)
		keys = append(keys, k)
		if _, err := cl.Put(ctx, "tombs", []byte(k), nil, []byte("alive"), all); err != nil {
			t.Fatal(err)
		}
	}
	// storage-3 goes away holding the live values; the deletes reach the
	// other two.
	away := c.Nodes[2]
	away.Kill(t)
	for _, k := range keys {
		if _, err := cl.Delete(ctx, "tombs", []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Far past the grace, with many purge passes and anti-entropy rounds:
	// the tombstones must still be there, since storage-3 lacks them.
	time.Sleep(3 * time.Second)
	tombstones := func(n *framework.Process) (tomb, live, absent int) {
		t.Helper()
		cc, err := grpcx.Dial(n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		sc := storagev1.NewStorageServiceClient(cc)
		for _, k := range keys {
			key := &storagev1.Key{Partition: placement.PartitionOf(tbl.GetId(), []byte(k), partitions), TableId: tbl.GetId(), PartitionKey: []byte(k)}
			r, err := sc.Read(ctx, &storagev1.ReadRequest{Key: key})
			switch {
			case err != nil:
				t.Fatalf("%s: read %s: %v", n.Name, k, err)
			case !r.GetFound():
				absent++
			case r.GetRecord().GetTombstone():
				tomb++
			default:
				live++
			}
		}
		return
	}
	for _, n := range c.Nodes[:2] {
		if tomb, live, absent := tombstones(n); tomb != len(keys) {
			t.Fatalf("%s purged deletes storage-3 never saw: %d tombstones, %d live, %d absent of %d", n.Name, tomb, live, absent, len(keys))
		}
	}

	away.Restart(t)
	waitConverged(t, c, time.Minute)
	deleted := map[string]outcome{}
	for _, k := range keys {
		deleted[k] = outcome{deleted: true}
	}
	checkAlone(t, c, cl, "tombs", deleted, 2)

	// Once every replica has them, the tombstones go everywhere, and the
	// items stay deleted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		purged := true
		for _, n := range c.Nodes {
			tomb, live, _ := tombstones(n)
			if live > 0 {
				t.Fatalf("%s: %d deleted items are live again", n.Name, live)
			}
			if tomb > 0 {
				purged = false
			}
		}
		if purged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tombstones were never purged once every replica had them")
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitConverged(t, c, 30*time.Second)
	checkAlone(t, c, cl, "tombs", deleted, 0)
}
