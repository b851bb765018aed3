package engine

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Cache is an object cache in front of Pebble for point reads (pkg/lirs fills
// it). Keys and values are opaque to it; it may keep the slices it is given
// and the engine never modifies them afterwards. Callers must not modify a
// slice Get returns. Implementations must be safe for concurrent use.
type Cache interface {
	Get(key []byte) ([]byte, bool)
	Set(key []byte, value []byte)
	Delete(key []byte)
}

const (
	cacheStripes = 256
	// genSlots is the number of write generations; keys share one by hash.
	genSlots = 4096
)

// stripe orders cache fills after Pebble reads against invalidations by the
// committer.
type stripe struct {
	mu sync.Mutex
	_  [56]byte // keep stripes on separate cache lines
}

// writeGens counts, per slot of item-key hashes, the writes the committer
// has made visible in Pebble. A reader that loads a key's generation before
// it reads Pebble knows its read may be older than a visible write exactly
// when the generation has moved since: cache fills and the LWW reads Apply
// makes before it queues (prefetched) both rely on it.
type writeGens [genSlots]atomic.Uint64

func (w *writeGens) of(h uint64) *atomic.Uint64 { return &w[h%genSlots] }

func keyHash(itemKey []byte) uint64 { return xxhash.Sum64(itemKey) }

// cacheKey prefixes the item key with the cache epoch, which DropPartition
// bumps to invalidate every entry at once.
func cacheKey(epoch uint32, itemKey []byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(itemKey)), epoch)
	return append(b, itemKey...)
}

// invalidate moves a written key's generation and removes it from the
// cache, and returns the key's hash. The committer calls it after the write
// is visible in Pebble.
func (e *Engine) invalidate(itemKey []byte) (h uint64) {
	h = keyHash(itemKey)
	if e.cache == nil {
		e.gens.of(h).Add(1)
		return h
	}
	s := &e.stripes[h%cacheStripes]
	s.mu.Lock()
	e.gens.of(h).Add(1)
	e.cache.Delete(cacheKey(e.cacheEpoch.Load(), itemKey))
	s.mu.Unlock()
	return h
}

// invalidateAll moves every generation and makes every cached entry
// unreachable. Called after a partition drop is visible.
func (e *Engine) invalidateAll() {
	for i := range e.stripes {
		e.stripes[i].mu.Lock()
	}
	e.cacheEpoch.Add(1)
	for i := range e.gens {
		e.gens[i].Add(1)
	}
	for i := range e.stripes {
		e.stripes[i].mu.Unlock()
	}
}
