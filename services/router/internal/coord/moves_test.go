package coord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// moveNode is a fakeNode that also answers reads and records the
// placement epochs it was sent.
type moveNode struct {
	*fakeNode
	reads  atomic.Int32
	epochs atomic.Uint64 // last epoch seen
	// refuseBelow refuses requests under an older epoch as stale (atomic:
	// tests change it while stragglers of an earlier write still run).
	refuseBelow atomic.Uint64
}

func newMoveNode(refuseBelow uint64) *moveNode {
	m := &moveNode{fakeNode: &fakeNode{}}
	m.refuseBelow.Store(refuseBelow)
	return m
}

func (m *moveNode) stale(epoch uint64) error {
	m.epochs.Store(epoch)
	if epoch < m.refuseBelow.Load() {
		st, _ := status.New(codes.FailedPrecondition, "stale placement epoch").WithDetails(&errdetails.ErrorInfo{
			Reason: "STALE_PLACEMENT_EPOCH", Domain: "veltrix.storage", Metadata: map[string]string{"changed_epoch": "7", "partition": "900"},
		})
		return st.Err()
	}
	return nil
}

func (m *moveNode) Apply(ctx context.Context, req *storagev1.ApplyRequest, o ...grpc.CallOption) (*storagev1.ApplyResponse, error) {
	if err := m.stale(req.GetPlacementEpoch()); err != nil {
		return nil, err
	}
	return m.fakeNode.Apply(ctx, req, o...)
}

func (m *moveNode) Read(_ context.Context, req *storagev1.ReadRequest, _ ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	m.reads.Add(1)
	if err := m.stale(req.GetPlacementEpoch()); err != nil {
		return nil, err
	}
	return &storagev1.ReadResponse{}, nil
}

// moveCoord routes one partition by doc over nodes (a missing id is down).
func moveCoord(doc placement.Document, nodes map[string]*moveNode) (*Coordinator, *cluster.Cluster) {
	cn := map[string]*cluster.Node{}
	for id, n := range nodes {
		cn[id] = &cluster.Node{ID: id, Client: n}
	}
	c := cluster.NewStaticDocument(doc, cn)
	return New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 5 * time.Second, FailureWait: 50 * time.Millisecond}), c
}

func moveDoc(epoch uint64, moves ...placement.Move) placement.Document {
	return placement.Document{Epoch: epoch, Partitions: 1, RF: 3, HashFunction: placement.HashFunction,
		Replicas: [][]string{{"n1", "n2", "n3"}}, Moves: moves}
}

// TestWriteTwoSets: while n3 moves to n4, a write must reach its level in
// the old set {n1,n2,n3} and in the new set {n1,n2,n4}: acknowledged by
// the old set only (n4 down) is not enough at ALL, nor at QUORUM when n2
// is down too (the new set has only n1).
func TestWriteTwoSets(t *testing.T) {
	mv := placement.Move{Partition: 0, Add: "n4", Remove: "n3", Stage: placement.StageStreaming, Since: 5}
	for _, tc := range []struct {
		name  string
		fail  []string
		level Level
		want  string // "" = OK
	}{
		{"all acked", nil, All, ""},
		{"quorum, new node down", []string{"n4"}, Quorum, ""},
		{"all, new node down: old set alone is not enough", []string{"n4"}, All, "reached 2 of 3 required replicas of the new replica set [n1 n2 n4]"},
		{"quorum, n2 and n4 down: old set has 2 of 3, new 1 of 3", []string{"n2", "n4"}, Quorum, "reached 1 of 2 required replicas of the new replica set"},
		{"quorum, n2 and n3 down: old set short", []string{"n2", "n3"}, Quorum, "of the old replica set [n1 n2 n3]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := map[string]*moveNode{}
			for _, id := range []string{"n1", "n2", "n3", "n4"} {
				f := &fakeNode{}
				for _, bad := range tc.fail {
					if bad == id {
						f.err = down
					}
				}
				nodes[id] = &moveNode{fakeNode: f}
			}
			co, _ := moveCoord(moveDoc(6, mv), nodes)
			_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, tc.level)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want Unavailable containing %q", err, tc.want)
			}
			time.Sleep(20 * time.Millisecond) // stragglers
			for id, n := range nodes {
				if n.calls.Load() != 1 || n.epochs.Load() != 6 {
					t.Errorf("%s: %d calls at epoch %d, want 1 at 6", id, n.calls.Load(), n.epochs.Load())
				}
			}
		})
	}
}

