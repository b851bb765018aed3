package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// mvCluster is an etcd and storage nodes started and stopped one by one,
// with anti-entropy off: whatever a node holds came from writes or a
// backfill.
type mvCluster struct {
	t     *testing.T
	cli   *clientv3.Client
	store *topology.Store
	nodes map[string]*mvNode
}

type mvNode struct {
	srv  *server.Server
	c    storagev1.StorageServiceClient
	dir  string
	stop func()
}

func newMVCluster(t *testing.T) *mvCluster {
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
	store := topology.NewStore(cli, "mv")
	if _, err := store.BootstrapConfig(context.Background(), topology.ClusterConfig{Partitions: partitions, ReplicationFactor: 2, HashFunction: placement.HashFunction}); err != nil {
		t.Fatal(err)
	}
	return &mvCluster{t: t, cli: cli, store: store, nodes: map[string]*mvNode{}}
}

// start starts node id (again, on its directory, if it ran before).
func (c *mvCluster) start(id string, edit func(*server.Config)) *mvNode {
	t := c.t
	t.Helper()
	n := c.nodes[id]
	if n == nil {
		n = &mvNode{dir: t.TempDir()}
		c.nodes[id] = n
	}
	cfg := server.Config{
		ID: id, DataDir: n.dir, Cluster: "mv", EtcdClient: c.cli, CacheBytes: 1 << 20, AntiEntropyInterval: -1,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", id),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpcx.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	n.stop = func() {
		if !stopped {
			stopped = true
			cc.Close()
			if err := srv.Close(); err != nil {
				t.Errorf("close %s: %v", id, err)
			}
		}
	}
	t.Cleanup(n.stop)
	n.srv, n.c = srv, storagev1.NewStorageServiceClient(cc)
	return n
}

// place writes the first placement: every partition on replicas.
func (c *mvCluster) place(replicas ...string) {
	c.t.Helper()
	doc := placement.Document{Epoch: 1, HashFunction: placement.HashFunction, Partitions: partitions, RF: 2}
	for range partitions {
		doc.Replicas = append(doc.Replicas, replicas)
	}
	if err := c.store.PutPlacement(context.Background(), doc, 0); err != nil {
		c.t.Fatal(err)
	}
}

// update changes the placement and returns the new document.
func (c *mvCluster) update(fn func(d *placement.Document)) placement.Document {
	c.t.Helper()
	d, err := c.store.UpdatePlacement(context.Background(), func(d *placement.Document) error { fn(d); return nil })
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// progress reads the move progress of partition p on node.
func (c *mvCluster) progress(p uint32, node string) (topology.MoveProgress, bool) {
	c.t.Helper()
	resp, err := c.cli.Get(context.Background(), c.store.Keys.MoveProgress(p, node))
	if err != nil {
		c.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return topology.MoveProgress{}, false
	}
	var mp topology.MoveProgress
	if err := json.Unmarshal(resp.Kvs[0].Value, &mp); err != nil {
		c.t.Fatal(err)
	}
	return mp, true
}

// waitRegistered waits until node id reports placement epoch epoch.
func (c *mvCluster) waitEpoch(id string, epoch uint64) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("node %s at placement epoch %d", id, epoch), func() bool {
		n, found, err := c.store.Node(context.Background(), id)
		return err == nil && found && n.PlacementEpoch >= epoch
	})
}

// pksIn returns n partition keys of table in partition p.
func pksIn(p uint32, table uint64, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		pk := "k" + strconv.Itoa(i)
		if placement.PartitionOf(table, []byte(pk), partitions) == p {
			out = append(out, pk)
		}
	}
	return out
}

func partitionDigest(t *testing.T, c storagev1.StorageServiceClient, p uint32) string {
	t.Helper()
	resp, err := c.PartitionDigests(context.Background(), &storagev1.PartitionDigestsRequest{Partitions: []uint32{p}})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDigests()[0]
	return fmt.Sprintf("%d/%x", d.GetCount(), d.GetSum())
}

