// Package placement maps keys to partitions and partitions to the nodes that
// replicate them.
//
// # Partitioning
//
// A cluster has a fixed number of partitions P, set at bootstrap. PartitionOf
// hashes a table id and a partition key with xxhash64 and takes the result mod
// P. The hash is named by HashFunction, which the cluster config records; it
// must never change, since every stored item would be in the wrong partition.
//
// # Placement: rendezvous hashing
//
// Compute assigns each partition an ordered replica set of RF distinct nodes
// by rendezvous, or highest-random-weight (HRW), hashing (D. G. Thaler and
// C. V. Ravishankar, "Using name-based mappings to increase hit rates",
// IEEE/ACM Transactions on Networking 6(1), 1998): every (partition, node) pair
// gets a pseudo-random score, and a partition's replicas are its highest
// scoring nodes, highest first; the first is the partition's primary. A
// node's score for a partition depends on nothing but the two names, so:
//
//   - adding a node moves only the partitions where it now scores among the
//     top RF, each losing one replica (about RF/N of the partitions for N
//     nodes after the join);
//   - removing a node moves only the partitions it held, each gaining the
//     next-highest node;
//   - the result does not depend on the order nodes are listed in, and every
//     node gets about P*RF/N replicas.
//
// # Zones
//
// When nodes carry zone labels a replica set spans as many distinct zones as
// it can: walking the nodes in score order, Compute first takes the
// top-scoring node of each zone not yet used, and only when every zone has a
// replica fills the remaining slots in score order. Without zones (all labels
// empty) this is plain HRW. Because each zone then receives an equal share of
// replicas, nodes in small zones carry more replicas than nodes in large ones;
// keep zones the same size for even load.
package placement

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// HashFunction names the function PartitionOf uses: xxhash64 (seed 0) of the
// table id as 8 bytes big-endian followed by the partition key, mod the
// partition count. The cluster config stores it at bootstrap and the
// placement document carries it, so that a node or router built with a
// different function notices instead of misrouting. It never changes: a new
// function gets a new name.
const HashFunction = "xxhash64-v1"

var (
	// ErrInvalid is returned, wrapped, for invalid arguments to Compute and for
	// a malformed Table or Document. Use errors.Is.
	ErrInvalid = errors.New("placement: invalid")
	// ErrHashFunctionMismatch is returned, wrapped, when a Document was written
	// for a hash function other than HashFunction. Use errors.Is.
	ErrHashFunctionMismatch = errors.New("placement: hash function mismatch")
)

// PartitionOf returns the partition of a key: xxhash64 of the table id (8
// bytes, big-endian) followed by the partition key, mod partitions. It panics
// if partitions is 0.
func PartitionOf(tableID uint64, partitionKey []byte, partitions uint32) uint32 {
	if partitions == 0 {
		panic("placement: PartitionOf with 0 partitions")
	}
	var h uint64
	var buf [64]byte
	if len(partitionKey) <= len(buf)-8 {
		// One-shot hashing of a stack buffer is faster than streaming and
		// gives the same value.
		binary.BigEndian.PutUint64(buf[:8], tableID)
		n := copy(buf[8:], partitionKey)
		h = xxhash.Sum64(buf[:8+n])
	} else {
		var d xxhash.Digest
		d.Reset()
		_, _ = d.Write(binary.BigEndian.AppendUint64(buf[:0], tableID)) // never fails
		_, _ = d.Write(partitionKey)
		h = d.Sum64()
	}
	return uint32(h % uint64(partitions))
}

// Node is a live storage node, as Compute sees it. Which nodes are live is the
// caller's business: it passes only those.
type Node struct {
	// ID names the node; it must be unique and non-empty.
	ID string `json:"id"`
	// Zone is the node's failure domain (availability zone, rack); empty if
	// unknown. Nodes with the same empty zone count as one zone.
	Zone string `json:"zone,omitempty"`
}

