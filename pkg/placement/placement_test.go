package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func nodeList(n int, zones ...string) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i].ID = fmt.Sprintf("node-%02d", i)
		if len(zones) > 0 {
			nodes[i].Zone = zones[i%len(zones)]
		}
	}
	return nodes
}

func mustCompute(t testing.TB, nodes []Node, partitions uint32, rf int) Table {
	t.Helper()
	tab, err := Compute(nodes, partitions, rf)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Validate(); err != nil {
		t.Fatalf("Compute returned an invalid table: %v", err)
	}
	return tab
}

// changesPerPartition returns, per partition, the number of nodes in b's set
// that are not in a's.
func changesPerPartition(a, b Table) []int {
	out := make([]int, len(b.Replicas))
	for p := range b.Replicas {
		out[p] = Diff(Table{Replicas: [][]string{a.Replicas[p]}}, Table{Replicas: [][]string{b.Replicas[p]}})
	}
	return out
}

func TestPartitionOf(t *testing.T) {
	// Pinned: these values are part of the on-disk format (HashFunction).
	if got := PartitionOf(1, []byte("user#1"), 1024); got != 974 {
		t.Fatalf("PartitionOf(1, user#1, 1024) = %d, want 974", got)
	}
	if HashFunction != "xxhash64-v1" {
		t.Fatalf("HashFunction changed to %q: it names the on-disk format and must never change", HashFunction)
	}
	// The table id separates tables.
	same := 0
	for i := range 1000 {
		k := []byte(fmt.Sprint(i))
		if PartitionOf(1, k, 1024) == PartitionOf(2, k, 1024) {
			same++
		}
	}
	if same > 10 {
		t.Errorf("%d of 1000 keys land in the same partition for tables 1 and 2", same)
	}
	// Keys spread evenly.
	const P, keys = 64, 64_000
	counts := make([]int, P)
	for i := range keys {
		p := PartitionOf(7, []byte(fmt.Sprintf("key-%d", i)), P)
		if p >= P {
			t.Fatalf("partition %d out of range", p)
		}
		counts[p]++
	}
	for p, c := range counts {
		if c < keys/P*8/10 || c > keys/P*12/10 {
			t.Errorf("partition %d has %d keys, want about %d", p, c, keys/P)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("PartitionOf with 0 partitions did not panic")
			}
		}()
		PartitionOf(1, nil, 0)
	}()
}

func TestPartitionOfLongKeys(t *testing.T) {
	// Short keys are hashed in one shot, long ones streamed: both must be
	// xxhash64 of id || key.
	for _, n := range []int{0, 1, 55, 56, 57, 64, 1000} {
		key := []byte(strings.Repeat("k", n))
		want := uint32(xxhash.Sum64(append([]byte{0, 0, 0, 0, 0, 0, 1, 2}, key...)) % 1000)
		if got := PartitionOf(0x0102, key, 1000); got != want {
			t.Errorf("key of %d bytes: partition %d, want %d", n, got, want)
		}
	}
}

func TestPartitionOfNoAlloc(t *testing.T) {
	for _, key := range [][]byte{[]byte("user#1234567890"), make([]byte, 100)} {
		if n := testing.AllocsPerRun(100, func() { PartitionOf(1, key, 1024) }); n != 0 {
			t.Fatalf("PartitionOf of a %d-byte key allocates %v times", len(key), n)
		}
	}
}

func TestComputeErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nodes      []Node
		partitions uint32
		rf         int
		want       []string
	}{
		{"rf 0", nodeList(3), 8, 0, []string{"replication factor 0"}},
		{"rf negative", nodeList(3), 8, -1, []string{"replication factor -1"}},
		{"no partitions", nodeList(3), 0, 3, []string{"0 partitions"}},
		{"no nodes", nil, 8, 3, []string{"no nodes"}},
		{"empty id", []Node{{ID: "a"}, {ID: ""}}, 8, 1, []string{"node 1 has an empty ID"}},
		{"duplicate id", []Node{{ID: "a"}, {ID: "b", Zone: "z1"}, {ID: "b", Zone: "z2"}}, 8, 1, []string{`duplicate node ID "b"`}},
		{"every problem at once", []Node{{ID: "a"}, {ID: "a"}, {}}, 0, 0,
			[]string{"replication factor 0", "0 partitions", `duplicate node ID "a"`, "node 2 has an empty ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compute(tc.nodes, tc.partitions, tc.rf)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestComputeShape(t *testing.T) {
	for _, tc := range []struct {
		nodes, rf, want int
	}{
		{1, 1, 1}, {1, 3, 1}, {2, 3, 2}, {3, 3, 3}, {10, 3, 3}, {10, 1, 1}, {5, 5, 5},
	} {
		t.Run(fmt.Sprintf("nodes=%d/rf=%d", tc.nodes, tc.rf), func(t *testing.T) {
			tab := mustCompute(t, nodeList(tc.nodes), 64, tc.rf)
			if tab.Partitions != 64 || tab.RF != tc.rf || len(tab.Replicas) != 64 {
				t.Fatalf("table shape: partitions %d, rf %d, %d sets", tab.Partitions, tab.RF, len(tab.Replicas))
			}
			for p := range uint32(64) {
				if got := len(tab.ReplicasOf(p)); got != tc.want {
					t.Fatalf("partition %d has %d replicas, want %d", p, got, tc.want)
				}
			}
			if tab.ReplicasOf(64) != nil {
				t.Fatal("ReplicasOf out of range is not nil")
			}
		})
	}
}

func TestComputeInputNotModified(t *testing.T) {
	nodes := []Node{{ID: "c"}, {ID: "a"}, {ID: "b"}}
	want := slices.Clone(nodes)
	mustCompute(t, nodes, 8, 2)
	if !slices.Equal(nodes, want) {
		t.Fatalf("Compute reordered its input: %v", nodes)
	}
}

func TestDeterministic(t *testing.T) {
	for _, zones := range [][]string{nil, {"us-east-1a", "us-east-1b", "us-east-1c"}} {
		nodes := nodeList(10, zones...)
		want := mustCompute(t, nodes, 1024, 3)
		rng := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			shuffled := slices.Clone(nodes)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := mustCompute(t, shuffled, 1024, 3); !reflect.DeepEqual(got, want) {
				t.Fatalf("zones %v: placement depends on node order", zones)
			}
		}
	}
}

func TestAddNodeMovesAQuarter(t *testing.T) {
	const P, rf = 1024, 3
	before := mustCompute(t, nodeList(3), P, rf)
	after := mustCompute(t, nodeList(4), P, rf)
	moved := Diff(before, after)
	frac := float64(moved) / float64(P*rf)
	t.Logf("3 -> 4 nodes, RF %d, P %d: %d replica slots moved (%.1f%% of %d; theory 25%%)", rf, P, moved, 100*frac, P*rf)
	if frac < 0.20 || frac > 0.30 {
		t.Errorf("moved fraction %.3f, want within [0.20, 0.30]", frac)
	}
	for p, n := range changesPerPartition(before, after) {
		if n > 1 {
			t.Errorf("partition %d: %d replicas changed, want at most 1", p, n)
		}
	}
	if got := after.PartitionsPerNode()["node-03"]; got != moved {
		t.Errorf("the new node holds %d replicas but %d moved: moves went elsewhere", got, moved)
	}
}

func TestAddNodeMinimalMovement(t *testing.T) {
	// Every replica that moves goes to the new node, for several cluster sizes.
	for _, n := range []int{1, 2, 3, 5, 9, 20} {
		for _, rf := range []int{1, 3} {
			before := mustCompute(t, nodeList(n), 1024, rf)
			after := mustCompute(t, nodeList(n+1), 1024, rf)
			newID := nodeList(n + 1)[n].ID
			moved := Diff(before, after)
			if got := after.PartitionsPerNode()[newID]; got != moved {
				t.Errorf("%d -> %d nodes, rf %d: %d moved, new node holds %d", n, n+1, rf, moved, got)
			}
			for p, c := range changesPerPartition(before, after) {
				if c > 1 {
					t.Errorf("%d -> %d nodes, rf %d: partition %d: %d replicas changed", n, n+1, rf, p, c)
				}
			}
			want := float64(min(rf, n+1)) / float64(n+1) * 1024 // new node's expected share
			if n+1 > rf && math.Abs(float64(moved)-want) > 0.2*want {
				t.Errorf("%d -> %d nodes, rf %d: %d moved, expected about %.0f", n, n+1, rf, moved, want)
			}
		}
	}
}

func TestRemoveNodeMovesOnlyItsPartitions(t *testing.T) {
	for _, zones := range [][]string{nil, {"z1", "z2", "z3"}} {
		nodes := nodeList(10, zones...)
		before := mustCompute(t, nodes, 1024, 3)
		for victim := range nodes {
			rest := slices.Delete(slices.Clone(nodes), victim, victim+1)
			after := mustCompute(t, rest, 1024, 3)
			id := nodes[victim].ID
			held := before.PartitionsPerNode()[id]
			moved := Diff(before, after)
			if moved != held {
				t.Errorf("zones %v: removing %s (held %d) moved %d", zones, id, held, moved)
			}
			for p := range before.Replicas {
				old, cur := before.Replicas[p], after.Replicas[p]
				if !slices.Contains(old, id) {
					if !slices.Equal(old, cur) {
						t.Errorf("zones %v: removing %s changed partition %d it did not hold: %v -> %v", zones, id, p, old, cur)
					}
					continue
				}
				// The survivors stay, in the same order.
				if !slices.Equal(slices.DeleteFunc(slices.Clone(old), func(s string) bool { return s == id }),
					slices.DeleteFunc(slices.Clone(cur), func(s string) bool { return !slices.Contains(old, s) })) {
					t.Errorf("zones %v: removing %s reordered partition %d: %v -> %v", zones, id, p, old, cur)
				}
			}
		}
	}
}

func zoneMap(nodes []Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		m[n.ID] = n.Zone
	}
	return m
}

