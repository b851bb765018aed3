package coord

import (
	"errors"
	"strings"
	"testing"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestReadRepair: a QUORUM read that sees a newer version on one replica
// than on another returns the newer one and repairs the stale replica
// (and only it) with it, under the view's epoch. n3 fails, so the two
// replicas that answer are always n1 and n2.
func TestReadRepair(t *testing.T) {
	k := key(0, "k")
	tomb := &storagev1.Record{Key: k, Version: 6, Tombstone: true}
	for _, tc := range []struct {
		name    string
		n1, n2  *storagev1.Record // nil: the replica does not have the key
		want    *storagev1.Record
		repairs float64 // of n2
	}{
		{"stale replica", record(k, 5), record(k, 3), record(k, 5), 1},
		{"stale first", record(k, 3), record(k, 5), record(k, 5), 1},
		{"missing replica", record(k, 5), nil, record(k, 5), 1},
		{"newest is a tombstone", tomb, record(k, 3), tomb, 1},
		{"same version", record(k, 5), record(k, 5), record(k, 5), 0},
		{"absent everywhere", nil, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
			if tc.n1 != nil {
				g.nodes["n1"].put(tc.n1)
			}
			if tc.n2 != nil {
				g.nodes["n2"].put(tc.n2)
			}
			g.nodes["n3"].set(failWith(down))
			got, err := g.co.Read(t.Context(), k, Quorum)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("read %v, want %v", got, tc.want)
			}
			// Counted before Read returns: exact now.
			if r := counterValue(g.m.ReadRepairs); r != tc.repairs {
				t.Fatalf("read repairs = %v, want %v", r, tc.repairs)
			}
			if tc.repairs == 0 {
				return
			}
			stale, fresh := g.nodes["n2"], g.nodes["n1"]
			if tc.n1 == nil || tc.n2 != nil && tc.n2.GetVersion() > tc.n1.GetVersion() {
				stale, fresh = fresh, stale
			}
			req := recv(t, stale.applied, "the repair of the stale replica")
			if len(req.GetRecords()) != 1 || !proto.Equal(req.GetRecords()[0], tc.want) || req.GetPlacementEpoch() != 1 {
				t.Fatalf("repair %v, want %v at epoch 1", req, tc.want)
			}
			if !proto.Equal(stale.get(k), tc.want) {
				t.Errorf("stale replica holds %v after the repair", stale.get(k))
			}
			if n := fresh.count("Apply"); n != 0 {
				t.Errorf("the up-to-date replica was repaired %d times", n)
			}
		})
	}
}

// TestReadOneNoRepair: a read at ONE sees one replica and repairs nothing.
func TestReadOneNoRepair(t *testing.T) {
	g := threeNodes(t, Options{HedgeMin: noHedge, HedgeMax: noHedge})
	k := key(0, "k")
	g.nodes["n1"].put(record(k, 5))
	g.nodes["n2"].put(record(k, 3))
	for range 10 {
		if _, err := g.co.Read(t.Context(), k, One); err != nil {
			t.Fatal(err)
		}
	}
	if r := counterValue(g.m.ReadRepairs); r != 0 || g.calls("Apply") != 0 {
		t.Fatalf("read repairs = %v, applies %d at ONE", r, g.calls("Apply"))
	}
}

// twoPartitions places p0 on n1, n2, n3 and p1 on n2, n3, n4.
func twoPartitions(t *testing.T, opts Options) *grid {
	t.Helper()
	return newGrid(t, []string{"n1", "n2", "n3", "n4"}, [][]string{{"n1", "n2", "n3"}, {"n2", "n3", "n4"}}, opts)
}

