package expr

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func wantError(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Message != want {
		t.Fatalf("got error %v; want %q", err, want)
	}
}

func bp(b bool) *bool { return &b }

// vals is an AttributeValueList; vals() is a present but empty one.
func vals(vs ...ddb.Value) []ddb.Value { return append([]ddb.Value{}, vs...) }

func attr(name string) pathOperand { return pathOperand{path: Path{{Name: name}}} }
func lit(v ddb.Value) valueOperand { return valueOperand{value: v} }

func TestFromExpectedTree(t *testing.T) {
	notExists := func(a string) node { return funcNode{name: "attribute_not_exists", args: []operand{attr(a)}} }
	for _, tc := range []struct {
		name string
		exp  map[string]ExpectedValue
		op   string
		want node // nil: no condition
	}{
		{name: "empty", exp: nil},
		{name: "value alone is equality", exp: map[string]ExpectedValue{"a": {Value: ddb.S("x")}},
			want: compareNode{op: "=", l: attr("a"), r: lit(ddb.S("x"))}},
		{name: "exists true with value", exp: map[string]ExpectedValue{"a": {Value: n("1"), Exists: bp(true)}},
			want: compareNode{op: "=", l: attr("a"), r: lit(n("1"))}},
		{name: "exists false", exp: map[string]ExpectedValue{"a": {Exists: bp(false)}}, want: notExists("a")},
		{name: "operator with value list", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "GT", AttributeValueList: vals(n("1"))}},
			want: compareNode{op: ">", l: attr("a"), r: lit(n("1"))}},
		{name: "operator with Value", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "LE", Value: n("1")}},
			want: compareNode{op: "<=", l: attr("a"), r: lit(n("1"))}},
		{name: "NE holds when missing", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "NE", AttributeValueList: vals(n("1"))}},
			want: orNode{l: notExists("a"), r: compareNode{op: "<>", l: attr("a"), r: lit(n("1"))}}},
		{name: "NOT_CONTAINS holds when missing", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "NOT_CONTAINS", AttributeValueList: vals(ddb.S("x"))}},
			want: orNode{l: notExists("a"), r: notNode{x: funcNode{name: "contains", args: []operand{attr("a"), lit(ddb.S("x"))}}}}},
		{name: "NULL", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "NULL"}}, want: notExists("a")},
		{name: "NOT_NULL", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "NOT_NULL", AttributeValueList: vals()}},
			want: funcNode{name: "attribute_exists", args: []operand{attr("a")}}},
		{name: "IN", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "IN", AttributeValueList: vals(n("1"), n("2"))}},
			want: inNode{v: attr("a"), list: []operand{lit(n("1")), lit(n("2"))}}},
		{name: "BETWEEN", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "BETWEEN", AttributeValueList: vals(ddb.S("a"), ddb.S("b"))}},
			want: betweenNode{v: attr("a"), lo: lit(ddb.S("a")), hi: lit(ddb.S("b"))}},
		{name: "BEGINS_WITH", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "BEGINS_WITH", AttributeValueList: vals(ddb.S("a"))}},
			want: funcNode{name: "begins_with", args: []operand{attr("a"), lit(ddb.S("a"))}}},
		{name: "EQ on a list", exp: map[string]ExpectedValue{"a": {ComparisonOperator: "EQ", AttributeValueList: vals(ddb.L{n("1")})}},
			want: compareNode{op: "=", l: attr("a"), r: lit(ddb.L{n("1")})}},
		{name: "AND by default, in name order", exp: map[string]ExpectedValue{"b": {Exists: bp(false)}, "a": {Exists: bp(false)}, "c": {Exists: bp(false)}},
			want: andNode{l: andNode{l: notExists("a"), r: notExists("b")}, r: notExists("c")}},
		{name: "AND", op: "AND", exp: map[string]ExpectedValue{"b": {Exists: bp(false)}, "a": {Exists: bp(false)}},
			want: andNode{l: notExists("a"), r: notExists("b")}},
		{name: "OR", op: "OR", exp: map[string]ExpectedValue{"b": {Exists: bp(false)}, "a": {Exists: bp(false)}},
			want: orNode{l: notExists("a"), r: notExists("b")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromExpected(tc.exp, tc.op)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if c != nil {
					t.Fatalf("got %#v, want no condition", c)
				}
				return
			}
			if c == nil || !reflect.DeepEqual(c.root, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", c, tc.want)
			}
		})
	}
}

func TestFromExpectedErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		exp  map[string]ExpectedValue
		op   string
		want string
	}{
		{"bad conditional operator", map[string]ExpectedValue{"a": {Value: n("1")}}, "XOR",
			"1 validation error detected: Value 'XOR' at 'conditionalOperator' failed to satisfy constraint: Member must satisfy enum value set: [OR, AND]"},
		{"value and list", map[string]ExpectedValue{"a": {Value: n("1"), ComparisonOperator: "EQ", AttributeValueList: vals(n("1"))}}, "",
			"One or more parameter values were invalid: Value and AttributeValueList cannot be used together for Attribute: a"},
		{"list without operator", map[string]ExpectedValue{"a": {AttributeValueList: vals(n("1"))}}, "",
			"One or more parameter values were invalid: AttributeValueList can only be used with a ComparisonOperator for Attribute: a"},
		{"nothing", map[string]ExpectedValue{"a": {}}, "",
			"One or more parameter values were invalid: Value must be provided when Exists is null for Attribute: a"},
		{"exists true without value", map[string]ExpectedValue{"a": {Exists: bp(true)}}, "",
			"One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: a"},
		{"exists false with value", map[string]ExpectedValue{"a": {Exists: bp(false), Value: n("1")}}, "",
			"One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: a"},
		{"exists and operator", map[string]ExpectedValue{"a": {Exists: bp(true), ComparisonOperator: "NULL"}}, "",
			"One or more parameter values were invalid: Exists and ComparisonOperator cannot be used together for Attribute: a"},
		{"unknown operator", map[string]ExpectedValue{"a": {ComparisonOperator: "LIKE", Value: n("1")}}, "",
			"1 validation error detected: Value 'LIKE' at 'expected.a.member.comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"},
		{"operator without values", map[string]ExpectedValue{"a": {ComparisonOperator: "EQ"}}, "",
			"One or more parameter values were invalid: Value or AttributeValueList must be used with ComparisonOperator: EQ for Attribute: a"},
		{"EQ with two", map[string]ExpectedValue{"a": {ComparisonOperator: "EQ", AttributeValueList: vals(n("1"), n("2"))}}, "",
			"One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"},
		{"EQ with none", map[string]ExpectedValue{"a": {ComparisonOperator: "EQ", AttributeValueList: vals()}}, "",
			"One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"},
		{"NULL with one", map[string]ExpectedValue{"a": {ComparisonOperator: "NULL", AttributeValueList: vals(n("1"))}}, "",
			"One or more parameter values were invalid: Invalid number of argument(s) for the NULL ComparisonOperator"},
		{"BETWEEN with one", map[string]ExpectedValue{"a": {ComparisonOperator: "BETWEEN", AttributeValueList: vals(n("1"))}}, "",
			"One or more parameter values were invalid: Invalid number of argument(s) for the BETWEEN ComparisonOperator"},
		{"IN with none", map[string]ExpectedValue{"a": {ComparisonOperator: "IN", AttributeValueList: vals()}}, "",
			"One or more parameter values were invalid: Invalid number of argument(s) for the IN ComparisonOperator"},
		{"mixed types", map[string]ExpectedValue{"a": {ComparisonOperator: "IN", AttributeValueList: vals(n("1"), ddb.S("1"))}}, "",
			"One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"},
		{"BETWEEN reversed", map[string]ExpectedValue{"a": {ComparisonOperator: "BETWEEN", AttributeValueList: vals(n("10"), n("9"))}}, "",
			"The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromExpected(tc.exp, tc.op)
			wantError(t, err, tc.want)
		})
	}
}