func distinctZones(set []string, zones map[string]string) int {
	seen := map[string]bool{}
	for _, id := range set {
		seen[zones[id]] = true
	}
	return len(seen)
}

func TestZoneSpreading(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []Node
		rf    int
		want  int // distinct zones per replica set
	}{
		{"10 nodes 3 zones rf 3", nodeList(10, "z1", "z2", "z3"), 3, 3},
		{"10 nodes 3 zones rf 2", nodeList(10, "z1", "z2", "z3"), 2, 2},
		{"10 nodes 3 zones rf 5", nodeList(10, "z1", "z2", "z3"), 5, 3},
		{"6 nodes 2 zones rf 3", nodeList(6, "z1", "z2"), 3, 2},
		{"uneven zones", append(nodeList(8, "big"), Node{ID: "x", Zone: "small1"}, Node{ID: "y", Zone: "small2"}), 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := mustCompute(t, tc.nodes, 1024, tc.rf)
			zones := zoneMap(tc.nodes)
			for p, set := range tab.Replicas {
				if got := distinctZones(set, zones); got != tc.want {
					t.Fatalf("partition %d: %v spans %d zones, want %d", p, set, got, tc.want)
				}
			}
		})
	}
}

func TestZoneSpreadingKeepsScoreOrder(t *testing.T) {
	// The primary is always the top-scoring node, and a set is in descending
	// score order.
	nodes := nodeList(10, "z1", "z2", "z3")
	tab := mustCompute(t, nodes, 1024, 3)
	for p, set := range tab.Replicas {
		best := ""
		var bestScore uint64
		for _, n := range nodes {
			if s := testScore(uint32(p), n.ID); best == "" || s > bestScore {
				best, bestScore = n.ID, s
			}
		}
		if set[0] != best {
			t.Fatalf("partition %d: primary %s, top scorer %s", p, set[0], best)
		}
		for i := 1; i < len(set); i++ {
			if testScore(uint32(p), set[i-1]) < testScore(uint32(p), set[i]) {
				t.Fatalf("partition %d: %v not in score order", p, set)
			}
		}
	}
}