// fill writes values, tombstones and an expired item into partition p on
// n and returns the keys deleted.
func fill(t *testing.T, n *mvNode, p uint32, count, valueBytes int) []*storagev1.Key {
	t.Helper()
	var deleted []*storagev1.Key
	var batch []*storagev1.Record
	flush := func() {
		if len(batch) > 0 {
			if _, err := n.c.Apply(context.Background(), &storagev1.ApplyRequest{Records: batch, PlacementEpoch: 1}); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	for i, pk := range pksIn(p, 7, count) {
		k := key(7, pk, "")
		switch {
		case i%10 == 3:
			batch = append(batch, &storagev1.Record{Key: k, Version: 5, Tombstone: true})
			deleted = append(deleted, k)
		case i == 1:
			batch = append(batch, &storagev1.Record{Key: k, Version: 5, Value: []byte("gone"), ExpireUnixNanos: time.Now().Add(-time.Minute).UnixNano()})
		default:
			batch = append(batch, &storagev1.Record{Key: k, Version: 5, Value: []byte(strings.Repeat(string(rune('a'+i%26)), valueBytes))})
		}
		if len(batch) == 200 {
			flush()
		}
	}
	flush()
	return deleted
}

// TestBackfill: node b becomes a replica of a partition node a holds.
// Once the move streams, b copies every record of the partition from a
// (the move's Remove), tombstones and expired items included, reports
// Done, and then holds exactly a's records. Before read_new b takes writes
// of the partition but serves no reads of it.
func TestBackfill(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	b := c.start("b", nil)
	c.place("a")
	const p = 3
	deleted := fill(t, a, p, 500, 100)
	if len(deleted) == 0 {
		t.Fatal("no tombstones written")
	}
	doc := c.update(func(d *placement.Document) {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "b", Remove: "a", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
	})
	waitFor(t, "backfill done", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Done })
	mp, _ := c.progress(p, "b")
	if mp.Incarnation == "" || !mp.Sources["a"].Done || len(mp.Sources) != 1 || mp.Records != 500 || mp.Bytes == 0 || mp.Error != "" {
		t.Fatalf("progress = %+v; want 500 records from a alone", mp)
	}
	if da, db := partitionDigest(t, a.c, p), partitionDigest(t, b.c, p); da != db || !strings.HasPrefix(da, "500/") {
		t.Fatalf("digest of partition %d: a %s, b %s", p, da, db)
	}
	if got := metric(t, b.srv, "veltrix_storage_backfill_records_total"); got != 500 {
		t.Fatalf("backfill_records_total = %v, want 500", got)
	}
	// Streaming: b takes writes of p, and serves no reads of it yet.
	k := key(7, pksIn(p, 7, 1)[0], "new")
	if _, err := b.c.Apply(context.Background(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: k, Version: 9, Value: []byte("w")}}, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatalf("write to the move's destination: %v", err)
	}
	_, err := b.c.Read(context.Background(), &storagev1.ReadRequest{Key: deleted[0], PlacementEpoch: doc.Epoch})
	wantCode(t, err, codes.FailedPrecondition, "does not hold partition")
	// read_new: b serves reads, deletes included.
	doc = c.update(func(d *placement.Document) {
		d.Moves[0].Stage, d.Moves[0].Since = placement.StageReadNew, d.Epoch
		d.MarkChanged(p, d.Epoch)
	})
	r, err := b.c.Read(context.Background(), &storagev1.ReadRequest{Key: deleted[0], PlacementEpoch: doc.Epoch})
	if err != nil || !r.Found || !r.Record.Tombstone || r.Record.Version != 5 || r.Record.DeletedUnixNanos == 0 {
		t.Fatalf("read of a deleted key on b = %v, %v; want its tombstone", r, err)
	}
	r, err = b.c.Read(context.Background(), &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch})
	if err != nil || !r.Found || string(r.Record.Value) != "w" {
		t.Fatalf("read of the write b took while streaming = %v, %v", r, err)
	}
}

