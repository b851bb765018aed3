package e2e

// Elastic membership tried the way it fails: nodes join, drain, die and come
// back on empty disks while a client writes and reads at QUORUM, and the
// router running the controller, the source and the destination of a move
// are SIGKILLed in the middle of it. Afterwards every acknowledged write is
// read back (QUORUM and ALL), every partition has RF replicas, the replicas
// of every partition hold the same records, and nodes that left hold
// nothing.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// moveArgs make moves quick in tests: many at once, unthrottled streams.
var (
	moveRouterArgs  = []string{"--max-moves-per-node", "8"}
	moveStorageArgs = []string{"--max-backfills", "8", "--anti-entropy-interval", "2s"}
)

// admin returns an AdminService client of the first running router.
func admin(t testing.TB, c *framework.Cluster) kvv1.AdminServiceClient {
	t.Helper()
	for _, r := range c.Routers {
		if !r.Running() {
			continue
		}
		cc, err := grpcx.Dial(r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return kvv1.NewAdminServiceClient(cc)
	}
	t.Fatal("no router running")
	return nil
}

// placementDoc reads the placement document from etcd.
func placementDoc(t testing.TB, c *framework.Cluster) placement.Document {
	t.Helper()
	cli, err := clientv3.New(topology.ClientConfig([]string{c.EtcdEndpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, found, err := topology.NewStore(cli, c.Opts.Cluster).Placement(ctx)
	if err != nil || !found {
		t.Fatalf("read placement: found=%v err=%v", found, err)
	}
	return d
}

// waitBalanced waits until a router reports the placement at its target
// with no move in flight, cleanups included, logging progress.
func waitBalanced(t *testing.T, c *framework.Cluster, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	lastLog := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := admin(t, c).RebalanceStatus(ctx, &kvv1.RebalanceStatusRequest{})
		cancel()
		if err == nil && st.GetBalanced() && len(st.GetMoves()) == 0 {
			t.Logf("balanced after %s (epoch %d, %d moves, %d bytes streamed)", time.Since(start).Round(time.Millisecond),
				st.GetPlacementEpoch(), st.GetMoved(), st.GetBytesStreamed())
			return time.Since(start)
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("epoch %d: %d moves in flight, moved %d, remaining %d, under-replicated %d",
				st.GetPlacementEpoch(), len(st.GetMoves()), st.GetMoved(), st.GetRemaining(), st.GetUnderReplicated())
			if len(st.GetMoves()) > 0 {
				last += fmt.Sprintf(" (first: %v)", st.GetMoves()[0])
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			t.Logf("rebalancing: %s", last)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("not balanced within %s: %s", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkPlacement checks that every partition has rf replicas, all of them
// among nodes, and no move is left.
func checkPlacement(t *testing.T, d placement.Document, nodes []string, rf int) {
	t.Helper()
	if len(d.Moves) > 0 {
		t.Errorf("placement epoch %d still has moves: %v", d.Epoch, d.Moves)
	}
	for p, set := range d.Replicas {
		if len(set) != rf {
			t.Errorf("partition %d has %d replicas %v, want %d", p, len(set), set, rf)
		}
		for _, id := range set {
			if !slices.Contains(nodes, id) {
				t.Errorf("partition %d is on %s, not one of %v", p, id, nodes)
			}
		}
	}
}

// checkShare checks that every node holds its share of the replicas,
// within tolerance (a fraction) of the mean.
func checkShare(t *testing.T, d placement.Document, nodes []string, tolerance float64) {
	t.Helper()
	per := d.Table().PartitionsPerNode()
	mean := float64(len(d.Replicas)*d.RF) / float64(len(nodes))
	for _, id := range nodes {
		if dev := (float64(per[id]) - mean) / mean; dev > tolerance || dev < -tolerance {
			t.Errorf("node %s holds %d replicas, %+.0f%% from the mean %.1f (all: %v)", id, per[id], 100*dev, mean, per)
		}
	}
	t.Logf("replicas per node: %v (mean %.1f)", per, mean)
}

// nodePartitionDigests returns a node's digest of every partition it holds
// data of.
func nodePartitionDigests(t *testing.T, addr string) map[uint32]string {
	t.Helper()
	cc, err := grpcx.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := storagev1.NewStorageServiceClient(cc).PartitionDigests(ctx, &storagev1.PartitionDigestsRequest{})
	if err != nil {
		t.Fatalf("partition digests of %s: %v", addr, err)
	}
	out := map[uint32]string{}
	for _, d := range resp.GetDigests() {
		if d.GetCount() == 0 {
			continue
		}
		out[d.GetPartition()] = fmt.Sprintf("%d/%x", d.GetCount(), d.GetSum())
	}
	return out
}

// waitReplicasAgree waits until, for every partition, the running nodes
// that hold it in d report the same digest and no other running node holds
// data of it (left nodes dropped their copies).
func waitReplicasAgree(t *testing.T, c *framework.Cluster, d placement.Document, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var problems []string
		digests := map[string]map[uint32]string{}
		for i, n := range c.Nodes {
			if n.Running() {
				digests[fmt.Sprintf("n%d", i+1)] = nodePartitionDigests(t, n.Addr())
			}
		}
		for p, set := range d.Replicas {
			want := ""
			for _, id := range set {
				got, ok := digests[id]
				if !ok {
					continue
				}
				if want == "" {
					want = got[uint32(p)]
				} else if got[uint32(p)] != want {
					problems = append(problems, fmt.Sprintf("partition %d: %s has %q, %s has %q", p, set[0], want, id, got[uint32(p)]))
				}
			}
			for id, ds := range digests {
				if _, ok := ds[uint32(p)]; ok && !slices.Contains(set, id) {
					problems = append(problems, fmt.Sprintf("partition %d: %s still holds data (replicas %v)", p, id, set))
				}
			}
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(problems)
			t.Fatalf("replicas disagree after %s: %d problems: %v", timeout, len(problems), head(problems, 10))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// loadUntil runs a QUORUM write+read-back load on table until done returns
// (after at least min acknowledged writes), and checks that it read nothing
// wrong and lost nothing.
func runLoadDuring(t *testing.T, c *framework.Cluster, table string, min int, during func()) map[string]ackedPut {
	t.Helper()
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, table)
	l := startLoad(t, cl, table, 1_000_000, 16, true, 1000)
	l.reached(t, 1000, time.Minute)
	before := l.acks.Load()
	during()
	t.Logf("load: %d writes acknowledged during the membership change", l.acks.Load()-before)
	for l.acks.Load() < int64(min) {
		select {
		case <-l.done:
			t.Fatalf("load ended at %d acknowledged writes: %v", l.acks.Load(), l.failures(5))
		case <-time.After(100 * time.Millisecond):
		}
	}
	l.stop.Store(true)
	l.wait(t, time.Minute)
	acked := l.snapshot()
	t.Logf("load: %d acknowledged writes, %d failed, %d read back wrong", len(acked), len(l.failed), len(l.mismatched))
	if len(l.mismatched) > 0 {
		t.Errorf("%d reads at QUORUM did not return the acknowledged write: %v", len(l.mismatched), head(l.mismatched, 10))
	}
	if len(l.failed) > 0 {
		t.Errorf("%d operations failed under rebalancing: %v", len(l.failed), l.failures(10))
	}
	verifyAcked(t, cl, table, acked, kvv1.Consistency_CONSISTENCY_QUORUM)
	verifyAcked(t, cl, table, acked, kvv1.Consistency_CONSISTENCY_ALL)
	return acked
}

// fill puts n keys fill-00000000.. of size-byte values with 16 writers.
func fill(t testing.TB, cl *client.Client, table string, n, size int) {
	t.Helper()
	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			next <- i
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	for range 16 {
		wg.Go(func() {
			for i := range next {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := cl.Put(ctx, table, []byte(fmt.Sprintf("fill-%08d", i)), nil, value); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				cancel()
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("fill: %d of %d puts failed; first: %v", f, n, first.Load())
	}
}

func nodeIDs(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("n%d", i))
	}
	return out
}

// TestBinGrowThreeToSix adds three nodes to a cluster of three under a
// QUORUM load of at least 20,000 acknowledged writes.
func TestBinGrowThreeToSix(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Partitions: 128, RouterArgs: moveRouterArgs, StorageArgs: moveStorageArgs})
	runLoadDuring(t, c, "grow", 20_000, func() {
		for range 3 {
			c.AddNode(t)
		}
		waitBalanced(t, c, 4*time.Minute)
	})
	d := placementDoc(t, c)
	checkPlacement(t, d, nodeIDs(6), 3)
	checkShare(t, d, nodeIDs(6), 0.15)
	waitReplicasAgree(t, c, d, time.Minute)
}

// TestBinDecommission drains one of four nodes under load.
func TestBinDecommission(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 4, RF: 3, RouterArgs: moveRouterArgs, StorageArgs: moveStorageArgs})
	veltrix := c.Bins.Path(t, framework.CLI)
	eps := strings.Join(c.RouterAddrs(), ",")
	runLoadDuring(t, c, "drain", 5_000, func() {
		res := runBin(t, time.Minute, "", veltrix, "node", "decommission", "n4", "--endpoints", eps)
		if res.code != 0 {
			t.Fatalf("node decommission n4: exit %d: %s%s", res.code, res.stdout, res.stderr)
		}
		// Repeating it is harmless.
		if res := runBin(t, time.Minute, "", veltrix, "node", "decommission", "n4", "--endpoints", eps); res.code != 0 {
			t.Fatalf("repeated node decommission n4: exit %d: %s%s", res.code, res.stdout, res.stderr)
		}
		waitBalanced(t, c, 3*time.Minute)
	})
	d := placementDoc(t, c)
	checkPlacement(t, d, nodeIDs(3), 3)
	if m := d.Members["n4"]; m.State != placement.MemberRemoved {
		t.Errorf("n4 is %q after draining, want removed", m.State)
	}
	waitReplicasAgree(t, c, d, time.Minute)
	res := runBin(t, time.Minute, "", veltrix, "node", "list", "--endpoints", eps, "--output", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `"n4"`) {
		t.Errorf("node list: exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
	c.Nodes[3].Stop(t)
}

// TestBinNodeOpsBadInput: operations that would lose data or make no sense
// are refused with a clear error and change nothing.
func TestBinNodeOpsBadInput(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3})
	veltrix := c.Bins.Path(t, framework.CLI)
	eps := strings.Join(c.RouterAddrs(), ",")
	before := placementDoc(t, c)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"node", "decommission", "n1"}, 1, "fewer"},
		{[]string{"node", "remove", "n2", "--dead"}, 1, "registered"},
		{[]string{"node", "remove", "n2"}, 2, "--dead"},
		{[]string{"node", "replace", "n3"}, 1, "registered"},
		{[]string{"node", "decommission", "n9"}, 1, "n9"},
		{[]string{"node", "remove", "n9", "--dead"}, 1, "n9"},
		{[]string{"node", "replace", "n9"}, 1, "n9"},
	} {
		res := runBin(t, time.Minute, "", veltrix, append(tc.args, "--endpoints", eps)...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("veltrix %s: exit %d, stderr %q; want exit %d and an error naming %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.code, tc.want)
		}
	}
	after := placementDoc(t, c)
	if after.Epoch != before.Epoch {
		t.Errorf("refused operations changed the placement: epoch %d → %d", before.Epoch, after.Epoch)
	}
}

// TestBinRemoveDead SIGKILLs a node and removes it as dead: RF is restored
// on the survivors and reads at ALL succeed.
func TestBinRemoveDead(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 4, RF: 3, RouterArgs: moveRouterArgs, StorageArgs: moveStorageArgs})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "dead")
	l := startLoad(t, cl, "dead", 3000, 8, false)
	l.wait(t, 2*time.Minute)
	if len(l.failed) > 0 {
		t.Fatalf("load before the failure: %v", l.failures(5))
	}
	acked := l.snapshot()
	c.Nodes[3].Kill(t)
	// Wait until the router sees it unregistered (its lease expires).
	ad := admin(t, c)
	waitUntil(t, 30*time.Second, "n4 unregistered", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := ad.RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: "n4", Dead: true})
		return err == nil
	})
	waitBalanced(t, c, 3*time.Minute)
	d := placementDoc(t, c)
	checkPlacement(t, d, nodeIDs(3), 3)
	if m := d.Members["n4"]; m.State != placement.MemberRemoved {
		t.Errorf("n4 is %q, want removed", m.State)
	}
	verifyAcked(t, cl, "dead", acked, kvv1.Consistency_CONSISTENCY_ALL)
	waitReplicasAgree(t, c, d, time.Minute)
	// A removed node's old directory must not serve again.
	if out := c.Nodes[3].StartFails(t); !strings.Contains(out, "removed") {
		t.Errorf("n4 restarted on its old directory after removal; log: %s", out)
	}
}

