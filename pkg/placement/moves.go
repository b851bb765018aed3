package placement

// # Moving replicas
//
// A placement changes one replica of one partition at a time, by a Move:
// Add becomes a replica of the partition and Remove stops being one. The
// move walks through stages, each published as a new document epoch, and a
// partition's routing (who is read, who is written, whose acknowledgements
// count) follows from its replica set and its move alone (Routing):
//
//	pending    writes go to the old and the new set and must reach their
//	           consistency level in both; reads use the old set. Every router
//	           and storage node must see this epoch before streaming starts,
//	           so no write that is not also sent to Add is accepted after.
//	streaming  as pending; Add backfills the partition from the sources
//	           (Remove if it is live: the set of data a replica slot holds
//	           is preserved; otherwise every surviving replica, merged).
//	read_new   as pending, but reads use the new set: Add is complete.
//	(promoted) the new set is the replica set; the move stays as a cleanup
//	           entry: Remove drops the partition once every process has seen
//	           the epoch that promoted it.
//
// Writes reach their level in both sets from pending to read_new, so a
// read of either set at that level meets every acknowledged write whatever
// mix of epochs the routers are at (as ScyllaDB's tablet migration does).
// Storage nodes fence the rest: a request made under an epoch older than the
// partition's last routing change (Document.Changed) is refused, so a router
// cut off from etcd cannot write around a move.
//
// Replacing a node is a move whose Add and Remove are the same node: the
// node is a replica throughout, but until its backfill is complete it is not
// read and its acknowledgements count only towards the new set.

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Stage is a move's stage.
type Stage string

// Move stages, in order.
const (
	StagePending   Stage = "pending"
	StageStreaming Stage = "streaming"
	StageReadNew   Stage = "read_new"
	// StageCleanup is a finished (or abandoned) move: Remove drops the
	// partition's data. It does not affect routing.
	StageCleanup Stage = "cleanup"
)

// Move changes one replica of one partition.
type Move struct {
	// Partition is the partition moved.
	Partition uint32 `json:"partition"`
	// Add is the node becoming a replica; empty for a cleanup of an
	// abandoned move.
	Add string `json:"add,omitempty"`
	// Remove is the node leaving the replica set: empty when the set grows
	// (it had fewer than RF replicas), equal to Add when Add replaces
	// itself (a node back on an empty data directory).
	Remove string `json:"remove,omitempty"`
	// Stage is the move's stage.
	Stage Stage `json:"stage"`
	// Since is the epoch at which the move entered its stage.
	Since uint64 `json:"since"`
	// Created is the epoch at which the move was created. It names the
	// move: a progress report counts only for the move it was written for
	// (topology.MoveProgress.Move), not an earlier move of the same
	// partition to the same node.
	Created uint64 `json:"created,omitempty"`
}

// Active reports whether the move affects routing (it is not a cleanup).
func (m Move) Active() bool { return m.Stage != StageCleanup }

// Replace reports whether the move backfills a node in its own place.
func (m Move) Replace() bool { return m.Add != "" && m.Add == m.Remove }

func (m Move) String() string {
	switch {
	case m.Stage == StageCleanup:
		return fmt.Sprintf("partition %d: %s drops its copy", m.Partition, m.Remove)
	case m.Replace():
		return fmt.Sprintf("partition %d: %s backfills in place (%s)", m.Partition, m.Add, m.Stage)
	case m.Remove == "":
		return fmt.Sprintf("partition %d: +%s (%s)", m.Partition, m.Add, m.Stage)
	}
	return fmt.Sprintf("partition %d: %s → %s (%s)", m.Partition, m.Remove, m.Add, m.Stage)
}

// MemberState is what the operator (or the controller) decided about a node.
type MemberState string

// Member states.
const (
	// MemberActive nodes are placed on.
	MemberActive MemberState = "active"
	// MemberLeaving nodes are being decommissioned: their replicas move to
	// the others, then they become removed.
	MemberLeaving MemberState = "leaving"
	// MemberDead nodes are gone: their replicas are re-created on the
	// others from the surviving copies, then they become removed.
	MemberDead MemberState = "dead"
	// MemberReplacing nodes came back on an empty data directory and
	// backfill their replicas in place.
	MemberReplacing MemberState = "replacing"
	// MemberRemoved nodes hold nothing and are no longer part of the
	// cluster. A removed node id may join again only on an empty directory.
	MemberRemoved MemberState = "removed"
)

