package dynamodb

import (
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func mustItem(t testing.TB, js string) ddb.Item {
	t.Helper()
	it, err := ddb.UnmarshalDynamoDBJSON([]byte(js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return it
}

func TestCompareItems(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string // DynamoDB JSON; "" is absent
		// diffs are substrings, one per expected difference, in order.
		diffs []string
	}{
		{name: "equal", a: `{"pk":{"S":"a"},"n":{"N":"1"}}`, b: `{"n":{"N":"1"},"pk":{"S":"a"}}`},
		{name: "both absent"},
		{name: "absent vs present", a: "", b: `{"pk":{"S":"a"}}`, diffs: []string{"item: absent vs present"}},
		{name: "numbers by value", a: `{"p":{"N":"1.50"}}`, b: `{"p":{"N":"1.5"}}`},
		{name: "38 digits equal", a: `{"p":{"N":"12345678901234567890123456789012345678"}}`, b: `{"p":{"N":"1.2345678901234567890123456789012345678E37"}}`},
		{name: "38 digits differ in the last", a: `{"p":{"N":"12345678901234567890123456789012345678"}}`, b: `{"p":{"N":"12345678901234567890123456789012345679"}}`,
			diffs: []string{"p: "}},
		// "é" precomposed (NFC) vs e + combining acute (NFD): DynamoDB
		// compares UTF-8 bytes, so they differ.
		{name: "NFC vs NFD", a: `{"s":{"S":"caf\u00e9"}}`, b: `{"s":{"S":"cafe\u0301"}}`, diffs: []string{"s: "}},
		{name: "binary set order", a: `{"bs":{"BS":["AQ==","Ag==","Aw=="]}}`, b: `{"bs":{"BS":["Aw==","AQ==","Ag=="]}}`},
		{name: "binary set member", a: `{"bs":{"BS":["AQ==","Ag=="]}}`, b: `{"bs":{"BS":["AQ==","BA=="]}}`,
			diffs: []string{"bs: BS members only in DynamoDB [02], only in Veltrix [04]"}},
		{name: "number set by value", a: `{"ns":{"NS":["1.0","2"]}}`, b: `{"ns":{"NS":["2.00","1"]}}`},
		{name: "string set", a: `{"ss":{"SS":["a","b"]}}`, b: `{"ss":{"SS":["b","a"]}}`},
		{name: "list order matters", a: `{"l":{"L":[{"S":"a"},{"S":"b"}]}}`, b: `{"l":{"L":[{"S":"b"},{"S":"a"}]}}`,
			diffs: []string{"l[0]: ", "l[1]: "}},
		{name: "nested maps equal", a: `{"m":{"M":{"x":{"M":{"y":{"N":"1"}}},"z":{"BOOL":true}}}}`, b: `{"m":{"M":{"z":{"BOOL":true},"x":{"M":{"y":{"N":"1.0"}}}}}}`},
		{name: "nested maps differ", a: `{"m":{"M":{"x":{"M":{"y":{"N":"1"}}}}}}`, b: `{"m":{"M":{"x":{"M":{"y":{"S":"1"}}}}}}`,
			diffs: []string{"m.x.y: "}},
		{name: "missing attribute", a: `{"a":{"S":"x"},"b":{"NULL":true}}`, b: `{"a":{"S":"x"}}`, diffs: []string{"b: {\"NULL\":true} vs absent"}},
		{name: "type differs", a: `{"a":{"S":"1"}}`, b: `{"a":{"N":"1"}}`, diffs: []string{"a: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b ddb.Item
			if tc.a != "" {
				a = mustItem(t, tc.a)
			}
			if tc.b != "" {
				b = mustItem(t, tc.b)
			}
			got := CompareItems(a, b)
			if len(got) != len(tc.diffs) {
				t.Fatalf("differences %q, want %d like %q", got, len(tc.diffs), tc.diffs)
			}
			for i, d := range tc.diffs {
				if !strings.HasPrefix(got[i], d) && !strings.Contains(got[i], d) {
					t.Errorf("difference %d is %q, want it to contain %q", i, got[i], d)
				}
			}
			if back := CompareItems(b, a); len(back) != len(got) {
				t.Errorf("not symmetric: %q one way, %q the other", got, back)
			}
		})
	}
}

// FuzzCompareItems: the comparison never panics, is symmetric in whether
// it finds differences and how many, finds none between an item and
// itself, and agrees with ddb.EqualItems (the canonical encoding).
func FuzzCompareItems(f *testing.F) {
	f.Add(`{"a":{"N":"1.50"}}`, `{"a":{"N":"1.5"}}`)
	f.Add(`{"s":{"S":"caf\u00e9"}}`, `{"s":{"S":"cafe\u0301"}}`)
	f.Add(`{"bs":{"BS":["AQ==","Ag=="]}}`, `{"bs":{"BS":["Ag==","AQ=="]}}`)
	f.Add(`{"m":{"M":{"l":{"L":[{"NS":["1","2"]}]}}}}`, `{"m":{"M":{"l":{"L":[{"NS":["2","1"]}]}}}}`)
	f.Add(`{"x":{"NULL":true}}`, `{}`)
	f.Fuzz(func(t *testing.T, x, y string) {
		a, errA := ddb.UnmarshalDynamoDBJSON([]byte(x))
		b, errB := ddb.UnmarshalDynamoDBJSON([]byte(y))
		if errA != nil || errB != nil {
			return
		}
		ab, ba := CompareItems(a, b), CompareItems(b, a)
		if len(ab) != len(ba) {
			t.Fatalf("not symmetric: %q vs %q", ab, ba)
		}
		if d := CompareItems(a, a); d != nil {
			t.Fatalf("an item differs from itself: %q", d)
		}
		if (len(ab) == 0) != ddb.EqualItems(a, b) {
			t.Fatalf("CompareItems says %q, EqualItems says %v", ab, ddb.EqualItems(a, b))
		}
	})
}
