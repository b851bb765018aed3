package lirs

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Cache is a concurrent, cost-bounded LIRS cache. Its methods are safe for
// concurrent use. Create one with New.
type Cache[K comparable, V any] struct {
	shards     []shard[K, V]
	shift      uint // h >> shift is the shard index
	hash       func(K) uint64
	strKeys    bool // K is string and hash is nil: use maphash.String
	seed       maphash.Seed
	onEvict    func(K, V, int64)
	capacity   int64
	tomb       *entry[K, V]
	hits       counter
	misses     counter
	rejections atomic.Uint64
}

// New returns an empty cache configured by opts, after EnsureDefaults and
// Validate; the error wraps ErrInvalidOptions.
func New[K comparable, V any](opts Options[K, V]) (*Cache[K, V], error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	n := opts.Shards
	c := &Cache[K, V]{
		shards:   make([]shard[K, V], n),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		hash:     opts.Hash,
		seed:     maphash.MakeSeed(),
		onEvict:  opts.OnEvict,
		capacity: opts.Capacity,
		tomb:     &entry[K, V]{},
		strKeys:  opts.Hash == nil && isString[K](),
		hits:     newCounter(),
		misses:   newCounter(),
	}
	reorder := opts.reorder
	if reorder == 0 {
		reorder = defaultWindow
	}
	stripes := 1 << bits.Len(uint(4*runtime.GOMAXPROCS(0)-1))
	stripes = min(stripes, 64)
	minNR := 0
	if opts.MinNonResident > 0 {
		minNR = (opts.MinNonResident + n - 1) / n
	}
	per, rem := opts.Capacity/int64(n), opts.Capacity%int64(n)
	for i := range c.shards {
		capacity := per
		if int64(i) < rem {
			capacity++
		}
		c.shards[i].init(capacity, opts.HIRFraction, opts.NonResidentFactor, minNR, reorder, stripes, c.tomb)
	}
	return c, nil
}

func (c *Cache[K, V]) hashOf(k K) uint64 {
	switch {
	case c.strKeys:
		// maphash.String is about twice as fast as maphash.Comparable on
		// strings; K is string, so the conversion is the identity.
		return maphash.String(c.seed, *(*string)(unsafe.Pointer(&k)))
	case c.hash != nil:
		return c.hash(k)
	}
	return maphash.Comparable(c.seed, k)
}

func isString[K comparable]() bool {
	var k K
	_, ok := any(k).(string)
	return ok
}

// Get returns the value stored for k and whether it was there, and counts
// the reference.
//
// Get takes no lock and, on the common path, writes no shared memory but a
// striped hit counter. A hit on a LIR entry moves it to the top of S only if
// it last moved there more than window epochs ago, an epoch being 1/16 of
// the shard's LIR entries' worth of moves (H2's rule, in epochs so that
// readers load a counter that rarely changes); the move is queued in a
// striped buffer and applied in a batch under the lock (BP-Wrapper). A hit
// on a resident HIR entry can change the LIR set, so it takes the lock.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	h := c.hashOf(k)
	s := &c.shards[h>>c.shift]
	e := s.table.Load().find(h, k)
	if e == nil {
		c.misses.inc()
		var zero V
		return zero, false
	}
	c.hits.inc()
	m := e.meta.Load()
	switch {
	case m&metaLIR == 0 || s.exact:
		s.lockedAccess(e)
	case m&metaPending == 0 && s.epoch.Load()-m>>metaShift > s.window:
		// One queued move per entry is enough.
		if e.meta.CompareAndSwap(m, m|metaPending) {
			s.record(e)
		}
	}
	return e.value, true
}

func (s *shard[K, V]) lockedAccess(e *entry[K, V]) {
	s.lock()
	s.access(e)
	s.syncEpochLen()
	s.mu.Unlock()
}

// lock takes the shard lock and applies the buffered moves.
func (s *shard[K, V]) lock() {
	s.mu.Lock()
	s.drain()
}

// Set stores v for k with the given cost (costs below 1 count as 1) and
// counts the reference: a new key enters as a resident HIR entry, or as LIR
// while the LIR set has room or when the key is still in S as a
// non-resident entry. Set evicts resident HIR entries as needed and reports
// whether v was stored: false when cost exceeds the capacity of k's shard,
// in which case any old value for k is removed.
func (c *Cache[K, V]) Set(k K, v V, cost int64) bool {
	cost = max(cost, 1)
	h := c.hashOf(k)
	s := &c.shards[h>>c.shift]
	if cost > s.capacity {
		c.rejections.Add(1)
		s.lock()
		s.remove(h, k)
		s.mu.Unlock()
		return false
	}
	ne := &entry[K, V]{hash: h, key: k, value: v, cost: cost}
	if c.onEvict != nil {
		c.setNotify(s, ne)
		return true
	}
	s.lock()
	s.set(ne, nil)
	s.mu.Unlock()
	return true
}

func (c *Cache[K, V]) setNotify(s *shard[K, V], ne *entry[K, V]) {
	var evicted []*entry[K, V]
	s.lock()
	s.set(ne, &evicted)
	s.mu.Unlock()
	for _, e := range evicted {
		c.onEvict(e.key, e.value, e.cost)
	}
}

// Delete removes k, resident or not (a deleted key has no history), and
// reports whether it was resident.
func (c *Cache[K, V]) Delete(k K) bool {
	h := c.hashOf(k)
	s := &c.shards[h>>c.shift]
	s.lock()
	defer s.mu.Unlock()
	return s.remove(h, k)
}

// Len returns the number of resident entries.
func (c *Cache[K, V]) Len() int {
	var n int64
	for i := range c.shards {
		n += c.shards[i].resident.Load()
	}
	return int(n)
}

// Clear removes every entry and its history. Statistics are kept.
func (c *Cache[K, V]) Clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.reset(c.tomb)
		s.mu.Unlock()
	}
}

// Stats is a snapshot of a cache's counters and occupancy. Counters are
// cumulative since New.
type Stats struct {
	// Hits and Misses count Gets that found, or did not find, a resident
	// entry.
	Hits, Misses uint64
	// Evictions counts resident entries removed to make room.
	Evictions uint64
	// Rejections counts Sets whose cost exceeded a shard's capacity.
	Rejections uint64
	// LIR and HIR count resident LIR and resident HIR entries.
	LIR, HIR int
	// NonResident counts non-resident HIR entries: keys of evicted entries
	// kept in S for their reuse distance.
	NonResident int
	// Bytes is the total cost of resident entries, LIRBytes of the LIR ones.
	Bytes, LIRBytes int64
	// Capacity is Options.Capacity.
	Capacity int64
}

// HitRatio returns Hits/(Hits+Misses), or 0 before any Get.
func (s Stats) HitRatio() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// Stats returns current statistics. It locks each shard in turn, so the
// occupancy figures of different shards are not taken at the same instant.
func (c *Cache[K, V]) Stats() Stats {
	st := Stats{
		Hits:       c.hits.load(),
		Misses:     c.misses.load(),
		Rejections: c.rejections.Load(),
		Capacity:   c.capacity,
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.lock()
		st.Evictions += s.evictions
		st.LIR += s.nLIR
		st.HIR += s.nHIR
		st.NonResident += len(s.ghosts)
		st.Bytes += s.bytes
		st.LIRBytes += s.lirBytes
		s.mu.Unlock()
	}
	return st
}
