package expr

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// parseUpdate parses an UpdateExpression with its parameters, as the
// endpoint does.
func parseUpdate(t *testing.T, expr string, names map[string]string, vals string) *Update {
	t.Helper()
	p := NewParams(names, values(t, vals))
	u, err := ParseUpdate(expr, p)
	if err != nil {
		t.Fatalf("ParseUpdate(%q): %v", expr, err)
	}
	if err := p.Check(); err != nil {
		t.Fatalf("Check(%q): %v", expr, err)
	}
	return u
}

// TestApplyParsed runs update expressions end to end, parser to result,
// with the examples of DynamoDB's developer guide ("Update expressions")
// and the behaviours DynamoDB is known to have.
func TestApplyParsed(t *testing.T) {
	// The developer guide's ProductCatalog item 789.
	const product = `{
		"Id": {"N": "789"},
		"ProductCategory": {"S": "Home Improvement"},
		"Price": {"N": "52"},
		"InStock": {"BOOL": true},
		"Brand": {"S": "Acme"},
		"Color": {"SS": ["Red", "Black"]},
		"RelatedItems": {"L": [{"N": "341"}, {"N": "472"}, {"N": "649"}]},
		"ProductReviews": {"M": {
			"FiveStar": {"L": [{"S": "Excellent! Can't recommend it highly enough! Buy it!"}, {"S": "Do yourself a favor and buy this."}]},
			"OneStar": {"L": [{"S": "Terrible product! Do not buy this."}]}
		}},
		"Comment": {"S": "This product sells out quickly during the summer"},
		"Safety.Warning": {"S": "Always wear a helmet"}
	}`
	for _, tc := range []struct {
		name    string
		old     string // "" for a missing item
		expr    string
		names   map[string]string
		vals    string
		want    string
		wantErr string
	}{
		{name: "guide: SET several attributes", old: product,
			expr: "SET ProductCategory = :c, Price = :p",
			vals: `{":c": {"S": "Hardware"}, ":p": {"N": "60"}}`,
			want: `{"ProductCategory": {"S": "Hardware"}, "Price": {"N": "60"}}`},
		{name: "guide: SET list and map", old: product,
			expr:  "SET RelatedItems = :ri, ProductReviews = :pr",
			vals:  `{":ri": {"L": [{"S": "Hammer"}]}, ":pr": {"M": {"FiveStar": {"L": [{"S": "Best product ever!"}]}}}}`,
			want:  `{"RelatedItems": {"L": [{"S": "Hammer"}]}, "ProductReviews": {"M": {"FiveStar": {"L": [{"S": "Best product ever!"}]}}}}`,
			names: nil},
		{name: "guide: SET list element", old: product,
			expr: "SET RelatedItems[1] = :ri", vals: `{":ri": {"S": "Nails"}}`,
			want: `{"RelatedItems": {"L": [{"N": "341"}, {"S": "Nails"}, {"N": "649"}]}}`},
		{name: "guide: SET nested map entries", old: product,
			expr:  "SET #pr.#5star[1] = :r5, #pr.#3star = :r3",
			names: map[string]string{"#pr": "ProductReviews", "#5star": "FiveStar", "#3star": "ThreeStar"},
			vals:  `{":r5": {"S": "Very happy with my purchase"}, ":r3": {"L": [{"S": "Just OK - not that great"}]}}`,
			want: `{"ProductReviews": {"M": {
				"FiveStar": {"L": [{"S": "Excellent! Can't recommend it highly enough! Buy it!"}, {"S": "Very happy with my purchase"}]},
				"OneStar": {"L": [{"S": "Terrible product! Do not buy this."}]},
				"ThreeStar": {"L": [{"S": "Just OK - not that great"}]}}}}`},
		{name: "guide: decrement", old: product,
			expr: "SET Price = Price - :p", vals: `{":p": {"N": "15"}}`, want: `{"Price": {"N": "37"}}`},
		{name: "guide: list_append at the end", old: product,
			expr:  "SET #ri = list_append(#ri, :vals)",
			names: map[string]string{"#ri": "RelatedItems"}, vals: `{":vals": {"L": [{"S": "Screwdriver"}, {"S": "Hacksaw"}]}}`,
			want: `{"RelatedItems": {"L": [{"N": "341"}, {"N": "472"}, {"N": "649"}, {"S": "Screwdriver"}, {"S": "Hacksaw"}]}}`},
		{name: "guide: list_append at the start", old: product,
			expr:  "SET #ri = list_append(:vals, #ri)",
			names: map[string]string{"#ri": "RelatedItems"}, vals: `{":vals": {"L": [{"S": "Chisel"}]}}`,
			want: `{"RelatedItems": {"L": [{"S": "Chisel"}, {"N": "341"}, {"N": "472"}, {"N": "649"}]}}`},
		{name: "guide: if_not_exists keeps", old: product,
			expr: "SET Price = if_not_exists(Price, :p)", vals: `{":p": {"N": "100"}}`, want: `{}`},
		{name: "guide: if_not_exists sets", old: product,
			expr: "SET Weight = if_not_exists(Weight, :w)", vals: `{":w": {"N": "3"}}`, want: `{"Weight": {"N": "3"}}`},
		{name: "guide: REMOVE attributes", old: product,
			expr: "REMOVE Brand, InStock, Color", want: `{"Brand": null, "InStock": null, "Color": null}`},
		{name: "guide: REMOVE list elements", old: product,
			expr: "REMOVE RelatedItems[1], RelatedItems[2]", want: `{"RelatedItems": {"L": [{"N": "341"}]}}`},
		{name: "guide: ADD number", old: product,
			expr: "ADD QuantityOnHand :q", vals: `{":q": {"N": "5"}}`, want: `{"QuantityOnHand": {"N": "5"}}`},
		{name: "guide: ADD to set", old: product,
			expr: "ADD Color :c", vals: `{":c": {"SS": ["Orange", "Purple"]}}`, want: `{"Color": {"SS": ["Red", "Black", "Orange", "Purple"]}}`},
		{name: "guide: ADD new set", old: product,
			expr: "ADD Colors :c", vals: `{":c": {"SS": ["Orange"]}}`, want: `{"Colors": {"SS": ["Orange"]}}`},
		{name: "guide: DELETE from set", old: product,
			expr: "DELETE Color :p", vals: `{":p": {"SS": ["Black", "Yellow"]}}`, want: `{"Color": {"SS": ["Red"]}}`},
		{name: "guide: dotted name is one attribute", old: product,
			expr: "SET #sw = :v", names: map[string]string{"#sw": "Safety.Warning"}, vals: `{":v": {"S": "x"}}`,
			want: `{"Safety.Warning": {"S": "x"}}`},
		{name: "all four clauses", old: product,
			expr:  "SET Price = Price + :one REMOVE #c ADD Sold :one DELETE Color :black",
			names: map[string]string{"#c": "Comment"},
			vals:  `{":one": {"N": "1"}, ":black": {"SS": ["Black"]}}`,
			want:  `{"Price": {"N": "53"}, "Comment": null, "Sold": {"N": "1"}, "Color": {"SS": ["Red"]}}`},
		{name: "missing item: ADD creates", expr: "ADD n :one", vals: `{":one": {"N": "1"}}`, want: `{"n": {"N": "1"}}`},
		{name: "missing item: nested SET", expr: "SET a.b = :one", vals: `{":one": {"N": "1"}}`, wantErr: msgInvalidPath},
		{name: "missing item: nested REMOVE", expr: "REMOVE a.b", want: `{}`},
		{name: "indexes are the old ones", old: `{"a": {"L": [{"N": "2"}, {"N": "3"}, {"N": "4"}, {"N": "5"}, {"N": "6"}, {"N": "7"}]}}`,
			expr: "REMOVE a[1] SET a[3] = :v", vals: `{":v": {"N": "17"}}`,
			want: `{"a": {"L": [{"N": "2"}, {"N": "4"}, {"N": "17"}, {"N": "6"}, {"N": "7"}]}}`},
		{name: "SET reads before writing", old: `{"a": {"S": "hello"}}`,
			expr: "SET x = :v, y = x", vals: `{":v": {"N": "4"}}`, wantErr: msgNoAttribute},
		{name: "REMOVE a SET b = a", old: `{"a": {"S": "hello"}}`,
			expr: "REMOVE a SET b = a", want: `{"a": null, "b": {"S": "hello"}}`},
		{name: "plus on a string", old: `{"a": {"S": "hello"}}`, expr: "SET b = a + :v", vals: `{":v": {"N": "1"}}`, wantErr: msgOperandType},
		{name: "ADD to a string", old: `{"a": {"S": "hello"}}`, expr: "ADD a :v", vals: `{":v": {"N": "1"}}`, wantErr: msgOperandType},
		{name: "DELETE of other set type", old: `{"a": {"SS": ["x"]}}`, expr: "DELETE a :v", vals: `{":v": {"NS": ["1"]}}`, wantErr: msgOperandType},
		{name: "overflow", old: `{"a": {"N": "9E125"}}`, expr: "SET a = a + a", wantErr: ddb.MsgNumberOverflow},
		{name: "precision", old: `{"a": {"N": "1E50"}}`, expr: "ADD a :v", vals: `{":v": {"N": "1"}}`, wantErr: ddb.MsgNumberOverflow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old ddb.Item
			if tc.old != "" {
				old = item(t, tc.old)
			}
			u := parseUpdate(t, tc.expr, tc.names, tc.vals)
			got, err := u.Apply(old)
			if tc.wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || e.Message != tc.wantErr {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// want lists the changes: attributes set to their new value,
			// null for removed ones; everything else stays as it was.
			want := ddb.Item{}
			for k, v := range old {
				want[k] = v
			}
			changes, err := ddb.UnmarshalDynamoDBJSON([]byte(nullsToMarkers(tc.want)))
			if err != nil {
				t.Fatalf("want %s: %v", tc.want, err)
			}
			for k, v := range changes {
				if s, ok := v.(ddb.S); ok && s == removedMarker {
					delete(want, k)
					continue
				}
				want[k] = v
			}
			if !ddb.EqualItems(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
		})
	}
}

const removedMarker = "\x00removed"

// nullsToMarkers lets a test's expected changes write null for a removed
// attribute.
func nullsToMarkers(js string) string {
	out := []byte{}
	for i := 0; i < len(js); i++ {
		if i+4 <= len(js) && js[i:i+4] == "null" {
			out = append(out, `{"S": "\u0000removed"}`...)
			i += 3
			continue
		}
		out = append(out, js[i])
	}
	return string(out)
}

// TestReturned checks ReturnValues as DynamoDB answers them, nested paths
// included.
func TestReturned(t *testing.T) {
	const base = `{"p": {"S": "k"}, "a": {"M": {"b": {"S": "dog"}, "c": {"L": [{"N": "1"}, {"N": "2"}, {"N": "3"}]}}}, "d": {"S": "cat"}}`
	for _, tc := range []struct {
		name string
		old  string // "" for a missing item
		expr string
		vals string
		rv   ReturnValues
		want string // "" for no Attributes
	}{
		{name: "NONE", old: base, expr: "SET d = :v", vals: `{":v": {"S": "x"}}`, rv: ReturnNone},
		{name: "ALL_OLD", old: base, expr: "SET d = :v", vals: `{":v": {"S": "x"}}`, rv: ReturnAllOld, want: base},
		{name: "ALL_OLD of a missing item", expr: "SET d = :v", vals: `{":v": {"S": "x"}}`, rv: ReturnAllOld},
		{name: "ALL_NEW", old: base, expr: "REMOVE d", rv: ReturnAllNew,
			want: `{"p": {"S": "k"}, "a": {"M": {"b": {"S": "dog"}, "c": {"L": [{"N": "1"}, {"N": "2"}, {"N": "3"}]}}}}`},
		{name: "UPDATED_OLD top-level", old: base, expr: "SET d = :v, e = :v", vals: `{":v": {"S": "x"}}`, rv: ReturnUpdatedOld, want: `{"d": {"S": "cat"}}`},
		{name: "UPDATED_OLD of a new attribute", old: base, expr: "SET e = :v", vals: `{":v": {"S": "x"}}`, rv: ReturnUpdatedOld},
		{name: "UPDATED_OLD of a removal", old: base, expr: "REMOVE d", rv: ReturnUpdatedOld, want: `{"d": {"S": "cat"}}`},
		{name: "UPDATED_NEW of a removal", old: base, expr: "REMOVE d", rv: ReturnUpdatedNew},
		{name: "UPDATED_NEW", old: base, expr: "SET d = :v, e = :v REMOVE a", vals: `{":v": {"S": "x"}}`, rv: ReturnUpdatedNew, want: `{"d": {"S": "x"}, "e": {"S": "x"}}`},
		{name: "UPDATED_NEW of arithmetic", old: `{"n": {"N": "1"}}`, expr: "SET n = n + :v", vals: `{":v": {"N": "1"}}`, rv: ReturnUpdatedNew, want: `{"n": {"N": "2"}}`},
		{name: "UPDATED_NEW on a missing item", expr: "SET n = :v", vals: `{":v": {"N": "1"}}`, rv: ReturnUpdatedNew, want: `{"n": {"N": "1"}}`},
		{name: "UPDATED_OLD nested", old: base, expr: "SET a.b = :v", vals: `{":v": {"S": "hi"}}`, rv: ReturnUpdatedOld, want: `{"a": {"M": {"b": {"S": "dog"}}}}`},
		{name: "UPDATED_OLD list element", old: base, expr: "SET a.c[1] = :v", vals: `{":v": {"N": "7"}}`, rv: ReturnUpdatedOld, want: `{"a": {"M": {"c": {"L": [{"N": "2"}]}}}}`},
		{name: "UPDATED_OLD two nested", old: base, expr: "SET a.c[1] = :v, a.b = :w", vals: `{":v": {"N": "8"}, ":w": {"S": "x"}}`, rv: ReturnUpdatedOld,
			want: `{"a": {"M": {"b": {"S": "dog"}, "c": {"L": [{"N": "2"}]}}}}`},
		{name: "UPDATED_NEW nested", old: base, expr: "SET a.c[1] = :v, a.b = :w", vals: `{":v": {"N": "3"}, ":w": {"S": "x"}}`, rv: ReturnUpdatedNew,
			want: `{"a": {"M": {"b": {"S": "x"}, "c": {"L": [{"N": "3"}]}}}}`},
		{name: "UPDATED_OLD removals, one past the end", old: base, expr: "REMOVE a.c[1], a.c[3]", rv: ReturnUpdatedOld, want: `{"a": {"M": {"c": {"L": [{"N": "2"}]}}}}`},
		{name: "UPDATED_OLD of a new nested entry", old: base, expr: "SET a.x1 = :v", vals: `{":v": {"N": "8"}}`, rv: ReturnUpdatedOld},
		{name: "UPDATED_NEW of a new nested entry", old: base, expr: "SET a.x2 = :v", vals: `{":v": {"N": "8"}}`, rv: ReturnUpdatedNew, want: `{"a": {"M": {"x2": {"N": "8"}}}}`},
		{name: "UPDATED_NEW of an append", old: base, expr: "SET a.c[100] = :v", vals: `{":v": {"N": "70"}}`, rv: ReturnUpdatedNew},
		{name: "UPDATED_NEW of a removed element returns its successor", old: base, expr: "REMOVE a.c[1]", rv: ReturnUpdatedNew, want: `{"a": {"M": {"c": {"L": [{"N": "3"}]}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old ddb.Item
			if tc.old != "" {
				old = item(t, tc.old)
			}
			u := parseUpdate(t, tc.expr, nil, tc.vals)
			nw, err := u.Apply(old)
			if err != nil {
				t.Fatal(err)
			}
			got := u.Returned(old, nw, tc.rv)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("got %v, want no Attributes", got)
				}
				return
			}
			if want := item(t, tc.want); !ddb.EqualItems(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
		})
	}
	if got := (*Update)(nil).Returned(ddb.Item{"a": ddb.S("x")}, nil, ReturnUpdatedOld); got != nil {
		t.Fatalf("nil update UPDATED_OLD: %v", got)
	}
	empty, _ := FromAttributeUpdates(map[string]AttributeUpdate{})
	if got := empty.Returned(ddb.Item{"a": ddb.S("x")}, ddb.Item{"a": ddb.S("x")}, ReturnUpdatedNew); got != nil {
		t.Fatalf("empty AttributeUpdates UPDATED_NEW: %v", got)
	}
}

// TestLegacyMatch evaluates converted legacy conditions on items, with the
// examples of DynamoDB's "Writing conditions with legacy parameters".
func TestLegacyMatch(t *testing.T) {
	it := item(t, `{
		"Id": {"N": "1"}, "Price": {"N": "20"}, "Name": {"S": "Bicycle 101"},
		"Colors": {"SS": ["Red", "Black"]}, "Sizes": {"NS": ["1", "2"]}, "Data": {"B": "AQID"},
		"Tags": {"L": [{"S": "x"}, {"N": "3"}]}, "InStock": {"BOOL": true}
	}`)
	for _, tc := range []struct {
		name string
		attr string
		op   string
		vals []ddb.Value
		want bool
	}{
		{"EQ", "Price", "EQ", vals(n("20")), true},
		{"EQ by value", "Price", "EQ", vals(n("2E1")), true},
		{"EQ other type", "Price", "EQ", vals(ddb.S("20")), false},
		{"EQ set", "Colors", "EQ", vals(ddb.SS{"Black", "Red"}), true},
		{"EQ number vs set", "Sizes", "EQ", vals(n("1")), false},
		{"EQ missing", "Nope", "EQ", vals(n("1")), false},
		{"NE", "Price", "NE", vals(n("21")), true},
		{"NE equal", "Price", "NE", vals(n("20")), false},
		{"NE other type", "Price", "NE", vals(ddb.S("20")), true},
		{"NE missing", "Nope", "NE", vals(n("1")), true},
		{"LT", "Price", "LT", vals(n("21")), true},
		{"LE", "Price", "LE", vals(n("20")), true},
		{"GT", "Price", "GT", vals(n("20")), false},
		{"GE", "Price", "GE", vals(n("20")), true},
		{"GT strings", "Name", "GT", vals(ddb.S("Bicycle 100")), true},
		{"LT other type", "Price", "LT", vals(ddb.S("99")), false},
		{"LT missing", "Nope", "LT", vals(n("99")), false},
		{"NOT_NULL", "Price", "NOT_NULL", vals(), true},
		{"NOT_NULL missing", "Nope", "NOT_NULL", vals(), false},
		{"NULL", "Nope", "NULL", vals(), true},
		{"NULL present", "Price", "NULL", vals(), false},
		{"CONTAINS substring", "Name", "CONTAINS", vals(ddb.S("cycle")), true},
		{"CONTAINS set member", "Colors", "CONTAINS", vals(ddb.S("Red")), true},
		{"CONTAINS number set", "Sizes", "CONTAINS", vals(n("2")), true},
		{"CONTAINS list", "Tags", "CONTAINS", vals(ddb.S("x")), true},
		{"CONTAINS no", "Colors", "CONTAINS", vals(ddb.S("Blue")), false},
		{"CONTAINS missing", "Nope", "CONTAINS", vals(ddb.S("x")), false},
		{"NOT_CONTAINS", "Colors", "NOT_CONTAINS", vals(ddb.S("Blue")), true},
		{"NOT_CONTAINS member", "Colors", "NOT_CONTAINS", vals(ddb.S("Red")), false},
		{"NOT_CONTAINS missing", "Nope", "NOT_CONTAINS", vals(ddb.S("x")), true},
		{"BEGINS_WITH", "Name", "BEGINS_WITH", vals(ddb.S("Bi")), true},
		{"BEGINS_WITH binary", "Data", "BEGINS_WITH", vals(ddb.B{1, 2}), true},
		{"BEGINS_WITH no", "Name", "BEGINS_WITH", vals(ddb.S("cycle")), false},
		{"IN", "Price", "IN", vals(n("10"), n("20")), true},
		{"IN no", "Price", "IN", vals(n("10"), n("30")), false},
		{"BETWEEN", "Price", "BETWEEN", vals(n("10"), n("20")), true},
		{"BETWEEN no", "Price", "BETWEEN", vals(n("21"), n("30")), false},
		{"BETWEEN other type", "Name", "BETWEEN", vals(n("1"), n("2")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromFilter("ScanFilter", map[string]FilterCondition{tc.attr: {ComparisonOperator: tc.op, AttributeValueList: tc.vals}}, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(it); got != tc.want {
				t.Fatalf("ScanFilter %s %s %v = %v, want %v", tc.attr, tc.op, tc.vals, got, tc.want)
			}
			e, err := FromExpected(map[string]ExpectedValue{tc.attr: {ComparisonOperator: tc.op, AttributeValueList: tc.vals}}, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Match(it); got != tc.want {
				t.Fatalf("Expected %s %s %v = %v, want %v", tc.attr, tc.op, tc.vals, got, tc.want)
			}
		})
	}

	// The {Value, Exists} form, and AND/OR.
	for _, tc := range []struct {
		name string
		exp  map[string]ExpectedValue
		op   string
		want bool
	}{
		{"value equal", map[string]ExpectedValue{"Price": {Value: n("20")}}, "", true},
		{"value differs", map[string]ExpectedValue{"Price": {Value: n("21")}}, "", false},
		{"value on missing", map[string]ExpectedValue{"Nope": {Value: n("21")}}, "", false},
		{"exists true", map[string]ExpectedValue{"Price": {Value: n("20"), Exists: bp(true)}}, "", true},
		{"exists false", map[string]ExpectedValue{"Nope": {Exists: bp(false)}}, "", true},
		{"exists false on present", map[string]ExpectedValue{"Price": {Exists: bp(false)}}, "", false},
		{"AND one false", map[string]ExpectedValue{"Price": {Value: n("20")}, "Name": {Value: ddb.S("x")}}, "AND", false},
		{"OR one true", map[string]ExpectedValue{"Price": {Value: n("20")}, "Name": {Value: ddb.S("x")}}, "OR", true},
		{"OR none true", map[string]ExpectedValue{"Price": {Value: n("1")}, "Name": {Value: ddb.S("x")}}, "OR", false},
		{"no item", map[string]ExpectedValue{"Price": {Exists: bp(false)}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromExpected(tc.exp, tc.op)
			if err != nil {
				t.Fatal(err)
			}
			target := it
			if tc.name == "no item" {
				target = nil
			}
			if got := c.Match(target); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
	// An empty Expected matches anything, even a missing item.
	if c, err := FromExpected(nil, ""); err != nil || !c.Match(nil) {
		t.Fatalf("empty Expected: %v, %v", c, err)
	}
}