// Placed reports whether nodes in state s receive replicas.
func (s MemberState) Placed() bool { return s == MemberActive || s == MemberReplacing }

// Member is a storage node the controller knows.
type Member struct {
	// State is the node's membership state.
	State MemberState `json:"state"`
	// Zone is the node's zone as it registered.
	Zone string `json:"zone,omitempty"`
	// Since is when the state was entered.
	Since time.Time `json:"since"`
	// Reason says who or what set the state.
	Reason string `json:"reason,omitempty"`
	// Incarnation is the data directory the node registered with when the
	// state was set, if known: a removed node registering with another one
	// came back on an empty directory and may join again.
	Incarnation string `json:"incarnation,omitempty"`
}

// ReplicaSet is a set of nodes a read or a write must reach its consistency
// level in: Need(level, Size) of Members. Size can exceed len(Members) when
// a member is not counted (a node backfilling in place).
type ReplicaSet struct {
	Members []string
	Size    int
}

// Route is how one partition is read and written at one epoch.
type Route struct {
	// Read is where reads go.
	Read ReplicaSet
	// Sets are where a write must reach its level: one set, or the old and
	// the new one while a move is in flight.
	Sets []ReplicaSet
	// Write lists every node a write is sent to: the union of Sets plus a
	// node backfilling in place.
	Write []string
}

// MoveOf returns partition p's active move, if any.
func (d *Document) MoveOf(p uint32) (Move, bool) {
	if d.active != nil {
		i, ok := d.active[p]
		if !ok {
			return Move{}, false
		}
		return d.Moves[i], true
	}
	for _, m := range d.Moves {
		if m.Partition == p && m.Active() {
			return m, true
		}
	}
	return Move{}, false
}

// Routing returns partition p's route. It panics if p is out of range.
func (d *Document) Routing(p uint32) Route {
	old := d.Replicas[p]
	m, ok := d.MoveOf(p)
	if !ok {
		set := ReplicaSet{Members: old, Size: len(old)}
		return Route{Read: set, Sets: []ReplicaSet{set}, Write: old}
	}
	newSet := make([]string, 0, len(old)+1)
	for _, id := range old {
		if id != m.Remove || m.Replace() {
			newSet = append(newSet, id)
		}
	}
	if !slices.Contains(newSet, m.Add) {
		newSet = append(newSet, m.Add)
	}
	// The old set without Add: when Add backfills in place its copy is
	// incomplete until read_new, so it neither serves reads nor counts.
	oldCounted := old
	if m.Replace() {
		oldCounted = slices.DeleteFunc(slices.Clone(old), func(id string) bool { return id == m.Add })
	}
	oldSet := ReplicaSet{Members: oldCounted, Size: len(old)}
	nw := ReplicaSet{Members: newSet, Size: len(newSet)}
	write := slices.Clone(old)
	if !slices.Contains(write, m.Add) {
		write = append(write, m.Add)
	}
	r := Route{Sets: []ReplicaSet{oldSet, nw}, Write: write, Read: oldSet}
	if m.Stage == StageReadNew {
		r.Read = nw
	}
	return r
}

// Holds reports whether node must accept writes for partition p: it is a
// replica or the destination of p's move.
func (d *Document) Holds(p uint32, node string) bool {
	if int(p) >= len(d.Replicas) {
		return false
	}
	if slices.Contains(d.Replicas[p], node) {
		return true
	}
	m, ok := d.MoveOf(p)
	return ok && m.Add == node
}

// Serves reports whether node may answer reads of partition p: it is in the
// partition's read set.
func (d *Document) Serves(p uint32, node string) bool {
	if int(p) >= len(d.Replicas) {
		return false
	}
	return slices.Contains(d.Routing(p).Read.Members, node)
}

// ChangedAt returns the epoch at which partition p's routing last changed
// (0 if it never did since the first placement). Storage nodes refuse
// requests made under an older epoch.
func (d *Document) ChangedAt(p uint32) uint64 {
	if int(p) < len(d.Changed) {
		return d.Changed[p]
	}
	return 0
}

// MarkChanged records that partition p's routing changes at epoch.
func (d *Document) MarkChanged(p uint32, epoch uint64) {
	if len(d.Changed) < int(d.Partitions) {
		d.Changed = append(d.Changed, make([]uint64, int(d.Partitions)-len(d.Changed))...)
	}
	d.Changed[p] = epoch
}

