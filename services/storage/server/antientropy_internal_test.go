package server

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/topology"
)

// TestLeader: a partition's anti-entropy leader is its first registered
// replica that the asking node could reach; a replica cut off but still
// registered is passed over, so the others keep repairing each other.
func TestLeader(t *testing.T) {
	snap := &topology.Snapshot{Nodes: map[string]topology.Node{"a": {}, "b": {}, "c": {}}}
	reps := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name, self  string
		unreachable map[string]bool
		registered  []string
		want        string
	}{
		{"first replica leads", "b", nil, nil, "a"},
		{"self always reachable", "a", map[string]bool{"a": true}, nil, "a"},
		{"unreachable first replica passed over", "b", map[string]bool{"a": true}, nil, "b"},
		{"the cut-off node still thinks it leads", "a", map[string]bool{"b": true, "c": true}, nil, "a"},
		{"unregistered first replica passed over", "c", nil, []string{"b", "c"}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := snap
			if tc.registered != nil {
				s = &topology.Snapshot{Nodes: map[string]topology.Node{}}
				for _, n := range tc.registered {
					s.Nodes[n] = topology.Node{}
				}
			}
			if got := leader(reps, s, tc.self, tc.unreachable); got != tc.want {
				t.Fatalf("leader as seen by %s = %q, want %q", tc.self, got, tc.want)
			}
		})
	}
}
