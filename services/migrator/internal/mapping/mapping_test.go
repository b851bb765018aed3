package mapping

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

var now = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func keyAttr(name string, t migratorv1.KeyType) *migratorv1.KeyAttribute {
	return &migratorv1.KeyAttribute{Name: name, Type: t}
}

func mustMapping(t *testing.T, m *migratorv1.Mapping) *Mapping {
	t.Helper()
	out, err := FromProto(m, "spec.mapping")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFromProtoReportsEveryProblem(t *testing.T) {
	_, err := FromProto(&migratorv1.Mapping{
		SortKey:        keyAttr("sk", migratorv1.KeyType_KEY_TYPE_UNSPECIFIED),
		Encoding:       migratorv1.ValueEncoding_VALUE_ENCODING_ATTRIBUTE,
		Filter:         "a = ",
		ValueAttribute: "",
	}, "spec.mapping")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"spec.mapping.target_table: required",
		"spec.mapping.partition_key.name: required",
		"spec.mapping.sort_key.type",
		"spec.mapping.value_attribute: required",
		"spec.mapping.filter: Invalid filter: Syntax error; token: \"<EOF>\", near: \"=\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := FromProto(nil, "spec.mapping"); err == nil {
		t.Error("nil mapping accepted")
	}
	if _, err := FromProto(&migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("a", migratorv1.KeyType_KEY_TYPE_S),
		SortKey: keyAttr("a", migratorv1.KeyType_KEY_TYPE_S)}, "m"); err == nil {
		t.Error("same partition and sort key accepted")
	}
}

func TestNumberKeysNormalize(t *testing.T) {
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("id", migratorv1.KeyType_KEY_TYPE_N),
		SortKey: keyAttr("v", migratorv1.KeyType_KEY_TYPE_B)})
	var keys [][]byte
	for _, text := range []string{"1", "1.0", "1E0", "10E-1", "01"} {
		line := `{"Item":{"id":{"N":"` + text + `"},"v":{"B":"AAE="}}}`
		rec, err := ddb.DecodeJSONExportLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		r := m.Map(rec, false, 7, now)
		if r.Kind != Put || !bytes.Equal(r.SK, []byte{0, 1}) || r.Version != 7 {
			t.Fatalf("%s: %+v", text, r)
		}
		keys = append(keys, r.PK)
	}
	for _, k := range keys {
		if string(k) != "1" {
			t.Fatalf("keys %q: want all \"1\"", keys)
		}
	}
}