// TestBatchRead: keys of two partitions read in one batch at QUORUM while
// n4 fails: p1's keys move on to its other replicas, results come back
// in key order, the newest version wins and the stale replica is
// repaired.
func TestBatchRead(t *testing.T) {
	g := twoPartitions(t, Options{})
	k0, k1, missing := key(0, "a"), key(1, "b"), key(1, "none")
	for _, id := range []string{"n1", "n2", "n3"} {
		g.nodes[id].put(record(k0, 1))
	}
	g.nodes["n2"].put(record(k1, 7))
	g.nodes["n3"].put(record(k1, 4))
	g.nodes["n4"].set(failWith(down))
	got, err := g.co.BatchRead(t.Context(), []*storagev1.Key{k1, missing, k0}, Quorum)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].GetVersion() != 7 || got[1] != nil || got[2].GetVersion() != 1 {
		t.Fatalf("batch read = %v, want [v7 nil v1]", got)
	}
	// Nodes answer without keys: the results take theirs by position.
	if !proto.Equal(got[0].GetKey(), k1) || !proto.Equal(got[2].GetKey(), k0) {
		t.Fatalf("batch read keys = %v, %v; want %v, %v", got[0].GetKey(), got[2].GetKey(), k1, k0)
	}
	if r := counterValue(g.m.ReadRepairs); r != 1 {
		t.Fatalf("read repairs = %v, want 1", r)
	}
	req := recv(t, g.nodes["n3"].applied, "the repair of n3")
	if len(req.GetRecords()) != 1 || req.GetRecords()[0].GetVersion() != 7 || !proto.Equal(req.GetRecords()[0].GetKey(), k1) {
		t.Fatalf("n3 repaired with %v, want %v at version 7", req, k1)
	}
	if v := counterValue(g.m.ReplicaErrors.WithLabelValues("n4", "Unavailable")); v != float64(g.nodes["n4"].count("BatchRead")) {
		t.Errorf("n4's failure not counted")
	}

	// At ALL p1 cannot be read; the error names the key and n4.
	_, err = g.co.BatchRead(t.Context(), []*storagev1.Key{k0, k1}, All)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `partition key "b", sort key "") in partition 1 at ALL reached 2 of 3`) ||
		!strings.Contains(err.Error(), "n4: Unavailable: connection refused") {
		t.Fatalf("ALL with n4 failing: %v", err)
	}

	// A replica refusing the request itself fails the batch as such.
	g.nodes["n1"].set(failWith(status.Error(codes.InvalidArgument, "bad key")))
	_, err = g.co.BatchRead(t.Context(), []*storagev1.Key{k0}, All)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("InvalidArgument from n1: %v", err)
	}
	if _, err := g.co.BatchRead(t.Context(), []*storagev1.Key{key(9, "x")}, One); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "partition out of range") {
		t.Fatalf("partition 9 of 2: %v", err)
	}
}

func sortRec(sk string, version uint64, tombstone bool) *storagev1.Record {
	r := record(&storagev1.Key{Partition: 0, TableId: 1, PartitionKey: []byte("q"), SortKey: []byte(sk)}, version)
	if tombstone {
		r.Value, r.Tombstone = nil, true
	}
	return r
}

// TestQueryMerge: a QUORUM query of a partition on n1 and n2 merges their
// pages by newest version, drops tombstones, stops at the earliest page
// bound, and repairs what n2 missed or holds older.
func TestQueryMerge(t *testing.T) {
	g := newGrid(t, []string{"n1", "n2"}, [][]string{{"n1", "n2"}}, Options{HedgeMin: noHedge, HedgeMax: noHedge})
	g.nodes["n1"].put(sortRec("a", 1, false), sortRec("b", 5, false), sortRec("c", 6, true), sortRec("d", 1, false))
	g.nodes["n2"].put(sortRec("a", 1, false), sortRec("b", 2, false), sortRec("c", 3, false))
	q := QueryOptions{Partition: 0, TableID: 1, PartitionKey: []byte("q"), Limit: 10}
	sks := func(recs []*storagev1.Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, string(r.GetKey().GetSortKey()))
		}
		return strings.Join(out, ",")
	}

	recs, next, err := g.co.Query(t.Context(), q, Quorum)
	if err != nil {
		t.Fatal(err)
	}
	if sks(recs) != "a,b,d" || recs[1].GetVersion() != 5 || next != nil {
		t.Fatalf("query = %s (b at %d), next %q; want a,b,d with b at 5, no next page", sks(recs), recs[1].GetVersion(), next)
	}
	if r := counterValue(g.m.ReadRepairs); r != 3 {
		t.Fatalf("read repairs = %v, want 3 (b, c and d on n2)", r)
	}
	req := recv(t, g.nodes["n2"].applied, "n2's repair")
	if sks(req.GetRecords()) != "b,c,d" {
		t.Fatalf("n2 repaired with %s, want b,c,d", sks(req.GetRecords()))
	}
	if g.nodes["n1"].count("Apply") != 0 {
		t.Errorf("n1 was repaired")
	}

	// Pages of two: both replicas stop at b, so the merge does too.
	q.Limit = 2
	recs, next, err = g.co.Query(t.Context(), q, Quorum)
	if err != nil {
		t.Fatal(err)
	}
	if sks(recs) != "a,b" || string(next) != "b" {
		t.Fatalf("first page %s, next %q; want a,b and next b", sks(recs), next)
	}
	// Reverse, at ONE: one replica's page as is.
	q.Reverse, q.Limit = true, 1
	recs, next, err = g.co.Query(t.Context(), q, One)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(next) != string(recs[0].GetKey().GetSortKey()) {
		t.Fatalf("reverse page %s, next %q", sks(recs), next)
	}
	q.Partition = 4
	if _, _, err := g.co.Query(t.Context(), q, One); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("query of partition 4 of 1: %v", err)
	}
}