// TestBinDeadAfter: a node unregistered for --dead-after is declared dead
// and its replicas re-created on the others without anyone asking.
func TestBinDeadAfter(t *testing.T) {
	binTest(t)
	c := framework.Start(t, framework.Options{Nodes: 4, RF: 3, StorageArgs: moveStorageArgs,
		RouterArgs: append(slices.Clone(moveRouterArgs), "--dead-after", "3s")})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "deadafter")
	acked, failed := writeDeleteLoad(cl, "deadafter", 0, 2000, 8, kvv1.Consistency_CONSISTENCY_QUORUM, nil)
	if failed > 0 {
		t.Fatalf("%d writes failed", failed)
	}
	c.Nodes[3].Kill(t)
	waitUntil(t, time.Minute, "n4 declared dead and removed", func() bool {
		return placementDoc(t, c).Members["n4"].State == placement.MemberRemoved
	})
	waitBalanced(t, c, 2*time.Minute)
	d := placementDoc(t, c)
	checkPlacement(t, d, nodeIDs(3), 3)
	if r := d.Members["n4"].Reason; !strings.Contains(r, "dead") {
		t.Errorf("n4 removed with reason %q, want it to say it was dead", r)
	}
	for k, o := range acked {
		if o.deleted {
			delete(acked, k)
		}
	}
	verifyAcked(t, cl, "deadafter", putsOf(acked), kvv1.Consistency_CONSISTENCY_ALL)
}

