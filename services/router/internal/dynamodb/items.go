package dynamodb

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// table is a table the endpoint serves: a Veltrix table with a DynamoDB key
// schema, resolved against one view.
type table struct {
	topology.Table
	Keys ddb.KeySchema
	view *cluster.View
}

// table resolves a TableName. Tables without a key schema (plain key-value
// tables made through the gRPC API) are not DynamoDB tables.
func (h *Handler) table(name string) (*table, error) {
	if name == "" {
		return nil, validationf("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null")
	}
	if err := topology.ValidateTableName(name); err != nil {
		return nil, validationf("1 validation error detected: Value '%s' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 3 and 255", name)
	}
	v, err := h.b.View()
	if err != nil {
		return nil, err
	}
	t, ok := v.Snapshot.Tables[name]
	if !ok {
		return nil, notFoundf("Requested resource not found: Table: %s not found", name)
	}
	ks, err := keySchema(t)
	if err != nil {
		return nil, err
	}
	return &table{Table: t, Keys: ks, view: v}, nil
}

// keySchema is the DynamoDB key schema of a Veltrix table.
func keySchema(t topology.Table) (ddb.KeySchema, error) {
	if t.KeySchema == nil || t.KeySchema.PartitionKey.Name == "" {
		return ddb.KeySchema{}, validationf("table %s has no DynamoDB key schema (it was created as a plain key-value table through the gRPC API); create it through the DynamoDB endpoint, AdminService with a key_schema, or a migrator import", t.Name)
	}
	var ks ddb.KeySchema
	var err error
	ks.PartitionKey.Name = t.KeySchema.PartitionKey.Name
	if ks.PartitionKey.Type, err = ddb.ParseType(t.KeySchema.PartitionKey.Type); err != nil {
		return ks, internalf("table %s: partition key type: %v", t.Name, err)
	}
	if sk := t.KeySchema.SortKey; sk != nil && sk.Name != "" {
		ks.SortKey.Name = sk.Name
		if ks.SortKey.Type, err = ddb.ParseType(sk.Type); err != nil {
			return ks, internalf("table %s: sort key type: %v", t.Name, err)
		}
	}
	return ks, nil
}

// storageKey is the storage key of an item (or of a Key parameter, which
// must hold exactly the key attributes: exact says so).
func (t *table) storageKey(it ddb.Item, exact bool) (*storagev1.Key, error) {
	if exact {
		want := 1
		if t.Keys.HasSortKey() {
			want = 2
		}
		_, hasPK := it[t.Keys.PartitionKey.Name]
		_, hasSK := it[t.Keys.SortKey.Name]
		if len(it) != want || !hasPK || (t.Keys.HasSortKey() && !hasSK) {
			return nil, validationf("The provided key element does not match the schema")
		}
	}
	pk, sk, err := t.Keys.Key(it)
	if err != nil {
		return nil, keyError(err, it, t.Keys)
	}
	return &storagev1.Key{
		Partition:    placement.PartitionOf(t.ID, pk, t.view.Partitions),
		TableId:      t.ID,
		PartitionKey: pk,
		SortKey:      sk,
	}, nil
}

// keyError words a key problem as DynamoDB does.
func keyError(err error, it ddb.Item, ks ddb.KeySchema) error {
	for _, a := range []ddb.KeyAttribute{ks.PartitionKey, ks.SortKey} {
		if a.Name == "" {
			continue
		}
		v, ok := it[a.Name]
		switch {
		case !ok:
			return validationf("One or more parameter values were invalid: Missing the key %s in the item", a.Name)
		case v.Type() != a.Type:
			return validationf("One or more parameter values were invalid: Type mismatch for key %s expected: %s actual: %s", a.Name, a.Type, v.Type())
		}
	}
	msg := err.Error()
	if strings.Contains(msg, "empty") {
		name := ks.PartitionKey.Name
		if ks.HasSortKey() && isEmptyKey(it[ks.SortKey.Name]) && !isEmptyKey(it[name]) {
			name = ks.SortKey.Name
		}
		kind := "string"
		if it[name] != nil && it[name].Type() == ddb.TypeB {
			kind = "binary"
		}
		return validationf("One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty %s value. Key: %s", kind, name)
	}
	return validationf("One or more parameter values were invalid: %s", msg)
}

// isEmptyKey reports whether a key attribute value is an empty S or B.
func isEmptyKey(v ddb.Value) bool {
	switch x := v.(type) {
	case ddb.S:
		return x == ""
	case ddb.B:
		return len(x) == 0
	}
	return false
}

// decodeRecord turns a stored record into an item; a tombstone, an
// expired record or nil is no item. An item whose TTL attribute has passed
// is expired too, even when it was written before the table's TTL
// attribute was set (so carries no stored expiry): UpdateTimeToLive
// applies to existing items at once, as in DynamoDB.
func (t *table) decodeRecord(rec *storagev1.Record, now time.Time) (ddb.Item, error) {
	if rec == nil || rec.GetTombstone() {
		return nil, nil
	}
	if e := rec.GetExpireUnixNanos(); e != 0 && e <= now.UnixNano() {
		return nil, nil
	}
	it, err := ddb.DecodeItem(rec.GetValue())
	if err != nil {
		k := rec.GetKey()
		return nil, internalf("table %s: item at partition key %q, sort key %x is not in the canonical item encoding (was it written through the gRPC API or imported with another value encoding?): %v",
			t.Name, k.GetPartitionKey(), k.GetSortKey(), err)
	}
	if t.TTLAttribute != "" {
		if exp, ok := ddb.TTLExpiry(it[t.TTLAttribute], now); ok && !exp.After(now) {
			return nil, nil
		}
	}
	return it, nil
}

// expiry is the expire_unix_nanos of an item written now: from the
// table's TTL attribute, else the table's default TTL, else none. An item
// whose TTL has already passed is stored with it and reads as absent at
// once (DynamoDB deletes it within days and reads it until then).
func (t *table) expiry(it ddb.Item, now time.Time) (nanos int64) {
	if t.TTLAttribute != "" {
		if exp, ok := ddb.TTLExpiry(it[t.TTLAttribute], now); ok {
			return exp.UnixNano()
		}
	}
	if t.DefaultTTL > 0 {
		return now.Add(t.DefaultTTL).UnixNano()
	}
	return 0
}

// checkItemSize applies the table's item size limit, counted as DynamoDB
// counts it (ddb.Item.Size: attribute names included).
func (t *table) checkItemSize(it ddb.Item) error {
	if n, limit := it.Size(), t.ItemLimit(); n > limit {
		if limit == topology.DefaultMaxItemBytes {
			return validationf("Item size has exceeded the maximum allowed size")
		}
		return validationf("Item size has exceeded the maximum allowed size: %d bytes, table %s allows %d", n, t.Name, limit)
	}
	return nil
}

// arn is the table's ARN in the endpoint's region and account.
func (h *Handler) arn(name string) string {
	return fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", h.o.Region, h.o.Account, name)
}

// sortedNames returns map keys in order, for deterministic messages.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
