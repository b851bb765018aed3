package engine

import (
	"encoding/binary"
	"fmt"
)

// Limits on items. See the package documentation.
const (
	MaxPartitionKeyLen = 2048
	MaxSortKeyLen      = 1024
	MaxValueLen        = 64 << 20
)

// Key spaces: the first byte of every Pebble key.
const (
	spaceItem   byte = 'd'
	spaceDigest byte = 'g'
	spaceHint   byte = 'h'
	spaceMeta   byte = 'm'
	spacePurge  byte = 'x'
	spaceSync   byte = 'y'
)

// itemKeyOverhead is the size of an item key less its partition and sort keys.
const itemKeyOverhead = 1 + 4 + 8 + 2

// Key addresses one item. Partition is the cluster partition (a hash of the
// table id and partition key, mod P), computed by the caller.
type Key struct {
	Partition    uint32
	TableID      uint64
	PartitionKey []byte
	SortKey      []byte
}

// ValidateKey reports whether k is within the engine's limits. The error
// wraps ErrInvalidArgument.
func ValidateKey(k Key) error {
	if err := checkKey(k); err != "" {
		return fmt.Errorf("%w: %s", ErrInvalidArgument, err)
	}
	return nil
}

func checkKey(k Key) string {
	switch {
	case len(k.PartitionKey) == 0:
		return "partition key is empty"
	case len(k.PartitionKey) > MaxPartitionKeyLen:
		return fmt.Sprintf("partition key is %d bytes, limit %d", len(k.PartitionKey), MaxPartitionKeyLen)
	case len(k.SortKey) > MaxSortKeyLen:
		return fmt.Sprintf("sort key is %d bytes, limit %d", len(k.SortKey), MaxSortKeyLen)
	}
	return ""
}

// EncodeKey returns the engine's encoding of k (the Pebble key of the item).
// StreamPartition takes the encoding of the last record a caller received as
// its resume point. k must be valid (see ValidateKey).
func EncodeKey(k Key) []byte {
	return appendItemKey(make([]byte, 0, itemKeyOverhead+len(k.PartitionKey)+len(k.SortKey)), k)
}

// DecodeKey parses an encoding made by EncodeKey. The returned key's slices
// alias b. Errors wrap ErrInvalidArgument.
func DecodeKey(b []byte) (Key, error) {
	k, ok := decodeItemKey(b)
	if !ok {
		return Key{}, fmt.Errorf("%w: malformed item key (%d bytes)", ErrInvalidArgument, len(b))
	}
	if msg := checkKey(k); msg != "" {
		return Key{}, fmt.Errorf("%w: item key: %s", ErrInvalidArgument, msg)
	}
	return k, nil
}

func appendItemKey(dst []byte, k Key) []byte {
	dst = appendPKPrefix(dst, k.Partition, k.TableID, k.PartitionKey)
	return append(dst, k.SortKey...)
}

// appendPKPrefix appends the prefix shared by every item of one partition key.
func appendPKPrefix(dst []byte, partition uint32, table uint64, pk []byte) []byte {
	dst = append(dst, spaceItem)
	dst = binary.BigEndian.AppendUint32(dst, partition)
	dst = binary.BigEndian.AppendUint64(dst, table)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(pk)))
	return append(dst, pk...)
}

func decodeItemKey(b []byte) (Key, bool) {
	if len(b) < itemKeyOverhead || b[0] != spaceItem {
		return Key{}, false
	}
	n := int(binary.BigEndian.Uint16(b[13:15]))
	if len(b) < itemKeyOverhead+n {
		return Key{}, false
	}
	return Key{
		Partition:    binary.BigEndian.Uint32(b[1:5]),
		TableID:      binary.BigEndian.Uint64(b[5:13]),
		PartitionKey: b[itemKeyOverhead : itemKeyOverhead+n],
		SortKey:      b[itemKeyOverhead+n:],
	}, true
}

// partitionSpan returns the bounds [lo, hi) of a partition within a key space.
func partitionSpan(space byte, partition uint32) (lo, hi []byte) {
	lo = binary.BigEndian.AppendUint32([]byte{space}, partition)
	if partition == ^uint32(0) {
		return lo, []byte{space + 1}
	}
	return lo, binary.BigEndian.AppendUint32([]byte{space}, partition+1)
}

func digestKey(partition uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{spaceDigest}, partition)
}

// purgeKey is the purge-index entry of an item whose tombstone was written, or
// whose expiry falls, at base (Unix nanoseconds).
func purgeKey(itemKey []byte, base int64) []byte {
	dst := make([]byte, 0, 1+4+8+len(itemKey))
	dst = append(dst, spacePurge)
	dst = append(dst, itemKey[1:5]...) // partition
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	return append(dst, itemKey...)
}

// decodePurgeKey returns the partition, base time and item key of a purge
// index entry.
func decodePurgeKey(b []byte) (partition uint32, base int64, itemKey []byte, ok bool) {
	if len(b) < 1+4+8+itemKeyOverhead || b[0] != spacePurge {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint32(b[1:5]), int64(binary.BigEndian.Uint64(b[5:13])), b[13:], true
}

// successor returns the smallest key greater than every key with prefix p, or
// nil if there is none (p is all 0xff).
func successor(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			s := append([]byte(nil), p[:i+1]...)
			s[i]++
			return s
		}
	}
	return nil
}

// immediateSuccessor returns the smallest key greater than k.
func immediateSuccessor(k []byte) []byte {
	return append(append(make([]byte, 0, len(k)+1), k...), 0)
}