// Table is a placement: the replica set of every partition.
type Table struct {
	// Partitions is the number of partitions P.
	Partitions uint32 `json:"partitions"`
	// RF is the requested replication factor. A replica set has fewer
	// replicas when there are fewer nodes.
	RF int `json:"rf"`
	// Replicas[p] lists the IDs of partition p's replicas, primary first.
	Replicas [][]string `json:"replicas"`
}

// Compute returns the placement of partitions partitions over nodes with
// replication factor rf: for each partition the min(rf, len(nodes)) nodes
// chosen by rendezvous hashing with zone spreading (see the package
// documentation), in descending score order. The result depends only on the
// set of nodes, not on their order.
//
// It returns an error wrapping ErrInvalid, listing every problem, if rf < 1,
// partitions is 0, there are no nodes, or a node ID is empty or duplicated.
func Compute(nodes []Node, partitions uint32, rf int) (Table, error) {
	var errs []error
	if rf < 1 {
		errs = append(errs, fmt.Errorf("%w: replication factor %d, want >= 1", ErrInvalid, rf))
	}
	if partitions == 0 {
		errs = append(errs, fmt.Errorf("%w: 0 partitions", ErrInvalid))
	}
	if len(nodes) == 0 {
		errs = append(errs, fmt.Errorf("%w: no nodes", ErrInvalid))
	}
	seen := make(map[string]bool, len(nodes))
	for i, n := range nodes {
		switch {
		case n.ID == "":
			errs = append(errs, fmt.Errorf("%w: node %d has an empty ID", ErrInvalid, i))
		case seen[n.ID]:
			errs = append(errs, fmt.Errorf("%w: duplicate node ID %q", ErrInvalid, n.ID))
		}
		seen[n.ID] = true
	}
	if len(errs) > 0 {
		return Table{}, errors.Join(errs...)
	}

	// Sort by ID so that ties in score (and everything else) are independent
	// of the input order.
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	hashes := make([]uint64, len(sorted))
	zoneOf := make([]int, len(sorted))
	zoneIndex := make(map[string]int)
	for i, n := range sorted {
		hashes[i] = xxhash.Sum64String(n.ID)
		z, ok := zoneIndex[n.Zone]
		if !ok {
			z = len(zoneIndex)
			zoneIndex[n.Zone] = z
		}
		zoneOf[i] = z
	}

	k := min(rf, len(sorted))
	t := Table{Partitions: partitions, RF: rf, Replicas: make([][]string, partitions)}
	backing := make([]string, int(partitions)*k)
	type candidate struct {
		score uint64
		node  int
	}
	cands := make([]candidate, len(sorted))
	zoneUsed := make([]bool, len(zoneIndex))
	picked := make([]bool, len(sorted))
	chosen := make([]int, 0, k)
	for p := range partitions {
		for i := range sorted {
			cands[i] = candidate{score(p, hashes[i]), i}
		}
		// Descending score; equal scores (vanishingly rare) by ascending ID.
		slices.SortFunc(cands, func(a, b candidate) int {
			switch {
			case a.score > b.score:
				return -1
			case a.score < b.score:
				return 1
			}
			return a.node - b.node
		})
		clear(zoneUsed)
		clear(picked)
		chosen = chosen[:0]
		// The best node of each zone not yet used, in score order.
		for j, c := range cands {
			if len(chosen) == k {
				break
			}
			if !zoneUsed[zoneOf[c.node]] {
				zoneUsed[zoneOf[c.node]] = true
				picked[j] = true
				chosen = append(chosen, j)
			}
		}
		// Then the remaining slots in score order.
		for j := range cands {
			if len(chosen) == k {
				break
			}
			if !picked[j] {
				picked[j] = true
				chosen = append(chosen, j)
			}
		}
		slices.Sort(chosen) // positions in cands: descending score
		set := backing[int(p)*k : int(p+1)*k : int(p+1)*k]
		for i, j := range chosen {
			set[i] = sorted[cands[j].node].ID
		}
		t.Replicas[p] = set
	}
	return t, nil
}

