package lirs

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Entry states. Get never looks at state: it uses entry.meta's LIR bit.
const (
	stateLIR uint8 = iota + 1
	stateHIR       // resident HIR, in Q and maybe in S
)

// Bits of entry.meta. The bits above them hold the shard's move epoch at
// the entry's last move to the top of S.
const (
	metaLIR     = 1 << iota // a LIR entry
	metaPending             // a move of the entry is in a read buffer
	metaShift   = iota
)

// entry is a resident block of the paper, LIR or HIR. Key, value, hash and
// cost are set before the entry is published in the table and never change:
// Set replaces the entry instead of updating it, so Get reads them without
// the lock.
type entry[K comparable, V any] struct {
	// Get reads hash, meta, key and value: they come first, to share a
	// cache line as often as the allocator's alignment allows.
	hash uint64
	// meta is read by Get without the lock: epoch<<metaShift | bits.
	meta  atomic.Uint64
	key   K
	value V
	cost  int64

	// Guarded by the shard lock.
	stamp        uint64 // clock at the last move to the top of S
	state        uint8
	dead         bool // no longer the key's entry: replaced or removed
	sPrev, sNext *entry[K, V]
	qPrev, qNext *entry[K, V] // Q
}

// ghost is a non-resident HIR block: the hash of its key and its position in
// S, the clock value of its last move to the top. A block's entry leaves S
// when it is evicted and its ghost takes its place: S holds exactly the
// ghosts whose stamp is above the bottom LIR entry's.
type ghost struct {
	hash, stamp uint64
}

// shard is one LIRS instance: stack S, queue Q and the non-resident blocks,
// over its own table.
//
// Non-resident blocks are kept out of the linked list S, as (hash, stamp)
// pairs in ghosts and in the FIFO nrq. That costs about 40 bytes per block
// instead of an entry, never keeps a key or value alive, and keeps them out
// of the table that Get probes. It is exact: S is ordered by stamp, so a
// ghost is in S if and only if its stamp is above the bottom LIR entry's.
// Ghosts are made in stamp order (a resident HIR entry in S went to the end
// of Q when it went to the top of S), so nrq is sorted by stamp and pruning S
// drops ghosts from its head.
type shard[K comparable, V any] struct {
	// Read by Get without the lock, and rarely written: kept apart from the
	// lock and from the neighbouring shards.
	_     [64]byte
	table atomic.Pointer[table[K, V]]
	// epoch advances every epochLen moves to the top of S (1/16 of the LIR
	// entries). A hit on a LIR entry moved at most window epochs ago leaves
	// it in place; see Cache.Get.
	epoch  atomic.Uint64
	window uint64
	exact  bool // every hit reorders under the lock: no epochs, no buffers
	// bufs hold the LIR hits that move their entry, until a goroutine that
	// holds the lock applies them (BP-Wrapper's batching).
	bufs    []readBuf[K, V]
	bufMask uintptr
	// dirty has bit i set when stripe i may hold moves, so that taking the
	// lock costs one load when no moves are queued.
	dirty atomic.Uint64
	_     [64]byte

	mu sync.Mutex
	// resident mirrors nResident for Len.
	resident atomic.Int64
	// Guarded by mu.
	tab        *table[K, V] // == table.Load()
	clock      uint64       // moves to the top of S: H2's stack-move counter
	epochStart uint64       // clock when epoch began
	epochLen   uint64
	capacity   int64
	hirReserve int64 // HIRFraction × capacity
	nrFactor   float64
	minNR      int
	s, q       entry[K, V]       // list sentinels: S (sNext is the top) and Q (qNext is the oldest)
	ghosts     map[uint64]uint64 // key hash → stamp
	nrq        []ghost           // nrq[nrHead:] in stamp order, with stale pairs
	nrHead     int
	bytes      int64
	lirBytes   int64
	hirBytes   int64
	nResident  int64
	nLIR       int
	nHIR       int
	evictions  uint64
}

