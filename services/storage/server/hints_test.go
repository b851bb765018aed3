package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func waitMetric(t *testing.T, n *aeNode, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := metric(t, n.srv, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHintsReplayed: hints for a node that is down survive a restart of the
// node holding them, wait while the target is away, and are replayed (a
// put, an overwrite, a delete) and deleted once it returns. A replica the
// hints are not for gets nothing.
func TestHintsReplayed(t *testing.T) {
	clk := &clock{t: time.Now()}
	nodes, start := aeCluster(t, clk)
	n1, n2 := nodes["n1"], nodes["n2"]
	if err := nodes["n3"].srv.Close(); err != nil {
		t.Fatal(err)
	}
	kPut, kDel := key(9, "hinted-put", "s"), key(9, "hinted-del", "")
	recs := []*storagev1.Record{
		{Key: kPut, Version: 10, Value: []byte("old")},
		{Key: kDel, Version: 11, Value: []byte("doomed")},
		{Key: kDel, Version: 12, Tombstone: true},
		{Key: kPut, Version: 13, Value: []byte("new")},
	}
	// n1 acknowledged these records; it holds what they left.
	apply(t, n1, recs[0])
	apply(t, n1, recs[1:]...)
	// What is replayed is n1's current record: the newer one it holds now,
	// nothing for a key it does not hold (a purged delete).
	kNewer, kGone := key(9, "hinted-newer", ""), key(9, "hinted-gone", "")
	apply(t, n1, &storagev1.Record{Key: kNewer, Version: 21, Value: []byte("newest")})
	recs = append(recs, &storagev1.Record{Key: kNewer, Version: 20, Value: []byte("older")}, &storagev1.Record{Key: kGone, Version: 30, Value: []byte("deleted since")})
	// Hints are replayed in sequence order, but LWW would forgive any: send
	// the newest first.
	ctx := context.Background()
	if _, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n3", Records: recs[3:4]}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n3", Records: recs[:3]}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n3", Records: recs[4:]}); err != nil {
		t.Fatal(err)
	}
	_, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n1", Records: recs[:1]})
	wantCode(t, err, codes.InvalidArgument, "is this node")
	_, err = n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n3", Records: []*storagev1.Record{{Key: kPut}}})
	wantCode(t, err, codes.InvalidArgument, "version is 0")
	if got := metric(t, n1.srv, "veltrix_storage_hints_stored_total"); got != 6 {
		t.Fatalf("stored_total %v", got)
	}
	waitMetric(t, n1, "veltrix_storage_hints_pending", 6)

	// The node holding the hints restarts; they are still there, and are
	// not replayed while n3 is away.
	if err := n1.srv.Close(); err != nil {
		t.Fatal(err)
	}
	n1 = start("n1")
	time.Sleep(1500 * time.Millisecond) // a replay tick or more
	waitMetric(t, n1, "veltrix_storage_hints_pending", 6)
	if b := metric(t, n1.srv, "veltrix_storage_hints_bytes"); b <= 0 {
		t.Fatalf("hints_bytes %v", b)
	}

	n3 := start("n3")
	waitMetric(t, n1, "veltrix_storage_hints_pending", 0)
	waitMetric(t, n1, "veltrix_storage_hints_bytes", 0)
	if got := metric(t, n1.srv, "veltrix_storage_hints_replayed_total"); got != 5 {
		t.Fatalf("replayed_total %v", got)
	}
	if got := dropped(t, n1, "gone"); got != 1 {
		t.Fatalf("dropped_total{reason=gone} %v", got)
	}
	if got := read(t, n3, kNewer).GetRecord(); got.GetVersion() != 21 {
		t.Fatalf("n3 %s: %v", kNewer.GetPartitionKey(), got)
	}
	if got := read(t, n3, kGone); got.GetFound() {
		t.Fatalf("n3 got a record its holder no longer has: %v", got)
	}
	if got := read(t, n3, kPut).GetRecord(); got.GetVersion() != 13 || string(got.GetValue()) != "new" {
		t.Fatalf("n3 %s: %v", kPut.GetPartitionKey(), got)
	}
	if got := read(t, n3, kDel).GetRecord(); got.GetVersion() != 12 || !got.GetTombstone() || got.GetDeletedUnixNanos() == 0 {
		t.Fatalf("n3 %s: %v", kDel.GetPartitionKey(), got)
	}
	if got := read(t, n2, kPut); got.GetFound() {
		t.Fatalf("n2 got a hint meant for n3: %v", got)
	}
}

