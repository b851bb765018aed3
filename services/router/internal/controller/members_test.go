package controller

import (
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// TestFillMembersRemovedRejoins: a removed node that is still running (the
// directory it was removed with) stays removed; the same id on a new
// directory joins again; a registered directory becomes the member's.
func TestFillMembersRemovedRejoins(t *testing.T) {
	removedAt := time.Now()
	d := &placement.Document{Partitions: 1, RF: 1, Replicas: [][]string{{"n1"}}, Members: map[string]placement.Member{
		"n1": {State: placement.MemberActive, Incarnation: "old1"},
		"n2": {State: placement.MemberRemoved, Since: removedAt, Incarnation: "a"},
	}}
	// Same incarnation, even with a start time after the removal (clock
	// skew, a restart of the still-removed directory): stays removed.
	nodes := map[string]topology.Node{
		"n1": {ID: "n1", State: topology.NodeUp, Incarnation: "new1"},
		"n2": {ID: "n2", State: topology.NodeUp, Incarnation: "a", StartTime: removedAt.Add(time.Minute)},
	}
	if !FillMembers(d, nodes, time.Now()) {
		t.Fatal("FillMembers changed nothing; n1's registered incarnation is new")
	}
	if got := d.Members["n2"].State; got != placement.MemberRemoved {
		t.Fatalf("removed n2 still running on its old directory became %q", got)
	}
	if got := d.Members["n1"].Incarnation; got != "new1" {
		t.Fatalf("n1's incarnation %q, want the registered new1", got)
	}
	nodes["n2"] = topology.Node{ID: "n2", State: topology.NodeUp, Incarnation: "b", StartTime: removedAt.Add(-time.Minute)}
	FillMembers(d, nodes, time.Now())
	if m := d.Members["n2"]; m.State != placement.MemberActive || m.Incarnation != "b" {
		t.Fatalf("n2 on a new directory: %+v, want active with incarnation b", m)
	}
}