func TestNoZonesIsPlainHRW(t *testing.T) {
	// With no zone labels, a replica set is exactly the top RF scorers.
	nodes := nodeList(7)
	tab := mustCompute(t, nodes, 256, 3)
	for p, set := range tab.Replicas {
		ids := make([]string, len(nodes))
		for i, n := range nodes {
			ids[i] = n.ID
		}
		slices.SortFunc(ids, func(a, b string) int {
			sa, sb := testScore(uint32(p), a), testScore(uint32(p), b)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return 0
		})
		if !slices.Equal(set, ids[:3]) {
			t.Fatalf("partition %d: %v, want top scorers %v", p, set, ids[:3])
		}
	}
}

func testScore(p uint32, id string) uint64 {
	return score(p, xxhash.Sum64String(id))
}

func TestBalance(t *testing.T) {
	const P, rf = 1024, 3
	for _, tc := range []struct {
		name      string
		nodes     []Node
		tolerance float64
	}{
		{"10 nodes", nodeList(10), 0.15},
		// With zones each zone gets P replicas; 10 nodes in 3 zones (4+3+3)
		// cannot be within 15% of each other, so only equal zones are checked.
		{"9 nodes 3 zones", nodeList(9, "z1", "z2", "z3"), 0.15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := mustCompute(t, tc.nodes, P, rf)
			counts, primaries := tab.PartitionsPerNode(), tab.PrimariesPerNode()
			mean := float64(P*rf) / float64(len(tc.nodes))
			pmean := float64(P) / float64(len(tc.nodes))
			lo, hi, plo, phi := math.MaxInt, 0, math.MaxInt, 0
			for _, n := range tc.nodes {
				c, pc := counts[n.ID], primaries[n.ID]
				lo, hi, plo, phi = min(lo, c), max(hi, c), min(plo, pc), max(phi, pc)
				if dev := math.Abs(float64(c)-mean) / mean; dev > tc.tolerance {
					t.Errorf("%s holds %d replicas, %.1f%% from the mean %.1f", n.ID, c, 100*dev, mean)
				}
			}
			t.Logf("replicas per node: min %d max %d mean %.1f (%+.1f%% / %+.1f%%); primaries: min %d max %d mean %.1f",
				lo, hi, mean, 100*(float64(lo)-mean)/mean, 100*(float64(hi)-mean)/mean, plo, phi, pmean)
		})
	}
}