// TestHintsTooOld: hints older than --hint-max-age are dropped and counted,
// not replayed.
func TestHintsTooOld(t *testing.T) {
	clk := &clock{t: time.Now()}
	nodes, start := aeCluster(t, clk)
	n1 := nodes["n1"]
	if err := nodes["n3"].srv.Close(); err != nil {
		t.Fatal(err)
	}
	k := key(9, "stale-hint", "")
	if _, err := n1.c.StoreHints(context.Background(), &storagev1.StoreHintsRequest{TargetNode: "n3", Records: []*storagev1.Record{{Key: k, Version: 5, Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Hour) // past the default 3h
	if err := n1.srv.ReplayHints(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, n1, "veltrix_storage_hints_pending", 0)
	if dropped := dropped(t, n1, "age"); dropped != 1 {
		t.Fatalf("dropped_total{reason=age} = %v", dropped)
	}
	n3 := start("n3")
	time.Sleep(1500 * time.Millisecond)
	if got := read(t, n3, k); got.GetFound() {
		t.Fatalf("a dropped hint reached n3: %v", got)
	}
}

// dropped reads veltrix_storage_hints_dropped_total{reason}.
func dropped(t *testing.T, n *aeNode, reason string) float64 {
	t.Helper()
	mfs, err := n.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "veltrix_storage_hints_dropped_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no dropped_total{reason=%q}", reason)
	return 0
}

// fakeTarget is a node hints are replayed to: its Apply fails the first
// fail calls (Unavailable), or every call with code when set, and records
// what it applied.
type fakeTarget struct {
	storagev1.UnimplementedStorageServiceServer
	mu      sync.Mutex
	fail    int
	code    codes.Code
	calls   int
	applied []*storagev1.Record
}

func (f *fakeTarget) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.code != codes.OK {
		return nil, status.Error(f.code, "fake refuses")
	}
	if f.fail > 0 {
		f.fail--
		return nil, status.Error(codes.Unavailable, "fake down")
	}
	f.applied = append(f.applied, req.GetRecords()...)
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
		resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
	}
	return resp, nil
}

func (f *fakeTarget) state() (int, []*storagev1.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, append([]*storagev1.Record(nil), f.applied...)
}

// TestHintsKeptUntilApplied: hints stay while their node fails to apply
// them and are deleted only once it did; hints for a partition the node
// does not hold are dropped (moved), as are hints it rejects as invalid.
func TestHintsKeptUntilApplied(t *testing.T) {
	clk := &clock{t: time.Now()}
	nodes, _ := aeCluster(t, clk)
	n1 := nodes["n1"]
	ctx := context.Background()

	fake := &fakeTarget{fail: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	storagev1.RegisterStorageServiceServer(gs, fake)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	store := topology.NewStore(n1.cli, "ae")
	reg, err := store.Register(ctx, topology.Node{ID: "n4", Address: ln.Addr().String(), State: topology.NodeUp, StartTime: time.Now().UTC()}, 10*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	// n4 holds kIn's partition, not kOut's.
	kIn, kOut := key(9, "to-n4", ""), key(9, "not-n4", "")
	for i := 0; kOut.GetPartition() == kIn.GetPartition(); i++ {
		kOut = key(9, fmt.Sprintf("not-n4-%d", i), "")
	}
	doc := placement.Document{Epoch: 2, HashFunction: placement.HashFunction, Partitions: partitions, RF: 3}
	for p := range partitions {
		reps := []string{"n1", "n2", "n3"}
		if uint32(p) == kIn.GetPartition() {
			reps = []string{"n1", "n2", "n4"}
		}
		doc.Replicas = append(doc.Replicas, reps)
	}
	if err := store.PutPlacement(ctx, doc, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the watchers catch up

	in := &storagev1.Record{Key: kIn, Version: 5, Value: []byte("v")}
	out := &storagev1.Record{Key: kOut, Version: 6, Value: []byte("w")}
	apply(t, n1, in, out)
	if _, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n4", Records: []*storagev1.Record{in, out}}); err != nil {
		t.Fatal(err)
	}
	// The first attempt fails: the hint for n4's partition stays.
	deadline := time.Now().Add(10 * time.Second)
	for calls, _ := fake.state(); calls < 1; calls, _ = fake.state() {
		if time.Now().After(deadline) {
			t.Fatal("no replay to n4")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, r := metric(t, n1.srv, "veltrix_storage_hints_pending"), metric(t, n1.srv, "veltrix_storage_hints_replayed_total"); p != 1 || r != 0 {
		t.Fatalf("after a failed replay: %v pending, %v replayed", p, r)
	}
	if got := dropped(t, n1, "moved"); got != 1 {
		t.Fatalf("dropped{moved} %v", got)
	}
	// After the backoff it goes through and is deleted.
	waitMetric(t, n1, "veltrix_storage_hints_pending", 0)
	calls, applied := fake.state()
	if len(applied) != 1 || applied[0].GetVersion() != 5 || calls != 3 {
		t.Fatalf("n4 got %v in %d calls", applied, calls)
	}
	if r := metric(t, n1.srv, "veltrix_storage_hints_replayed_total"); r != 1 {
		t.Fatalf("replayed %v", r)
	}

	// A node that rejects the batch as invalid will never take it.
	fake.mu.Lock()
	fake.code = codes.InvalidArgument
	fake.mu.Unlock()
	if _, err := n1.c.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: "n4", Records: []*storagev1.Record{in}}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, n1, "veltrix_storage_hints_pending", 0)
	if got := dropped(t, n1, "invalid"); got != 1 {
		t.Fatalf("dropped{invalid} %v", got)
	}
}
