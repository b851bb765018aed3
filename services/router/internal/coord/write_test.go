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

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeNode is a storage node whose Apply answers after delay with err, or
// with outcome and current version cur for every record.
type fakeNode struct {
	storagev1.StorageServiceClient
	delay   time.Duration
	err     error
	outcome storagev1.Outcome
	cur     uint64 // 0: the record's own version
	calls   atomic.Int32
}

func (f *fakeNode) Apply(ctx context.Context, req *storagev1.ApplyRequest, _ ...grpc.CallOption) (*storagev1.ApplyResponse, error) {
	f.calls.Add(1)
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		o, cur := f.outcome, f.cur
		if o == storagev1.Outcome_OUTCOME_UNSPECIFIED {
			o = storagev1.Outcome_OUTCOME_APPLIED
		}
		if cur == 0 {
			cur = r.GetVersion()
		}
		resp.Outcomes = append(resp.Outcomes, o)
		resp.CurrentVersions = append(resp.CurrentVersions, cur)
	}
	return resp, nil
}

// newTestCoord replicates one partition on n1, n2, n3; a nil fake is a
// node that is not registered.
func newTestCoord(t *testing.T, fakes ...*fakeNode) *Coordinator {
	t.Helper()
	ids := []string{"n1", "n2", "n3"}
	reps := make([]*cluster.Node, len(fakes))
	for i, f := range fakes {
		if f != nil {
			reps[i] = &cluster.Node{ID: ids[i], Client: f}
		}
	}
	c := cluster.NewStatic(1, [][]string{ids[:len(fakes)]}, [][]*cluster.Node{reps})
	// Timeout bounds how long a hung fake's straggling call outlives its
	// test (goleak waits for it in TestMain).
	return New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Second})
}

func rec(version uint64) *storagev1.Record {
	return &storagev1.Record{Key: &storagev1.Key{TableId: 1, PartitionKey: []byte("pk")}, Version: version, Value: []byte("v")}
}

var down = status.Error(codes.Unavailable, "connection refused")

func TestWriteOutcomes(t *testing.T) {
	sup := func(cur uint64) *fakeNode {
		return &fakeNode{outcome: storagev1.Outcome_OUTCOME_SUPERSEDED, cur: cur}
	}
	for _, tc := range []struct {
		name  string
		nodes []*fakeNode
		level Level
		want  Outcome
	}{
		{"applied everywhere", []*fakeNode{{}, {}, {}}, All, Outcome{Applied: true, Current: 10}},
		{"superseded everywhere", []*fakeNode{sup(99), sup(100), sup(99)}, All, Outcome{Current: 100}},
		// One replica took it: it is in effect there and will spread.
		{"applied on one", []*fakeNode{sup(99), {}, sup(99)}, All, Outcome{Applied: true, Current: 10}},
		// The same version already stored: a retry of a write that took effect.
		{"repeat", []*fakeNode{sup(10), sup(10), sup(10)}, Quorum, Outcome{Applied: true, Current: 10}},
		{"quorum superseded", []*fakeNode{sup(50), sup(50), {delay: time.Second}}, Quorum, Outcome{Current: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := newTestCoord(t, tc.nodes...)
			out, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, tc.level)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 || out[0] != tc.want {
				t.Fatalf("outcomes %+v, want %+v", out, tc.want)
			}
		})
	}
}

// TestWriteFailureCountsEveryReplica is the "reached 0 of 2" bug: the live
// replica answered after the dead ones, and the write that it applied was
// reported as reaching none. It also checks that every failed replica is
// named, not only the first.
func TestWriteFailureCountsEveryReplica(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []*fakeNode
		level Level
		want  []string
	}{
		{"quorum, live replica slowest", []*fakeNode{{delay: 50 * time.Millisecond}, {err: down}, {err: down}}, Quorum,
			[]string{"reached 1 of 2 required replicas (applied on 1", "may still take effect", "n2: Unavailable: connection refused", "n3: Unavailable: connection refused"}},
		{"all, two dead", []*fakeNode{{}, {err: down}, {delay: 20 * time.Millisecond, err: status.Error(codes.DeadlineExceeded, "slow disk")}}, All,
			[]string{"reached 1 of 3 required replicas (applied on 1", "n2: Unavailable", "n3: DeadlineExceeded: slow disk"}},
		{"all, superseded on the live one", []*fakeNode{{delay: 30 * time.Millisecond, outcome: storagev1.Outcome_OUTCOME_SUPERSEDED, cur: 77}, {err: down}, {err: down}}, All,
			[]string{"reached 1 of 3 required replicas (applied on 0, superseded by a newer version on 1", "n2: Unavailable", "n3: Unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := newTestCoord(t, tc.nodes...)
			_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, tc.level)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestWriteRefusedBeforeSending(t *testing.T) {
	live := &fakeNode{}
	co := newTestCoord(t, live, nil, nil)
	_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "nothing was written") ||
		!strings.Contains(err.Error(), "n2: not registered") || !strings.Contains(err.Error(), "n3: not registered") {
		t.Fatalf("err = %v", err)
	}
	if live.calls.Load() != 0 {
		t.Errorf("the live replica was called")
	}
}

func TestWriteInvalidArgument(t *testing.T) {
	bad := &fakeNode{err: status.Error(codes.InvalidArgument, "record 0: bad")}
	co := newTestCoord(t, bad, bad, bad)
	if _, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, One); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
}

