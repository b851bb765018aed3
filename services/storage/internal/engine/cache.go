package engine

import (
	"encoding/binary"
	"sync"

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

const cacheStripes = 256

// stripe orders cache fills after Pebble reads against invalidations by the
// committer: gen counts writes to the stripe's keys.
type stripe struct {
	mu  sync.Mutex
	gen uint64
	_   [48]byte // keep stripes on separate cache lines
}

func stripeOf(itemKey []byte) int { return int(xxhash.Sum64(itemKey) % cacheStripes) }

// cacheKey prefixes the item key with the cache epoch, which DropPartition
// bumps to invalidate every entry at once.
func cacheKey(epoch uint32, itemKey []byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(itemKey)), epoch)
	return append(b, itemKey...)
}

// invalidate removes a written key from the cache. The committer calls it
// after the write is visible in Pebble.
func (e *Engine) invalidate(itemKey []byte) {
	s := &e.stripes[stripeOf(itemKey)]
	s.mu.Lock()
	s.gen++
	e.cache.Delete(cacheKey(e.cacheEpoch.Load(), itemKey))
	s.mu.Unlock()
}

// invalidateAll makes every cached entry unreachable. Called after a
// partition drop is visible.
func (e *Engine) invalidateAll() {
	for i := range e.stripes {
		e.stripes[i].mu.Lock()
	}
	e.cacheEpoch.Add(1)
	for i := range e.stripes {
		e.stripes[i].gen++
		e.stripes[i].mu.Unlock()
	}
}
