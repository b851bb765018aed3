package coord

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hintNode is a fakeNode that also records the hints it is asked to store.
type hintNode struct {
	*fakeNode
	mu      sync.Mutex
	hints   map[string][]uint64 // target → versions
	hintErr error
}

func (h *hintNode) StoreHints(ctx context.Context, req *storagev1.StoreHintsRequest, _ ...grpc.CallOption) (*storagev1.StoreHintsResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hintErr != nil {
		return nil, h.hintErr
	}
	if h.hints == nil {
		h.hints = map[string][]uint64{}
	}
	for _, r := range req.GetRecords() {
		h.hints[req.GetTargetNode()] = append(h.hints[req.GetTargetNode()], r.GetVersion())
	}
	return &storagev1.StoreHintsResponse{}, nil
}

func (h *hintNode) got() map[string][]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]uint64{}
	for k, v := range h.hints {
		out[k] = append([]uint64(nil), v...)
	}
	return out
}

// hintCoord replicates one partition on n1, n2, n3 (a nil node is not
// registered) with hinted handoff on.
func hintCoord(nodes ...*hintNode) (*Coordinator, *Metrics) {
	ids := []string{"n1", "n2", "n3"}
	reps := make([]*cluster.Node, len(nodes))
	for i, n := range nodes {
		if n != nil {
			reps[i] = &cluster.Node{ID: ids[i], Client: n}
		}
	}
	m := NewMetrics(nil)
	c := cluster.NewStatic(1, [][]string{ids}, [][]*cluster.Node{reps})
	return New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Second, HintedHandoff: true, Metrics: m}), m
}

func waitHints(t *testing.T, m *Metrics, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(m.Hints.WithLabelValues(result)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("hints %s = %v, want %v", result, counterValue(m.Hints.WithLabelValues(result)), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWriteHints: a write with a replica down (failing, timing out, or
// not registered) reaches its level on the others only (a hint is no ack)
// and leaves the records that replica missed as hints on a replica that
// acknowledged them.
func TestWriteHints(t *testing.T) {
	for _, tc := range []struct {
		name string
		n3   *hintNode
	}{
		{"failing", &hintNode{fakeNode: &fakeNode{err: down}}},
		{"timing out", &hintNode{fakeNode: &fakeNode{delay: time.Hour}}},
		{"not registered", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n1, n2 := &hintNode{fakeNode: &fakeNode{}}, &hintNode{fakeNode: &fakeNode{}}
			co, m := hintCoord(n1, n2, tc.n3)
			if _, err := co.Write(context.Background(), []*storagev1.Record{rec(5), rec(6)}, Quorum); err != nil {
				t.Fatal(err)
			}
			waitHints(t, m, "stored", 2)
			all := map[string][]uint64{}
			for _, n := range []*hintNode{n1, n2} {
				for target, vs := range n.got() {
					all[target] = append(all[target], vs...)
				}
			}
			if len(all) != 1 || len(all["n3"]) != 2 {
				t.Fatalf("hints: %v", all)
			}
		})
	}

	t.Run("a hint is no ack", func(t *testing.T) {
		n1 := &hintNode{fakeNode: &fakeNode{}}
		bad := func() *hintNode { return &hintNode{fakeNode: &fakeNode{err: down}} }
		co, m := hintCoord(n1, bad(), bad())
		_, err := co.Write(context.Background(), []*storagev1.Record{rec(7)}, Quorum)
		if err == nil {
			t.Fatal("QUORUM write with two replicas down succeeded")
		}
		// The one replica that applied it keeps it for the others.
		waitHints(t, m, "stored", 2)
		if got := n1.got(); len(got["n2"]) != 1 || len(got["n3"]) != 1 {
			t.Fatalf("hints on n1: %v", got)
		}
	})

	t.Run("all acknowledged", func(t *testing.T) {
		n := func() *hintNode { return &hintNode{fakeNode: &fakeNode{}} }
		n1, n2, n3 := n(), n(), n()
		co, m := hintCoord(n1, n2, n3)
		if _, err := co.Write(context.Background(), []*storagev1.Record{rec(8)}, One); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		for _, x := range []*hintNode{n1, n2, n3} {
			if len(x.got()) != 0 {
				t.Fatalf("hint with every replica up: %v", x.got())
			}
		}
		if v := counterValue(m.Hints.WithLabelValues("stored")); v != 0 {
			t.Fatalf("stored %v", v)
		}
	})

	t.Run("invalid input", func(t *testing.T) {
		bad := &hintNode{fakeNode: &fakeNode{err: status.Error(codes.InvalidArgument, "no")}}
		n1 := &hintNode{fakeNode: &fakeNode{}}
		co, m := hintCoord(n1, bad, &hintNode{fakeNode: &fakeNode{delay: 50 * time.Millisecond, err: down}})
		if _, err := co.Write(context.Background(), []*storagev1.Record{rec(9)}, Quorum); err == nil {
			t.Fatal("invalid write succeeded")
		}
		time.Sleep(200 * time.Millisecond)
		if v := counterValue(m.Hints.WithLabelValues("stored")); v != 0 || len(n1.got()) != 0 {
			t.Fatalf("hinted an invalid write: %v", n1.got())
		}
	})

	t.Run("holder refuses", func(t *testing.T) {
		full := status.Error(codes.ResourceExhausted, "hint budget exhausted")
		n1 := &hintNode{fakeNode: &fakeNode{}, hintErr: full}
		n2 := &hintNode{fakeNode: &fakeNode{}, hintErr: full}
		co, m := hintCoord(n1, n2, nil)
		if _, err := co.Write(context.Background(), []*storagev1.Record{rec(10)}, Quorum); err != nil {
			t.Fatalf("a refused hint failed the write: %v", err)
		}
		waitHints(t, m, "failed", 1)
	})

	t.Run("off", func(t *testing.T) {
		n1, n2 := &hintNode{fakeNode: &fakeNode{}}, &hintNode{fakeNode: &fakeNode{}}
		co, _ := hintCoord(n1, n2, nil)
		co.o.HintedHandoff = false
		if _, err := co.Write(context.Background(), []*storagev1.Record{rec(11)}, Quorum); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if len(n1.got())+len(n2.got()) != 0 {
			t.Fatal("hints with hinted handoff off")
		}
	})
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestWriteHintsOneNode: a write that only one registered replica takes
// (called in the caller's goroutine) still leaves hints there for the
// unregistered ones.
func TestWriteHintsOneNode(t *testing.T) {
	n1 := &hintNode{fakeNode: &fakeNode{}}
	co, m := hintCoord(n1, nil, nil)
	if _, err := co.Write(context.Background(), []*storagev1.Record{rec(9)}, One); err != nil {
		t.Fatal(err)
	}
	waitHints(t, m, "stored", 2)
	if got := n1.got(); len(got["n2"]) != 1 || len(got["n3"]) != 1 {
		t.Fatalf("hints on n1: %v", got)
	}
}
