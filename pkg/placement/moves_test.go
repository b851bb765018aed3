package placement

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func quorum(n int) int { return n/2 + 1 }

// subsets calls f with every subset of ids.
func subsets(ids []string, f func([]string)) {
	for mask := 0; mask < 1<<len(ids); mask++ {
		var s []string
		for i, id := range ids {
			if mask&(1<<i) != 0 {
				s = append(s, id)
			}
		}
		f(s)
	}
}

func countIn(acks []string, members []string) int {
	n := 0
	for _, a := range acks {
		if slices.Contains(members, a) {
			n++
		}
	}
	return n
}

// satisfies reports whether acks reach QUORUM in every set of r.
func satisfies(r Route, acks []string) bool {
	for _, s := range r.Sets {
		if countIn(acks, s.Members) < quorum(s.Size) {
			return false
		}
	}
	return true
}

// TestMoveQuorumsIntersect checks, for every kind of move, that a QUORUM
// read made under any stage meets every QUORUM write acknowledged under the
// same or a neighbouring stage (the controller's barriers keep every
// router within one routing step of the others), counting what the
// destination's backfill copied: a write acknowledged before streaming
// reached the destination if a source held it.
func TestMoveQuorumsIntersect(t *testing.T) {
	for _, tc := range []struct {
		name        string
		replicas    []string
		move        Move
		unionSource bool // the backfill merges every survivor (Remove dead or absent)
	}{
		{"move", []string{"A", "B", "C"}, Move{Add: "D", Remove: "C"}, false},
		{"move from dead", []string{"A", "B", "C"}, Move{Add: "D", Remove: "C"}, true},
		{"grow", []string{"A", "B"}, Move{Add: "D"}, true},
		{"replace in place", []string{"A", "B", "C"}, Move{Add: "C", Remove: "C"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Routing classes in order: before the move, write both/read old
			// (pending and streaming), write both/read new, promoted.
			routes := make([]Route, 4)
			for i, st := range []Stage{"", StagePending, StageReadNew, ""} {
				d := &Document{Partitions: 1, RF: 3, Replicas: [][]string{slices.Clone(tc.replicas)}}
				if st != "" {
					m := tc.move
					m.Stage = st
					d.Moves = []Move{m}
				}
				if i == 3 {
					m := tc.move
					m.Stage = StageReadNew
					d.Moves = []Move{m}
					if !d.Promote(m, 9) {
						t.Fatal("Promote refused the move")
					}
				}
				routes[i] = d.Routing(0)
			}
			all := slices.Clone(tc.replicas)
			if !slices.Contains(all, tc.move.Add) {
				all = append(all, tc.move.Add)
			}
			add := tc.move.Add
			failures := 0
			for w := range routes {
				for r := max(0, w-1); r <= min(3, w+1); r++ {
					subsets(all, func(acks []string) {
						if !satisfies(routes[w], acks) {
							return
						}
						if tc.move.Replace() && w == 0 {
							// Before the replacement the node's copy is the
							// one that was lost.
							acks = slices.DeleteFunc(slices.Clone(acks), func(id string) bool { return id == add })
						}
						has := func(id string) bool {
							if slices.Contains(acks, id) {
								return true
							}
							if id != add || w > 1 {
								return false
							}
							// Backfilled: the destination copied what its
							// sources held when the write came before streaming.
							if !tc.unionSource {
								return slices.Contains(acks, tc.move.Remove)
							}
							for _, a := range acks {
								if a != add && a != tc.move.Remove {
									return true
								}
							}
							return false
						}
						read := routes[r].Read
						subsets(read.Members, func(q []string) {
							if len(q) != quorum(read.Size) {
								return
							}
							if !slices.ContainsFunc(q, has) {
								failures++
								if failures <= 5 {
									t.Errorf("write under step %d acked by %v is missed by a read under step %d of %v", w, acks, r, q)
								}
							}
						})
					})
				}
			}
		})
	}
}

func TestRoutingWithoutMove(t *testing.T) {
	d := &Document{Partitions: 1, RF: 3, Replicas: [][]string{{"A", "B", "C"}}}
	r := d.Routing(0)
	if len(r.Sets) != 1 || !slices.Equal(r.Read.Members, []string{"A", "B", "C"}) || !slices.Equal(r.Write, []string{"A", "B", "C"}) {
		t.Fatalf("route %+v", r)
	}
}

func TestRoutingReplaceInPlace(t *testing.T) {
	d := &Document{Partitions: 1, RF: 3, Replicas: [][]string{{"A", "B", "C"}},
		Moves: []Move{{Partition: 0, Add: "C", Remove: "C", Stage: StageStreaming, Since: 2}}}
	r := d.Routing(0)
	if !slices.Equal(r.Read.Members, []string{"A", "B"}) || r.Read.Size != 3 {
		t.Fatalf("read set %+v: the node backfilling in place must not be read", r.Read)
	}
	if !slices.Contains(r.Write, "C") {
		t.Fatalf("write targets %v lack the node backfilling in place", r.Write)
	}
	if !d.Holds(0, "C") || d.Serves(0, "C") || !d.Serves(0, "A") {
		t.Fatal("Holds/Serves wrong for an in-place move")
	}
	d.Moves[0].Stage = StageReadNew
	if !d.Serves(0, "C") {
		t.Fatal("after its backfill the node serves again")
	}
}