func (s *shard[K, V]) init(capacity int64, hirFraction, nrFactor float64, minNR int, reorder int, stripes int, tomb *entry[K, V]) {
	s.capacity = capacity
	s.hirReserve = int64(hirFraction * float64(capacity))
	s.nrFactor = nrFactor
	s.minNR = minNR
	s.exact = reorder < 0
	s.window = uint64(max(reorder, 0))
	if !s.exact {
		s.bufs = make([]readBuf[K, V], stripes)
		s.bufMask = uintptr(stripes - 1)
	}
	s.reset(tomb)
}

// reset empties the shard. Entries a reader may still hold are marked dead
// so that a late hit on them does nothing.
func (s *shard[K, V]) reset(tomb *entry[K, V]) {
	if s.tab != nil {
		for i := range s.tab.slots {
			if e := s.tab.slots[i].e.Load(); e != nil && e != tomb {
				e.dead = true
			}
		}
	}
	for i := range s.bufs {
		s.bufs[i].drop()
	}
	s.dirty.Store(0)
	s.tab = newTable(0, tomb)
	s.table.Store(s.tab)
	s.s.sPrev, s.s.sNext = &s.s, &s.s
	s.q.qPrev, s.q.qNext = &s.q, &s.q
	s.ghosts = map[uint64]uint64{}
	s.nrq, s.nrHead = nil, 0
	s.bytes, s.lirBytes, s.hirBytes, s.nResident = 0, 0, 0, 0
	s.nLIR, s.nHIR = 0, 0
	s.resident.Store(0)
	s.syncEpochLen()
}

// lirLimit is the most LIR cost the shard holds: capacity less the HIR
// reserve, which is HIRFraction of capacity but at least two average entries
// (two entries with unit costs, as LOWEST_HG_NUM in the reference lirs.c).
func (s *shard[K, V]) lirLimit() int64 {
	avg := int64(1)
	if s.nResident > 0 {
		avg = max(1, s.bytes/s.nResident)
	}
	return s.capacity - max(s.hirReserve, minHIREntries*avg)
}

func (s *shard[K, V]) syncEpochLen() {
	s.epochLen = max(1, uint64(s.nLIR)/epochsPerLIR)
}

// Stack S.

func (s *shard[K, V]) top() *entry[K, V] { return s.s.sNext }

func (s *shard[K, V]) bottom() *entry[K, V] {
	if b := s.s.sPrev; b != &s.s {
		return b
	}
	return nil
}

// push puts e on top of S and stamps it with the advanced clock.
func (s *shard[K, V]) push(e *entry[K, V]) {
	e.sPrev, e.sNext = &s.s, s.s.sNext
	s.s.sNext.sPrev = e
	s.s.sNext = e
	s.clock++
	e.stamp = s.clock
	epoch := s.epoch.Load()
	if s.clock-s.epochStart >= s.epochLen {
		epoch++
		s.epoch.Store(epoch)
		s.epochStart = s.clock
	}
	m := epoch << metaShift
	if e.state == stateLIR {
		m |= metaLIR
	}
	e.meta.Store(m)
}

func (s *shard[K, V]) unlinkS(e *entry[K, V]) {
	e.sPrev.sNext = e.sNext
	e.sNext.sPrev = e.sPrev
	e.sPrev, e.sNext = nil, nil
}

// Q.

func pushBack[K comparable, V any](list, e *entry[K, V]) {
	e.qPrev, e.qNext = list.qPrev, list
	list.qPrev.qNext = e
	list.qPrev = e
}

func unlinkQ[K comparable, V any](e *entry[K, V]) {
	e.qPrev.qNext = e.qNext
	e.qNext.qPrev = e.qPrev
	e.qPrev, e.qNext = nil, nil
}

func front[K comparable, V any](list *entry[K, V]) *entry[K, V] {
	if f := list.qNext; f != list {
		return f
	}
	return nil
}

