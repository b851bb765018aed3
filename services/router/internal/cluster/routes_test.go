package cluster_test

import (
	"slices"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// TestRoutes: the view's routes are placement's Routing with the nodes
// resolved, and each write target counts towards the sets it is in.
func TestRoutes(t *testing.T) {
	nodes := map[string]*cluster.Node{}
	for _, id := range []string{"a", "b", "c", "d"} {
		nodes[id] = &cluster.Node{ID: id}
	}
	doc := placement.Document{Epoch: 9, Partitions: 3, RF: 3, Replicas: [][]string{{"a", "b", "c"}, {"a", "b", "c"}, {"a", "b", "c"}},
		Moves: []placement.Move{
			{Partition: 1, Add: "d", Remove: "c", Stage: placement.StageReadNew, Since: 8},
			{Partition: 2, Add: "c", Remove: "c", Stage: placement.StageStreaming, Since: 8},
			{Partition: 0, Remove: "d", Stage: placement.StageCleanup, Since: 7},
		}}
	delete(nodes, "b") // down
	v := cluster.NewStaticDocument(doc, nodes).View()
	for p, want := range []struct {
		read  []string
		size  int
		write []string
		masks []uint8
	}{
		{[]string{"a", "b", "c"}, 3, []string{"a", "b", "c"}, []uint8{1, 1, 1}},
		{[]string{"a", "b", "d"}, 3, []string{"a", "b", "c", "d"}, []uint8{3, 3, 1, 2}},
		{[]string{"a", "b"}, 3, []string{"a", "b", "c"}, []uint8{3, 3, 2}},
	} {
		rt := v.Route(uint32(p))
		if !slices.Equal(rt.ReadIDs, want.read) || rt.ReadSize != want.size || !slices.Equal(rt.WriteIDs, want.write) || !slices.Equal(rt.WriteSets, want.masks) {
			t.Errorf("partition %d: read %v/%d write %v masks %v; want %+v", p, rt.ReadIDs, rt.ReadSize, rt.WriteIDs, rt.WriteSets, want)
		}
		for i, id := range rt.WriteIDs {
			if n := rt.WriteNodes[i]; (n == nil) != (id == "b") || n != nil && n.ID != id {
				t.Errorf("partition %d: write node %d is %v for %s", p, i, n, id)
			}
		}
	}
	if v.Epoch != 9 {
		t.Errorf("epoch %d", v.Epoch)
	}
}
