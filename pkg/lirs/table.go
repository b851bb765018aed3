package lirs

import "sync/atomic"

// table is one shard's hash index: open addressing with linear probing over
// slots that readers load atomically without the shard lock. A slot keeps
// the key's hash beside the entry pointer, so that probing past other keys
// does not touch their entries. Only the
// goroutine holding the shard lock writes, so a reader sees either the old or
// the new pointer of a slot and never a torn entry: entries are published
// whole and their key and value never change afterwards.
//
// Removal writes a tombstone (or nil when the chain ends right after the
// slot), because moving entries backwards, as deletion in linear probing
// normally does, could make a concurrent reader step past the key it looks
// for. The shard rebuilds the table, which drops tombstones, when live
// entries plus tombstones reach 3/4 of the slots; a rebuilt table is a new
// allocation, so readers still probing the old one keep a consistent view.
type table[K comparable, V any] struct {
	slots []slot[K, V]
	mask  uint64
	tomb  *entry[K, V]
	used  int // non-nil slots, tombstones included; guarded by the shard lock
	live  int // entries; guarded by the shard lock
}

const minTableSize = 16

// slot is written hash first, then entry, and read entry first: a reader
// that sees an entry sees its hash. A reader may pair a new hash with an old
// entry, which the key comparison then rejects.
type slot[K comparable, V any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[K, V]]
}

func newTable[K comparable, V any](size int, tomb *entry[K, V]) *table[K, V] {
	n := minTableSize
	for n < size {
		n *= 2
	}
	return &table[K, V]{
		slots: make([]slot[K, V], n),
		mask:  uint64(n - 1),
		tomb:  tomb,
	}
}

// find returns the entry for k, resident or not, or nil. Safe without the
// shard lock.
func (t *table[K, V]) find(h uint64, k K) *entry[K, V] {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		e := sl.e.Load()
		if e == nil {
			return nil
		}
		if sl.hash.Load() == h && e != t.tomb && e.key == k {
			return e
		}
	}
}

// full reports whether inserting one more entry needs a rebuild first.
func (t *table[K, V]) full() bool {
	return (t.used+1)*4 > len(t.slots)*3
}

// insert adds e, whose key must be absent. The caller checks full first.
func (t *table[K, V]) insert(e *entry[K, V]) {
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].e.Load() {
		case nil:
			t.used++
			fallthrough
		case t.tomb:
			t.slots[i].hash.Store(e.hash)
			t.slots[i].e.Store(e)
			t.live++
			return
		}
	}
}

// slot returns the index holding e, which must be present.
func (t *table[K, V]) slot(e *entry[K, V]) uint64 {
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].e.Load() {
		case e:
			return i
		case nil:
			panic("lirs: entry missing from its table")
		}
	}
}

// replace puts e where old is; both have the same key.
func (t *table[K, V]) replace(old, e *entry[K, V]) {
	t.slots[t.slot(old)].e.Store(e)
}

// remove deletes e, which must be present.
func (t *table[K, V]) remove(e *entry[K, V]) {
	i := t.slot(e)
	t.live--
	if t.slots[(i+1)&t.mask].e.Load() != nil {
		t.slots[i].e.Store(t.tomb)
		return
	}
	// The probe chain ends here, so this slot and the tombstones just before
	// it can become empty: no key lives beyond them.
	for t.slots[i].e.Store(nil); ; t.slots[i].e.Store(nil) {
		t.used--
		i = (i - 1) & t.mask
		if t.slots[i].e.Load() != t.tomb {
			return
		}
	}
}

// rebuilt returns a new table holding t's entries without tombstones, sized
// for room to grow.
func (t *table[K, V]) rebuilt() *table[K, V] {
	nt := newTable(2*(t.live+1), t.tomb)
	for i := range t.slots {
		if e := t.slots[i].e.Load(); e != nil && e != t.tomb {
			nt.insert(e)
		}
	}
	return nt
}
