package engine

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The 'm' key space holds small named records about the store itself: the
// key layout version and, written by the server, the data directory's
// identity stamp.

func metaKey(name string) []byte { return append([]byte{spaceMeta}, name...) }

// Meta returns the metadata record name; found is false if there is none.
func (e *Engine) Meta(name string) (value []byte, found bool, err error) {
	if err := e.enter(); err != nil {
		return nil, false, err
	}
	defer e.closeMu.RUnlock()
	v, closer, err := e.db.Get(metaKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("engine: read meta %q: %w", name, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// SetMeta writes the metadata record name and syncs it to disk before
// returning, whatever Options.NoSync says.
func (e *Engine) SetMeta(name string, value []byte) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	if err := e.db.Set(metaKey(name), value, pebble.Sync); err != nil {
		return fmt.Errorf("engine: write meta %q: %w", name, err)
	}
	return nil
}

// HasData reports whether the store holds any item, tombstone or partition
// digest: whether it was ever written to.
func (e *Engine) HasData() (bool, error) {
	if err := e.enter(); err != nil {
		return false, err
	}
	defer e.closeMu.RUnlock()
	for _, space := range []byte{spaceItem, spaceDigest} {
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{space}, UpperBound: []byte{space + 1}})
		if err != nil {
			return false, fmt.Errorf("engine: %w", err)
		}
		found := it.First()
		if err := it.Close(); err != nil {
			return false, fmt.Errorf("engine: %w", err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}