// prune removes HIR entries from the bottom of S until a LIR entry is there
// (the paper's "stack pruning"). Resident ones stay in Q; the ghosts below
// the new bottom are forgotten.
func (s *shard[K, V]) prune() {
	for b := s.bottom(); b != nil && b.state != stateLIR; b = s.bottom() {
		s.unlinkS(b)
	}
	floor := ^uint64(0) // no LIR entry: S is empty
	if b := s.bottom(); b != nil {
		floor = b.stamp
	}
	for s.nrHead < len(s.nrq) {
		g := s.nrq[s.nrHead]
		if st, ok := s.ghosts[g.hash]; ok && st == g.stamp {
			if g.stamp > floor {
				break
			}
			delete(s.ghosts, g.hash)
		}
		s.popGhost()
	}
}

// popGhost drops the head of nrq.
func (s *shard[K, V]) popGhost() {
	s.nrq[s.nrHead] = ghost{}
	s.nrHead++
	if s.nrHead == len(s.nrq) {
		s.nrq, s.nrHead = s.nrq[:0], 0
	} else if s.nrHead >= 1024 && s.nrHead*2 >= len(s.nrq) {
		n := copy(s.nrq, s.nrq[s.nrHead:])
		s.nrq, s.nrHead = s.nrq[:n], 0
	}
}

// addGhost records the evicted block e, still in S, as non-resident.
func (s *shard[K, V]) addGhost(e *entry[K, V]) {
	g := ghost{hash: e.hash, stamp: e.stamp}
	s.ghosts[g.hash] = g.stamp
	if live := len(s.ghosts); len(s.nrq)-s.nrHead > 2*live+64 {
		// Reuse of ghosts left stale pairs behind: drop them.
		n := 0
		for _, x := range s.nrq[s.nrHead:] {
			if st, ok := s.ghosts[x.hash]; ok && st == x.stamp {
				s.nrq[n] = x
				n++
			}
		}
		clear(s.nrq[n:])
		s.nrq, s.nrHead = s.nrq[:n], 0
	}
	s.nrq = append(s.nrq, g)
}

// takeGhost removes the ghost of the key with hash h, if any, and returns
// its stamp.
func (s *shard[K, V]) takeGhost(h uint64) (stamp uint64, ok bool) {
	stamp, ok = s.ghosts[h]
	if ok {
		delete(s.ghosts, h) // its pair in nrq is now stale
	}
	return stamp, ok
}

func (s *shard[K, V]) setLIR(e *entry[K, V]) {
	e.state = stateLIR
	e.meta.Or(metaLIR)
	s.lirBytes += e.cost
	s.nLIR++
}

func (s *shard[K, V]) setHIR(e *entry[K, V]) {
	e.state = stateHIR
	e.meta.And(^uint64(metaLIR | metaPending))
	s.hirBytes += e.cost
	s.nHIR++
	pushBack(&s.q, e)
}

// demote turns the bottom LIR entry b into a resident HIR entry at the end
// of Q and prunes S.
func (s *shard[K, V]) demote(b *entry[K, V]) {
	s.unlinkS(b)
	s.lirBytes -= b.cost
	s.nLIR--
	s.setHIR(b)
	s.prune()
}

// fitLIR demotes bottom LIR entries while the LIR set is over its limit.
func (s *shard[K, V]) fitLIR() {
	for limit := s.lirLimit(); s.lirBytes > limit && s.nLIR > 0; {
		s.demote(s.bottom())
	}
}

// access is a hit on the resident entry e.
func (s *shard[K, V]) access(e *entry[K, V]) {
	if e.dead || s.top() == e {
		// A repeated reference to the top of S changes nothing; the
		// reference simulator skips such references the same way.
		if m := e.meta.Load(); m&metaPending != 0 {
			e.meta.And(^uint64(metaPending))
		}
		return
	}
	switch e.state {
	case stateLIR:
		wasBottom := s.s.sPrev == e
		s.unlinkS(e)
		s.push(e)
		if wasBottom {
			s.prune()
		}
	case stateHIR:
		inS := e.sNext != nil
		if inS {
			s.unlinkS(e)
		}
		s.push(e)
		unlinkQ(e)
		s.hirBytes -= e.cost
		s.nHIR--
		if inS {
			// Its new IRR is below the recency of the bottom LIR entry:
			// it joins the LIR set and the bottom LIR entry leaves.
			s.setLIR(e)
			s.fitLIR()
		} else {
			s.setHIR(e)
			s.prune() // no-op unless S has no LIR entry
		}
	}
}

