package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/server"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// clock is a settable clock shared by the nodes of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type aeNode struct {
	srv *server.Server
	c   storagev1.StorageServiceClient
	dir string
	cli *clientv3.Client // the cluster's etcd
}

// aeCluster starts three nodes holding every partition (RF 3, n1 first, so
// n1 leads anti-entropy while it is registered). Rounds run only when the
// test asks (RepairRound).
func aeCluster(t *testing.T, clk *clock) (map[string]*aeNode, func(id string) *aeNode) {
	t.Helper()
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	store := topology.NewStore(cli, "ae")
	if _, err := store.BootstrapConfig(ctx, topology.ClusterConfig{Partitions: partitions, ReplicationFactor: 3, HashFunction: placement.HashFunction}); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*aeNode{}
	start := func(id string) *aeNode {
		t.Helper()
		n := nodes[id]
		if n == nil {
			n = &aeNode{dir: t.TempDir(), cli: cli}
			nodes[id] = n
		}
		srv, err := server.Start(ctx, server.Config{
			ID: id, DataDir: n.dir, Cluster: "ae", EtcdClient: cli, CacheBytes: 1 << 20,
			AntiEntropyInterval: time.Hour, AntiEntropyBuckets: 16, TombstoneGrace: time.Minute, Now: clk.Now,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		cc, err := grpcx.Dial(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		n.srv, n.c = srv, storagev1.NewStorageServiceClient(cc)
		return n
	}
	// New nodes first (a fresh directory may not take an id that already
	// holds partitions), then the placement.
	for _, id := range []string{"n1", "n2", "n3"} {
		start(id)
	}
	doc := placement.Document{Epoch: 1, HashFunction: placement.HashFunction, Partitions: partitions, RF: 3}
	for range partitions {
		doc.Replicas = append(doc.Replicas, []string{"n1", "n2", "n3"})
	}
	if err := store.PutPlacement(ctx, doc, 0); err != nil {
		t.Fatal(err)
	}
	// Wait until every node sees all three registered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := cli.Get(ctx, "/veltrix/ae/nodes/", clientv3.WithPrefix())
		if err == nil && len(resp.Kvs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nodes did not register")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the watchers catch up
	return nodes, start
}

func apply(t *testing.T, n *aeNode, recs ...*storagev1.Record) {
	t.Helper()
	if _, err := n.c.Apply(context.Background(), &storagev1.ApplyRequest{Records: recs}); err != nil {
		t.Fatal(err)
	}
}

func digests(t *testing.T, n *aeNode) map[uint32]string {
	t.Helper()
	resp, err := n.c.PartitionDigests(context.Background(), &storagev1.PartitionDigestsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]string{}
	for _, d := range resp.GetDigests() {
		out[d.GetPartition()] = fmt.Sprintf("%d/%x", d.GetCount(), d.GetSum())
	}
	return out
}

func read(t *testing.T, n *aeNode, k *storagev1.Key) *storagev1.ReadResponse {
	t.Helper()
	resp, err := n.c.Read(context.Background(), &storagev1.ReadRequest{Key: k})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestAntiEntropyConverges: a replica that missed writes and a delete gets
// them from one round, without any client read; the digests of every
// partition are then equal on all replicas. A tombstone past its grace is
// not purged while a replica lacks it, so the replica that was away cannot
// bring the deleted value back.
func TestAntiEntropyConverges(t *testing.T) {
	clk := &clock{t: time.Now()}
	nodes, _ := aeCluster(t, clk)
	n1, n2, n3 := nodes["n1"], nodes["n2"], nodes["n3"]

	// Everyone has "doomed" at version 1; n3 then misses 200 writes and the
	// delete of "doomed".
	doomed := key(9, "doomed", "")
	for _, n := range []*aeNode{n1, n2, n3} {
		apply(t, n, &storagev1.Record{Key: doomed, Version: 1, Value: []byte("old")})
	}
	var missed []*storagev1.Record
	for i := range 200 {
		missed = append(missed, &storagev1.Record{Key: key(9, fmt.Sprintf("user%03d", i), "s"), Version: uint64(10 + i), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	apply(t, n1, missed...)
	apply(t, n2, missed...)
	del := &storagev1.Record{Key: doomed, Version: 5, Tombstone: true}
	apply(t, n1, del)
	apply(t, n2, del)
	// n2 also has one write n1 lacks: repair goes both ways.
	onlyN2 := &storagev1.Record{Key: key(9, "only-on-n2", ""), Version: 7, Value: []byte("x")}
	apply(t, n2, onlyN2)

	// Past the grace, with no round yet: nothing may be purged.
	clk.Advance(5 * time.Minute)
	for id, n := range map[string]*aeNode{"n1": n1, "n2": n2} {
		if st, err := n.srv.Purge(); err != nil || st.Tombstones != 0 {
			t.Fatalf("%s purged %+v (%v) before any replica sync: n3 could resurrect the delete", id, st, err)
		}
	}

	if err := n1.srv.RepairRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := digests(t, n1), digests(t, n2), digests(t, n3)
	if fmt.Sprint(d1) != fmt.Sprint(d2) || fmt.Sprint(d1) != fmt.Sprint(d3) {
		t.Fatalf("digests after a round differ:\nn1 %v\nn2 %v\nn3 %v", d1, d2, d3)
	}
	for _, r := range append(missed, onlyN2) {
		for id, n := range nodes {
			got := read(t, n, r.GetKey())
			if !got.GetFound() || string(got.GetRecord().GetValue()) != string(r.GetValue()) {
				t.Fatalf("%s: %s = %v after repair, want %q", id, r.GetKey().GetPartitionKey(), got, r.GetValue())
			}
		}
	}
	if got := read(t, n3, doomed); !got.GetRecord().GetTombstone() {
		t.Fatalf("n3 still has the deleted value: %v", got)
	}

	// n3 got the tombstone only in that round, so it counts its grace from
	// then; the next round's sync point is past it. Then every replica
	// purges the tombstone, and another round does not bring the value
	// back.
	clk.Advance(5 * time.Minute)
	if err := n1.srv.RepairRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	for id, n := range nodes {
		st, err := n.srv.Purge()
		if err != nil || st.Tombstones != 1 {
			t.Fatalf("%s purged %+v (%v) after the sync point, want the tombstone", id, st, err)
		}
	}
	if err := n1.srv.RepairRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	for id, n := range nodes {
		if got := read(t, n, doomed); got.GetFound() {
			t.Fatalf("%s: the deleted item is back: %v", id, got)
		}
	}
}

// TestAntiEntropyStopsAtAnAbsentReplica: while a replica is down a round
// repairs what it can but sets no sync point, so no tombstone written
// since is purged; when it returns, the next round brings it up to date.
func TestAntiEntropyStopsAtAnAbsentReplica(t *testing.T) {
	clk := &clock{t: time.Now()}
	nodes, start := aeCluster(t, clk)
	n1, n2 := nodes["n1"], nodes["n2"]
	if err := n1.srv.RepairRound(context.Background()); err != nil { // sync point before anything
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if err := nodes["n3"].srv.Close(); err != nil {
		t.Fatal(err)
	}
	k := key(9, "while-away", "")
	apply(t, n1, &storagev1.Record{Key: k, Version: 3, Value: []byte("v")})
	apply(t, n1, &storagev1.Record{Key: k, Version: 4, Tombstone: true})
	// n2 misses them too: repair brings them from n1 to n2 with n3 away.
	time.Sleep(300 * time.Millisecond) // n3's deregistration reaches the watchers
	if err := n1.srv.RepairRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, n2, k); !got.GetRecord().GetTombstone() {
		t.Fatalf("n2 after a round with n3 away: %v", got)
	}
	clk.Advance(10 * time.Minute)
	for id, n := range map[string]*aeNode{"n1": n1, "n2": n2} {
		if st, _ := n.srv.Purge(); st.Tombstones != 0 {
			t.Fatalf("%s purged a tombstone n3 never saw", id)
		}
	}
	n3 := start("n3")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := n1.srv.RepairRound(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := read(t, n3, k); got.GetRecord().GetTombstone() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n3 never got the tombstone")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
