package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// Get returns the record stored under k. Tombstones are returned (found,
// with Tombstone set) so replicas can compare versions; an expired item reads
// as absent. The returned record's Value is the caller's to keep.
func (e *Engine) Get(k Key) (Record, bool, error) {
	if msg := checkKey(k); msg != "" {
		return Record{}, false, fmt.Errorf("%w: %s", ErrInvalidArgument, msg)
	}
	if err := e.enter(); err != nil {
		return Record{}, false, err
	}
	defer e.closeMu.RUnlock()
	return e.get(k, e.nowNanos(), false)
}

// GetBatch is Get for many keys; recs[i] and found[i] answer keys[i]. An
// invalid key fails the whole call, naming its index.
func (e *Engine) GetBatch(keys []Key) ([]Record, []bool, error) {
	return e.getBatch(keys, false)
}

// GetBatchShared is GetBatch for a caller that only reads the values (to
// encode them in an answer): a value small enough for the cache is the
// cached slice itself, shared with the cache and every other reader, so
// the caller must never modify it nor hand it to code that might. It saves
// a copy of every such value (BatchGet's hot path).
func (e *Engine) GetBatchShared(keys []Key) ([]Record, []bool, error) {
	return e.getBatch(keys, true)
}

func (e *Engine) getBatch(keys []Key, shared bool) ([]Record, []bool, error) {
	if err := checkKeys(keys); err != nil {
		return nil, nil, err
	}
	if err := e.enter(); err != nil {
		return nil, nil, err
	}
	defer e.closeMu.RUnlock()
	now := e.nowNanos()
	recs := make([]Record, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		var err error
		if recs[i], found[i], err = e.get(k, now, shared); err != nil {
			return nil, nil, fmt.Errorf("key %d: %w", i, err)
		}
	}
	return recs, found, nil
}

func checkKeys(keys []Key) error {
	var msgs []string
	bad := 0
	for i, k := range keys {
		if msg := checkKey(k); msg != "" {
			if bad++; bad <= maxListedErrors {
				msgs = append(msgs, fmt.Sprintf("key %d: %s", i, msg))
			}
		}
	}
	if bad > maxListedErrors {
		msgs = append(msgs, fmt.Sprintf("and %d more invalid keys", bad-maxListedErrors))
	}
	if bad > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidArgument, strings.Join(msgs, "; "))
	}
	return nil
}