// score is the rendezvous weight of a node, given by the xxhash64 of its ID,
// for a partition. Changing it moves replicas: the datadriven tests pin it.
func score(partition uint32, nodeHash uint64) uint64 {
	return mix64(nodeHash ^ mix64(uint64(partition)*0x9e3779b97f4a7c15))
}

// mix64 is the splitmix64 finalizer (Steele, Lea, Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014): a bijection with full
// avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ReplicasOf returns partition's replica IDs, primary first, or nil if the
// partition is out of range. The slice is shared with the table: do not
// modify it.
func (t Table) ReplicasOf(partition uint32) []string {
	if int(partition) >= len(t.Replicas) {
		return nil
	}
	return t.Replicas[partition]
}

// PartitionsPerNode returns how many partitions each node holds a replica of.
func (t Table) PartitionsPerNode() map[string]int {
	m := make(map[string]int)
	for _, set := range t.Replicas {
		for _, id := range set {
			m[id]++
		}
	}
	return m
}

// PrimariesPerNode returns how many partitions each node is the primary (first
// replica) of. Nodes that are nobody's primary are absent.
func (t Table) PrimariesPerNode() map[string]int {
	m := make(map[string]int)
	for _, set := range t.Replicas {
		if len(set) > 0 {
			m[set[0]]++
		}
	}
	return m
}

// Diff returns the number of replicas that must move to go from placement a
// to placement b: for each partition, the number of nodes in b's replica set
// that are not in a's. A change of order within a set (a new primary) moves
// no data and does not count. Partitions present only in b count in full.
func Diff(a, b Table) (moved int) {
	for p, set := range b.Replicas {
		var old []string
		if p < len(a.Replicas) {
			old = a.Replicas[p]
		}
		for _, id := range set {
			if !slices.Contains(old, id) {
				moved++
			}
		}
	}
	return moved
}

// Validate checks the table's shape: Partitions > 0, RF >= 1, one replica set
// per partition, and every set holds between 1 and RF distinct, non-empty
// node IDs. It reports every problem, wrapping ErrInvalid.
func (t Table) Validate() error {
	var errs []error
	if t.Partitions == 0 {
		errs = append(errs, fmt.Errorf("%w: 0 partitions", ErrInvalid))
	}
	if t.RF < 1 {
		errs = append(errs, fmt.Errorf("%w: replication factor %d, want >= 1", ErrInvalid, t.RF))
	}
	if uint64(len(t.Replicas)) != uint64(t.Partitions) {
		errs = append(errs, fmt.Errorf("%w: %d replica sets for %d partitions", ErrInvalid, len(t.Replicas), t.Partitions))
	}
	const maxReported = 10 // a corrupt document should not produce a megabyte of errors
	bad := 0
	for p, set := range t.Replicas {
		var problem string
		switch {
		case len(set) == 0:
			problem = "no replicas"
		case t.RF >= 1 && len(set) > t.RF:
			problem = fmt.Sprintf("%d replicas, more than RF %d", len(set), t.RF)
		case slices.Contains(set, ""):
			problem = "an empty node ID"
		default:
			for i, id := range set {
				if slices.Contains(set[:i], id) {
					problem = fmt.Sprintf("node %q twice", id)
					break
				}
			}
		}
		if problem == "" {
			continue
		}
		bad++
		if bad <= maxReported {
			errs = append(errs, fmt.Errorf("%w: partition %d: %s", ErrInvalid, p, problem))
		}
	}
	if bad > maxReported {
		errs = append(errs, fmt.Errorf("%w: %d more partitions with invalid replica sets", ErrInvalid, bad-maxReported))
	}
	return errors.Join(errs...)
}