// putsOf turns acknowledged values into ackedPuts (version 0: not checked).
func putsOf(acked map[string]outcome) map[string]ackedPut {
	out := make(map[string]ackedPut, len(acked))
	for k, o := range acked {
		out[k] = ackedPut{value: []byte(o.value)}
	}
	return out
}

// TestBinReplaceNode brings a node back on an empty data directory in its
// own place: while it backfills it is written but refuses reads of what it
// has not filled, and afterwards, alone, it answers every acknowledged key.
func TestBinReplaceNode(t *testing.T) {
	binTest(t)
	// 2 MiB of bulk data backfilled (from two sources) at 0.5 MiB/s: seconds
	// of backfill to look at.
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, RouterArgs: moveRouterArgs,
		StorageArgs: append(slices.Clone(moveStorageArgs), "--stream-rate", "0.5")})
	cl := c.Client(t, faultClientOpts...)
	createTableBin(t, cl, "replace")
	fill(t, cl, "replace", 1000, 2048)
	acked, failed := writeDeleteLoad(cl, "replace", 0, 2000, 8, kvv1.Consistency_CONSISTENCY_QUORUM, nil)
	if failed > 0 {
		t.Fatalf("%d writes failed", failed)
	}
	victim := c.Nodes[2]
	victim.Kill(t)
	victim.WipeDataDir(t)
	if out := victim.StartFails(t); !strings.Contains(out, "replace") {
		t.Errorf("an empty directory under n3 must be refused with a hint to replace it; log: %s", out)
	}
	veltrix := c.Bins.Path(t, framework.CLI)
	eps := strings.Join(c.RouterAddrs(), ",")
	var res cmdResult
	waitUntil(t, 30*time.Second, "node replace n3 accepted", func() bool {
		res = runBin(t, time.Minute, "", veltrix, "node", "replace", "n3", "--endpoints", eps)
		return res.code == 0
	})
	victim.Restart(t)

	// Mid-backfill: n3 is REPLACING, and a direct read of a partition it
	// has not filled is refused rather than answered from an empty copy.
	ad := admin(t, c)
	st, err := ad.ClusterStatus(context.Background(), &kvv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.GetNodes() {
		if n.GetId() == "n3" && n.GetMembership() != kvv1.Membership_MEMBERSHIP_REPLACING {
			t.Errorf("n3 is %v right after its restart, want REPLACING", n.GetMembership())
		}
	}
	desc, err := ad.DescribeTable(context.Background(), &kvv1.DescribeTableRequest{Name: "replace"})
	if err != nil {
		t.Fatal(err)
	}
	d := placementDoc(t, c)
	refused := 0
	cc, err := grpcx.Dial(victim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i := range 50 {
		pk := []byte(fmt.Sprintf("fill-%08d", i))
		p := placement.PartitionOf(desc.GetTable().GetId(), pk, d.Partitions)
		if m, ok := d.MoveOf(p); !ok || m.Stage == placement.StageReadNew {
			continue
		}
		_, err := storagev1.NewStorageServiceClient(cc).Read(context.Background(), &storagev1.ReadRequest{
			Key: &storagev1.Key{Partition: p, TableId: desc.GetTable().GetId(), PartitionKey: pk}})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("read of %s (partition %d, not backfilled) from n3: %v, want FailedPrecondition", pk, p, err)
			continue
		}
		refused++
	}
	if refused == 0 {
		t.Errorf("no partition was still backfilling: the test saw nothing (moves: %d)", len(d.Moves))
	}
	// Meanwhile writes keep being acknowledged and reach it.
	more, failed := writeDeleteLoad(cl, "replace", 2000, 2500, 4, kvv1.Consistency_CONSISTENCY_QUORUM, nil)
	if failed > 0 {
		t.Fatalf("%d writes failed during the backfill", failed)
	}
	for k, v := range more {
		acked[k] = v
	}
	waitBalanced(t, c, 3*time.Minute)
	checkPlacement(t, placementDoc(t, c), nodeIDs(3), 3)
	if m := placementDoc(t, c).Members["n3"]; m.State != placement.MemberActive {
		t.Errorf("n3 is %q after its backfill, want active", m.State)
	}
	checkAlone(t, c, cl, "replace", acked, 2)
}

