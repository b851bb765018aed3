package controller

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// stepController is a controller that only steps: no etcd.
func stepController(deadAfter time.Duration) *Controller {
	return &Controller{
		cfg:     Config{DeadAfter: deadAfter, MaxMovesPerNode: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		absent:  map[string]time.Time{},
		metrics: NewMetrics(nil),
	}
}

func up(id string, epoch uint64) topology.Node {
	return topology.Node{ID: id, State: topology.NodeUp, Incarnation: "i-" + id, PlacementEpoch: epoch}
}

// stepSnap registers ids at epoch, and one router at epoch.
func stepSnap(epoch uint64, ids ...string) *topology.Snapshot {
	s := &topology.Snapshot{Nodes: map[string]topology.Node{}, Routers: map[string]topology.Router{"r1": {ID: "r1", PlacementEpoch: epoch}},
		Progress: map[topology.MoveKey]topology.MoveProgress{}}
	for _, id := range ids {
		s.Nodes[id] = up(id, epoch)
	}
	return s
}

func events(res stepResult) string { return strings.Join(res.events, "\n") }

// TestStepMoveLifecycle walks one move through the state machine without
// etcd: n4 is leaving and n3 takes its replica of the only partition. Each
// transition waits for exactly its condition.
func TestStepMoveLifecycle(t *testing.T) {
	c := stepController(-1)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &placement.Document{Epoch: 10, HashFunction: placement.HashFunction, Partitions: 1, RF: 3,
		Replicas: [][]string{{"n1", "n2", "n4"}},
		Moves:    []placement.Move{{Partition: 0, Add: "n3", Remove: "n4", Stage: placement.StagePending, Since: 10}},
		Members: map[string]placement.Member{
			"n1": {State: placement.MemberActive, Incarnation: "i-n1"}, "n2": {State: placement.MemberActive, Incarnation: "i-n2"},
			"n3": {State: placement.MemberActive, Incarnation: "i-n3"}, "n4": {State: placement.MemberLeaving, Incarnation: "i-n4"},
		}}
	stage := func() placement.Stage {
		t.Helper()
		if len(d.Moves) != 1 {
			t.Fatalf("moves %v, want one", d.Moves)
		}
		return d.Moves[0].Stage
	}
	step := func(snap *topology.Snapshot) stepResult {
		d.Epoch++
		now = now.Add(time.Second)
		return c.step(d, snap, now)
	}

	// pending → streaming once every node and router reports the epoch
	// the move entered pending at.
	snap := stepSnap(10, "n1", "n2", "n3", "n4")
	snap.Routers["r1"] = topology.Router{ID: "r1", PlacementEpoch: 9}
	if res := step(snap); stage() != placement.StagePending || len(res.events) != 0 {
		t.Fatalf("a lagging router let the move advance: %v, %q", d.Moves, events(res))
	}
	snap = stepSnap(10, "n1", "n2", "n3", "n4")
	if res := step(snap); stage() != placement.StageStreaming || d.Moves[0].Since != d.Epoch || !strings.Contains(events(res), "streaming") {
		t.Fatalf("every process at epoch 10: %v, %q", d.Moves, events(res))
	}

	// streaming → read_new once n3 reported its backfill done, from the
	// incarnation registered now.
	key := topology.MoveKey{Partition: 0, Node: "n3"}
	snap.Progress[key] = topology.MoveProgress{Partition: 0, Node: "n3", Incarnation: "i-n3", Bytes: 4096}
	if step(snap); stage() != placement.StageStreaming {
		t.Fatalf("read_new before the backfill was done: %v", d.Moves)
	}
	created := d.Moves[0].Created
	snap.Progress[key] = topology.MoveProgress{Partition: 0, Node: "n3", Incarnation: "old", Move: created, Done: true, Bytes: 4096}
	if step(snap); stage() != placement.StageStreaming {
		t.Fatalf("read_new on a backfill of another data directory: %v", d.Moves)
	}
	snap.Progress[key] = topology.MoveProgress{Partition: 0, Node: "n3", Incarnation: "i-n3", Move: created - 1, Done: true, Bytes: 4096}
	if step(snap); stage() != placement.StageStreaming {
		t.Fatalf("read_new on a report left by an earlier move: %v", d.Moves)
	}
	snap.Progress[key] = topology.MoveProgress{Partition: 0, Node: "n3", Incarnation: "i-n3", Move: created, Done: true, Bytes: 4096}
	readNewAt := d.Epoch + 1
	if res := step(snap); stage() != placement.StageReadNew || d.Moves[0].Since != readNewAt || d.ChangedAt(0) != readNewAt || !strings.Contains(events(res), "read_new") {
		t.Fatalf("backfill done: %v (changed at %d), %q", d.Moves, d.ChangedAt(0), events(res))
	}

	// read_new → promoted once every process routes by read_new.
	lag := stepSnap(readNewAt-1, "n1", "n2", "n3", "n4")
	lag.Progress = snap.Progress
	if res := step(lag); stage() != placement.StageReadNew || res.promoted != 0 {
		t.Fatalf("promoted before every process reached read_new: %v", d.Moves)
	}
	snap = stepSnap(readNewAt, "n1", "n2", "n3", "n4")
	snap.Progress[key] = topology.MoveProgress{Partition: 0, Node: "n3", Incarnation: "i-n3", Move: created, Done: true, Bytes: 4096}
	res := step(snap)
	if res.promoted != 1 || !slices.Equal(d.Replicas[0], []string{"n1", "n2", "n3"}) {
		t.Fatalf("promotion: %d promoted, replicas %v", res.promoted, d.Replicas[0])
	}
	if stage() != placement.StageCleanup || d.Moves[0].Remove != "n4" {
		t.Fatalf("after promotion: %v, want n4's cleanup", d.Moves)
	}
	if d.Rebalance == nil || d.Rebalance.Moved != 1 || d.Rebalance.Bytes != 4096 || !d.Rebalance.EndTime.IsZero() {
		t.Fatalf("rebalance %+v, want 1 move of 4096 bytes, not ended", d.Rebalance)
	}
	if m := d.Members["n4"]; m.State != placement.MemberLeaving {
		t.Fatalf("n4 is %s while its cleanup is pending", m.State)
	}

	// The cleanup ends when n4 dropped its copy; n4, holding nothing, is
	// removed, and the rebalance is over.
	if step(snap); stage() != placement.StageCleanup {
		t.Fatalf("cleanup ended before n4 dropped its copy")
	}
	snap.Progress[topology.MoveKey{Partition: 0, Node: "n4"}] = topology.MoveProgress{Partition: 0, Node: "n4", Dropped: true}
	res = step(snap)
	if len(d.Moves) != 0 || d.Members["n4"].State != placement.MemberRemoved || d.Rebalance.EndTime != now {
		t.Fatalf("after the drop: moves %v, n4 %s, rebalance %+v; events %q", d.Moves, d.Members["n4"].State, d.Rebalance, events(res))
	}
	for _, want := range []string{"done", "node n4 removed (was leaving)", "rebalance done: 1 moves, 4096 bytes"} {
		if !strings.Contains(events(res), want) {
			t.Errorf("events %q lack %q", events(res), want)
		}
	}
	// Nothing more to do: a step changes nothing.
	before := d.Clone()
	if res := step(snap); len(res.events) != 0 || len(d.Moves) != 0 || !slices.Equal(d.Replicas[0], before.Replicas[0]) {
		t.Fatalf("a settled placement changed: %q, %v", events(res), d.Moves)
	}
}

// TestStepDeadAndAbandoned: a member unregistered for DeadAfter is
// declared dead (never with a negative DeadAfter), a move onto a member
// that is no longer placed is abandoned, and a dead member holding
// nothing is removed.
func TestStepDeadAndAbandoned(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	doc := func() *placement.Document {
		return &placement.Document{Epoch: 20, HashFunction: placement.HashFunction, Partitions: 1, RF: 3,
			Replicas: [][]string{{"n1", "n2", "n3"}},
			Moves:    []placement.Move{{Partition: 0, Add: "n4", Remove: "n3", Stage: placement.StageStreaming, Since: 15}},
			Members: map[string]placement.Member{
				"n1": {State: placement.MemberActive}, "n2": {State: placement.MemberActive},
				"n3": {State: placement.MemberLeaving}, "n4": {State: placement.MemberActive},
			}}
	}
	snap := stepSnap(20, "n1", "n2", "n3") // n4 unregistered

	for _, tc := range []struct {
		name      string
		deadAfter time.Duration
		absentFor time.Duration
		dead      bool
	}{
		{"absent longer than DeadAfter", time.Hour, 2 * time.Hour, true},
		{"absent shorter than DeadAfter", time.Hour, 30 * time.Minute, false},
		{"DeadAfter negative: never", -1, 48 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := stepController(tc.deadAfter)
			c.absent["n4"] = now.Add(-tc.absentFor)
			d := doc()
			res := c.step(d, snap, now)
			if !tc.dead {
				if d.Members["n4"].State != placement.MemberActive || len(d.Moves) != 1 || d.Moves[0].Stage != placement.StageStreaming {
					t.Fatalf("n4 %s, moves %v; events %q", d.Members["n4"].State, d.Moves, events(res))
				}
				return
			}
			// Dead, so its move is abandoned: the set stays, and n4 gets
			// a cleanup of the partial copy it may hold.
			if m := d.Members["n4"]; m.State != placement.MemberDead || !strings.Contains(m.Reason, "unregistered for 2h0m0s") {
				t.Fatalf("n4: %+v", m)
			}
			if !slices.Equal(d.Replicas[0], []string{"n1", "n2", "n3"}) {
				t.Fatalf("replicas %v after abandoning", d.Replicas[0])
			}
			i := slices.IndexFunc(d.Moves, func(m placement.Move) bool { return !m.Active() && m.Remove == "n4" })
			if i < 0 || d.ChangedAt(0) != 20 {
				t.Fatalf("moves %v (changed at %d), want n4's cleanup at 20", d.Moves, d.ChangedAt(0))
			}
			for _, want := range []string{"node n4 declared dead", "abandoned (n4 is dead)"} {
				if !strings.Contains(events(res), want) {
					t.Errorf("events %q lack %q", events(res), want)
				}
			}
			// Once the cleanup ends (n4 is dead), n4 holds nothing and is
			// removed.
			d.Epoch++
			res = c.step(d, snap, now.Add(time.Minute))
			if d.Members["n4"].State != placement.MemberRemoved {
				t.Fatalf("dead n4 holding nothing is %s; events %q", d.Members["n4"].State, events(res))
			}
		})
	}
}

