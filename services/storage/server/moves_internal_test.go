package server

import (
	"slices"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// TestSources: a backfill streams from the move's Remove when it is
// registered, otherwise from every registered replica but Add and Remove.
func TestSources(t *testing.T) {
	doc := &placement.Document{Replicas: [][]string{{"a", "b", "c"}}}
	snap := func(ids ...string) *topology.Snapshot {
		s := &topology.Snapshot{Placement: doc, Nodes: map[string]topology.Node{}}
		for _, id := range ids {
			s.Nodes[id] = topology.Node{ID: id}
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		snap   *topology.Snapshot
		mv     placement.Move
		union  bool
		want   []string
		single bool
	}{
		{"from Remove", snap("a", "b", "c", "d"), placement.Move{Add: "d", Remove: "b"}, false, []string{"b"}, true},
		{"Remove keeps failing", snap("a", "b", "c", "d"), placement.Move{Add: "d", Remove: "b"}, true, []string{"a", "c"}, false},
		{"Remove not registered", snap("a", "c", "d"), placement.Move{Add: "d", Remove: "b"}, false, []string{"a", "c"}, false},
		{"growing the set", snap("a", "b", "c", "d"), placement.Move{Add: "d"}, false, []string{"a", "b", "c"}, false},
		{"in place", snap("a", "b", "c"), placement.Move{Add: "b", Remove: "b"}, false, []string{"a", "c"}, false},
		{"in place, others down", snap("b"), placement.Move{Add: "b", Remove: "b"}, false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, single := sources(tc.snap, tc.mv, tc.union)
			if !slices.Equal(got, tc.want) || single != tc.single {
				t.Fatalf("sources = %v (single %v), want %v (single %v)", got, single, tc.want, tc.single)
			}
		})
	}
}

// TestHintsHolds: hints go to a node that must take the partition's
// writes, the destination of its move included.
func TestHintsHolds(t *testing.T) {
	doc := &placement.Document{Replicas: [][]string{{"a", "b"}, {"a", "b"}},
		Moves: []placement.Move{{Partition: 0, Add: "c", Remove: "b", Stage: placement.StagePending}, {Partition: 1, Remove: "d", Stage: placement.StageCleanup}}}
	snap := &topology.Snapshot{Placement: doc}
	for _, tc := range []struct {
		node string
		p    uint32
		want bool
	}{
		{"a", 0, true}, {"b", 0, true}, {"c", 0, true}, {"c", 1, false}, {"d", 1, false}, {"a", 5, false},
	} {
		if got := holds(snap, tc.node, tc.p); got != tc.want {
			t.Errorf("holds(%s, %d) = %v, want %v", tc.node, tc.p, got, tc.want)
		}
	}
	if !holds(&topology.Snapshot{}, "x", 0) {
		t.Error("without a placement the target decides")
	}
}