// Clone returns a deep copy of the document.
func (d Document) Clone() Document {
	c := d
	c.Replicas = make([][]string, len(d.Replicas))
	for i, set := range d.Replicas {
		c.Replicas[i] = slices.Clone(set)
	}
	c.Moves = slices.Clone(d.Moves)
	c.Changed = slices.Clone(d.Changed)
	c.active = nil // the clone is for changing
	if d.Rebalance != nil {
		r := *d.Rebalance
		c.Rebalance = &r
	}
	if d.Members != nil {
		c.Members = make(map[string]Member, len(d.Members))
		for k, v := range d.Members {
			c.Members[k] = v
		}
	}
	return c
}

// Target returns the placement the document's members should converge to:
// Compute over the members that are placed (active or replacing).
func (d *Document) Target() (Table, error) {
	var nodes []Node
	for id, m := range d.Members {
		if m.State.Placed() {
			nodes = append(nodes, Node{ID: id, Zone: m.Zone})
		}
	}
	if len(nodes) == 0 {
		return Table{}, fmt.Errorf("%w: no active members", ErrInvalid)
	}
	return Compute(nodes, d.Partitions, d.RF)
}

// PlanOptions bounds the moves Plan starts.
type PlanOptions struct {
	// MaxMovesPerNode bounds the active moves a node takes part in (as Add
	// or as a live Remove). Default 2.
	MaxMovesPerNode int
	// Live reports whether a node is registered now; moves start only
	// towards live nodes.
	Live func(id string) bool
}

// Plan returns the moves to start now, in stage pending at epoch, to bring
// the replica sets towards target: at most one active move per partition,
// none onto a node still dropping its old copy of the partition, and at
// most MaxMovesPerNode per node. Partitions that lost a replica to a dead
// member come first, then those on leaving members, then the rest.
func (d *Document) Plan(target Table, epoch uint64, o PlanOptions) []Move {
	if o.MaxMovesPerNode <= 0 {
		o.MaxMovesPerNode = 2
	}
	busy := map[string]int{}
	moving := map[uint32]bool{}
	cleaning := map[[2]any]bool{}
	for _, m := range d.Moves {
		if !m.Active() {
			cleaning[[2]any{m.Partition, m.Remove}] = true
			continue
		}
		moving[m.Partition] = true
		busy[m.Add]++
		if m.Remove != "" && m.Remove != m.Add && d.Members[m.Remove].State != MemberDead {
			busy[m.Remove]++
		}
	}
	type cand struct {
		prio int
		p    uint32
	}
	var cands []cand
	for p := range d.Partitions {
		if moving[p] || int(p) >= len(target.Replicas) {
			continue
		}
		cur, tgt := d.Replicas[p], target.Replicas[p]
		prio := -1
		for _, id := range cur {
			if !slices.Contains(tgt, id) {
				switch d.Members[id].State {
				case MemberDead:
					prio = 0
				case MemberLeaving:
					prio = max(prio, 1)
				default:
					prio = max(prio, 2)
				}
			}
		}
		if prio < 0 && len(cur) < len(tgt) {
			prio = 0 // under-replicated
		}
		if prio >= 0 {
			cands = append(cands, cand{prio, p})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].prio < cands[j].prio })
	var out []Move
	for _, c := range cands {
		cur, tgt := d.Replicas[c.p], target.Replicas[c.p]
		add := ""
		for _, id := range tgt {
			if !slices.Contains(cur, id) && busy[id] < o.MaxMovesPerNode && !cleaning[[2]any{c.p, id}] &&
				(o.Live == nil || o.Live(id)) {
				add = id
				break
			}
		}
		if add == "" {
			continue
		}
		remove := ""
		best := 3
		for _, id := range cur {
			if slices.Contains(tgt, id) {
				continue
			}
			rank := 2
			switch d.Members[id].State {
			case MemberDead:
				rank = 0
			case MemberLeaving:
				rank = 1
			}
			if rank < best {
				remove, best = id, rank
			}
		}
		if remove == "" && len(cur) >= d.RF {
			continue
		}
		if remove != "" && best > 0 && busy[remove] >= o.MaxMovesPerNode {
			continue
		}
		busy[add]++
		if remove != "" && best > 0 {
			busy[remove]++
		}
		out = append(out, Move{Partition: c.p, Add: add, Remove: remove, Stage: StagePending, Since: epoch, Created: epoch})
	}
	return out
}

