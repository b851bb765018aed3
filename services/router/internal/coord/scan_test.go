package coord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamChunk is how many records the fake StreamPartition sends at once.
const streamChunk = 2

// StreamPartition streams the node's records of the partition (and table,
// when set) after After in ScanPosition order, streamChunk at a time, with
// each chunk's resume position. Before every chunk but the first the node's
// action runs again (method "StreamChunk"), so a test can fail a stream
// midway.
func (n *storeNode) StreamPartition(req *storagev1.StreamPartitionRequest, ss grpc.ServerStreamingServer[storagev1.StreamPartitionResponse]) error {
	ctx := ss.Context()
	if err := n.enter(ctx, "StreamPartition"); err != nil {
		return err
	}
	n.mu.Lock()
	var recs []*storagev1.Record
	now := time.Now().UnixNano()
	for _, r := range n.recs {
		k := r.GetKey()
		exp := r.GetExpireUnixNanos()
		switch {
		case k.GetPartition() != req.GetPartition(),
			req.GetTableId() != 0 && k.GetTableId() != req.GetTableId(),
			len(req.GetAfter()) > 0 && bytes.Compare(ScanPosition(k), req.GetAfter()) <= 0,
			!req.GetIncludeExpired() && !r.GetTombstone() && exp != 0 && exp <= now:
			continue
		}
		recs = append(recs, r)
	}
	n.mu.Unlock()
	slices.SortFunc(recs, func(a, b *storagev1.Record) int {
		return bytes.Compare(ScanPosition(a.GetKey()), ScanPosition(b.GetKey()))
	})
	for i := 0; i < len(recs); i += streamChunk {
		if i > 0 {
			if err := n.enter(ctx, "StreamChunk"); err != nil {
				return err
			}
		}
		chunk := recs[i:min(i+streamChunk, len(recs))]
		if err := ss.Send(&storagev1.StreamPartitionResponse{Records: chunk, Resume: ScanPosition(chunk[len(chunk)-1].GetKey())}); err != nil {
			return err
		}
	}
	return nil
}

// failNth fails the node's nth call (counting from 1) and lets the others
// through.
func failNth(nth int32) action {
	var calls atomic.Int32
	return func(context.Context) error {
		if calls.Add(1) == nth {
			return status.Error(codes.Unavailable, "stream broke")
		}
		return nil
	}
}

func scanKeys(t *testing.T, g *grid, level Level, after []byte, stopAfter int) ([]string, error) {
	t.Helper()
	v, err := g.co.View()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	last := after
	err = g.co.ScanPartition(t.Context(), v, 0, 1, after, level, func(recs []*storagev1.Record, resume []byte) (bool, error) {
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%s=%s", r.GetKey().GetPartitionKey(), r.GetValue()))
			if bytes.Compare(ScanPosition(r.GetKey()), last) <= 0 {
				t.Errorf("record %s at or before the previous position", r.GetKey().GetPartitionKey())
			}
			last = ScanPosition(r.GetKey())
		}
		if bytes.Compare(resume, last) < 0 {
			t.Errorf("resume %x is before the last record's position %x", resume, last)
		}
		return stopAfter == 0 || len(got) < stopAfter, nil
	})
	return got, err
}

