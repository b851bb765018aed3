package engine

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// purgeChunk is the number of purge candidates handed to the committer at once.
const purgeChunk = 256

// PurgeStats counts what one purge pass removed.
type PurgeStats struct {
	Tombstones int // tombstones past TombstoneGrace
	Expired    int // items expired for longer than TombstoneGrace
}

// Purge removes tombstones written, and items that expired, more than
// TombstoneGrace ago (and, with Options.PurgeNeedsSync, before their
// partition's sync point), updating the digests, and returns what it removed. The
// background purger calls it every PurgeInterval; it is exported for tests
// and operators. It walks only the purge index, not the items.
func (e *Engine) Purge() (PurgeStats, error) {
	if err := e.enter(); err != nil {
		return PurgeStats{}, err
	}
	defer e.closeMu.RUnlock()
	e.purgeMu.Lock()
	defer e.purgeMu.Unlock()
	e.st.purgePasses.Add(1)

	var total PurgeStats
	var chunk []purgeCandidate
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if e.closed.Load() {
			return ErrClosed
		}
		if p := e.writeErr.Load(); p != nil {
			return fmt.Errorf("%w: %w", ErrWriteFailed, *p)
		}
		r := &request{kind: reqPurge, purge: chunk, done: make(chan struct{})}
		for _, c := range chunk {
			r.size += len(c.itemKey) + len(c.indexKey)
		}
		e.reqs <- r
		<-r.done
		chunk = nil
		if r.err != nil {
			return r.err
		}
		total.Tombstones += r.purged.Tombstones
		total.Expired += r.purged.Expired
		e.st.purgedTombs.Add(uint64(r.purged.Tombstones))
		e.st.purgedExpired.Add(uint64(r.purged.Expired))
		return nil
	}

	cutoff := e.nowNanos() - int64(e.opts.TombstoneGrace)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{spacePurge}, UpperBound: []byte{spacePurge + 1}})
	if err != nil {
		return total, fmt.Errorf("engine: purge: %w", err)
	}
	cutPartition, partCutoff := uint32(0), int64(0)
	havePart := false
	for ok := it.First(); ok; {
		partition, base, ik, valid := decodePurgeKey(it.Key())
		if !valid {
			return total, errors.Join(fmt.Errorf("%w: purge index key %x", ErrCorrupt, it.Key()), it.Close())
		}
		if !havePart || partition != cutPartition {
			if partCutoff, err = e.purgeCutoff(partition, cutoff); err != nil {
				return total, errors.Join(err, it.Close())
			}
			cutPartition, havePart = partition, true
		}
		if base > partCutoff {
			// Entries are ordered by time within a partition: skip to the next.
			if partition == ^uint32(0) {
				break
			}
			next, _ := partitionSpan(spacePurge, partition+1)
			ok = it.SeekGE(next)
			continue
		}
		chunk = append(chunk, purgeCandidate{itemKey: bytes.Clone(ik), indexKey: bytes.Clone(it.Key())})
		if len(chunk) == purgeChunk {
			if err := flush(); err != nil {
				return total, errors.Join(err, it.Close())
			}
		}
		ok = it.Next()
	}
	if err := it.Close(); err != nil {
		return total, fmt.Errorf("engine: purge: %w", err)
	}
	return total, flush()
}

func (e *Engine) purgeLoop() {
	defer close(e.purgeDone)
	t := time.NewTicker(e.opts.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stopPurge:
			return
		case <-t.C:
			st, err := e.Purge()
			switch {
			case errors.Is(err, ErrClosed):
				return
			case err != nil:
				e.log.Error("storage engine purge failed", "err", err)
			case st.Tombstones+st.Expired > 0:
				e.log.Debug("storage engine purged", "tombstones", st.Tombstones, "expired", st.Expired)
			}
		}
	}
}
