package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Record is a versioned item or tombstone.
type Record struct {
	Key       Key
	Version   uint64
	Tombstone bool
	// ExpireAt is when the item expires, in Unix nanoseconds; 0 means never.
	// Tombstones carry none.
	ExpireAt int64
	// Value is the item's bytes; tombstones carry none.
	Value []byte
	// DeletedAt is, for a tombstone, when the delete was first written,
	// in Unix nanoseconds: its purge base. 0 means now (a new delete).
	// Anti-entropy and read repair carry it, so every replica purges a
	// tombstone at about the same time instead of copying it back to a
	// replica that already purged it. It takes no part in LWW or the
	// digest.
	DeletedAt int64
}

// Outcome says what Apply did with one record.
type Outcome uint8

const (
	// OutcomeApplied means the record replaced the stored one (or there was
	// none).
	OutcomeApplied Outcome = iota + 1
	// OutcomeSuperseded means the stored record won under the LWW rule, or
	// was the same mutation; nothing was written.
	OutcomeSuperseded
)

func (o Outcome) String() string {
	switch o {
	case OutcomeApplied:
		return "applied"
	case OutcomeSuperseded:
		return "superseded"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// size is what r counts toward Options.MaxBatchBytes and
// Options.MaxIngestBytes: its key, largest header and value.
func (r *Record) size() int {
	return itemKeyOverhead + len(r.Key.PartitionKey) + len(r.Key.SortKey) + maxHeaderLen + len(r.Value)
}

// PartitionDigest summarizes the records of one partition, independent of the
// order they were written in. See the package documentation.
type PartitionDigest struct {
	Count uint64
	Sum   uint64
}

const (
	flagTombstone byte = 1 << 0
	flagExpiry    byte = 1 << 1
	knownFlags         = flagTombstone | flagExpiry

	versionLen = 8
)

// stored is a decoded stored value.
type stored struct {
	version   uint64
	tombstone bool
	expireAt  int64 // 0 = never
	deletedAt int64 // when the tombstone was first written (Record.DeletedAt)
	value     []byte
}

func recordState(r *Record, deletedAt int64) stored {
	s := stored{version: r.Version, tombstone: r.Tombstone, expireAt: r.ExpireAt, value: r.Value}
	if r.Tombstone {
		s.deletedAt = deletedAt
		if r.DeletedAt > 0 && r.DeletedAt < deletedAt {
			s.deletedAt = r.DeletedAt
		}
	}
	return s
}

func (s *stored) flags() byte {
	var f byte
	if s.tombstone {
		f |= flagTombstone
	}
	if s.expireAt != 0 {
		f |= flagExpiry
	}
	return f
}

func (s *stored) headerLen() int {
	n := versionLen + 1
	if s.expireAt != 0 {
		n += 8
	}
	if s.tombstone {
		n += 8
	}
	return n
}

func (s *stored) encodedLen() int { return s.headerLen() + len(s.value) }

// putHeader writes the header into dst, which must be headerLen bytes.
func (s *stored) putHeader(dst []byte) {
	binary.BigEndian.PutUint64(dst, s.version)
	dst[versionLen] = s.flags()
	off := versionLen + 1
	if s.expireAt != 0 {
		binary.BigEndian.PutUint64(dst[off:], uint64(s.expireAt))
		off += 8
	}
	if s.tombstone {
		binary.BigEndian.PutUint64(dst[off:], uint64(s.deletedAt))
	}
}

func (s *stored) encode() []byte {
	b := make([]byte, s.encodedLen())
	s.putHeader(b)
	copy(b[s.headerLen():], s.value)
	return b
}

// decodeStored parses a stored value. The result's value aliases b.
func decodeStored(b []byte) (stored, error) {
	if len(b) < versionLen+1 {
		return stored{}, fmt.Errorf("%w: stored value is %d bytes, shorter than a header", ErrCorrupt, len(b))
	}
	s := stored{version: binary.BigEndian.Uint64(b)}
	f := b[versionLen]
	if f&^knownFlags != 0 {
		return stored{}, fmt.Errorf("%w: stored value has unknown flags %#x", ErrCorrupt, f)
	}
	off := versionLen + 1
	if f&flagExpiry != 0 {
		if len(b) < off+8 {
			return stored{}, fmt.Errorf("%w: stored value truncated in its expiry", ErrCorrupt)
		}
		s.expireAt = int64(binary.BigEndian.Uint64(b[off:]))
		off += 8
		if s.expireAt == 0 {
			return stored{}, fmt.Errorf("%w: stored value has a zero expiry", ErrCorrupt)
		}
	}
	if f&flagTombstone != 0 {
		if len(b) < off+8 {
			return stored{}, fmt.Errorf("%w: stored tombstone truncated in its delete time", ErrCorrupt)
		}
		s.tombstone = true
		s.deletedAt = int64(binary.BigEndian.Uint64(b[off:]))
		off += 8
		if len(b) != off {
			return stored{}, fmt.Errorf("%w: stored tombstone has %d value bytes", ErrCorrupt, len(b)-off)
		}
	}
	s.value = b[off:]
	return s, nil
}

func (s *stored) expired(now int64) bool { return s.expireAt != 0 && s.expireAt <= now }

// purgeBase returns the time TombstoneGrace is counted from, if the record is
// ever purged.
func (s *stored) purgeBase() (int64, bool) {
	switch {
	case s.tombstone:
		return s.deletedAt, true
	case s.expireAt != 0:
		return s.expireAt, true
	}
	return 0, false
}

// record returns s as a Record for k, copying the value.
func (s *stored) record(k Key) Record {
	r := Record{Key: k, Version: s.version, Tombstone: s.tombstone, ExpireAt: s.expireAt, DeletedAt: s.deletedAt}
	if !s.tombstone {
		r.Value = bytes.Clone(s.value)
		if r.Value == nil {
			r.Value = []byte{}
		}
	}
	return r
}

// sharedRecord is record without the copy: the value is s's (see
// GetBatchShared).
func (s *stored) sharedRecord(k Key) Record {
	r := Record{Key: k, Version: s.version, Tombstone: s.tombstone, ExpireAt: s.expireAt, DeletedAt: s.deletedAt}
	if !s.tombstone {
		r.Value = s.value
		if r.Value == nil {
			r.Value = []byte{}
		}
	}
	return r
}

// compareLWW orders two records under the LWW rule: positive if a wins over
// b, 0 if they are the same mutation. It reads version, tombstone, value and
// expiry, never deletedAt.
func compareLWW(a, b *stored) int {
	switch {
	case a.version != b.version:
		if a.version > b.version {
			return 1
		}
		return -1
	case a.tombstone != b.tombstone:
		if a.tombstone {
			return 1
		}
		return -1
	}
	if c := bytes.Compare(a.value, b.value); c != 0 {
		return c
	}
	// 0 (never) is the latest expiry; uint64(0-1) is the largest.
	ea, eb := uint64(a.expireAt)-1, uint64(b.expireAt)-1
	switch {
	case ea > eb:
		return 1
	case ea < eb:
		return -1
	}
	return 0
}

// recordHash is a record's contribution to its partition's digest. It covers
// the item key and everything LWW compares, not the local delete time.
func recordHash(itemKey []byte, s *stored) uint64 {
	var hdr [4 + versionLen + 1 + 8]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(itemKey)))
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write(hdr[:4])
	_, _ = d.Write(itemKey)
	binary.BigEndian.PutUint64(hdr[4:], s.version)
	hdr[4+versionLen] = s.flags()
	n := 4 + versionLen + 1
	if s.expireAt != 0 {
		binary.BigEndian.PutUint64(hdr[n:], uint64(s.expireAt))
		n += 8
	}
	_, _ = d.Write(hdr[4:n])
	_, _ = d.Write(s.value)
	return d.Sum64()
}

func (d *PartitionDigest) add(h uint64) { d.Count++; d.Sum += h }
func (d *PartitionDigest) sub(h uint64) { d.Count--; d.Sum -= h }

func encodeDigest(d PartitionDigest) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), d.Count)
	return binary.BigEndian.AppendUint64(b, d.Sum)
}

func decodeDigest(b []byte) (PartitionDigest, error) {
	if len(b) != 16 {
		return PartitionDigest{}, fmt.Errorf("%w: digest is %d bytes, want 16", ErrCorrupt, len(b))
	}
	return PartitionDigest{Count: binary.BigEndian.Uint64(b), Sum: binary.BigEndian.Uint64(b[8:])}, nil
}
