package controller_test

import (
	"slices"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
)

// stays checks that cond holds for the stored placement for a while (the
// controller had ample iterations to act).
func (h *harness) stays(what string, cond func(d placement.Document) bool) {
	h.t.Helper()
	for range 10 {
		if d := h.doc(); !cond(d) {
			h.t.Fatalf("%s: no longer so at epoch %d: moves %v", what, d.Epoch, d.Moves)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestJoinStepByStep walks a fourth node's first moves through every
// stage, checking each barrier, with a controller failover mid-move, then
// drives the rebalance to its end.
func TestJoinStepByStep(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	c1 := h.start("c1")
	h.waitDoc("members filled", func(d placement.Document) bool { return len(d.Members) == 3 })

	h.register("n4")
	d := h.waitDoc("moves onto n4", func(d placement.Document) bool { return len(d.Moves) > 0 })
	if d.Members["n4"].State != placement.MemberActive {
		t.Errorf("n4 member %+v", d.Members["n4"])
	}
	busy := map[string]int{}
	for _, m := range d.Moves {
		if m.Add != "n4" || m.Stage != placement.StagePending || m.Since != d.Epoch || d.ChangedAt(m.Partition) != d.Epoch {
			t.Errorf("move %s since %d, changed at %d; document epoch %d", m, m.Since, d.ChangedAt(m.Partition), d.Epoch)
		}
		busy[m.Add]++
		busy[m.Remove]++
	}
	for id, n := range busy {
		if n > 2 {
			t.Errorf("%s takes part in %d moves, limit 2", id, n)
		}
	}
	if d.Rebalance == nil || d.Rebalance.StartTime.IsZero() {
		t.Errorf("no rebalance record: %+v", d.Rebalance)
	}
	mv := d.Moves[0]
	created := d.Epoch

	// pending → streaming only once every node and router reports the epoch.
	isPending := func(d placement.Document) bool {
		m, _ := d.MoveOf(mv.Partition)
		return m.Stage == placement.StagePending
	}
	h.stays("pending before any process saw the epoch", isPending)
	h.reportNodes(created)
	h.stays("pending while the router lags", isPending)
	h.presence("r1", created)
	d = h.waitDoc("streaming", func(d placement.Document) bool {
		m, _ := d.MoveOf(mv.Partition)
		return m.Stage == placement.StageStreaming
	})
	if d.ChangedAt(mv.Partition) != created {
		t.Errorf("streaming changed the routing epoch: %d, want %d", d.ChangedAt(mv.Partition), created)
	}

	// streaming → read_new only after Done from n4's current incarnation.
	isStreaming := func(d placement.Document) bool {
		m, _ := d.MoveOf(mv.Partition)
		return m.Stage == placement.StageStreaming
	}
	h.progress(mv.Partition, "n4", "an-old-directory", true, false)
	h.stays("streaming with progress from another incarnation", isStreaming)
	h.progress(mv.Partition, "n4", "inc-n4", false, false)
	h.stays("streaming before done", isStreaming)

	// The leader goes; the next one resumes from the document.
	c1.Close()
	h.start("c2")
	h.progress(mv.Partition, "n4", "inc-n4", true, false)
	d = h.waitDoc("read_new", func(d placement.Document) bool {
		m, _ := d.MoveOf(mv.Partition)
		return m.Stage == placement.StageReadNew
	})
	m, _ := d.MoveOf(mv.Partition)
	if d.ChangedAt(mv.Partition) != m.Since {
		t.Errorf("read_new at %d, partition changed at %d", m.Since, d.ChangedAt(mv.Partition))
	}

	// read_new → promoted once every process routes by read_new.
	h.stays("read_new while processes lag", func(d placement.Document) bool {
		m, _ := d.MoveOf(mv.Partition)
		return m.Stage == placement.StageReadNew
	})
	h.reportNodes(m.Since)
	h.presence("r1", m.Since)
	d = h.waitDoc("promoted", func(d placement.Document) bool { _, ok := d.MoveOf(mv.Partition); return !ok })
	if !slices.Contains(d.Replicas[mv.Partition], "n4") || slices.Contains(d.Replicas[mv.Partition], mv.Remove) {
		t.Errorf("partition %d replicas %v after %s", mv.Partition, d.Replicas[mv.Partition], mv)
	}
	cleanup := slices.ContainsFunc(d.Moves, func(x placement.Move) bool {
		return x.Partition == mv.Partition && x.Stage == placement.StageCleanup && x.Remove == mv.Remove
	})
	if !cleanup {
		t.Fatalf("no cleanup entry for %s: %v", mv.Remove, d.Moves)
	}
	if d.Rebalance == nil || d.Rebalance.Moved < 1 || d.Rebalance.Bytes < 100 {
		t.Errorf("rebalance %+v", d.Rebalance)
	}

	// The cleanup entry goes once Remove dropped its copy.
	h.progress(mv.Partition, mv.Remove, "inc-"+mv.Remove, false, true)
	h.waitDoc("cleanup done", func(d placement.Document) bool {
		return !slices.ContainsFunc(d.Moves, func(x placement.Move) bool { return x.Partition == mv.Partition && x.Remove == mv.Remove })
	})

	d = h.drive()
	h.checkBalanced(d)
	per := d.Table().PartitionsPerNode()
	if per["n4"] == 0 || per["n1"]+per["n2"]+per["n3"]+per["n4"] != 3*testPartitions {
		t.Errorf("replicas per node %v", per)
	}
	if int(d.Rebalance.Moved) != per["n4"] {
		t.Errorf("rebalance moved %d, n4 holds %d", d.Rebalance.Moved, per["n4"])
	}
}

// TestDecommissionEndsRemoved: a leaving member's replicas move to the
// others, it drops its copies, and it ends removed.
func TestDecommissionEndsRemoved(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3", "n4")
	h.start("c1")
	h.waitDoc("members filled", func(d placement.Document) bool { return len(d.Members) == 4 })
	if _, err := h.store.UpdatePlacement(t.Context(), func(d *placement.Document) error {
		m := d.Members["n2"]
		m.State = placement.MemberLeaving
		d.Members["n2"] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := h.drive()
	h.checkBalanced(d)
	if st := d.Members["n2"].State; st != placement.MemberRemoved {
		t.Errorf("n2 is %s, want removed", st)
	}
	if n := d.Table().PartitionsPerNode()["n2"]; n != 0 {
		t.Errorf("n2 still holds %d replicas", n)
	}
}

// TestDeadMemberReplaced: a member unregistered for longer than DeadAfter
// is declared dead, its replicas are re-created on the others, and it
// ends removed.
func TestDeadMemberReplaced(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3", "n4")
	h.start("c1").SetDeadAfter(300 * time.Millisecond)
	h.waitDoc("members filled", func(d placement.Document) bool { return len(d.Members) == 4 })
	h.unregister("n3")
	d := h.waitDoc("n3 dead", func(d placement.Document) bool { return d.Members["n3"].State == placement.MemberDead })
	if d.Members["n3"].Reason == "" {
		t.Error("no reason")
	}
	d = h.drive()
	h.checkBalanced(d)
	if st := d.Members["n3"].State; st != placement.MemberRemoved {
		t.Errorf("n3 is %s, want removed", st)
	}
}

// TestReplacementBackfills: a member replacing itself (as ReplaceNode
// leaves it) backfills every partition in place from its new incarnation
// and becomes active again; its replica sets do not change.
func TestReplacementBackfills(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3", "n4")
	h.start("c1")
	before := h.waitDoc("members filled", func(d placement.Document) bool { return len(d.Members) == 4 })
	h.unregister("n4")
	if _, err := h.store.UpdatePlacement(t.Context(), func(d *placement.Document) error {
		for p, set := range d.Replicas {
			if slices.Contains(set, "n4") {
				d.Moves = append(d.Moves, placement.Move{Partition: uint32(p), Add: "n4", Remove: "n4", Stage: placement.StagePending, Since: d.Epoch})
				d.MarkChanged(uint32(p), d.Epoch)
			}
		}
		m := d.Members["n4"]
		m.State = placement.MemberReplacing
		d.Members["n4"] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.nodes["n4"] = topologyNode("n4", "inc-new")
	h.register("n4")
	d := h.drive()
	h.checkBalanced(d)
	if st := d.Members["n4"].State; st != placement.MemberActive {
		t.Errorf("n4 is %s, want active", st)
	}
	if placement.Diff(before.Table(), d.Table()) != 0 || int(d.Rebalance.Moved) != before.Table().PartitionsPerNode()["n4"] {
		t.Errorf("replica sets changed, or %d moves for %d partitions", d.Rebalance.Moved, before.Table().PartitionsPerNode()["n4"])
	}
}
