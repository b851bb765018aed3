// Package kvrecord turns a KV API mutation (kvv1.Mutation) into the storage
// record (storagev1.Record) every replica stores. It is the one conversion
// of the write path: the router's Put, Delete and BatchWrite use it, and so
// does the migrator's bulk import (which sends records to the storage nodes'
// Ingest itself), so an item imported either way is stored byte for byte
// the same: same validation, same partition, same version, same expiry
// (a table's default TTL applied when the mutation carries none).
package kvrecord

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits on keys and values (DynamoDB's key limits; 64 MiB values).
const (
	MaxPartitionKey = 2048
	MaxSortKey      = 1024
	MaxValue        = 64 << 20
	// DefaultMaxVersionSkew is Builder.MaxVersionSkew's default.
	DefaultMaxVersionSkew = time.Hour
)

// ErrInvalid marks a mutation that can never be stored; use errors.Is.
// Its text has no package prefix because it is what clients read in an
// InvalidArgument status ("invalid argument: mutations[3].value: ...").
var ErrInvalid = errors.New("invalid argument")

// Invalidf returns an error wrapping ErrInvalid.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Field names a request field in an error message: name, name[index] when
// index >= 0, then .sub. It is formatted (through %s) only when an error is
// reported, so the success path formats nothing.
type Field struct {
	name  string
	index int
	sub   string
}

// Named is the field called name.
func Named(name string) Field { return Field{name: name, index: -1} }

// Index is element index of the repeated field called name.
func Index(name string, index int) Field { return Field{name: name, index: index} }

// Dot is f's subfield sub.
func (f Field) Dot(sub string) Field {
	if f.sub != "" {
		sub = f.sub + "." + sub
	}
	f.sub = sub
	return f
}

func (f Field) String() string {
	s := f.name
	if f.index >= 0 {
		s += "[" + strconv.Itoa(f.index) + "]"
	}
	if f.sub != "" {
		s += "." + f.sub
	}
	return s
}

// Builder converts mutations into records.
type Builder struct {
	// Clock versions mutations that carry none, and is the reference of
	// the version skew check. Required.
	Clock *hlc.Clock
	// MaxVersionSkew is how far ahead of Clock a caller-supplied version
	// may be (or no later clock-versioned write could replace the item for
	// that long). Default DefaultMaxVersionSkew.
	MaxVersionSkew time.Duration
	// Now is the time a table's default TTL counts from. Default time.Now.
	Now func() time.Time
}

// CheckKeyParts checks a key's sizes; where names the key in messages.
func CheckKeyParts(pk, sk []byte, where Field) error {
	switch {
	case len(pk) == 0:
		return Invalidf("%s.partition_key: empty; every item needs a partition key", where)
	case len(pk) > MaxPartitionKey:
		return Invalidf("%s.partition_key: %d bytes, at most %d", where, len(pk), MaxPartitionKey)
	case len(sk) > MaxSortKey:
		return Invalidf("%s.sort_key: %d bytes, at most %d", where, len(sk), MaxSortKey)
	}
	return nil
}

// Key validates k's key parts and returns its storage key in table t of a
// cluster of partitions partitions (k's table name is the caller's to
// resolve into t).
func Key(t topology.Table, partitions uint32, k *kvv1.Key, where Field) (*storagev1.Key, error) {
	if k == nil {
		return nil, Invalidf("%s: missing", where)
	}
	if err := CheckKeyParts(k.GetPartitionKey(), k.GetSortKey(), where); err != nil {
		return nil, err
	}
	return &storagev1.Key{
		Partition:    placement.PartitionOf(t.ID, k.GetPartitionKey(), partitions),
		TableId:      t.ID,
		PartitionKey: k.GetPartitionKey(),
		SortKey:      k.GetSortKey(),
	}, nil
}

// Record builds the storage record of mutation m of table t; where names
// the mutation in messages ("mutations[3]").
func (b Builder) Record(t topology.Table, partitions uint32, m *kvv1.Mutation, where Field) (*storagev1.Record, error) {
	var del bool
	switch m.GetType() {
	case kvv1.Mutation_MUTATION_TYPE_PUT:
	case kvv1.Mutation_MUTATION_TYPE_DELETE:
		if len(m.GetValue()) > 0 || m.GetExpireTime() != nil {
			return nil, Invalidf("%s: a DELETE carries no value or expire_time", where)
		}
		del = true
	default:
		return nil, Invalidf("%s.type: must be PUT or DELETE", where)
	}
	sk, err := Key(t, partitions, m.GetKey(), where.Dot("key"))
	if err != nil {
		return nil, err
	}
	if err := b.checkVersion(m.GetVersion(), where); err != nil {
		return nil, err
	}
	rec := &storagev1.Record{Key: sk, Version: m.GetVersion(), Tombstone: del}
	if !del {
		if len(m.GetValue()) > MaxValue {
			return nil, Invalidf("%s.value: %d bytes, at most %d", where, len(m.GetValue()), MaxValue)
		}
		rec.Value = m.GetValue()
		if rec.ExpireUnixNanos, err = b.expiryNanos(m.GetExpireTime(), t, where); err != nil {
			return nil, err
		}
	}
	if rec.Version == 0 {
		rec.Version = b.Clock.Now()
	}
	return rec, nil
}

// checkVersion refuses a caller-supplied version so far ahead of the clock
// that no clock-versioned write could replace it for longer than
// MaxVersionSkew.
func (b Builder) checkVersion(v uint64, where Field) error {
	if v == 0 {
		return nil
	}
	now := b.Clock.Now()
	skew := b.MaxVersionSkew
	if skew == 0 {
		skew = DefaultMaxVersionSkew
	}
	ahead := time.Duration(hlc.Micros(v)-hlc.Micros(now)) * time.Microsecond
	if ahead > skew {
		return Invalidf("%s.version: %d (%s) is %s ahead of the router's clock (%s); at most %s (--max-version-skew) is allowed, or no later write could replace the item",
			where, v, hlc.Time(v).Format(time.RFC3339Nano), ahead.Round(time.Second), hlc.Time(now).Format(time.RFC3339), skew)
	}
	return nil
}

// MaxExpiry is the latest storable expiry: expiries are int64 Unix
// nanoseconds.
var MaxExpiry = time.Unix(0, math.MaxInt64).UTC()

// CheckExpireTime refuses expiries that cannot be stored as positive int64
// Unix nanoseconds: before 1970 (0 means "never") or after 2262-04-11. It
// checks the seconds before converting, because AsTime().UnixNano()
// silently wraps for those (1600 would read back as 2184).
func CheckExpireTime(ts *timestamppb.Timestamp, where Field) (int64, error) {
	if err := ts.CheckValid(); err != nil {
		return 0, Invalidf("%s.expire_time: %v", where, err)
	}
	switch sec := ts.GetSeconds(); {
	case sec < 0 || (sec == 0 && ts.GetNanos() == 0):
		return 0, Invalidf("%s.expire_time: %s is not after 1970-01-01T00:00:00Z", where, ts.AsTime().Format(time.RFC3339Nano))
	case ts.AsTime().After(MaxExpiry):
		return 0, Invalidf("%s.expire_time: %s is after %s, the latest expiry that can be stored", where, ts.AsTime().Format(time.RFC3339Nano), MaxExpiry.Format(time.RFC3339Nano))
	}
	return ts.AsTime().UnixNano(), nil
}

func (b Builder) expiryNanos(ts *timestamppb.Timestamp, t topology.Table, where Field) (int64, error) {
	if ts == nil {
		if t.DefaultTTL > 0 {
			now := time.Now
			if b.Now != nil {
				now = b.Now
			}
			return now().Add(t.DefaultTTL).UnixNano(), nil
		}
		return 0, nil
	}
	return CheckExpireTime(ts, where)
}