// TestStepPlansAndReplaces: a newly registered node becomes a member and
// moves towards it are planned (pending, at the new epoch, at most
// MaxMovesPerNode onto it) and start a rebalance; a replacing member with
// no backfill left becomes active.
func TestStepPlansAndReplaces(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const P = 8
	ids := []string{"n1", "n2", "n3"}
	tbl, err := placement.Compute([]placement.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}, P, 3)
	if err != nil {
		t.Fatal(err)
	}
	d := placement.NewDocument(5, tbl)
	FillMembers(&d, stepSnap(5, ids...).Nodes, now)
	c := stepController(-1)
	d.Epoch++
	if res := c.step(&d, stepSnap(5, ids...), now); len(d.Moves) != 0 || len(res.events) != 0 {
		t.Fatalf("balanced placement planned %v", d.Moves)
	}

	snap := stepSnap(6, "n1", "n2", "n3", "n4")
	d.Epoch++
	res := c.step(&d, snap, now)
	if m := d.Members["n4"]; m.State != placement.MemberActive || m.Incarnation != "i-n4" {
		t.Fatalf("registered n4 became %+v", m)
	}
	if len(d.Moves) == 0 || len(d.Moves) > 2 {
		t.Fatalf("planned %v, want 1 or 2 moves onto n4 (MaxMovesPerNode 2)", d.Moves)
	}
	for _, m := range d.Moves {
		if m.Add != "n4" || m.Stage != placement.StagePending || m.Since != d.Epoch || d.ChangedAt(m.Partition) != d.Epoch {
			t.Errorf("planned %v (changed at %d), want pending onto n4 at %d", m, d.ChangedAt(m.Partition), d.Epoch)
		}
	}
	if d.Rebalance == nil || d.Rebalance.StartTime != now || !strings.Contains(events(res), "planned") {
		t.Fatalf("rebalance %+v; events %q", d.Rebalance, events(res))
	}

	// A replacing member whose in-place backfill is no longer a move is
	// active again.
	d2 := placement.NewDocument(9, tbl)
	FillMembers(&d2, stepSnap(9, ids...).Nodes, now)
	m := d2.Members["n2"]
	m.State = placement.MemberReplacing
	d2.Members["n2"] = m
	res = c.step(&d2, stepSnap(9, ids...), now)
	if d2.Members["n2"].State != placement.MemberActive || !strings.Contains(events(res), "node n2 active: replacement backfilled") {
		t.Fatalf("replacing n2 with nothing to backfill: %s; events %q", d2.Members["n2"].State, events(res))
	}
}