func TestFromFilter(t *testing.T) {
	c, err := FromFilter("ScanFilter", map[string]FilterCondition{
		"b": {ComparisonOperator: "GE", AttributeValueList: vals(n("3"))},
		"a": {ComparisonOperator: "CONTAINS", AttributeValueList: vals(ddb.S("x"))},
	}, "OR")
	if err != nil {
		t.Fatal(err)
	}
	want := orNode{
		l: funcNode{name: "contains", args: []operand{attr("a"), lit(ddb.S("x"))}},
		r: compareNode{op: ">=", l: attr("b"), r: lit(n("3"))},
	}
	if !reflect.DeepEqual(c.root, node(want)) {
		t.Fatalf("got %#v", c.root)
	}
	if c, err := FromFilter("QueryFilter", nil, ""); c != nil || err != nil {
		t.Fatalf("empty filter: %v, %v", c, err)
	}

	for _, tc := range []struct {
		name  string
		kind  string
		conds map[string]FilterCondition
		want  string
	}{
		{"no operator", "ScanFilter", map[string]FilterCondition{"a": {AttributeValueList: vals(n("1"))}},
			"1 validation error detected: Value null at 'scanFilter.a.member.comparisonOperator' failed to satisfy constraint: Member must not be null"},
		{"unknown operator", "QueryFilter", map[string]FilterCondition{"a": {ComparisonOperator: "eq", AttributeValueList: vals(n("1"))}},
			"1 validation error detected: Value 'eq' at 'queryFilter.a.member.comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"},
		{"count", "ScanFilter", map[string]FilterCondition{"a": {ComparisonOperator: "GT"}},
			"One or more parameter values were invalid: Invalid number of argument(s) for the GT ComparisonOperator"},
		{"LT on a set", "ScanFilter", map[string]FilterCondition{"a": {ComparisonOperator: "LT", AttributeValueList: vals(ddb.SS{"x"})}},
			"One or more parameter values were invalid: ComparisonOperator LT is not valid for SS AttributeValue type"},
		{"BEGINS_WITH on a number", "ScanFilter", map[string]FilterCondition{"a": {ComparisonOperator: "BEGINS_WITH", AttributeValueList: vals(n("1"))}},
			"One or more parameter values were invalid: ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type"},
		{"EQ on a bool", "ScanFilter", map[string]FilterCondition{"a": {ComparisonOperator: "EQ", AttributeValueList: vals(ddb.Bool(true))}},
			"One or more parameter values were invalid: ComparisonOperator EQ is not valid for BOOL AttributeValue type"},
		{"BETWEEN reversed strings", "ScanFilter", map[string]FilterCondition{"a": {ComparisonOperator: "BETWEEN", AttributeValueList: vals(ddb.S("b"), ddb.S("a"))}},
			"The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromFilter(tc.kind, tc.conds, "")
			wantError(t, err, tc.want)
		})
	}
}

