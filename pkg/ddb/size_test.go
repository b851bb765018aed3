package ddb

import (
	"strings"
	"testing"
)

func TestItemSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		it   Item
		want int
	}{
		{"string", Item{"id": S("abc")}, 2 + 3},
		{"utf8 string counts bytes", Item{"é": S("日本")}, 2 + 6},
		{"binary", Item{"b": B(make([]byte, 10))}, 1 + 10},
		{"number digits", Item{"n": MustN("12345")}, 1 + 3 + 1},
		{"number zeros trimmed", Item{"n": MustN("1000")}, 1 + 1 + 1},
		{"negative number", Item{"n": MustN("-1.5")}, 1 + 1 + 1 + 1},
		{"bool and null", Item{"t": Bool(true), "z": Null{}}, 2 + 2},
		{"sets", Item{"ss": SS{"a", "bc"}, "bs": BS{{1}, {2, 3}}}, 2 + 3 + 2 + 3},
		{"empty list and map", Item{"l": L{}, "m": M{}}, 1 + 3 + 1 + 3},
		{"nested", Item{"m": M{"k": S("v"), "l": L{S("x"), Bool(false)}}}, 1 + 3 + (1 + 1 + 1) + (1 + 1 + (3 + 2 + 2))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.it.Size(); got != tc.want {
				t.Fatalf("Size(%v) = %d, want %d", tc.it, got, tc.want)
			}
		})
	}
}

// A 390 KB item with binary attributes is within DynamoDB's limit although
// its JSON (base64) is over it: the limit is on the item, not an encoding.
func TestItemSizeBinaryUnderLimitWhileJSONIsOver(t *testing.T) {
	it := Item{"id": S("k"), "blob": B([]byte(strings.Repeat("x", 390<<10)))}
	if it.Size() > MaxItemSize {
		t.Fatalf("Size = %d, want within %d", it.Size(), MaxItemSize)
	}
	js, err := ItemToJSON(it)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) <= MaxItemSize {
		t.Fatalf("the JSON is %d bytes; the test needs it over %d", len(js), MaxItemSize)
	}
}