// get reads k. shared: the record's value may be a cached slice (see
// GetBatchShared); otherwise it is the caller's copy.
func (e *Engine) get(k Key, now int64, shared bool) (Record, bool, error) {
	e.st.gets.Add(1)
	ik := appendItemKey(make([]byte, 0, itemKeyOverhead+len(k.PartitionKey)+len(k.SortKey)), k)
	var rec Record
	found := false
	err := e.readItem(ik, func(s stored, stable bool) {
		if s.expired(now) {
			return
		}
		if shared && stable {
			rec, found = s.sharedRecord(k), true
		} else {
			rec, found = s.record(k), true
		}
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("engine: get %x: %w", ik, err)
	}
	if found {
		e.st.getsFound.Add(1)
		e.st.bytesRead.Add(uint64(len(rec.Value)))
	}
	return rec, found, nil
}

// readItem calls fn with the stored record under itemKey, if there is one,
// through the cache. stable says that the record's value is a slice nobody
// modifies (the cache's copy, or one made for it): fn may keep it to read.
// Otherwise it is valid only during fn, which must copy what it keeps.
func (e *Engine) readItem(itemKey []byte, fn func(s stored, stable bool)) error {
	if e.cache == nil {
		return e.readPebble(itemKey, fn)
	}
	epoch := e.cacheEpoch.Load()
	ck := cacheKey(epoch, itemKey)
	if v, ok := e.cache.Get(ck); ok {
		e.st.cacheHits.Add(1)
		s, err := decodeStored(v)
		if err != nil {
			return err
		}
		fn(s, true)
		return nil
	}
	e.st.cacheMisses.Add(1)
	h := keyHash(itemKey)
	st := &e.stripes[h%cacheStripes]
	gen := e.gens.of(h).Load()
	v, closer, err := e.db.Get(itemKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(v) > e.opts.CacheMaxItemBytes {
		s, err := decodeStored(v)
		if err == nil {
			fn(s, false)
		}
		return errors.Join(err, closer.Close())
	}
	// The copy the cache keeps is the one fn reads (and a shared read
	// keeps): decoded from it, not from Pebble's buffer.
	owned := bytes.Clone(v)
	if err := closer.Close(); err != nil {
		return err
	}
	s, err := decodeStored(owned)
	if err != nil {
		return err
	}
	// Fill only if no write to this stripe became visible while we read:
	// otherwise v may be older than an acknowledged write.
	st.mu.Lock()
	if e.gens.of(h).Load() == gen && e.cacheEpoch.Load() == epoch {
		e.cache.Set(ck, owned)
	}
	st.mu.Unlock()
	fn(s, true)
	return nil
}

func (e *Engine) readPebble(itemKey []byte, fn func(s stored, stable bool)) error {
	v, closer, err := e.db.Get(itemKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s, err := decodeStored(v)
	if err == nil {
		fn(s, false)
	}
	return errors.Join(err, closer.Close())
}

// ScanOptions select a range of one partition key's items for Scan.
type ScanOptions struct {
	Partition    uint32
	TableID      uint64
	PartitionKey []byte
	// Start and End bound the sort keys to [Start, End). A nil End means no
	// upper bound.
	Start, End []byte
	// Prefix keeps only sort keys that start with it; combined with Start
	// and End it narrows their range.
	Prefix []byte
	// Limit caps the records returned; 0 means no cap.
	Limit int
	// MaxBytes stops the scan once the values returned add up to at least
	// this many bytes (at least one record is always returned); 0 means no
	// cap.
	MaxBytes int
	// Reverse returns records in descending sort-key order.
	Reverse bool
	// Resume continues a scan from the resume token a previous call with the
	// same partition key and direction returned.
	Resume []byte
	// IncludeTombstones also returns tombstones (they count toward Limit),
	// so a caller merging several replicas' pages can tell a delete from a
	// write a replica missed. Expired items are never returned.
	IncludeTombstones bool
}

const resumeTokenVersion = 1

// Scan returns the live items of one partition key in sort-key order,
// skipping tombstones and expired items. resume is nil when the range is
// exhausted; otherwise pass it as ScanOptions.Resume to continue.
func (e *Engine) Scan(o ScanOptions) (recs []Record, resume []byte, err error) {
	if msg := checkKey(Key{PartitionKey: o.PartitionKey}); msg != "" {
		return nil, nil, fmt.Errorf("%w: scan: %s", ErrInvalidArgument, msg)
	}
	if o.Limit < 0 || o.MaxBytes < 0 {
		return nil, nil, fmt.Errorf("%w: scan: negative Limit (%d) or MaxBytes (%d)", ErrInvalidArgument, o.Limit, o.MaxBytes)
	}
	base := appendPKPrefix(nil, o.Partition, o.TableID, o.PartitionKey)
	scope := xxhash.Sum64(base)
	lower, upper := o.Start, o.End
	if o.Prefix != nil {
		if bytes.Compare(o.Prefix, lower) > 0 {
			lower = o.Prefix
		}
		if pe := successor(o.Prefix); pe != nil && (upper == nil || bytes.Compare(pe, upper) < 0) {
			upper = pe
		}
	}
	lo := append(bytes.Clone(base), lower...)
	var hi []byte
	if upper != nil {
		hi = append(bytes.Clone(base), upper...)
	} else {
		hi = successor(base)
	}
	if o.Resume != nil {
		last, err := decodeResume(o.Resume, scope, o.Reverse)
		if err != nil {
			return nil, nil, err
		}
		pos := append(bytes.Clone(base), last...)
		if o.Reverse {
			if bytes.Compare(pos, hi) < 0 {
				hi = pos
			}
		} else if p := immediateSuccessor(pos); bytes.Compare(p, lo) > 0 {
			lo = p
		}
	}
	if bytes.Compare(lo, hi) >= 0 {
		return nil, nil, nil
	}

	if err := e.enter(); err != nil {
		return nil, nil, err
	}
	defer e.closeMu.RUnlock()
	e.st.scans.Add(1)
	now := e.nowNanos()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: scan: %w", err)
	}
	step := it.Next
	ok := it.First()
	if o.Reverse {
		step, ok = it.Prev, it.Last()
	}
	size := 0
	full := false
	for ; ok; ok = step() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("engine: scan %x: %w", it.Key(), err), it.Close())
		}
		s, err := decodeStored(v)
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("engine: scan %x: %w", it.Key(), err), it.Close())
		}
		if s.tombstone && !o.IncludeTombstones || !s.tombstone && s.expired(now) {
			continue
		}
		if full {
			// Another live record exists past the page.
			last := recs[len(recs)-1].Key.SortKey
			resume = encodeResume(scope, o.Reverse, last)
			break
		}
		ik := bytes.Clone(it.Key())
		k, _ := decodeItemKey(ik)
		recs = append(recs, s.record(k))
		size += len(s.value)
		if (o.Limit > 0 && len(recs) >= o.Limit) || (o.MaxBytes > 0 && size >= o.MaxBytes) {
			full = true
		}
	}
	if err := it.Close(); err != nil {
		return nil, nil, fmt.Errorf("engine: scan: %w", err)
	}
	e.st.scanRecords.Add(uint64(len(recs)))
	e.st.bytesRead.Add(uint64(size))
	return recs, resume, nil
}

