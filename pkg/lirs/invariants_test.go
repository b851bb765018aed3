package lirs

import (
	"fmt"
)

// checkInvariants verifies a shard's structure. The caller holds no lock.
func (s *shard[K, V]) checkInvariants() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		lirBytes, hirBytes, bytes int64
		nLIR, nHIR, nRes          int
		prevStamp                 = ^uint64(0)
		inS                       = map[*entry[K, V]]bool{}
	)
	for e := s.s.sNext; e != &s.s; e = e.sNext {
		if len(inS) > s.tab.live {
			return fmt.Errorf("S has a cycle or more entries than the table (%d)", s.tab.live)
		}
		if e.sNext.sPrev != e {
			return fmt.Errorf("S links broken at %v", e.key)
		}
		st := e.stamp
		if st >= prevStamp {
			return fmt.Errorf("S not ordered by stamp at %v", e.key)
		}
		prevStamp = st
		if e.dead {
			return fmt.Errorf("dead entry %v in S", e.key)
		}
		inS[e] = true
	}
	if b := s.bottom(); b != nil && b.state != stateLIR {
		return fmt.Errorf("bottom of S %v is not LIR", b.key)
	}
	for e, n := s.q.qNext, 0; e != &s.q; e, n = e.qNext, n+1 {
		if n > s.tab.live {
			return fmt.Errorf("Q has a cycle or more entries than the table (%d)", s.tab.live)
		}
		if e.state != stateHIR {
			return fmt.Errorf("LIR entry %v in Q", e.key)
		}
		if e.qNext.qPrev != e {
			return fmt.Errorf("Q links broken at %v", e.key)
		}
	}
	for i := range s.tab.slots {
		e := s.tab.slots[i].e.Load()
		if e == nil || e == s.tab.tomb {
			continue
		}
		if e.dead {
			return fmt.Errorf("dead entry %v in table", e.key)
		}
		if got := s.tab.find(e.hash, e.key); got != e {
			return fmt.Errorf("table lookup of %v finds another entry", e.key)
		}
		nRes++
		bytes += e.cost
		lir := e.meta.Load()&metaLIR != 0
		switch e.state {
		case stateLIR:
			if !lir || !inS[e] || e.qNext != nil {
				return fmt.Errorf("LIR entry %v: meta LIR %v, in S %v, in Q %v", e.key, lir, inS[e], e.qNext != nil)
			}
			nLIR++
			lirBytes += e.cost
		case stateHIR:
			if lir || e.qNext == nil {
				return fmt.Errorf("HIR entry %v: meta LIR %v, in Q %v", e.key, lir, e.qNext != nil)
			}
			nHIR++
			hirBytes += e.cost
		default:
			return fmt.Errorf("entry %v in state %d", e.key, e.state)
		}
	}
	if nRes != len(inS)+countHIROutOfS(s) || nRes != s.tab.live {
		return fmt.Errorf("table holds %d entries, live %d, S %d", nRes, s.tab.live, len(inS))
	}
	if nLIR != s.nLIR || nHIR != s.nHIR || int64(nRes) != s.nResident || int64(nRes) != s.resident.Load() {
		return fmt.Errorf("counts: LIR %d/%d HIR %d/%d resident %d/%d/%d", nLIR, s.nLIR, nHIR, s.nHIR, nRes, s.nResident, s.resident.Load())
	}
	if bytes != s.bytes || lirBytes != s.lirBytes || hirBytes != s.hirBytes {
		return fmt.Errorf("bytes %d/%d LIR %d/%d HIR %d/%d", bytes, s.bytes, lirBytes, s.lirBytes, hirBytes, s.hirBytes)
	}
	if s.bytes > s.capacity {
		return fmt.Errorf("bytes %d over capacity %d", s.bytes, s.capacity)
	}
	floor := uint64(0)
	if b := s.bottom(); b != nil {
		floor = b.stamp
	}
	live, last := 0, uint64(0)
	for _, g := range s.nrq[s.nrHead:] {
		if g.stamp < last {
			return fmt.Errorf("non-resident queue out of order")
		}
		last = g.stamp
		if st, ok := s.ghosts[g.hash]; ok && st == g.stamp {
			live++
			if s.bottom() == nil || g.stamp < floor {
				return fmt.Errorf("ghost below the bottom of S")
			}
		}
	}
	if live != len(s.ghosts) {
		return fmt.Errorf("%d ghosts, %d in the queue", len(s.ghosts), live)
	}
	if len(s.ghosts) > s.minNR && float64(len(s.ghosts)) > s.nrFactor*float64(s.nResident) {
		return fmt.Errorf("%d ghosts over the bound (%d resident)", len(s.ghosts), s.nResident)
	}
	return nil
}

func countHIROutOfS[K comparable, V any](s *shard[K, V]) int {
	n := 0
	for e := s.q.qNext; e != &s.q; e = e.qNext {
		if e.sNext == nil {
			n++
		}
	}
	return n
}

func (c *Cache[K, V]) checkInvariants() error {
	for i := range c.shards {
		if err := c.shards[i].checkInvariants(); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}