// TestBackfillResumes: the destination is stopped in the middle of a
// backfill (a slow --stream-rate) and started again on its directory: it
// resumes from its checkpoint instead of starting over, and ends with
// every record. The move has no Remove, so the source is every other
// replica.
func TestBackfillResumes(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	slow := func(cfg *server.Config) { cfg.StreamRateMBps = 1 }
	c.start("b", slow)
	c.place("a")
	const p, total = 5, 3000
	fill(t, a, p, total, 1000) // ~3 MiB: ~3s at 1 MiB/s
	c.update(func(d *placement.Document) {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "b", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
	})
	var mid topology.MoveProgress
	waitFor(t, "a checkpoint in the middle of the backfill", func() bool {
		mp, ok := c.progress(p, "b")
		mid = mp
		return ok && mp.Records > 0 && !mp.Done
	})
	c.nodes["b"].stop()
	stopped, _ := c.progress(p, "b")
	if stopped.Done || stopped.Records >= total || len(stopped.Sources["a"].Resume) == 0 {
		t.Fatalf("progress when b stopped = %+v; want a resume position in the middle", stopped)
	}
	b := c.start("b", slow)
	waitFor(t, "backfill done after the restart", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Done })
	done, _ := c.progress(p, "b")
	if !done.StartTime.Equal(mid.StartTime) || done.Incarnation != mid.Incarnation {
		t.Fatalf("the backfill started over: before %+v, after %+v", mid, done)
	}
	again := metric(t, b.srv, "veltrix_storage_backfill_records_total")
	if again <= 0 || again > float64(total-int(stopped.Records)) {
		t.Fatalf("the restarted node streamed %v records; %d were checkpointed of %d", again, stopped.Records, total)
	}
	if da, db := partitionDigest(t, a.c, p), partitionDigest(t, b.c, p); da != db || !strings.HasPrefix(da, strconv.Itoa(total)+"/") {
		t.Fatalf("digest of partition %d: a %s, b %s", p, da, db)
	}
}

// TestCleanupDrops: a node drops a partition it no longer holds once every
// process (a lagging router too) has seen the epoch of the cleanup, and
// reports it; it never drops a partition it still holds.
func TestCleanupDrops(t *testing.T) {
	c := newMVCluster(t)
	c.start("a", nil)
	b := c.start("b", nil)
	c.place("a", "b")
	const p, q, other = 2, 4, 6
	fill(t, b, p, 50, 10)
	fill(t, b, q, 50, 10)
	fill(t, b, other, 50, 10)
	before := map[uint32]string{p: partitionDigest(t, b.c, p), q: partitionDigest(t, b.c, q), other: partitionDigest(t, b.c, other)}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	router := c.store.RegisterRouter(topology.Router{ID: "r1", PlacementEpoch: 1}, 10*time.Second, logger)
	defer router.Close(context.Background())
	waitFor(t, "router presence", func() bool {
		resp, err := c.cli.Get(context.Background(), c.store.Keys.Router("r1"))
		return err == nil && len(resp.Kvs) == 1
	})
	doc := c.update(func(d *placement.Document) {
		d.Replicas[p] = []string{"a"}
		d.MarkChanged(p, d.Epoch)
		d.Moves = append(d.Moves,
			placement.Move{Partition: p, Remove: "b", Stage: placement.StageCleanup, Since: d.Epoch},
			// b is still a replica of q: a cleanup entry must not make it
			// drop a partition it holds.
			placement.Move{Partition: q, Remove: "b", Stage: placement.StageCleanup, Since: d.Epoch})
	})
	c.waitEpoch("a", doc.Epoch)
	c.waitEpoch("b", doc.Epoch)
	time.Sleep(1500 * time.Millisecond) // the router lags: nothing may be dropped
	if got := partitionDigest(t, b.c, p); got != before[p] {
		t.Fatalf("partition %d dropped before the router saw epoch %d: digest %s", p, doc.Epoch, got)
	}
	router.SetEpoch(doc.Epoch)
	waitFor(t, "partition dropped", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Dropped })
	if got := partitionDigest(t, b.c, p); got != "0/0" {
		t.Fatalf("digest of the dropped partition = %s", got)
	}
	for _, x := range []uint32{q, other} {
		if got := partitionDigest(t, b.c, x); got != before[x] {
			t.Fatalf("partition %d changed by the drop of %d: %s, was %s", x, p, got, before[x])
		}
	}
	if _, ok := c.progress(q, "b"); ok {
		t.Fatalf("a report for partition %d, which b holds", q)
	}
	if got := metric(t, b.srv, "veltrix_storage_partition_drops_total"); got != 1 {
		t.Fatalf("partition_drops_total = %v, want 1", got)
	}
}