func encodeResume(scope uint64, reverse bool, sortKey []byte) []byte {
	b := make([]byte, 0, 2+8+len(sortKey))
	var dir byte
	if reverse {
		dir = 1
	}
	b = append(b, resumeTokenVersion, dir)
	b = binary.BigEndian.AppendUint64(b, scope)
	return append(b, sortKey...)
}

func decodeResume(tok []byte, scope uint64, reverse bool) ([]byte, error) {
	if len(tok) < 10 || tok[0] != resumeTokenVersion || tok[1] > 1 {
		return nil, fmt.Errorf("%w: malformed resume token", ErrInvalidArgument)
	}
	if binary.BigEndian.Uint64(tok[2:]) != scope {
		return nil, fmt.Errorf("%w: resume token is for another partition key", ErrInvalidArgument)
	}
	if (tok[1] == 1) != reverse {
		return nil, fmt.Errorf("%w: resume token is for the other scan direction", ErrInvalidArgument)
	}
	if len(tok)-10 > MaxSortKeyLen {
		return nil, fmt.Errorf("%w: resume token sort key is %d bytes, limit %d", ErrInvalidArgument, len(tok)-10, MaxSortKeyLen)
	}
	return tok[10:], nil
}

// StreamPartition calls fn with every record of a partition in key order:
// items, tombstones and expired items not yet purged, as a replica needs
// them to converge. after is nil to start at the beginning, or
// EncodeKey(r.Key) of the last record r a previous stream delivered, to
// resume after it. A record present for the whole stream is delivered
// exactly once; one written during the stream may or may not be. The stream
// stops at the first error fn returns, and StreamPartition returns it as is.
// fn may keep the records.
func (e *Engine) StreamPartition(partition uint32, after []byte, fn func(Record) error) error {
	lo, hi := partitionSpan(spaceItem, partition)
	if after != nil {
		k, err := DecodeKey(after)
		if err != nil {
			return fmt.Errorf("stream partition %d: resume point: %w", partition, err)
		}
		if k.Partition != partition {
			return fmt.Errorf("%w: stream partition %d: resume point is in partition %d", ErrInvalidArgument, partition, k.Partition)
		}
		lo = immediateSuccessor(after)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	for {
		next, err := e.streamSome(lo, hi, fn)
		if err != nil || next == nil {
			return err
		}
		lo = next
	}
}

// streamSome streams up to opts.streamRefresh records from lo and returns
// where to continue, or nil at the end. A fresh iterator per chunk keeps a
// slow consumer from pinning memtables and sstables for the whole stream.
func (e *Engine) streamSome(lo, hi []byte, fn func(Record) error) ([]byte, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("engine: stream: %w", err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		ik := bytes.Clone(it.Key())
		if n == e.opts.streamRefresh {
			return ik, it.Close()
		}
		n++
		k, ok := decodeItemKey(ik)
		if !ok {
			return nil, errors.Join(fmt.Errorf("%w: item key %x", ErrCorrupt, ik), it.Close())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: stream %x: %w", ik, err), it.Close())
		}
		s, err := decodeStored(v)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: stream %x: %w", ik, err), it.Close())
		}
		rec := s.record(k)
		e.st.streamRecords.Add(1)
		e.st.bytesRead.Add(uint64(len(rec.Value)))
		if err := fn(rec); err != nil {
			if cerr := it.Close(); cerr != nil {
				return nil, errors.Join(err, cerr)
			}
			return nil, err
		}
	}
	return nil, it.Close()
}

// Digest returns the partition's digest, which covers every record
// StreamPartition would deliver. Two replicas holding the same records have
// equal digests.
func (e *Engine) Digest(partition uint32) (PartitionDigest, error) {
	if err := e.enter(); err != nil {
		return PartitionDigest{}, err
	}
	defer e.closeMu.RUnlock()
	v, closer, err := e.db.Get(digestKey(partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return PartitionDigest{}, nil
	}
	if err != nil {
		return PartitionDigest{}, fmt.Errorf("engine: digest of partition %d: %w", partition, err)
	}
	d, err := decodeDigest(v)
	return d, errors.Join(err, closer.Close())
}

// Digests returns the digest of every partition holding records.
func (e *Engine) Digests() (map[uint32]PartitionDigest, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	m, err := e.loadDigests()
	if err != nil {
		return nil, fmt.Errorf("engine: digests: %w", err)
	}
	return m, nil
}