// TestWriteDeadline checks that a write whose deadline ends says how far it
// got. Whether the caller's deadline or the replica calls (which share it)
// end first, the count must be right.
func TestWriteDeadline(t *testing.T) {
	co := newTestCoord(t, &fakeNode{}, &fakeNode{delay: time.Second}, &fakeNode{delay: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := co.Write(ctx, []*storagev1.Record{rec(10)}, All)
	ok := errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "1 of 3 required replicas acknowledged, applied on 1") ||
		errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "reached 1 of 3 required replicas (applied on 1")
	if !ok || !strings.Contains(err.Error(), "may still take effect") {
		t.Fatalf("err = %v", err)
	}
}

// TestWriteFailureWaitIsBounded: a hung replica must not hold a failed
// write until the deadline; the error says it did not answer.
func TestWriteFailureWaitIsBounded(t *testing.T) {
	co := newTestCoord(t, &fakeNode{delay: time.Hour}, &fakeNode{err: down}, &fakeNode{err: down})
	co.o.FailureWait = 50 * time.Millisecond
	start := time.Now()
	_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("failed write took %v", el)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reached 0 of 2 required replicas (applied on 0") ||
		!strings.Contains(err.Error(), "no answer yet from 1 more") || !strings.Contains(err.Error(), "n2: Unavailable") || !strings.Contains(err.Error(), "n3: Unavailable") {
		t.Fatalf("err = %v", err)
	}
}

// TestWriteOneNode covers a write whose records all go to one node (RF 1),
// which Write calls in the caller's goroutine: outcomes, a replica error,
// and the caller's deadline ending first.
func TestWriteOneNode(t *testing.T) {
	t.Run("applied", func(t *testing.T) {
		co := newTestCoord(t, &fakeNode{})
		out, err := co.Write(t.Context(), []*storagev1.Record{rec(10), rec(11)}, One)
		if err != nil || len(out) != 2 || out[1] != (Outcome{Applied: true, Current: 11}) {
			t.Fatalf("outcomes %+v, err %v", out, err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		co := newTestCoord(t, &fakeNode{err: down})
		co.o.FailureWait = time.Millisecond
		_, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, One)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reached 0 of 1 required replicas") || !strings.Contains(err.Error(), "n1: Unavailable") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		co := newTestCoord(t, &fakeNode{delay: time.Second})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := co.Write(ctx, []*storagev1.Record{rec(10)}, One)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "may still take effect") {
			t.Fatalf("err = %v", err)
		}
	})
}

// asyncNode is a fakeNode that also sends without blocking, as
// storagemux.Client does.
type asyncNode struct {
	*fakeNode
	sent *atomic.Int32
}

func (a asyncNode) ApplyAsync(ctx context.Context, req *storagev1.ApplyRequest, done func(*storagev1.ApplyResponse, error)) {
	a.sent.Add(1)
	go func() { done(a.Apply(ctx, req)) }()
}

// TestWriteAsync: replicas called without a goroutine per call give the
// same outcomes and errors.
func TestWriteAsync(t *testing.T) {
	var sent atomic.Int32
	newCoord := func(fakes ...*fakeNode) *Coordinator {
		co := newTestCoord(t, fakes...)
		for _, n := range co.c.View().Route(0).WriteNodes {
			n.Client = asyncNode{n.Client.(*fakeNode), &sent}
		}
		return co
	}
	co := newCoord(&fakeNode{}, &fakeNode{outcome: storagev1.Outcome_OUTCOME_SUPERSEDED, cur: 99}, &fakeNode{delay: time.Second})
	out, err := co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum)
	if err != nil || len(out) != 1 || out[0] != (Outcome{Applied: true, Current: 10}) {
		t.Fatalf("outcomes %+v, err %v", out, err)
	}
	co = newCoord(&fakeNode{}, &fakeNode{err: down}, &fakeNode{err: down})
	co.o.FailureWait = time.Millisecond
	_, err = co.Write(t.Context(), []*storagev1.Record{rec(10)}, Quorum)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "reached 1 of 2 required replicas (applied on 1") {
		t.Fatalf("err = %v", err)
	}
	if n := sent.Load(); n != 6 {
		t.Fatalf("%d calls sent by ApplyAsync, want 6", n)
	}
}