func TestFromKeyConditions(t *testing.T) {
	hashOnly := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}}
	both := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}}
	eq := func(v ddb.Value) FilterCondition {
		return FilterCondition{ComparisonOperator: "EQ", AttributeValueList: vals(v)}
	}

	for _, tc := range []struct {
		name  string
		ks    ddb.KeySchema
		conds map[string]FilterCondition
		want  *KeyCondition
	}{
		{"hash only", hashOnly, map[string]FilterCondition{"pk": eq(ddb.S("a"))}, &KeyCondition{PartitionKey: ddb.S("a")}},
		{"hash of a composite key", both, map[string]FilterCondition{"pk": eq(ddb.S("a"))}, &KeyCondition{PartitionKey: ddb.S("a")}},
		{"EQ", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": eq(n("1"))},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortEQ, Values: vals(n("1"))}}},
		{"LT", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "LT", AttributeValueList: vals(n("1"))}},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortLT, Values: vals(n("1"))}}},
		{"LE", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "LE", AttributeValueList: vals(n("1"))}},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortLE, Values: vals(n("1"))}}},
		{"GT", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "GT", AttributeValueList: vals(n("1"))}},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortGT, Values: vals(n("1"))}}},
		{"GE", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "GE", AttributeValueList: vals(n("1"))}},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortGE, Values: vals(n("1"))}}},
		{"BETWEEN", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "BETWEEN", AttributeValueList: vals(n("1"), n("5"))}},
			&KeyCondition{PartitionKey: ddb.S("a"), Sort: &SortCondition{Op: SortBetween, Values: vals(n("1"), n("5"))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromKeyConditions(tc.conds, tc.ks)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v (sort %#v), want %#v", got, got.Sort, tc.want)
			}
		})
	}
	strKey := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeS}}
	got, err := FromKeyConditions(map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "BEGINS_WITH", AttributeValueList: vals(ddb.S("x"))}}, strKey)
	if err != nil || got.Sort == nil || got.Sort.Op != SortBeginsWith {
		t.Fatalf("BEGINS_WITH: %#v, %v", got, err)
	}

	for _, tc := range []struct {
		name  string
		ks    ddb.KeySchema
		conds map[string]FilterCondition
		want  string
	}{
		{"none", both, nil, "Conditions can be of length 1 or 2 only"},
		{"three", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": eq(n("1")), "x": eq(n("1"))}, "Conditions can be of length 1 or 2 only"},
		{"two on a hash-only table", hashOnly, map[string]FilterCondition{"pk": eq(ddb.S("a")), "x": eq(n("1"))}, "Query key condition not supported"},
		{"no hash condition", both, map[string]FilterCondition{"sk": eq(n("1"))}, "Query condition missed key schema element: pk"},
		{"non-key condition", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "x": eq(n("1"))}, "Query condition missed key schema element: sk"},
		{"not indexable", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "NE", AttributeValueList: vals(n("1"))}},
			"Attempted conditional constraint is not an indexable operation"},
		{"IN on hash", both, map[string]FilterCondition{"pk": {ComparisonOperator: "IN", AttributeValueList: vals(ddb.S("a"))}},
			"Attempted conditional constraint is not an indexable operation"},
		{"wrong type", both, map[string]FilterCondition{"pk": eq(n("1"))}, "One or more parameter values were invalid: Condition parameter type does not match schema type"},
		{"wrong sort type", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": eq(ddb.S("1"))}, "One or more parameter values were invalid: Condition parameter type does not match schema type"},
		{"range on hash", both, map[string]FilterCondition{"pk": {ComparisonOperator: "GT", AttributeValueList: vals(ddb.S("a"))}}, "Query key condition not supported"},
		{"count", both, map[string]FilterCondition{"pk": {ComparisonOperator: "EQ"}}, "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"},
		{"BEGINS_WITH on a number", both, map[string]FilterCondition{"pk": eq(ddb.S("a")), "sk": {ComparisonOperator: "BEGINS_WITH", AttributeValueList: vals(n("1"))}},
			"One or more parameter values were invalid: ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromKeyConditions(tc.conds, tc.ks)
			wantError(t, err, tc.want)
		})
	}
}

