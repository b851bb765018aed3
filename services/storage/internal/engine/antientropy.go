package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// Anti-entropy support: replicas compare a partition's digest (kept exact
// by the committer), and where they differ narrow the difference down to
// hash buckets of the partition's key space (BucketDigests) and exchange
// only the records of differing buckets (StreamBuckets). Records carry
// their versions, so applying them both ways with Apply converges under
// LWW.
//
// A partition's sync point is the time up to which every replica of the
// partition is known to hold every record any of them held: the repairer
// sets it after a complete round with all replicas. With
// Options.PurgeNeedsSync, a tombstone (or expired item) is purged only once
// its purge base is before the sync point as well as TombstoneGrace ago, so
// a replica that was away can never bring a purged delete back: while it is
// unreachable, rounds do not complete and the sync point stays behind.

// MaxBuckets bounds BucketDigests' bucket count.
const MaxBuckets = 1 << 16

// BucketOf returns the bucket, of n, of the item with Pebble key itemKey
// (EncodeKey). Buckets split a partition's key space by key hash, so each
// holds about 1/n of its records wherever they fall in key order.
func BucketOf(itemKey []byte, n int) int { return int(xxhash.Sum64(itemKey) % uint64(n)) }

// BucketDigests returns the digest of each of n hash buckets of partition
// (see BucketOf); they add up to the partition's digest. It reads the whole
// partition.
func (e *Engine) BucketDigests(partition uint32, n int) ([]PartitionDigest, error) {
	if n < 1 || n > MaxBuckets {
		return nil, fmt.Errorf("%w: %d buckets: want 1 to %d", ErrInvalidArgument, n, MaxBuckets)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	out := make([]PartitionDigest, n)
	lo, hi := partitionSpan(spaceItem, partition)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("engine: bucket digests: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: bucket digests %x: %w", it.Key(), err), it.Close())
		}
		s, err := decodeStored(v)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: bucket digests %x: %w", it.Key(), err), it.Close())
		}
		out[BucketOf(it.Key(), n)].add(recordHash(it.Key(), &s))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("engine: bucket digests: %w", err)
	}
	return out, nil
}

// StreamBuckets is StreamPartition restricted to the records whose bucket
// of n is in want.
func (e *Engine) StreamBuckets(partition uint32, n int, want map[int]bool, after []byte, fn func(Record) error) error {
	if n < 1 || n > MaxBuckets {
		return fmt.Errorf("%w: %d buckets: want 1 to %d", ErrInvalidArgument, n, MaxBuckets)
	}
	var buf []byte
	return e.StreamPartition(partition, after, func(r Record) error {
		buf = appendItemKey(buf[:0], r.Key)
		if !want[BucketOf(buf, n)] {
			return nil
		}
		return fn(r)
	})
}

// SyncPoint returns the partition's sync point in Unix nanoseconds (0 if
// none was ever set).
func (e *Engine) SyncPoint(partition uint32) (int64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	return e.syncPoint(partition)
}

func (e *Engine) syncPoint(partition uint32) (int64, error) {
	v, closer, err := e.db.Get(syncKey(partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("engine: sync point of partition %d: %w", partition, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: sync point of partition %d is %d bytes", ErrCorrupt, partition, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// SetSyncPoint records that every replica of partition held, by time at
// (Unix nanoseconds), every record any of them held before it. It only
// moves forward: an older time is ignored. It is durable when it returns.
func (e *Engine) SetSyncPoint(partition uint32, at int64) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	cur, err := e.syncPoint(partition)
	if err != nil || at <= cur {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(at))
	if err := e.db.Set(syncKey(partition), v[:], pebble.Sync); err != nil {
		return fmt.Errorf("engine: set sync point of partition %d: %w", partition, err)
	}
	return nil
}

func syncKey(partition uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{spaceSync}, partition)
}

// purgeCutoff is the latest purge base that partition's records may have
// to be purged now.
func (e *Engine) purgeCutoff(partition uint32, graceCutoff int64) (int64, error) {
	if !e.opts.PurgeNeedsSync {
		return graceCutoff, nil
	}
	sp, err := e.syncPoint(partition)
	if err != nil {
		return 0, err
	}
	return min(graceCutoff, sp-int64(e.opts.SyncSkew)), nil
}