// TestBinMoveInterrupted SIGKILLs the router running the controller, the
// source and the destination of a move while it streams: the moves resume
// or roll back, and nothing acknowledged is lost.
func TestBinMoveInterrupted(t *testing.T) {
	binTest(t)
	for _, victim := range []string{"controller", "source", "destination"} {
		t.Run(victim, func(t *testing.T) {
			// 4 MiB of bulk data streamed at 0.5 MiB/s: the new node's
			// backfills take seconds, so the kill lands mid-stream.
			c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Routers: 2, RouterArgs: moveRouterArgs,
				StorageArgs: append(slices.Clone(moveStorageArgs), "--stream-rate", "0.5")})
			cl := c.Client(t, faultClientOpts...)
			createTableBin(t, cl, "interrupt")
			waitTableOnRouters(t, c, "interrupt")
			fill(t, cl, "interrupt", 2000, 2048)
			l := startLoad(t, cl, "interrupt", 6000, 8, false)
			l.wait(t, 2*time.Minute)
			if len(l.failed) > 0 {
				t.Fatalf("load: %v", l.failures(5))
			}
			acked := l.snapshot()
			c.AddNode(t)
			// Wait for a move that has streamed something.
			var m *kvv1.PartitionMove
			ad := admin(t, c)
			waitUntil(t, time.Minute, "a move streaming", func() bool {
				st, err := ad.RebalanceStatus(context.Background(), &kvv1.RebalanceStatusRequest{})
				if err != nil {
					return false
				}
				for _, x := range st.GetMoves() {
					if x.GetStage() == string(placement.StageStreaming) && x.GetBytes() > 16<<10 {
						m = x
						return true
					}
				}
				return false
			})
			t.Logf("interrupting %s during %v", victim, m)
			var p *framework.Process
			switch victim {
			case "controller":
				st, err := ad.ClusterStatus(context.Background(), &kvv1.ClusterStatusRequest{})
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range c.Routers {
					if fmt.Sprintf("r%d", i+1) == st.GetControllerId() {
						p = r
					}
				}
			case "source":
				p = c.Nodes[nodeIndex(t, m.GetRemove())]
			case "destination":
				p = c.Nodes[nodeIndex(t, m.GetAdd())]
			}
			if p == nil {
				t.Fatalf("no process for the %s", victim)
			}
			p.Kill(t)
			time.Sleep(2 * time.Second)
			p.Restart(t)
			waitBalanced(t, c, 3*time.Minute)
			d := placementDoc(t, c)
			checkPlacement(t, d, nodeIDs(4), 3)
			verifyAcked(t, cl, "interrupt", acked, kvv1.Consistency_CONSISTENCY_ALL)
			waitReplicasAgree(t, c, d, time.Minute)
		})
	}
}

func nodeIndex(t *testing.T, id string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(id, "n%d", &i); err != nil || i < 1 {
		t.Fatalf("node id %q", id)
	}
	return i - 1
}
