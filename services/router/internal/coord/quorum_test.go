package coord

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// How a replica answers a write in the quorum tables.
const (
	wOK    = "ok"    // applies it
	wDown  = "down"  // Unavailable
	wBusy  = "busy"  // ResourceExhausted
	wHang  = "hang"  // never answers
	wShort = "short" // answers one outcome too few (a broken node)
)

func behave(g *grid, id, how string) {
	n := g.nodes[id]
	switch how {
	case wDown:
		n.set(failWith(status.Error(codes.Unavailable, id+" is down")))
	case wBusy:
		n.set(failWith(status.Error(codes.ResourceExhausted, id+" is busy")))
	case wHang:
		n.set(hang(id, nil))
	case wShort:
		n.mu.Lock()
		n.shortOutcomes = true
		n.mu.Unlock()
	}
}

// reasons are the error texts each way of failing must be named by.
var reasons = map[string]string{
	wDown:  ": Unavailable: %s is down",
	wBusy:  ": ResourceExhausted: %s is busy",
	wShort: ": Unknown: node answered 0 outcomes for 1 records%.0s",
}

// TestWriteQuorumCounting: a write succeeds exactly when Need(level, 3)
// replicas acknowledged it, however the others fail; a failed one names
// every replica that failed and how, and counts those that applied it.
// Each level has a case one acknowledgement short of it.
func TestWriteQuorumCounting(t *testing.T) {
	for _, tc := range []struct {
		level Level
		how   [3]string // n1, n2, n3
		acks  int       // the count a failure reports
	}{
		{One, [3]string{wOK, wOK, wOK}, 0},
		{One, [3]string{wDown, wBusy, wOK}, 0},
		{One, [3]string{wHang, wHang, wOK}, 0},
		{One, [3]string{wDown, wBusy, wShort}, 0},
		{One, [3]string{wDown, wDown, wDown}, 0},
		{Quorum, [3]string{wOK, wOK, wDown}, 0},
		{Quorum, [3]string{wOK, wHang, wOK}, 0},
		{Quorum, [3]string{wShort, wOK, wOK}, 0},
		{Quorum, [3]string{wOK, wDown, wBusy}, 1},
		{Quorum, [3]string{wOK, wHang, wHang}, 1},
		{Quorum, [3]string{wOK, wShort, wDown}, 1},
		{Quorum, [3]string{wHang, wDown, wBusy}, 0},
		{All, [3]string{wOK, wOK, wOK}, 0},
		{All, [3]string{wOK, wOK, wDown}, 2},
		{All, [3]string{wOK, wHang, wOK}, 2},
		{All, [3]string{wShort, wOK, wOK}, 2},
		{All, [3]string{wBusy, wOK, wDown}, 1},
	} {
		acked := 0
		for _, h := range tc.how {
			if h == wOK {
				acked++
			}
		}
		need := Need(tc.level, 3)
		t.Run(fmt.Sprintf("%s %v", tc.level, tc.how), func(t *testing.T) {
			g := threeNodes(t, Options{FailureWait: 100 * time.Millisecond, Timeout: 400 * time.Millisecond})
			for i, h := range tc.how {
				behave(g, fmt.Sprintf("n%d", i+1), h)
			}
			k := key(0, "k")
			out, err := g.co.Write(t.Context(), []*storagev1.Record{record(k, 10)}, tc.level)
			if acked >= need {
				if err != nil {
					t.Fatalf("%d of %d needed acknowledged, yet: %v", acked, need, err)
				}
				if len(out) != 1 || !out[0].Applied || out[0].Current != 10 {
					t.Fatalf("outcomes %+v", out)
				}
				return
			}
			if err == nil {
				t.Fatalf("write succeeded with %d acknowledgements of %d needed", acked, need)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			want := []string{fmt.Sprintf("in partition 0 at %s reached %d of %d required replicas (applied on %d", tc.level, tc.acks, need, tc.acks)}
			hangs := 0
			for _, h := range tc.how {
				if h == wHang {
					hangs++
				}
			}
			// A replica that hangs fails when the calls time out, unless
			// the others' failures doomed the write before: then the
			// error says how many did not answer yet.
			doomedEarly := acked+hangs < need
			for i, h := range tc.how {
				id := fmt.Sprintf("n%d", i+1)
				if r, named := reasons[h]; named {
					want = append(want, id+fmt.Sprintf(r, id))
				}
				if h == wHang && !doomedEarly {
					want = append(want, id+": DeadlineExceeded: ")
				}
			}
			if hangs > 0 && doomedEarly {
				want = append(want, fmt.Sprintf("no answer yet from %d more", hangs))
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestWriteBatchPartitions: one batch with records of two partitions
// (p0 on n1-n3, p1 on n2-n4) sends each node one Apply with its own
// partitions' records, and counts acknowledgements per record: a replica
// that acknowledged its batch counts for each record in it, and only for
// the partitions it holds.
func TestWriteBatchPartitions(t *testing.T) {
	a0, b0, a1 := record(key(0, "a"), 10), record(key(0, "b"), 11), record(key(1, "c"), 12)
	batch := []*storagev1.Record{a0, a1, b0}
	for _, tc := range []struct {
		name   string
		level  Level
		failed []string
		// failing names the records' partitions that must fail ("" if
		// the write succeeds), ok those that must not be named.
		failing, ok []string
		// named are the failed replicas the error must name.
		named []string
	}{
		{"QUORUM, everyone up", Quorum, nil, nil, nil, nil},
		{"QUORUM, n1 and n4 down: n2, n3 carry both", Quorum, []string{"n1", "n4"}, nil, nil, nil},
		{"QUORUM, n2 and n4 down: p1 short", Quorum, []string{"n2", "n4"},
			[]string{`"c", sort key "") in partition 1 at QUORUM reached 1 of 2`}, []string{"in partition 0"}, []string{"n2", "n4"}},
		{"QUORUM, n1 and n2 down: p0 short", Quorum, []string{"n1", "n2"},
			[]string{`"a", sort key "") in partition 0 at QUORUM reached 1 of 2`, `"b", sort key "") in partition 0 at QUORUM reached 1 of 2`}, []string{"in partition 1"}, []string{"n1", "n2"}},
		{"ALL, n4 down", All, []string{"n4"}, []string{"in partition 1 at ALL reached 2 of 3"}, []string{"in partition 0"}, []string{"n4"}},
		{"ONE, n2 and n3 down", One, []string{"n2", "n3"}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := twoPartitions(t, Options{}) // no replica hangs: a failed write returns once all answered
			for _, id := range tc.failed {
				behave(g, id, wDown)
			}
			out, err := g.co.Write(t.Context(), batch, tc.level)
			if len(tc.failing) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				for i, o := range out {
					if !o.Applied || o.Current != batch[i].GetVersion() {
						t.Errorf("record %d: %+v", i, o)
					}
				}
			} else {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want ErrUnavailable", err)
				}
				for _, w := range tc.failing {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				for _, w := range tc.ok {
					if strings.Contains(err.Error(), w) {
						t.Errorf("error %q names %q, which reached its level", err, w)
					}
				}
				for _, id := range tc.named {
					if w := id + ": Unavailable: " + id + " is down"; !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
			// Each node got one Apply carrying exactly its partitions'
			// records, wherever it failed or not.
			want := map[string]int{"n1": 2, "n2": 3, "n3": 3, "n4": 1}
			for id, n := range want {
				node := g.nodes[id]
				waitCalls(t, node, "Apply", 1)
				node.mu.Lock()
				if len(node.applies) != 1 {
					t.Errorf("%s: %d Apply calls, want 1", id, len(node.applies))
				}
				if len(node.applies) == 1 && len(node.applies[0].GetRecords()) != n {
					t.Errorf("%s: %d records, want %d", id, len(node.applies[0].GetRecords()), n)
				}
				node.mu.Unlock()
			}
		})
	}
}

// TestWriteNamesAtMostThree: a failed batch names three of its failed
// records and counts the rest.
func TestWriteNamesAtMostThree(t *testing.T) {
	g := threeNodes(t, Options{})
	behave(g, "n3", wDown)
	var batch []*storagev1.Record
	for i := range 5 {
		batch = append(batch, record(key(0, fmt.Sprintf("k%d", i)), 10))
	}
	_, err := g.co.Write(t.Context(), batch, All)
	if !errors.Is(err, ErrUnavailable) || strings.Count(err.Error(), "reached 2 of 3 required replicas") != 3 ||
		!strings.Contains(err.Error(), "and 2 more records of this batch") {
		t.Fatalf("err = %v", err)
	}
	if _, err := g.co.Write(t.Context(), []*storagev1.Record{record(key(7, "x"), 1)}, One); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "partition out of range (1 partitions)") {
		t.Fatalf("write to partition 7 of 1: %v", err)
	}
	if out, err := g.co.Write(t.Context(), nil, All); err != nil || len(out) != 0 {
		t.Fatalf("empty write: %v, %v", out, err)
	}
}