// evictOne frees room by evicting the front of Q, after demoting the bottom
// LIR entry if Q is empty. It reports false when the shard holds nothing.
func (s *shard[K, V]) evictOne(evicted *[]*entry[K, V]) bool {
	e := front(&s.q)
	if e == nil {
		b := s.bottom()
		if b == nil {
			return false
		}
		s.demote(b)
		e = front(&s.q)
	}
	unlinkQ(e)
	s.hirBytes -= e.cost
	s.nHIR--
	s.bytes -= e.cost
	s.nResident--
	s.evictions++
	if evicted != nil {
		*evicted = append(*evicted, e)
	}
	if e.sNext != nil {
		// Still in S (never at its bottom, which is LIR): its ghost
		// keeps its place.
		s.unlinkS(e)
		s.addGhost(e)
	}
	s.tab.remove(e)
	e.dead = true
	return true
}

// boundNR forgets the oldest ghosts while there are more than
// max(NonResidentFactor × resident entries, MinNonResident/Shards).
func (s *shard[K, V]) boundNR() {
	for len(s.ghosts) > s.minNR && float64(len(s.ghosts)) > s.nrFactor*float64(s.nResident) {
		g := s.nrq[s.nrHead]
		if st, ok := s.ghosts[g.hash]; ok && st == g.stamp {
			delete(s.ghosts, g.hash)
		}
		s.popGhost()
	}
}

func (s *shard[K, V]) insertTable(e *entry[K, V]) {
	if s.tab.full() {
		s.tab = s.tab.rebuilt()
		s.table.Store(s.tab)
	}
	s.tab.insert(e)
}

// set stores ne, a new entry for its key, as a reference to that key.
// Evicted entries are appended to *evicted when evicted is not nil.
func (s *shard[K, V]) set(ne *entry[K, V], evicted *[]*entry[K, V]) {
	if old := s.tab.find(ne.hash, ne.key); old != nil {
		s.update(old, ne, evicted)
		return
	}
	// Take the ghost first so that making room cannot forget it.
	stamp, wasGhost := s.takeGhost(ne.hash)
	for s.bytes+ne.cost > s.capacity && s.evictOne(evicted) {
	}
	inS := false
	if b := s.bottom(); wasGhost && b != nil {
		inS = stamp > b.stamp
	}
	fill := s.bytes+ne.cost <= s.lirLimit()
	s.bytes += ne.cost
	s.nResident++
	s.push(ne)
	switch {
	case inS:
		// A miss on a block in S: its IRR is below the recency of the
		// bottom LIR entry, so it becomes LIR and that one leaves.
		s.setLIR(ne)
		s.fitLIR()
	case fill:
		// Until the LIR set is full, every new block is LIR.
		s.setLIR(ne)
	default:
		s.setHIR(ne)
		s.prune() // no-op unless S had no LIR entry
	}
	s.insertTable(ne)
	s.boundNR()
	s.resident.Store(s.nResident)
	s.syncEpochLen()
}