// Document is a placement as the controller stores it in etcd: a Table with
// the epoch the controller assigns to each new placement and the partitioning
// hash function it was computed for.
type Document struct {
	// Epoch orders placements; the controller increments it with every
	// change. Routers and nodes ignore a document older than the one they have.
	Epoch uint64 `json:"epoch"`
	// HashFunction is the partitioning hash the document is for; it must equal
	// this package's HashFunction.
	HashFunction string `json:"hash_function"`
	// Partitions, RF and Replicas are the Table.
	Partitions uint32     `json:"partitions"`
	RF         int        `json:"rf"`
	Replicas   [][]string `json:"replicas"`
	// Moves are the replica changes in flight and the cleanups after them
	// (see Move); at most one active move per partition.
	Moves []Move `json:"moves,omitempty"`
	// Members are the storage nodes the controller places on or drains,
	// by id. Empty in documents from before membership changes existed:
	// the controller fills it from the replica sets.
	Members map[string]Member `json:"members,omitempty"`
	// Changed[p] is the epoch at which partition p's routing last changed;
	// empty until a first move. Storage nodes refuse requests made under
	// an older epoch (see ChangedAt).
	Changed []uint64 `json:"changed,omitempty"`
	// Rebalance records the data movement since it began: set by the
	// controller when it starts moves with none in flight, kept (with
	// Balanced set) after the last one ends.
	Rebalance *Rebalance `json:"rebalance,omitempty"`

	// active indexes Moves by partition (active moves only). Unmarshal
	// builds it, so storage nodes and routers find a partition's move
	// without scanning every move on each request; documents built or
	// changed in code (Clone drops it) scan instead.
	active map[uint32]int
}

// Rebalance is the record of one rebalance: a run of moves.
type Rebalance struct {
	StartTime time.Time `json:"start_time"`
	// Moved is the number of moves promoted; Bytes what their backfills
	// streamed.
	Moved uint64 `json:"moved"`
	Bytes uint64 `json:"bytes"`
	// EndTime is set when the placement reached its target.
	EndTime time.Time `json:"end_time,omitzero"`
}

// NewDocument returns the document for table t at epoch.
func NewDocument(epoch uint64, t Table) Document {
	return Document{Epoch: epoch, HashFunction: HashFunction, Partitions: t.Partitions, RF: t.RF, Replicas: t.Replicas}
}

// Table returns the document's placement. It shares the replica sets.
func (d Document) Table() Table {
	return Table{Partitions: d.Partitions, RF: d.RF, Replicas: d.Replicas}
}

// Validate checks the document's table (see Table.Validate) and that its hash
// function is HashFunction, reporting every problem. A hash function mismatch
// wraps ErrHashFunctionMismatch; the rest wrap ErrInvalid.
func (d Document) Validate() error {
	var errs []error
	if d.HashFunction != HashFunction {
		errs = append(errs, fmt.Errorf("%w: document uses %q, this build uses %q",
			ErrHashFunctionMismatch, d.HashFunction, HashFunction))
	}
	if err := d.Table().Validate(); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, d.validateMoves()...)
	}
	return errors.Join(errs...)
}

// Marshal validates the document and encodes it as JSON.
func (d Document) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("placement: marshal document at epoch %d: %w", d.Epoch, err)
	}
	return json.Marshal(d)
}

// Unmarshal decodes a JSON document and validates it. Unknown fields are
// ignored, so that a newer controller may add some.
func Unmarshal(data []byte) (Document, error) {
	var d Document
	if err := json.Unmarshal(data, &d); err != nil {
		return Document{}, fmt.Errorf("%w: decode document: %w", ErrInvalid, err)
	}
	if err := d.Validate(); err != nil {
		return Document{}, fmt.Errorf("placement: document at epoch %d: %w", d.Epoch, err)
	}
	if len(d.Moves) > 0 {
		d.active = make(map[uint32]int, len(d.Moves))
		for i, m := range d.Moves {
			if m.Active() {
				d.active[m.Partition] = i
			}
		}
	}
	return d, nil
}