// TestReplaceMoveRouting: n3 backfills in place. It is written to but not
// read, and its acknowledgement counts only towards the new set: with n2
// down, n1 and n3 acknowledging is not a quorum of the old set.
func TestReplaceMoveRouting(t *testing.T) {
	mv := placement.Move{Partition: 0, Add: "n3", Remove: "n3", Stage: placement.StageStreaming, Since: 5}
	nodes := map[string]*moveNode{"n1": {fakeNode: &fakeNode{}}, "n2": {fakeNode: &fakeNode{err: down}}, "n3": {fakeNode: &fakeNode{}}}
	co, _ := moveCoord(moveDoc(6, mv), nodes)
	_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reached 1 of 2 required replicas of the old replica set [n1 n2]") {
		t.Fatalf("write: %v", err)
	}
	if nodes["n3"].calls.Load() != 1 {
		t.Errorf("n3 (backfilling in place) was not written")
	}
	nodes["n2"].fakeNode.err = nil
	if _, err := co.Write(t.Context(), []*storagev1.Record{rec(11)}, Quorum); err != nil {
		t.Fatalf("write with n1, n2 up: %v", err)
	}
	for range 50 {
		if _, err := co.Read(t.Context(), rec(1).GetKey(), One); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := co.Read(t.Context(), rec(1).GetKey(), Quorum); err != nil {
		t.Fatal(err)
	}
	// ALL cannot be met while a replica is incomplete.
	if _, err := co.Read(t.Context(), rec(1).GetKey(), All); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read at ALL during a replace: %v", err)
	}
	if n := nodes["n3"].reads.Load(); n != 0 {
		t.Errorf("n3 read %d times while backfilling", n)
	}
	// At read_new the new set, n3 included, is read.
	mv.Stage = placement.StageReadNew
	co, _ = moveCoord(moveDoc(7, mv), nodes)
	if _, err := co.Read(t.Context(), rec(1).GetKey(), All); err != nil {
		t.Fatal(err)
	}
	if n := nodes["n3"].reads.Load(); n != 1 {
		t.Errorf("n3 read %d times at read_new, want 1", n)
	}
}

// TestStaleEpochRetry: replicas refuse a write made under epoch 6 as
// stale; the coordinator waits for its view to reach the epoch the
// replica names and writes again by the new routing, once.
func TestStaleEpochRetry(t *testing.T) {
	nodes := map[string]*moveNode{}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		nodes[id] = newMoveNode(7)
	}
	co, c := moveCoord(moveDoc(6), nodes)
	cn := map[string]*cluster.Node{}
	for id, n := range nodes {
		cn[id] = &cluster.Node{ID: id, Client: n}
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.Publish(moveDoc(7, placement.Move{Partition: 0, Add: "n4", Remove: "n3", Stage: placement.StagePending, Since: 7}), cn)
	}()
	if _, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum); err != nil {
		t.Fatalf("write: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // n4 may straggle behind the quorum
	if n := nodes["n4"].calls.Load(); n != 1 || nodes["n4"].epochs.Load() != 7 {
		t.Errorf("n4: %d calls, epoch %d; want the retry by epoch 7 to reach it", n, nodes["n4"].epochs.Load())
	}
	// Without a newer view the write fails after one wait, not forever.
	co, _ = moveCoord(moveDoc(6), nodes)
	start := time.Now()
	if _, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stale placement epoch") {
		t.Fatalf("write with no newer view: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s", el)
	}
	// Reads retry the same way.
	if _, err := co.Read(t.Context(), rec(1).GetKey(), One); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read with no newer view: %v", err)
	}
}