// Promote applies move m (in stage read_new) to the replica sets at epoch:
// Remove's place in the set goes to Add (or Add joins at the end), and the
// move becomes a cleanup entry for Remove, or disappears when there is
// nothing to drop. It returns false if m is not d's active move of its
// partition.
func (d *Document) Promote(m Move, epoch uint64) bool {
	d.active = nil // changed in code: MoveOf scans
	i := slices.IndexFunc(d.Moves, func(x Move) bool { return x.Partition == m.Partition && x.Active() })
	if i < 0 || d.Moves[i] != m {
		return false
	}
	set := slices.Clone(d.Replicas[m.Partition])
	if j := slices.Index(set, m.Remove); j >= 0 && !m.Replace() {
		set[j] = m.Add
	} else if !slices.Contains(set, m.Add) {
		set = append(set, m.Add)
	}
	d.Replicas[m.Partition] = set
	d.MarkChanged(m.Partition, epoch)
	if m.Remove == "" || m.Replace() {
		d.Moves = slices.Delete(d.Moves, i, i+1)
		return true
	}
	d.Moves[i] = Move{Partition: m.Partition, Remove: m.Remove, Stage: StageCleanup, Since: epoch}
	return true
}

// Abandon drops move m before promotion at epoch: the replica set stays as
// it was and Add, which may hold part of a copy, gets a cleanup entry
// (unless it backfilled in place: its partial copy is still its replica).
func (d *Document) Abandon(m Move, epoch uint64) bool {
	d.active = nil // changed in code: MoveOf scans
	i := slices.IndexFunc(d.Moves, func(x Move) bool { return x.Partition == m.Partition && x.Active() })
	if i < 0 || d.Moves[i] != m {
		return false
	}
	d.MarkChanged(m.Partition, epoch)
	if m.Replace() || m.Add == "" {
		d.Moves = slices.Delete(d.Moves, i, i+1)
		return true
	}
	d.Moves[i] = Move{Partition: m.Partition, Remove: m.Add, Stage: StageCleanup, Since: epoch}
	return true
}

// validateMoves reports problems of the moves and members: a move out of
// range, two active moves of one partition, a move's Add already a replica
// (unless in place) or its Remove not one, an unknown stage.
func (d Document) validateMoves() []error {
	var errs []error
	active := map[uint32]bool{}
	for i, m := range d.Moves {
		where := fmt.Sprintf("moves[%d] (%s)", i, m)
		if int(m.Partition) >= len(d.Replicas) {
			errs = append(errs, fmt.Errorf("%w: %s: partition out of range", ErrInvalid, where))
			continue
		}
		set := d.Replicas[m.Partition]
		switch m.Stage {
		case StagePending, StageStreaming, StageReadNew:
			if active[m.Partition] {
				errs = append(errs, fmt.Errorf("%w: %s: a second active move of the partition", ErrInvalid, where))
			}
			active[m.Partition] = true
			switch {
			case m.Add == "":
				errs = append(errs, fmt.Errorf("%w: %s: no node to add", ErrInvalid, where))
			case m.Replace() && !slices.Contains(set, m.Add):
				errs = append(errs, fmt.Errorf("%w: %s: backfills in place but is not a replica", ErrInvalid, where))
			case !m.Replace() && slices.Contains(set, m.Add):
				errs = append(errs, fmt.Errorf("%w: %s: adds a node that is already a replica", ErrInvalid, where))
			case !m.Replace() && m.Remove != "" && !slices.Contains(set, m.Remove):
				errs = append(errs, fmt.Errorf("%w: %s: removes a node that is not a replica", ErrInvalid, where))
			}
		case StageCleanup:
			if m.Remove == "" {
				errs = append(errs, fmt.Errorf("%w: %s: cleanup names no node", ErrInvalid, where))
			}
		default:
			errs = append(errs, fmt.Errorf("%w: %s: unknown stage %q", ErrInvalid, where, m.Stage))
		}
	}
	if len(d.Changed) != 0 && len(d.Changed) != int(d.Partitions) {
		errs = append(errs, fmt.Errorf("%w: %d changed epochs for %d partitions", ErrInvalid, len(d.Changed), d.Partitions))
	}
	return errs
}
