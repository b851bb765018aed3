// Package mapping turns DynamoDB items into Veltrix items: which attributes
// are the partition and sort key, how the item becomes a value, which
// attribute holds its expiry, and which items a filter keeps. Import and
// verify map items with the same code, so what verify expects is exactly
// what import wrote.
package mapping

import (
	"errors"
	"fmt"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// MaxItemBytes is DynamoDB's item size limit, 400 KB (409,600 bytes), as
// DynamoDB measures an item (ddb.Item.Size). A DynamoDB export cannot hold
// a larger item, so one is damaged input and rejected rather than stored.
// The limit applies to the source item, not to its encoding: a 390 KB item
// of binary attributes is 520 KB as JSON, and DynamoDB accepted it.
const MaxItemBytes = ddb.MaxItemSize

// MaxValueBytes is Veltrix's value limit, applied to the encoded value.
const MaxValueBytes = 64 << 20

// Encoding is how an item becomes a value.
type Encoding int

// The value encodings.
const (
	// Canonical is ddb.EncodeItem of the whole item.
	Canonical Encoding = iota
	// Attribute is the raw bytes of one attribute: S as UTF-8, B as is, N
	// as its canonical text.
	Attribute
	// JSON is ddb.ItemToJSON of the whole item.
	JSON
)

// Mapping maps source items to Veltrix items.
type Mapping struct {
	// Table is the Veltrix table written.
	Table string
	// CreateTable creates Table when it is absent.
	CreateTable bool
	// Keys names the key attributes.
	Keys ddb.KeySchema
	// Encoding is the value encoding; ValueAttr its attribute for Attribute.
	Encoding  Encoding
	ValueAttr string
	// TTLAttr names the expiry attribute (Unix epoch seconds), if any.
	TTLAttr string
	// Filter keeps matching items; nil keeps all.
	Filter *Filter
}

// Kind is what became of a source record.
type Kind int

// The outcomes of Map.
const (
	// Put writes Value (with Expire) at the key.
	Put Kind = iota
	// Delete removes the key.
	Delete
	// SkipExpired is an item whose TTL has passed: skipped and counted. In
	// an incremental export it is applied as a Delete (Expired set) so an
	// older copy of the item does not stay live.
	SkipExpired
	// SkipFiltered is an item the filter dropped.
	SkipFiltered
	// Reject is a record that cannot be imported; Reason says why.
	Reject
)

// Result is a mapped record.
type Result struct {
	Kind Kind
	// PK and SK are the Veltrix partition and sort key (SK nil without a
	// sort key).
	PK, SK []byte
	// Value and Expire are the value and expiry of a Put.
	Value  []byte
	Expire time.Time
	// Version is the version the mutation is written with.
	Version uint64
	// Expired marks a Delete standing for an expired incremental image.
	Expired bool
	// Reason says why a record was rejected.
	Reason string
}

// FromProto checks a Mapping from the API and compiles it. Every problem is
// reported, each naming its field below prefix (e.g. "spec.mapping").
func FromProto(m *migratorv1.Mapping, prefix string) (*Mapping, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	if m == nil {
		return nil, fmt.Errorf("%s: required", prefix)
	}
	out := &Mapping{Table: m.GetTargetTable(), CreateTable: m.GetCreateTable(), TTLAttr: m.GetTtlAttribute()}
	if out.Table == "" {
		bad("target_table", "required")
	}
	keyAttr := func(field string, k *migratorv1.KeyAttribute, required bool) ddb.KeyAttribute {
		if k.GetName() == "" {
			if required {
				bad(field+".name", "required")
			} else if k.GetType() != migratorv1.KeyType_KEY_TYPE_UNSPECIFIED {
				bad(field+".name", "required when a type is given")
			}
			return ddb.KeyAttribute{}
		}
		a := ddb.KeyAttribute{Name: k.GetName()}
		switch k.GetType() {
		case migratorv1.KeyType_KEY_TYPE_S:
			a.Type = ddb.TypeS
		case migratorv1.KeyType_KEY_TYPE_N:
			a.Type = ddb.TypeN
		case migratorv1.KeyType_KEY_TYPE_B:
			a.Type = ddb.TypeB
		default:
			bad(field+".type", "must be KEY_TYPE_S, KEY_TYPE_N or KEY_TYPE_B")
		}
		return a
	}
	out.Keys.PartitionKey = keyAttr("partition_key", m.GetPartitionKey(), true)
	out.Keys.SortKey = keyAttr("sort_key", m.GetSortKey(), false)
	if out.Keys.SortKey.Name != "" && out.Keys.SortKey.Name == out.Keys.PartitionKey.Name {
		bad("sort_key.name", "is the partition key attribute %q too", out.Keys.SortKey.Name)
	}
	switch m.GetEncoding() {
	case migratorv1.ValueEncoding_VALUE_ENCODING_UNSPECIFIED, migratorv1.ValueEncoding_VALUE_ENCODING_CANONICAL:
		out.Encoding = Canonical
	case migratorv1.ValueEncoding_VALUE_ENCODING_ATTRIBUTE:
		out.Encoding = Attribute
		if out.ValueAttr = m.GetValueAttribute(); out.ValueAttr == "" {
			bad("value_attribute", "required with VALUE_ENCODING_ATTRIBUTE")
		}
	case migratorv1.ValueEncoding_VALUE_ENCODING_JSON:
		out.Encoding = JSON
	default:
		bad("encoding", "unknown encoding %d", m.GetEncoding())
	}
	if m.GetValueAttribute() != "" && out.Encoding != Attribute {
		bad("value_attribute", "only used with VALUE_ENCODING_ATTRIBUTE")
	}
	f, err := ParseFilter(m.GetFilter())
	if err != nil {
		bad("filter", "%v", err)
	}
	out.Filter = f
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// FullExportVersion is the version of every item of a full export: the
// export time in microseconds, logical part 0. All items of one snapshot
// share it, so re-importing the snapshot rewrites nothing (equal records
// are the same mutation), a later snapshot or a later CDC record wins, and
// an older one loses.
func FullExportVersion(exportTime time.Time) uint64 { return hlc.FromTime(exportTime, 0) }

// IncrementalVersion is the version of an incremental-export record: its
// WriteTimestampMicros, logical part 0. At equal versions a delete wins
// over a put (the storage engine's rule).
func IncrementalVersion(writeMicros int64) uint64 { return hlc.FromMicros(writeMicros, 0) }

// Map maps one export record. version is the full export's version
// (ignored for incremental records, which carry their own); now decides
// which TTLs have passed.
func (m *Mapping) Map(rec ddb.ExportRecord, incremental bool, version uint64, now time.Time) Result {
	if rec.Incremental() != incremental {
		if incremental {
			return reject("a full-export line (Item) in an incremental export")
		}
		return reject("an incremental-export line (Keys, NewImage, OldImage) in a full export")
	}
	if !incremental {
		r := m.mapItem(rec.Item, now)
		r.Version = version
		return r
	}
	if rec.WriteTimestampMicros <= 0 {
		return reject("Metadata.WriteTimestampMicros is 0; the record cannot be versioned")
	}
	v := IncrementalVersion(rec.WriteTimestampMicros)
	if rec.NewImage != nil {
		r := m.mapItem(rec.NewImage, now)
		r.Version = v
		if r.Kind == SkipExpired {
			r.Kind, r.Expired, r.Value, r.Expire = Delete, true, nil, time.Time{}
		}
		return r
	}
	pk, sk, err := m.Keys.Key(rec.Keys)
	if err != nil {
		return reject("Keys: " + err.Error())
	}
	return Result{Kind: Delete, PK: pk, SK: sk, Version: v}
}

// MapItem maps one item as a full export's item.
func (m *Mapping) MapItem(it ddb.Item, version uint64, now time.Time) Result {
	r := m.mapItem(it, now)
	r.Version = version
	return r
}

func (m *Mapping) mapItem(it ddb.Item, now time.Time) Result {
	if !m.Filter.Match(it) {
		return Result{Kind: SkipFiltered}
	}
	pk, sk, err := m.Keys.Key(it)
	if err != nil {
		return reject(err.Error())
	}
	if n := it.Size(); n > MaxItemBytes {
		return reject(fmt.Sprintf("oversize item: %d bytes as DynamoDB measures it, over DynamoDB's 400 KB (%d bytes) item limit", n, MaxItemBytes))
	}
	r := Result{Kind: Put, PK: pk, SK: sk}
	if m.TTLAttr != "" {
		// A TTL attribute that is absent or not a number is no expiry, as
		// in DynamoDB.
		if exp, ok := ddb.TTLExpiry(it[m.TTLAttr], now); ok {
			if !exp.After(now) {
				r.Kind = SkipExpired
				return r
			}
			r.Expire = exp
		}
	}
	switch m.Encoding {
	case Canonical:
		r.Value = ddb.EncodeItem(it)
	case JSON:
		b, err := ddb.ItemToJSON(it)
		if err != nil {
			return reject("encode as JSON: " + err.Error())
		}
		r.Value = b
	case Attribute:
		switch v := it[m.ValueAttr].(type) {
		case nil:
			return reject(fmt.Sprintf("item has no value attribute %q", m.ValueAttr))
		case ddb.S:
			r.Value = []byte(v)
		case ddb.B:
			r.Value = []byte(v)
		case ddb.N:
			r.Value = []byte(v.String())
		default:
			return reject(fmt.Sprintf("value attribute %q is %s; VALUE_ENCODING_ATTRIBUTE stores S, B or N", m.ValueAttr, v.Type()))
		}
	}
	if len(r.Value) > MaxValueBytes {
		return reject(fmt.Sprintf("oversize value: the encoded item is %d bytes, over Veltrix's %d bytes value limit", len(r.Value), MaxValueBytes))
	}
	return r
}

func reject(reason string) Result { return Result{Kind: Reject, Reason: reason} }