// TestEpochFencing: a request routed under an epoch older than its
// partition's last routing change is refused with STALE_PLACEMENT_EPOCH;
// one routed under an epoch the node has not seen yet waits for it; a
// node backfilling in place takes writes but serves no reads until
// read_new.
func TestEpochFencing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "fence")
	k := key(7, pk, "")
	p := k.Partition
	update := func(fn func(d *placement.Document)) placement.Document {
		t.Helper()
		d, err := env.store.UpdatePlacement(ctx, func(d *placement.Document) error { fn(d); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	doc := update(func(d *placement.Document) { d.MarkChanged(p, d.Epoch) }) // epoch 2
	rec := &storagev1.Record{Key: k, Version: 1, Value: []byte("v")}
	// Epoch 2 may not be seen yet: the request waits for it.
	if _, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec}, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatalf("write at the current epoch: %v", err)
	}
	_, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec}, PlacementEpoch: doc.Epoch - 1})
	wantCode(t, err, codes.FailedPrecondition, fmt.Sprintf("partition %d was routed by placement epoch %d but its routing changed at epoch %d", p, doc.Epoch-1, doc.Epoch))
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.Reason != "STALE_PLACEMENT_EPOCH" || info.Domain != "veltrix.storage" ||
		info.Metadata["partition"] != strconv.Itoa(int(p)) || info.Metadata["epoch"] != strconv.FormatUint(doc.Epoch, 10) {
		t.Fatalf("error info = %v; want STALE_PLACEMENT_EPOCH for partition %d at epoch %d", info, p, doc.Epoch)
	}
	_, err = env.c.Read(ctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: 1})
	wantCode(t, err, codes.FailedPrecondition, "stale placement epoch")
	_, err = env.c.Scan(ctx, &storagev1.ScanRequest{Partition: p, TableId: 7, PartitionKey: []byte(pk), PlacementEpoch: 1})
	wantCode(t, err, codes.FailedPrecondition, "stale placement epoch")
	if got := metric(t, env.srv, "veltrix_storage_stale_epoch_rejections_total"); got != 3 {
		t.Fatalf("stale_epoch_rejections_total = %v, want 3", got)
	}
	// Not routed (0): no fencing. Another partition: not fenced by p's change.
	if r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: k}); err != nil || !r.Found {
		t.Fatalf("unrouted read = %v, %v", r, err)
	}
	other := key(7, ownedPKNotIn(t, p), "")
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: other, PlacementEpoch: 1}); err != nil {
		t.Fatalf("read of an unchanged partition at an old epoch: %v", err)
	}

	// A newer epoch than the node has: the request waits until it comes.
	go func() {
		time.Sleep(300 * time.Millisecond)
		update(func(d *placement.Document) { d.MarkChanged(p, d.Epoch) })
	}()
	start := time.Now()
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch + 1}); err != nil {
		t.Fatalf("read at the next epoch: %v", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond || waited > epochWaitBound {
		t.Fatalf("read at an epoch not yet published returned after %s; want it to wait for the epoch", waited)
	}

	// Backfilling in place: writes yes, reads no, until read_new.
	doc = update(func(d *placement.Document) {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "n1", Remove: "n1", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
	})
	rec.Version = 2
	if _, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec}, PlacementEpoch: doc.Epoch}); err != nil {
		t.Fatalf("write to a node backfilling in place: %v", err)
	}
	_, err = env.c.Read(ctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch})
	wantCode(t, err, codes.FailedPrecondition, "backfilling partition")
	doc = update(func(d *placement.Document) {
		d.Moves[0].Stage, d.Moves[0].Since = placement.StageReadNew, d.Epoch
		d.MarkChanged(p, d.Epoch)
	})
	if r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch}); err != nil || r.Record.GetVersion() != 2 {
		t.Fatalf("read at read_new = %v, %v", r, err)
	}
}

// epochWaitBound is more than the node's wait for an epoch it has not seen.
const epochWaitBound = 5 * time.Second