// TestTrackAbsence: absence is measured from when this leader first saw a
// member unregistered, and forgotten when it registers again.
func TestTrackAbsence(t *testing.T) {
	c := stepController(time.Hour)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	doc := &placement.Document{Partitions: 1, RF: 2, Replicas: [][]string{{"n1", "n2"}},
		Members: map[string]placement.Member{"n3": {State: placement.MemberActive}}}
	snap := stepSnap(1, "n1")
	snap.Placement = doc
	c.trackAbsence(snap, t0)
	c.trackAbsence(snap, t0.Add(time.Minute)) // the first sighting counts
	if len(c.absent) != 2 || c.absent["n2"] != t0 || c.absent["n3"] != t0 {
		t.Fatalf("absent %v, want n2 and n3 since %v", c.absent, t0)
	}
	snap = stepSnap(1, "n1", "n2")
	snap.Placement = doc
	c.trackAbsence(snap, t0.Add(2*time.Minute))
	if _, ok := c.absent["n2"]; ok || len(c.absent) != 1 {
		t.Fatalf("absent %v after n2 registered again", c.absent)
	}
}

// TestUnderReplicatedAndObserve: the gauges count partitions whose read
// set lacks registered members and those that differ from the target.
func TestUnderReplicatedAndObserve(t *testing.T) {
	d := &placement.Document{Epoch: 3, HashFunction: placement.HashFunction, Partitions: 2, RF: 2,
		Replicas: [][]string{{"n1", "n2"}, {"n2", "n3"}},
		Moves:    []placement.Move{{Partition: 1, Add: "n1", Remove: "n3", Stage: placement.StageStreaming, Since: 2}},
		Members:  map[string]placement.Member{"n1": {State: placement.MemberActive}, "n2": {State: placement.MemberActive}, "n3": {State: placement.MemberLeaving}},
	}
	snap := stepSnap(3, "n1", "n2")
	snap.Progress[topology.MoveKey{Partition: 1, Node: "n1"}] = topology.MoveProgress{Bytes: 100}
	if n := UnderReplicated(d, snap.Nodes); n != 1 {
		t.Fatalf("UnderReplicated = %d, want 1 (partition 1 reads n2, n3; n3 is gone)", n)
	}
	c := stepController(-1)
	c.observe(d, snap)
	for _, g := range []struct {
		name string
		got  float64
		want float64
	}{
		{"in flight, streaming", gauge(c.metrics.InFlight.WithLabelValues("streaming")), 1},
		{"in flight, pending", gauge(c.metrics.InFlight.WithLabelValues("pending")), 0},
		{"bytes streamed", gauge(c.metrics.BytesStreamed), 100},
		{"pending partitions", gauge(c.metrics.Pending), 1},
		{"under-replicated", gauge(c.metrics.UnderReplicated), 1},
	} {
		if g.got != g.want {
			t.Errorf("%s = %v, want %v", g.name, g.got, g.want)
		}
	}
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