func TestEncodings(t *testing.T) {
	it := ddb.Item{
		"pk": ddb.S("a"), "n": ddb.MustN("12345678901234567890123456789012345678"), "b": ddb.B{0, 1},
		"ss": ddb.SS{"y", "x"}, "m": ddb.M{"l": ddb.L{ddb.Null{}, ddb.Bool(true), ddb.NS{ddb.MustN("1.5")}}},
		"bs": ddb.BS{{1}, {0}},
	}
	base := &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S)}
	t.Run("canonical round-trips", func(t *testing.T) {
		r := mustMapping(t, base).MapItem(it, 1, now)
		back, err := ddb.DecodeItem(r.Value)
		if err != nil || !ddb.EqualItems(back, it) || r.SK != nil {
			t.Fatalf("decoded %v (%v), want %v", back, err, it)
		}
	})
	t.Run("json", func(t *testing.T) {
		m := &migratorv1.Mapping{TargetTable: "t", PartitionKey: base.PartitionKey, Encoding: migratorv1.ValueEncoding_VALUE_ENCODING_JSON}
		r := mustMapping(t, m).MapItem(it, 1, now)
		want, _ := ddb.ItemToJSON(it)
		if !bytes.Equal(r.Value, want) || !bytes.Contains(r.Value, []byte(`"n":12345678901234567890123456789012345678`)) {
			t.Fatalf("json %s", r.Value)
		}
	})
	for _, c := range []struct {
		attr, want, reject string
	}{
		{attr: "pk", want: "a"},
		{attr: "n", want: "12345678901234567890123456789012345678"},
		{attr: "b", want: "\x00\x01"},
		{attr: "ss", reject: `value attribute "ss" is SS`},
		{attr: "missing", reject: `no value attribute "missing"`},
	} {
		t.Run("attribute "+c.attr, func(t *testing.T) {
			m := &migratorv1.Mapping{TargetTable: "t", PartitionKey: base.PartitionKey,
				Encoding: migratorv1.ValueEncoding_VALUE_ENCODING_ATTRIBUTE, ValueAttribute: c.attr}
			r := mustMapping(t, m).MapItem(it, 1, now)
			if c.reject != "" {
				if r.Kind != Reject || !strings.Contains(r.Reason, c.reject) {
					t.Fatalf("%+v, want reject %q", r, c.reject)
				}
				return
			}
			if r.Kind != Put || string(r.Value) != c.want {
				t.Fatalf("%+v, want %q", r, c.want)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S),
		SortKey: keyAttr("sk", migratorv1.KeyType_KEY_TYPE_N)})
	for _, c := range []struct {
		name string
		it   ddb.Item
		want string
	}{
		{"missing partition key", ddb.Item{"sk": ddb.MustN("1")}, "missing key attribute"},
		{"missing sort key", ddb.Item{"pk": ddb.S("a")}, "missing key attribute"},
		{"wrong key type", ddb.Item{"pk": ddb.S("a"), "sk": ddb.S("1")}, "key attribute is S, declared N"},
		{"empty key", ddb.Item{"pk": ddb.S(""), "sk": ddb.MustN("1")}, "empty S key"},
		{"oversize", ddb.Item{"pk": ddb.S("a"), "sk": ddb.MustN("1"), "big": ddb.S(strings.Repeat("x", MaxItemBytes))}, "oversize item"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := m.MapItem(c.it, 1, now)
			if r.Kind != Reject || !strings.Contains(r.Reason, c.want) {
				t.Fatalf("%+v, want a reject saying %q", r, c.want)
			}
		})
	}
	// Just under the limit is fine.
	r := m.MapItem(ddb.Item{"pk": ddb.S("a"), "sk": ddb.MustN("1"), "big": ddb.S(strings.Repeat("x", MaxItemBytes-100))}, 1, now)
	if r.Kind != Put {
		t.Fatalf("item under 400 KB: %+v", r.Reason)
	}
	// DynamoDB's limit is on the item as DynamoDB measures it, not on our
	// encoding of it: a 390 KB binary item is over 400 KB as JSON (base64)
	// and must still be imported.
	js := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S),
		SortKey: keyAttr("sk", migratorv1.KeyType_KEY_TYPE_N), Encoding: migratorv1.ValueEncoding_VALUE_ENCODING_JSON})
	r = js.MapItem(ddb.Item{"pk": ddb.S("a"), "sk": ddb.MustN("1"), "blob": ddb.B(make([]byte, 390<<10))}, 1, now)
	if r.Kind != Put || len(r.Value) <= MaxItemBytes {
		t.Fatalf("390 KB binary item as JSON: kind %v, %d bytes, %s; want a Put over 400 KB", r.Kind, len(r.Value), r.Reason)
	}
}

func TestTTL(t *testing.T) {
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S), TtlAttribute: "exp"})
	for _, c := range []struct {
		name   string
		exp    ddb.Value
		kind   Kind
		expire time.Time
	}{
		{"none", nil, Put, time.Time{}},
		{"future", ddb.NFromInt64(now.Unix() + 3600), Put, now.Add(time.Hour)},
		{"fractional", ddb.MustN("1735693200.25"), Put, time.Unix(1735693200, 250_000_000)},
		{"passed", ddb.NFromInt64(now.Unix() - 1), SkipExpired, time.Time{}},
		{"exactly now", ddb.NFromInt64(now.Unix()), SkipExpired, time.Time{}},
		{"over five years ago: DynamoDB never deletes it", ddb.NFromInt64(now.Unix() - 6*365*24*3600), Put, time.Time{}},
		{"milliseconds by mistake: far future, kept", ddb.NFromInt64(now.UnixMilli()), Put, time.Time{}},
		{"not a number", ddb.S("tomorrow"), Put, time.Time{}},
		{"zero", ddb.NFromInt64(0), Put, time.Time{}},
		{"negative", ddb.NFromInt64(-5), Put, time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			it := ddb.Item{"pk": ddb.S("a")}
			if c.exp != nil {
				it["exp"] = c.exp
			}
			r := m.MapItem(it, 1, now)
			if r.Kind != c.kind || !r.Expire.Equal(c.expire) {
				t.Fatalf("kind %v expire %v, want %v %v", r.Kind, r.Expire, c.kind, c.expire)
			}
		})
	}
}