// ownedPKNotIn returns a partition key the node holds outside partition p.
func ownedPKNotIn(t *testing.T, p uint32) string {
	for i := range 1000 {
		pk := "o" + strconv.Itoa(i)
		if q := placement.PartitionOf(7, []byte(pk), partitions); q != p && q != partitions-1 {
			return pk
		}
	}
	t.Fatal("no key")
	return ""
}

// TestBackfillFromSurvivors: the move's Remove is gone (not registered),
// so the destination streams from the replicas that remain.
func TestBackfillFromSurvivors(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	b := c.start("b", nil)
	dead := c.start("dead", nil)
	c.place("a", "dead")
	const p = 7
	fill(t, a, p, 200, 50)
	dead.stop()
	c.update(func(d *placement.Document) {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "b", Remove: "dead", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
	})
	waitFor(t, "backfill done", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Done })
	mp, _ := c.progress(p, "b")
	if _, fromDead := mp.Sources["dead"]; fromDead || !mp.Sources["a"].Done {
		t.Fatalf("progress = %+v; want streamed from a alone", mp)
	}
	if da, db := partitionDigest(t, a.c, p), partitionDigest(t, b.c, p); da != db {
		t.Fatalf("digest of partition %d: a %s, b %s", p, da, db)
	}
	if n, found, err := c.store.Node(context.Background(), "b"); err != nil || !found || n.UsedBytes == 0 {
		t.Fatalf("registration of b = %+v (found %v, %v); want its disk usage", n, found, err)
	}
}

// TestBackfillAbandoned: a backfill stops as soon as its move is
// abandoned and writes no more progress; the cleanup entry the move left
// drops the partial copy.
func TestBackfillAbandoned(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	b := c.start("b", func(cfg *server.Config) { cfg.StreamRateMBps = 0.5 })
	c.place("a")
	const p = 9
	fill(t, a, p, 2000, 1000) // ~2 MiB: ~4s at 0.5 MiB/s
	var mv placement.Move
	c.update(func(d *placement.Document) {
		mv = placement.Move{Partition: p, Add: "b", Remove: "a", Stage: placement.StageStreaming, Since: d.Epoch}
		d.Moves = append(d.Moves, mv)
		d.MarkChanged(p, d.Epoch)
	})
	waitFor(t, "a backfill under way", func() bool {
		mp, ok := c.progress(p, "b")
		return ok && mp.Records > 0 && metric(t, b.srv, "veltrix_storage_backfills_in_flight") == 1
	})
	c.update(func(d *placement.Document) {
		if !d.Abandon(mv, d.Epoch) {
			t.Error("move not abandoned")
		}
	})
	waitFor(t, "the backfill stopped", func() bool { return metric(t, b.srv, "veltrix_storage_backfills_in_flight") == 0 })
	waitFor(t, "the partial copy dropped", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Dropped })
	if got := partitionDigest(t, b.c, p); got != "0/0" {
		t.Fatalf("digest of the abandoned partial copy = %s", got)
	}
	time.Sleep(1500 * time.Millisecond)
	if mp, _ := c.progress(p, "b"); !mp.Dropped || mp.Done || mp.Records != 0 {
		t.Fatalf("progress written after the move was abandoned: %+v", mp)
	}
	if got := partitionDigest(t, b.c, p); got != "0/0" {
		t.Fatalf("the stopped backfill wrote again: digest %s", got)
	}
}