// update replaces the resident entry old by ne, a new value for the same
// key, and counts as a reference.
func (s *shard[K, V]) update(old, ne *entry[K, V], evicted *[]*entry[K, V]) {
	ne.state = old.state
	ne.meta.Store(old.meta.Load())
	ne.stamp = old.stamp
	if old.sNext != nil {
		ne.sPrev, ne.sNext = old.sPrev, old.sNext
		old.sPrev.sNext, old.sNext.sPrev = ne, ne
		old.sPrev, old.sNext = nil, nil
	}
	if old.qNext != nil {
		ne.qPrev, ne.qNext = old.qPrev, old.qNext
		old.qPrev.qNext, old.qNext.qPrev = ne, ne
		old.qPrev, old.qNext = nil, nil
	}
	delta := ne.cost - old.cost
	s.bytes += delta
	if ne.state == stateLIR {
		s.lirBytes += delta
	} else {
		s.hirBytes += delta
	}
	s.tab.replace(old, ne)
	old.dead = true
	s.access(ne)
	if ne.state == stateLIR {
		s.fitLIR()
	}
	for s.bytes > s.capacity && s.evictOne(evicted) {
	}
	s.boundNR()
	s.resident.Store(s.nResident)
	s.syncEpochLen()
}

// remove deletes the entry for k, resident or not, and reports whether it
// was resident.
func (s *shard[K, V]) remove(h uint64, k K) bool {
	e := s.tab.find(h, k)
	if e == nil {
		s.takeGhost(h)
		return false
	}
	wasBottom := s.s.sPrev == e
	if e.sNext != nil {
		s.unlinkS(e)
	}
	if e.state == stateLIR {
		s.lirBytes -= e.cost
		s.nLIR--
	} else {
		unlinkQ(e)
		s.hirBytes -= e.cost
		s.nHIR--
	}
	s.bytes -= e.cost
	s.nResident--
	s.tab.remove(e)
	e.dead = true
	if wasBottom {
		s.prune()
	}
	s.boundNR()
	s.resident.Store(s.nResident)
	s.syncEpochLen()
	return true
}

// readBufSize is the number of moves a stripe of a shard's read buffer
// holds; a full stripe is drained by the goroutine that fills it, if the
// lock is free.
const readBufSize = 32

// readBuf is one stripe of a shard's read buffer: a bounded, lossy queue of
// LIR entries whose hits asked to move them to the top of S. Goroutines pick
// a stripe by their stack address, so that cores mostly write their own.
type readBuf[K comparable, V any] struct {
	head atomic.Uint32 // next to apply; written under the shard lock
	tail atomic.Uint32 // next to fill
	ring [readBufSize]atomic.Pointer[entry[K, V]]
	_    [56]byte
}

// record queues a move of e, which the caller marked pending. It drops the
// move if its stripe is full or contended: the entry then stays where it is
// until its next hit, as if the move had been filtered out.
func (s *shard[K, V]) record(e *entry[K, V]) {
	i := stripeHint() & s.bufMask
	b := &s.bufs[i]
	t := b.tail.Load()
	n := t - b.head.Load()
	if n < readBufSize && b.tail.CompareAndSwap(t, t+1) {
		b.ring[t%readBufSize].Store(e)
		n++
		// After the store: a drain that clears the bit later sees e.
		if bit := uint64(1) << i; s.dirty.Load()&bit == 0 {
			s.dirty.Or(bit)
		}
	} else {
		e.meta.And(^uint64(metaPending))
	}
	if n >= readBufSize && s.mu.TryLock() {
		s.drain()
		s.mu.Unlock()
	}
}

// drain applies the queued moves, oldest first in each stripe. Every
// operation that takes the lock drains first, so that a single goroutine
// sees its references applied in order.
func (s *shard[K, V]) drain() {
	if s.dirty.Load() == 0 {
		return
	}
	for mask := s.dirty.Swap(0); mask != 0; mask &= mask - 1 {
		b := &s.bufs[bits.TrailingZeros64(mask)]
		h, t := b.head.Load(), b.tail.Load()
		for ; h != t; h++ {
			e := b.ring[h%readBufSize].Swap(nil)
			if e == nil {
				break // its writer has not stored it yet
			}
			s.access(e)
		}
		b.head.Store(h)
	}
	s.syncEpochLen()
}

// drop empties the stripe; the shard lock is held.
func (b *readBuf[K, V]) drop() {
	h, t := b.head.Load(), b.tail.Load()
	for ; h != t; h++ {
		if b.ring[h%readBufSize].Swap(nil) == nil {
			break
		}
	}
	b.head.Store(h)
}