func doc(t *testing.T, nodes int, partitions uint32, rf int) *Document {
	t.Helper()
	tab := mustCompute(t, nodeList(nodes), partitions, rf)
	d := NewDocument(1, tab)
	d.Members = map[string]Member{}
	for _, n := range nodeList(nodes) {
		d.Members[n.ID] = Member{State: MemberActive}
	}
	return &d
}

func TestPlanJoinRespectsLimitAndTarget(t *testing.T) {
	d := doc(t, 3, 64, 3)
	d.Members["node-03"] = Member{State: MemberActive}
	target, err := d.Target()
	if err != nil {
		t.Fatal(err)
	}
	moves := d.Plan(target, 2, PlanOptions{MaxMovesPerNode: 3})
	if len(moves) != 3 {
		t.Fatalf("%d moves, want 3 (the new node's limit): %v", len(moves), moves)
	}
	for _, m := range moves {
		if m.Add != "node-03" || m.Remove == "" || m.Stage != StagePending || m.Since != 2 {
			t.Fatalf("unexpected move %v", m)
		}
		if !slices.Contains(target.Replicas[m.Partition], "node-03") || slices.Contains(target.Replicas[m.Partition], m.Remove) {
			t.Fatalf("move %v does not go towards the target %v", m, target.Replicas[m.Partition])
		}
	}
	// Driving every move through to the end reaches the target.
	epoch := uint64(2)
	for range 200 {
		moves := d.Plan(target, epoch, PlanOptions{MaxMovesPerNode: 3})
		d.Moves = append(d.Moves, moves...)
		if len(d.Moves) == 0 {
			break
		}
		for _, m := range slices.Clone(d.Moves) {
			if m.Stage == StageCleanup {
				d.Moves = slices.DeleteFunc(d.Moves, func(x Move) bool { return x == m })
				continue
			}
			epoch++
			m2 := m
			m2.Stage, m2.Since = StageReadNew, epoch
			d.Moves[slices.Index(d.Moves, m)] = m2
			if !d.Promote(m2, epoch) {
				t.Fatalf("Promote(%v) refused", m2)
			}
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if Diff(d.Table(), target) != 0 {
		t.Fatalf("%d replicas still differ from the target", Diff(d.Table(), target))
	}
	per := d.Table().PartitionsPerNode()
	if per["node-03"] < 64*3/4*85/100 {
		t.Fatalf("the new node holds %d partitions: %v", per["node-03"], per)
	}
}

func TestPlanDeadFirstAndNoRemovalOfLastCopy(t *testing.T) {
	d := doc(t, 4, 32, 3)
	d.Members["node-01"] = Member{State: MemberDead}
	d.Members["node-02"] = Member{State: MemberLeaving}
	target, err := d.Target()
	if err != nil {
		t.Fatal(err)
	}
	if len(target.Replicas[0]) != 2 {
		t.Fatalf("target with 2 placed members has sets of %d", len(target.Replicas[0]))
	}
	moves := d.Plan(target, 5, PlanOptions{MaxMovesPerNode: 100, Live: func(string) bool { return true }})
	if len(moves) == 0 {
		t.Fatal("no moves off the dead node")
	}
	// Only two placed nodes: the leaving node cannot go (a set of three
	// would shrink), the dead one is replaced first.
	for _, m := range moves {
		if m.Remove != "node-01" || !d.Members[m.Add].State.Placed() {
			t.Errorf("unexpected move with 2 placed members for RF 3: %v", m)
		}
	}
	d.Members["node-04"] = Member{State: MemberActive}
	target, _ = d.Target()
	moves = d.Plan(target, 5, PlanOptions{MaxMovesPerNode: 1, Live: func(string) bool { return true }})
	adds := map[string]int{}
	for _, m := range moves {
		adds[m.Add]++
		if adds[m.Add] > 1 {
			t.Errorf("node %s gets more than its limit of one move: %v", m.Add, moves)
		}
		if d.Members[m.Remove].State != MemberDead {
			t.Errorf("with one move per node, moves replace the dead replica first: %v", m)
		}
	}
}

func TestPlanSkipsNodeStillCleaning(t *testing.T) {
	d := doc(t, 3, 8, 2)
	d.Members["node-03"] = Member{State: MemberActive}
	target, _ := d.Target()
	var p uint32
	for p = range 8 {
		if slices.Contains(target.Replicas[p], "node-03") {
			break
		}
	}
	d.Moves = []Move{{Partition: p, Remove: "node-03", Stage: StageCleanup, Since: 1}}
	for _, m := range d.Plan(target, 2, PlanOptions{MaxMovesPerNode: 100}) {
		if m.Partition == p {
			t.Fatalf("planned %v while node-03 still drops its old copy", m)
		}
	}
}

func TestPromoteAndAbandon(t *testing.T) {
	d := &Document{Partitions: 2, RF: 3, Replicas: [][]string{{"A", "B", "C"}, {"A", "B", "C"}}}
	m := Move{Partition: 0, Add: "D", Remove: "B", Stage: StageReadNew, Since: 3}
	d.Moves = []Move{m, {Partition: 1, Add: "D", Remove: "C", Stage: StageStreaming, Since: 2}}
	if d.Promote(Move{Partition: 0, Add: "E", Remove: "B", Stage: StageReadNew, Since: 3}, 4) {
		t.Fatal("Promote accepted a move that is not the document's")
	}
	if !d.Promote(m, 4) {
		t.Fatal("Promote refused")
	}
	if !slices.Equal(d.Replicas[0], []string{"A", "D", "C"}) {
		t.Fatalf("replicas after promote %v", d.Replicas[0])
	}
	if d.Moves[0] != (Move{Partition: 0, Remove: "B", Stage: StageCleanup, Since: 4}) || d.ChangedAt(0) != 4 {
		t.Fatalf("after promote: moves %v changed %v", d.Moves, d.Changed)
	}
	if !d.Abandon(d.Moves[1], 5) {
		t.Fatal("Abandon refused")
	}
	if !slices.Equal(d.Replicas[1], []string{"A", "B", "C"}) || d.Moves[1] != (Move{Partition: 1, Remove: "D", Stage: StageCleanup, Since: 5}) {
		t.Fatalf("after abandon: replicas %v moves %v", d.Replicas[1], d.Moves)
	}
	if err := d.Validate(); err != nil && !strings.Contains(err.Error(), "hash function") {
		t.Fatal(err)
	}
}

func TestValidateMoves(t *testing.T) {
	base := func() Document {
		return Document{HashFunction: HashFunction, Epoch: 2, Partitions: 2, RF: 3, Replicas: [][]string{{"A", "B", "C"}, {"A", "B", "C"}}}
	}
	for _, tc := range []struct {
		moves []Move
		want  string
	}{
		{[]Move{{Partition: 5, Add: "D", Stage: StagePending}}, "out of range"},
		{[]Move{{Partition: 0, Add: "D", Remove: "A", Stage: StagePending}, {Partition: 0, Add: "E", Remove: "B", Stage: StagePending}}, "second active move"},
		{[]Move{{Partition: 0, Add: "A", Remove: "B", Stage: StagePending}}, "already a replica"},
		{[]Move{{Partition: 0, Add: "D", Remove: "E", Stage: StagePending}}, "not a replica"},
		{[]Move{{Partition: 0, Add: "D", Remove: "D", Stage: StagePending}}, "in place but is not a replica"},
		{[]Move{{Partition: 0, Stage: StagePending}}, "no node to add"},
		{[]Move{{Partition: 0, Stage: StageCleanup}}, "names no node"},
		{[]Move{{Partition: 0, Add: "D", Stage: "bogus"}}, "unknown stage"},
	} {
		d := base()
		d.Moves = tc.moves
		err := d.Validate()
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("moves %v: error %v, want one containing %q", tc.moves, err, tc.want)
		}
		if _, err := d.Marshal(); err == nil {
			t.Errorf("moves %v: Marshal accepted an invalid document", tc.moves)
		}
	}
	d := base()
	d.Moves = []Move{{Partition: 0, Add: "D", Remove: "A", Stage: StageStreaming}, {Partition: 0, Remove: "E", Stage: StageCleanup}}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil || fmt.Sprint(got.Moves) != fmt.Sprint(d.Moves) {
		t.Fatalf("round trip: %v %v", got.Moves, err)
	}
}

// TestMoveOfIndexed: a decoded document finds moves by its index, with the
// same answers as a scan, and a clone changed in code does not use a
// stale index.
func TestMoveOfIndexed(t *testing.T) {
	d := Document{HashFunction: HashFunction, Epoch: 3, Partitions: 3, RF: 3,
		Replicas: [][]string{{"A", "B", "C"}, {"A", "B", "C"}, {"A", "B", "C"}},
		Moves:    []Move{{Partition: 0, Remove: "E", Stage: StageCleanup}, {Partition: 0, Add: "D", Remove: "A", Stage: StageStreaming, Created: 2}, {Partition: 2, Add: "C", Remove: "C", Stage: StagePending}}}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.active == nil {
		t.Fatal("Unmarshal built no index")
	}
	for p := range uint32(3) {
		a, aok := got.MoveOf(p)
		w, wok := d.MoveOf(p)
		if a != w || aok != wok {
			t.Errorf("partition %d: indexed %v %v, scanned %v %v", p, a, aok, w, wok)
		}
	}
	c := got.Clone()
	m, _ := c.MoveOf(0)
	m2 := m
	m2.Stage = StageReadNew
	c.Moves[1] = m2
	if !c.Promote(m2, 4) {
		t.Fatal("Promote refused")
	}
	if m, ok := c.MoveOf(0); ok {
		t.Fatalf("after promotion partition 0 still has an active move %v", m)
	}
	if m, ok := got.MoveOf(0); !ok || m.Add != "D" {
		t.Fatalf("the decoded document changed with its clone: %v %v", m, ok)
	}
}