func TestIncremental(t *testing.T) {
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S), TtlAttribute: "exp"})
	dec := func(line string) ddb.ExportRecord {
		t.Helper()
		rec, err := ddb.DecodeJSONExportLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	put := dec(`{"Metadata":{"WriteTimestampMicros":{"N":"1695097218000001"}},"Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"v":{"N":"2"}},"OldImage":{"pk":{"S":"a"},"v":{"N":"1"}}}`)
	r := m.Map(put, true, 99, now)
	if r.Kind != Put || string(r.PK) != "a" || r.Version != hlc.FromMicros(1695097218000001, 0) {
		t.Fatalf("put: %+v", r)
	}
	del := dec(`{"Metadata":{"WriteTimestampMicros":"1695097218000002"},"Keys":{"pk":{"S":"b"}},"OldImage":{"pk":{"S":"b"}}}`)
	if r := m.Map(del, true, 99, now); r.Kind != Delete || string(r.PK) != "b" || r.Version != hlc.FromMicros(1695097218000002, 0) {
		t.Fatalf("delete: %+v", r)
	}
	keysOnly := dec(`{"Metadata":{"WriteTimestampMicros":1695097218000003},"Keys":{"pk":{"S":"c"}}}`)
	if r := m.Map(keysOnly, true, 99, now); r.Kind != Delete || string(r.PK) != "c" {
		t.Fatalf("keys-only delete: %+v", r)
	}
	expired := dec(`{"Metadata":{"WriteTimestampMicros":{"N":"5"}},"Keys":{"pk":{"S":"d"}},"NewImage":{"pk":{"S":"d"},"exp":{"N":"1735689000"}}}`)
	if r := m.Map(expired, true, 99, now); r.Kind != Delete || !r.Expired || string(r.PK) != "d" {
		t.Fatalf("expired image: %+v (want a delete so an older copy does not stay live)", r)
	}
	zero := dec(`{"Metadata":{"WriteTimestampMicros":{"N":"0"}},"Keys":{"pk":{"S":"e"}}}`)
	if r := m.Map(zero, true, 99, now); r.Kind != Reject {
		t.Fatalf("timestamp 0: %+v", r)
	}
	if r := m.Map(put, false, 99, now); r.Kind != Reject || !strings.Contains(r.Reason, "in a full export") {
		t.Fatalf("incremental line in a full export: %+v", r)
	}
	full := dec(`{"Item":{"pk":{"S":"a"}}}`)
	if r := m.Map(full, true, 99, now); r.Kind != Reject || !strings.Contains(r.Reason, "in an incremental export") {
		t.Fatalf("full line in an incremental export: %+v", r)
	}
	if r := m.Map(dec(`{"Metadata":{"WriteTimestampMicros":{"N":"5"}},"Keys":{"other":{"S":"x"}}}`), true, 99, now); r.Kind != Reject {
		t.Fatalf("keys without the key attribute: %+v", r)
	}
}

func TestFilterMapping(t *testing.T) {
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "t", PartitionKey: keyAttr("pk", migratorv1.KeyType_KEY_TYPE_S), Filter: `begins_with(pk, "user#")`})
	if r := m.MapItem(ddb.Item{"pk": ddb.S("user#1")}, 1, now); r.Kind != Put {
		t.Fatal(r)
	}
	if r := m.MapItem(ddb.Item{"pk": ddb.S("admin#1")}, 1, now); r.Kind != SkipFiltered {
		t.Fatal(r)
	}
	// The filter runs before key checks: an item it drops is not rejected.
	if r := m.MapItem(ddb.Item{"x": ddb.S("no key")}, 1, now); r.Kind != SkipFiltered {
		t.Fatal(r)
	}
}

// TestRealDataLine maps the data line of a real export (the Airline
// table: a number partition key with a space in its name).
func TestRealDataLine(t *testing.T) {
	p := filepath.Join("../../../../../shared/testdata/dynamodb", "export-full-airline", "data-line-sample.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("real DynamoDB samples not available (%v); they live in <workspace>/shared/testdata/dynamodb", err)
	}
	rec, err := ddb.DecodeJSONExportLine(bytes.TrimSpace(b))
	if err != nil {
		t.Fatal(err)
	}
	m := mustMapping(t, &migratorv1.Mapping{TargetTable: "airline", PartitionKey: keyAttr("Passenger ID", migratorv1.KeyType_KEY_TYPE_N),
		Filter: "`Flight Status` = \"Cancelled\" AND attribute_exists(`First Name`)"})
	r := m.Map(rec, false, 1, now)
	if r.Kind != Put || string(r.PK) != "49010" {
		t.Fatalf("%+v", r)
	}
}
