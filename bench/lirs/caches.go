package main

import (
	theine "github.com/Yiling-J/theine-go"
	"github.com/dgraph-io/ristretto/v2"
	arc "github.com/hashicorp/golang-lru/arc/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/veltrixdb/veltrix/pkg/lirs"
)

// key is what every cache under test accepts as a key.
type key interface{ uint64 | string }

// cache is the common face of the caches under test. Values are all the
// same []byte; every entry costs 1.
type cache[K key] interface {
	get(k K) bool
	set(k K, v []byte)
	// settle applies buffered writes.
	settle()
	close()
}

// impl builds a cache of the given capacity in entries. exact asks for a
// simulation: writes applied before the next operation (caches with write
// buffers are drained after each Set), so hit ratios do not depend on
// goroutine scheduling.
type impl[K key] struct {
	name string
	make func(capacity int, exact bool) cache[K]
}

func impls[K key]() []impl[K] {
	return []impl[K]{
		{"lirs", newLIRS[K](0)},
		{"lirs (1 shard)", newLIRS[K](1)},
		{"otter v2", newOtter[K]},
		{"theine", newTheine[K]},
		{"ristretto v2", newRistretto[K]},
		{"LRU", newLRU[K]},
		{"ARC", newARC[K]},
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type lirsCache[K key] struct{ c *lirs.Cache[K, []byte] }

// newLIRS returns a constructor of lirs caches with the given shard count (0:
// the default).
func newLIRS[K key](shards int) func(int, bool) cache[K] {
	return func(capacity int, _ bool) cache[K] {
		return lirsCache[K]{must(lirs.New(lirs.Options[K, []byte]{Capacity: int64(capacity), Shards: shards}))}
	}
}

func (c lirsCache[K]) get(k K) bool      { _, ok := c.c.Get(k); return ok }
func (c lirsCache[K]) set(k K, v []byte) { c.c.Set(k, v, 1) }
func (c lirsCache[K]) settle()           {}
func (c lirsCache[K]) close()            {}

type otterCache[K key] struct {
	c     *otter.Cache[K, []byte]
	exact bool
}

func newOtter[K key](capacity int, exact bool) cache[K] {
	opts := &otter.Options[K, []byte]{MaximumSize: capacity, InitialCapacity: capacity}
	if exact {
		opts.Executor = func(fn func()) { fn() }
	}
	return otterCache[K]{otter.Must(opts), exact}
}

func (c otterCache[K]) get(k K) bool { _, ok := c.c.GetIfPresent(k); return ok }
func (c otterCache[K]) set(k K, v []byte) {
	c.c.Set(k, v)
	if c.exact {
		c.c.CleanUp()
	}
}
func (c otterCache[K]) settle() { c.c.CleanUp() }
func (c otterCache[K]) close()  { c.c.StopAllGoroutines() }

type theineCache[K key] struct {
	c     *theine.Cache[K, []byte]
	exact bool
}

func newTheine[K key](capacity int, exact bool) cache[K] {
	return theineCache[K]{must(theine.NewBuilder[K, []byte](int64(capacity)).Build()), exact}
}

func (c theineCache[K]) get(k K) bool { _, ok := c.c.Get(k); return ok }
func (c theineCache[K]) set(k K, v []byte) {
	c.c.Set(k, v, 1)
	if c.exact {
		c.c.Wait()
	}
}
func (c theineCache[K]) settle() { c.c.Wait() }
func (c theineCache[K]) close()  { c.c.Close() }

type ristrettoCache[K key] struct {
	c     *ristretto.Cache[K, []byte]
	exact bool
}

func newRistretto[K key](capacity int, exact bool) cache[K] {
	return ristrettoCache[K]{must(ristretto.NewCache(&ristretto.Config[K, []byte]{
		NumCounters: int64(10 * capacity), // the documented recommendation
		MaxCost:     int64(capacity),
		BufferItems: 64,
		// Count entries, as the other caches do, not entries plus
		// ristretto's estimate of their memory.
		IgnoreInternalCost: true,
	})), exact}
}

func (c ristrettoCache[K]) get(k K) bool { _, ok := c.c.Get(k); return ok }
func (c ristrettoCache[K]) set(k K, v []byte) {
	c.c.Set(k, v, 1)
	if c.exact {
		c.c.Wait()
	}
}
func (c ristrettoCache[K]) settle() { c.c.Wait() }
func (c ristrettoCache[K]) close()  { c.c.Close() }

type lruCache[K key] struct{ c *lru.Cache[K, []byte] }

func newLRU[K key](capacity int, _ bool) cache[K] {
	return lruCache[K]{must(lru.New[K, []byte](capacity))}
}

func (c lruCache[K]) get(k K) bool      { _, ok := c.c.Get(k); return ok }
func (c lruCache[K]) set(k K, v []byte) { c.c.Add(k, v) }
func (c lruCache[K]) settle()           {}
func (c lruCache[K]) close()            {}

type arcCache[K key] struct{ c *arc.ARCCache[K, []byte] }

func newARC[K key](capacity int, _ bool) cache[K] {
	return arcCache[K]{must(arc.NewARC[K, []byte](capacity))}
}

func (c arcCache[K]) get(k K) bool      { _, ok := c.c.Get(k); return ok }
func (c arcCache[K]) set(k K, v []byte) { c.c.Add(k, v) }
func (c arcCache[K]) settle()           {}
func (c arcCache[K]) close()            {}
