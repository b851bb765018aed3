package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/veltrixdb/veltrix/pkg/placement"
)

// A replacing node (`veltrix node replace`) starts on an empty directory
// while it is still a replica of its partitions. Until the controller has
// started the backfill of a partition (a move whose Add and Remove are the
// node, which keeps it out of the read set), nothing in the placement says
// that the node's copy is empty. So the node remembers, from the moment it
// stamps the directory, which partitions it has not backfilled yet, and
// serves no reads of them: a read of an empty copy would answer
// acknowledged writes with not-found. A partition leaves the set when the
// node's backfill of it is done, or when a move of it started and ended
// since (promoted or abandoned: the placement decides from then on).

// unfilledMeta names the engine metadata record of the set.
const unfilledMeta = "unfilled"

// unfilled is the set, as stored.
type unfilled struct {
	// Epoch is the placement epoch when the directory was stamped.
	Epoch uint64 `json:"epoch"`
	// Partitions are not backfilled yet.
	Partitions []uint32 `json:"partitions"`
}

// unfilledState holds the set for the request path.
type unfilledState struct {
	mu  sync.Mutex // serialises updates
	cur atomic.Pointer[unfilled]
}

// recordUnfilled stores, for a replacing node's new directory, the
// partitions it holds in doc: none of them is backfilled yet. Written
// before the stamp, so a stamped directory never lacks it.
func (s *Server) recordUnfilled(doc placement.Document) error {
	u := unfilled{Epoch: doc.Epoch}
	for p, set := range doc.Replicas {
		if slices.Contains(set, s.id) {
			u.Partitions = append(u.Partitions, uint32(p))
		}
	}
	return s.storeUnfilled(u)
}

func (s *Server) storeUnfilled(u unfilled) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if err := s.eng.SetMeta(unfilledMeta, b); err != nil {
		return fmt.Errorf("storage: record the partitions to backfill: %w", err)
	}
	s.unfilled.cur.Store(&u)
	return nil
}

// loadUnfilled reads the set the directory holds, if any.
func (s *Server) loadUnfilled() error {
	b, found, err := s.eng.Meta(unfilledMeta)
	if err != nil || !found {
		return err
	}
	var u unfilled
	if err := json.Unmarshal(b, &u); err != nil {
		return fmt.Errorf("%w: the record of partitions to backfill in %s is corrupt: %v", ErrIdentity, s.cfg.DataDir, err)
	}
	s.unfilled.cur.Store(&u)
	return nil
}

// notBackfilled reports whether the node came back empty and has not
// backfilled partition p yet.
func (s *Server) notBackfilled(p uint32) bool {
	u := s.unfilled.cur.Load()
	return u != nil && slices.Contains(u.Partitions, p)
}

// markFilled removes partitions from the set, for good.
func (s *Server) markFilled(ps ...uint32) error {
	s.unfilled.mu.Lock()
	defer s.unfilled.mu.Unlock()
	u := s.unfilled.cur.Load()
	if u == nil {
		return nil
	}
	next := unfilled{Epoch: u.Epoch, Partitions: slices.DeleteFunc(slices.Clone(u.Partitions), func(p uint32) bool { return slices.Contains(ps, p) })}
	if len(next.Partitions) == len(u.Partitions) {
		return nil
	}
	return s.storeUnfilled(next)
}

// settleUnfilled removes the partitions whose fate the placement now
// decides: a move of the partition started and ended since the directory
// was stamped, or the node does not hold it any more.
func (s *Server) settleUnfilled(doc *placement.Document) error {
	u := s.unfilled.cur.Load()
	if u == nil || len(u.Partitions) == 0 {
		return nil
	}
	var done []uint32
	for _, p := range u.Partitions {
		_, moving := doc.MoveOf(p)
		if !doc.Holds(p, s.id) || (!moving && doc.ChangedAt(p) > u.Epoch) {
			done = append(done, p)
		}
	}
	return s.markFilled(done...)
}