// TestScanPartitionFailover: at ONE a stream that breaks midway continues
// on the next replica from where it broke: every record once, in order.
func TestScanPartitionFailover(t *testing.T) {
	ids := []string{"a", "b", "c"}
	g := newGrid(t, ids, [][]string{ids}, Options{HedgeMin: noHedge, HedgeMax: noHedge})
	var want []string
	for i := range 10 {
		k := key(0, fmt.Sprintf("k%02d", i))
		for _, n := range g.nodes {
			n.put(record(k, 1))
		}
		want = append(want, fmt.Sprintf("k%02d=v1", i))
	}
	// Other tables, other partitions, tombstones and expired records are
	// not streamed.
	other := &storagev1.Key{Partition: 0, TableId: 2, PartitionKey: []byte("k03x")}
	before := &storagev1.Key{Partition: 0, TableId: 0, PartitionKey: []byte("k03y")}
	for _, n := range g.nodes {
		n.put(record(other, 1), record(before, 1), record(key(1, "k05"), 1),
			&storagev1.Record{Key: key(0, "k04a"), Version: 2, Tombstone: true},
			&storagev1.Record{Key: key(0, "k04b"), Version: 2, Value: []byte("x"), ExpireUnixNanos: time.Now().Add(-time.Second).UnixNano()})
	}
	// Each node breaks before its third chunk: three replicas deliver the
	// ten records together.
	for _, n := range g.nodes {
		n.set(failNth(3))
	}
	got, err := scanKeys(t, g, One, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A fourth break has no replica left.
	for _, n := range g.nodes {
		n.set(failNth(2))
	}
	if _, err := scanKeys(t, g, One, nil, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("every replica broke: %v, want ErrUnavailable", err)
	}
	// Resuming after a key (an ExclusiveStartKey) and stopping early.
	for _, n := range g.nodes {
		n.set(nil)
	}
	got, err = scanKeys(t, g, One, ScanPosition(key(0, "k06")), 0)
	if err != nil || !slices.Equal(got, want[7:]) {
		t.Fatalf("after k06: %v, %v; want %v", got, err, want[7:])
	}
	got, err = scanKeys(t, g, One, nil, 3)
	if err != nil || !slices.Equal(got, want[:4]) {
		t.Fatalf("stopped after 3: %v, %v; want the first chunk pair %v", got, err, want[:4])
	}
}

// TestScanPartitionQuorumMerge: at QUORUM two replicas' streams are merged
// by key, the newest version wins whichever two are asked, deletes hide
// older values, and the stale replica asked is repaired.
func TestScanPartitionQuorumMerge(t *testing.T) {
	ids := []string{"a", "b", "c"}
	for round := range 6 {
		g := newGrid(t, ids, [][]string{ids}, Options{HedgeMin: noHedge, HedgeMax: noHedge})
		a, b, c := g.nodes["a"], g.nodes["b"], g.nodes["c"]
		k1, k2, k3, k4 := key(0, "k1"), key(0, "k2"), key(0, "k3"), key(0, "k4")
		tomb := &storagev1.Record{Key: k2, Version: 2, Tombstone: true}
		// Every key's newest version is on two replicas (a write at QUORUM).
		a.put(record(k1, 2), record(k2, 1), record(k3, 1), record(k4, 1))
		b.put(record(k1, 2), tomb, record(k3, 1), record(k4, 3))
		c.put(record(k1, 1), tomb, record(k4, 3))
		if round%2 == 1 {
			// One replica breaks midway: its place is taken by the third.
			g.nodes[ids[round/2]].set(failNth(2))
		}
		got, err := scanKeys(t, g, Quorum, nil, 0)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if want := []string{"k1=v2", "k3=v1", "k4=v3"}; !slices.Equal(got, want) {
			t.Fatalf("round %d: got %v, want %v", round, got, want)
		}
		if round%2 == 1 {
			continue
		}
		// The replicas streamed end up with the newest of every key.
		newest := map[*storagev1.Key]uint64{k1: 2, k2: 2, k3: 1, k4: 3}
		for id, n := range g.nodes {
			if n.count("StreamPartition") == 0 {
				continue
			}
			deadline := time.Now().Add(5 * time.Second)
			for k, ver := range newest {
				for r := n.get(k); r == nil || r.GetVersion() != ver; r = n.get(k) {
					if time.Now().After(deadline) {
						t.Fatalf("round %d: %s not repaired: %s at %v, want version %d", round, id, k.GetPartitionKey(), r, ver)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
}

// staleStreamNode streams records k1..k5 of partition 0 after After; under
// a placement epoch below 7 it sends one record and then refuses the rest
// as stale.
type staleStreamNode struct {
	*moveNode
	epochs []uint64
}

type fakeStream struct {
	grpc.ClientStream
	msgs []*storagev1.StreamPartitionResponse
	err  error
}

func (f *fakeStream) Recv() (*storagev1.StreamPartitionResponse, error) {
	if len(f.msgs) > 0 {
		m := f.msgs[0]
		f.msgs = f.msgs[1:]
		return m, nil
	}
	if f.err != nil {
		return nil, f.err
	}
	return nil, io.EOF
}

func (n *staleStreamNode) StreamPartition(_ context.Context, req *storagev1.StreamPartitionRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[storagev1.StreamPartitionResponse], error) {
	n.epochs = append(n.epochs, req.GetPlacementEpoch())
	fs := &fakeStream{}
	for i := 1; i <= 5; i++ {
		k := key(0, fmt.Sprintf("k%d", i))
		if bytes.Compare(ScanPosition(k), req.GetAfter()) <= 0 {
			continue
		}
		fs.msgs = append(fs.msgs, &storagev1.StreamPartitionResponse{Records: []*storagev1.Record{record(k, 1)}, Resume: ScanPosition(k)})
	}
	if err := n.stale(req.GetPlacementEpoch()); err != nil {
		fs.msgs, fs.err = fs.msgs[:min(1, len(fs.msgs))], err
	}
	return fs, nil
}

// TestScanPartitionStaleEpoch: replicas that refuse a scan midway as
// routed by a stale epoch make it continue by the newer view, from where
// it stopped: every record once.
func TestScanPartitionStaleEpoch(t *testing.T) {
	nodes := map[string]*staleStreamNode{}
	cn := map[string]*cluster.Node{}
	for _, id := range []string{"n1", "n2", "n3"} {
		nodes[id] = &staleStreamNode{moveNode: &moveNode{fakeNode: &fakeNode{}, refuseBelow: 7}}
		cn[id] = &cluster.Node{ID: id, Client: nodes[id]}
	}
	c := cluster.NewStaticDocument(moveDoc(6), cn)
	co := New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.Publish(moveDoc(7), cn)
	}()
	v, err := co.View()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = co.ScanPartition(t.Context(), v, 0, 1, nil, One, func(recs []*storagev1.Record, _ []byte) (bool, error) {
		for _, r := range recs {
			got = append(got, string(r.GetKey().GetPartitionKey()))
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"k1", "k2", "k3", "k4", "k5"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	retried := false
	for _, n := range nodes {
		retried = retried || slices.Contains(n.epochs, 7)
	}
	if !retried {
		t.Fatal("no stream by epoch 7")
	}
}