func TestFromAttributeUpdates(t *testing.T) {
	u, err := FromAttributeUpdates(map[string]AttributeUpdate{
		"put":     {Action: "PUT", Value: ddb.S("x")},
		"default": {Value: ddb.S("y")},
		"addn":    {Action: "ADD", Value: n("2")},
		"adds":    {Action: "ADD", Value: ddb.SS{"b"}},
		"addl":    {Action: "ADD", Value: ddb.L{n("9")}},
		"newl":    {Action: "ADD", Value: ddb.L{n("8")}},
		"gone":    {Action: "DELETE"},
		"dels":    {Action: "DELETE", Value: ddb.SS{"a"}},
		"newn":    {Action: "ADD", Value: n("-1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	old := ddb.Item{
		"pk": ddb.S("k"), "put": n("1"), "addn": n("1"), "adds": ddb.SS{"a"}, "addl": ddb.L{n("1")},
		"gone": ddb.S("bye"), "dels": ddb.SS{"a", "c"},
	}
	got, err := u.Apply(old)
	if err != nil {
		t.Fatal(err)
	}
	want := ddb.Item{
		"pk": ddb.S("k"), "put": ddb.S("x"), "default": ddb.S("y"), "addn": n("3"), "adds": ddb.SS{"a", "b"},
		"addl": ddb.L{n("1"), n("9")}, "newl": ddb.L{n("8")}, "dels": ddb.SS{"c"}, "newn": n("-1"),
	}
	if !sameItem(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	for _, name := range []string{"put", "default", "addn", "adds", "addl", "newl", "gone", "dels", "newn"} {
		if !u.Touches(name) {
			t.Errorf("does not touch %s", name)
		}
	}

	empty, err := FromAttributeUpdates(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := empty.Apply(old); err != nil || !sameItem(got, old) {
		t.Fatalf("empty AttributeUpdates: %v, %v", got, err)
	}

	// Type mismatches surface when applied, in the legacy API's words.
	u, err = FromAttributeUpdates(map[string]AttributeUpdate{"gone": {Action: "ADD", Value: n("1")}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Apply(old)
	wantError(t, err, "Type mismatch for attribute to update")
	u, err = FromAttributeUpdates(map[string]AttributeUpdate{"gone": {Action: "ADD", Value: ddb.L{n("1")}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Apply(old)
	wantError(t, err, "Type mismatch for attribute to update")
	u, err = FromAttributeUpdates(map[string]AttributeUpdate{"dels": {Action: "DELETE", Value: ddb.NS{n("1")}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Apply(old)
	wantError(t, err, "Type mismatch for attribute to update")

	for _, tc := range []struct {
		name string
		upd  map[string]AttributeUpdate
		want string
	}{
		{"put without value", map[string]AttributeUpdate{"a": {Action: "PUT"}}, "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"},
		{"default without value", map[string]AttributeUpdate{"a": {}}, "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"},
		{"add without value", map[string]AttributeUpdate{"a": {Action: "ADD"}}, "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"},
		{"add a string", map[string]AttributeUpdate{"a": {Action: "ADD", Value: ddb.S("x")}}, "One or more parameter values were invalid: ADD action is not supported for the type S"},
		{"add a map", map[string]AttributeUpdate{"a": {Action: "ADD", Value: ddb.M{}}}, "One or more parameter values were invalid: ADD action is not supported for the type M"},
		{"delete a number", map[string]AttributeUpdate{"a": {Action: "DELETE", Value: n("1")}}, "One or more parameter values were invalid: DELETE action with value is not supported for the type N"},
		{"unknown action", map[string]AttributeUpdate{"a": {Action: "REPLACE", Value: n("1")}},
			"1 validation error detected: Value 'REPLACE' at 'attributeUpdates.a.member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromAttributeUpdates(tc.upd)
			wantError(t, err, tc.want)
		})
	}
}

func TestFromAttributesToGet(t *testing.T) {
	pr, err := FromAttributesToGet([]string{"a", "b.c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Path{{{Name: "a"}}, {{Name: "b.c"}}, {{Name: "d"}}}
	if !reflect.DeepEqual(pr.Paths, want) {
		t.Fatalf("got %#v", pr.Paths)
	}
	if pr, err := FromAttributesToGet(nil); pr != nil || err != nil {
		t.Fatalf("nil: %v, %v", pr, err)
	}
	_, err = FromAttributesToGet([]string{"a", "b", "a"})
	wantError(t, err, "One or more parameter values were invalid: Duplicate value in attribute name: a")
	_, err = FromAttributesToGet([]string{})
	wantError(t, err, "1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy constraint: Member must have length greater than or equal to 1")
	many := make([]string, 256)
	for i := range many {
		many[i] = "a" + strings.Repeat("x", i)
	}
	_, err = FromAttributesToGet(many)
	var e *Error
	if !errors.As(err, &e) || !strings.HasSuffix(e.Message, "Member must have length less than or equal to 255") {
		t.Fatalf("256 names: %v", err)
	}
}

func TestParseReturnValues(t *testing.T) {
	for s, want := range map[string]ReturnValues{
		"": ReturnNone, "NONE": ReturnNone, "ALL_OLD": ReturnAllOld, "UPDATED_OLD": ReturnUpdatedOld,
		"ALL_NEW": ReturnAllNew, "UPDATED_NEW": ReturnUpdatedNew,
	} {
		got, err := ParseReturnValues(s)
		if err != nil || got != want {
			t.Errorf("ParseReturnValues(%q) = %v, %v; want %v", s, got, err, want)
		}
		if s != "" && got.String() != s {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	_, err := ParseReturnValues("all_new")
	wantError(t, err, "1 validation error detected: Value 'all_new' at 'returnValues' failed to satisfy constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]")
}