// TestReplaceInPlace: a node lost with its data directory comes back on an
// empty one. Declared dead it is refused; once replacing it starts, takes
// writes at once, serves no reads of its partitions until it backfilled
// each (before its move exists, too, and across a restart), and serves
// them after.
func TestReplaceInPlace(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	c.start("b", nil)
	c.place("a", "b")
	const p, q = 1, 11
	fill(t, a, p, 100, 10)
	fill(t, a, q, 100, 10)
	k := key(7, pksIn(p, 7, 1)[0], "")
	c.nodes["b"].stop()
	c.nodes["b"].dir = t.TempDir() // the disk is gone
	members := func(b placement.MemberState) {
		c.update(func(d *placement.Document) {
			d.Members = map[string]placement.Member{"a": {State: placement.MemberActive}, "b": {State: b}}
		})
	}
	members(placement.MemberDead)
	_, err := server.Start(context.Background(), server.Config{ID: "b", DataDir: c.nodes["b"].dir, Cluster: "mv", EtcdClient: c.cli,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err == nil || !strings.Contains(err.Error(), "run `veltrix node replace b` first") {
		t.Fatalf("dead node on an empty directory: %v", err)
	}
	members(placement.MemberReplacing)
	b := c.start("b", nil)
	doc := c.update(func(d *placement.Document) {})
	_, err = b.c.Read(context.Background(), &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch})
	wantCode(t, err, codes.FailedPrecondition, "has not backfilled partition")
	if _, err := b.c.Apply(context.Background(), &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(7, "w", ""), Version: 1, Value: []byte("x")}}}); err != nil {
		t.Fatalf("write to the replacing node: %v", err)
	}
	var mv placement.Move
	c.update(func(d *placement.Document) {
		mv = placement.Move{Partition: p, Add: "b", Remove: "b", Stage: placement.StageStreaming, Since: d.Epoch}
		d.Moves = append(d.Moves, mv)
		d.MarkChanged(p, d.Epoch)
	})
	waitFor(t, "backfill in place done", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Done })
	if da, db := partitionDigest(t, a.c, p), partitionDigest(t, b.c, p); da != db {
		t.Fatalf("digest of partition %d: a %s, b %s", p, da, db)
	}
	_, err = b.c.Read(context.Background(), &storagev1.ReadRequest{Key: k})
	wantCode(t, err, codes.FailedPrecondition, "backfilling partition")
	doc = c.update(func(d *placement.Document) {
		mv.Stage = placement.StageReadNew
		d.Moves[0] = mv
		d.MarkChanged(p, d.Epoch)
	})
	if r, err := b.c.Read(context.Background(), &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch}); err != nil || !r.Found {
		t.Fatalf("read at read_new = %v, %v", r, err)
	}
	doc = c.update(func(d *placement.Document) {
		if !d.Promote(mv, d.Epoch) {
			t.Error("not promoted")
		}
	})
	// Across a restart: p is backfilled, q still is not.
	c.nodes["b"].stop()
	b = c.start("b", nil)
	if r, err := b.c.Read(context.Background(), &storagev1.ReadRequest{Key: k, PlacementEpoch: doc.Epoch}); err != nil || !r.Found {
		t.Fatalf("read after promotion = %v, %v", r, err)
	}
	_, err = b.c.Read(context.Background(), &storagev1.ReadRequest{Key: key(7, pksIn(q, 7, 1)[0], ""), PlacementEpoch: doc.Epoch})
	wantCode(t, err, codes.FailedPrecondition, fmt.Sprintf("has not backfilled partition %d", q))
}

// TestBackfillFallsBackToUnion: the move's Remove is registered but cannot
// be streamed from (nothing listens at its address); after a few failed
// attempts, with the error in the progress report, the destination
// streams from the other replicas.
func TestBackfillFallsBackToUnion(t *testing.T) {
	c := newMVCluster(t)
	a := c.start("a", nil)
	b := c.start("b", nil)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg, err := c.store.Register(context.Background(), topology.Node{ID: "mute", Address: "127.0.0.1:1"}, 10*time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	c.place("a", "mute")
	const p = 8
	fill(t, a, p, 100, 10)
	c.update(func(d *placement.Document) {
		d.Moves = append(d.Moves, placement.Move{Partition: p, Add: "b", Remove: "mute", Stage: placement.StageStreaming, Since: d.Epoch})
		d.MarkChanged(p, d.Epoch)
	})
	waitFor(t, "the failure reported", func() bool { mp, ok := c.progress(p, "b"); return ok && strings.Contains(mp.Error, "from mute") })
	waitFor(t, "backfill done", func() bool { mp, ok := c.progress(p, "b"); return ok && mp.Done })
	mp, _ := c.progress(p, "b")
	if !mp.Sources["a"].Done || mp.Sources["mute"].Done || mp.Error != "" {
		t.Fatalf("progress = %+v; want done from a after failing on mute", mp)
	}
	if da, db := partitionDigest(t, a.c, p), partitionDigest(t, b.c, p); da != db {
		t.Fatalf("digest of partition %d: a %s, b %s", p, da, db)
	}
}