func TestDiff(t *testing.T) {
	a := Table{Partitions: 3, RF: 2, Replicas: [][]string{{"a", "b"}, {"b", "c"}, {"c", "a"}}}
	for _, tc := range []struct {
		name string
		b    Table
		want int
	}{
		{"same", a, 0},
		{"reordered", Table{Replicas: [][]string{{"b", "a"}, {"c", "b"}, {"a", "c"}}}, 0},
		{"one replaced", Table{Replicas: [][]string{{"a", "d"}, {"b", "c"}, {"c", "a"}}}, 1},
		{"all replaced", Table{Replicas: [][]string{{"x", "y"}, {"x", "y"}, {"x", "y"}}}, 6},
		{"grown set", Table{Replicas: [][]string{{"a", "b", "d"}, {"b", "c"}, {"c", "a"}}}, 1},
		{"shrunk set", Table{Replicas: [][]string{{"a"}, {"b", "c"}, {"c", "a"}}}, 0},
		{"extra partition", Table{Replicas: [][]string{{"a", "b"}, {"b", "c"}, {"c", "a"}, {"a", "b"}}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Diff(a, tc.b); got != tc.want {
				t.Errorf("Diff = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPerNodeCounts(t *testing.T) {
	tab := Table{Partitions: 3, RF: 2, Replicas: [][]string{{"a", "b"}, {"b", "c"}, {"b", "a"}}}
	if got, want := tab.PartitionsPerNode(), map[string]int{"a": 2, "b": 3, "c": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("PartitionsPerNode = %v, want %v", got, want)
	}
	if got, want := tab.PrimariesPerNode(), map[string]int{"a": 1, "b": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("PrimariesPerNode = %v, want %v", got, want)
	}
}

func TestTableValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		tab  Table
		want []string // empty: valid
	}{
		{"valid", Table{Partitions: 2, RF: 2, Replicas: [][]string{{"a", "b"}, {"c"}}}, nil},
		{"zero", Table{}, []string{"0 partitions", "replication factor 0"}},
		{"wrong count", Table{Partitions: 3, RF: 1, Replicas: [][]string{{"a"}}}, []string{"1 replica sets for 3 partitions"}},
		{"bad sets", Table{Partitions: 4, RF: 2, Replicas: [][]string{{}, {"a", "a"}, {"a", "b", "c"}, {"a", ""}}},
			[]string{"partition 0: no replicas", `partition 1: node "a" twice`, "partition 2: 3 replicas, more than RF 2", "partition 3: an empty node ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tab.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// A badly corrupt table reports a bounded number of problems.
	big := Table{Partitions: 1000, RF: 1, Replicas: make([][]string, 1000)}
	err := big.Validate()
	if n := strings.Count(err.Error(), "\n") + 1; n > 11 {
		t.Errorf("%d error lines for 1000 bad partitions", n)
	}
	if !strings.Contains(err.Error(), "990 more partitions") {
		t.Errorf("error does not summarize the rest: %v", err)
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	tab := mustCompute(t, nodeList(5, "z1", "z2"), 64, 3)
	doc := NewDocument(42, tab)
	data, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, doc) {
		t.Fatalf("round trip: got %+v, want %+v", got, doc)
	}
	if got.Epoch != 42 || got.HashFunction != HashFunction {
		t.Fatalf("epoch %d, hash function %q", got.Epoch, got.HashFunction)
	}
	if !reflect.DeepEqual(got.Table(), tab) {
		t.Fatal("Document.Table differs from the table")
	}
}

func TestDocumentErrors(t *testing.T) {
	tab := mustCompute(t, nodeList(3), 8, 2)
	doc := NewDocument(1, tab)
	doc.HashFunction = "murmur3-v1"
	if _, err := doc.Marshal(); !errors.Is(err, ErrHashFunctionMismatch) {
		t.Fatalf("Marshal with another hash function: err = %v", err)
	}
	for _, tc := range []struct {
		name, json string
		is         error
	}{
		{"not json", `{`, ErrInvalid},
		{"wrong type", `{"epoch":"x"}`, ErrInvalid},
		{"empty", `{}`, ErrInvalid},
		{"other hash", `{"epoch":1,"hash_function":"crc32","partitions":1,"rf":1,"replicas":[["a"]]}`, ErrHashFunctionMismatch},
		{"missing hash", `{"epoch":1,"partitions":1,"rf":1,"replicas":[["a"]]}`, ErrHashFunctionMismatch},
		{"bad shape", `{"epoch":1,"hash_function":"xxhash64-v1","partitions":2,"rf":1,"replicas":[["a"]]}`, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unmarshal([]byte(tc.json)); !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"epoch":7,"hash_function":"xxhash64-v1","partitions":2,"rf":2,"replicas":[["a","b"],["c","a"]]}`))
	f.Add([]byte(`{"epoch":1,"hash_function":"xxhash64-v1","partitions":1,"rf":1,"replicas":[[""]]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Unmarshal(data)
		if err != nil {
			return
		}
		again, err := doc.Marshal()
		if err != nil {
			t.Fatalf("valid document does not marshal: %v", err)
		}
		back, err := Unmarshal(again)
		if err != nil || !reflect.DeepEqual(back, doc) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, doc)
		}
	})
}

func BenchmarkPartitionOf(b *testing.B) {
	for _, n := range []int{16, 41, 200} {
		key := []byte(strings.Repeat("k", n))
		b.Run(fmt.Sprintf("key=%dB", n), func(b *testing.B) {
			b.SetBytes(int64(8 + len(key)))
			for b.Loop() {
				PartitionOf(42, key, 1024)
			}
		})
	}
}

func BenchmarkCompute(b *testing.B) {
	for _, tc := range []struct {
		name  string
		nodes []Node
	}{
		{"P=1024/nodes=10/rf=3", nodeList(10)},
		{"P=1024/nodes=10/rf=3/zones=3", nodeList(10, "z1", "z2", "z3")},
		{"P=1024/nodes=100/rf=3/zones=3", nodeList(100, "z1", "z2", "z3")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compute(tc.nodes, 1024, 3); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
