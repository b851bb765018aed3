package server

import (
	"unsafe"

	"github.com/veltrixdb/veltrix/pkg/lirs"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
)

// entryOverhead approximates the bytes the cache spends per entry beyond
// its key and value (entry struct, table slot, stack links).
const entryOverhead = 96

// lirsCache adapts pkg/lirs to the engine's cache seam: encoded storage
// keys to encoded stored records, bounded by bytes.
type lirsCache struct {
	c *lirs.Cache[string, []byte]
}

var _ engine.Cache = (*lirsCache)(nil)

// newCache returns the LIRS point-read cache holding about bytes bytes.
func newCache(bytes int64) (*lirsCache, error) {
	c, err := lirs.New(lirs.Options[string, []byte]{Capacity: bytes})
	if err != nil {
		return nil, err
	}
	return &lirsCache{c: c}, nil
}

func (l *lirsCache) Get(key []byte) ([]byte, bool) {
	if len(key) == 0 {
		return nil, false
	}
	// The cache does not keep the key it is asked for, so a zero-copy view
	// is safe here and saves an allocation per read.
	return l.c.Get(unsafe.String(&key[0], len(key)))
}

func (l *lirsCache) Set(key, value []byte) {
	l.c.Set(string(key), value, int64(len(key)+len(value)+entryOverhead))
}

func (l *lirsCache) Delete(key []byte) {
	if len(key) == 0 {
		return
	}
	l.c.Delete(unsafe.String(&key[0], len(key)))
}

// Stats returns the cache's counters.
func (l *lirsCache) Stats() lirs.Stats { return l.c.Stats() }
