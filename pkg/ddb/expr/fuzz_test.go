package expr

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// FuzzParse feeds any text to every parser: each either parses or fails
// with an *Error (DynamoDB's ValidationException message), never panics,
// and whatever parses evaluates on an item without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a = :n", "#m.b[1] BETWEEN :n AND :s", "NOT (a IN (:n, :s) OR begins_with(#m, :s))",
		"size(a) > :n AND attribute_type(a, :t)", "contains(l, :s)", "((a = :n))", "a[", "a.#m[0].b",
		"SET a = a + :n, l = list_append(if_not_exists(l, :l), :l) REMOVE b ADD c :n DELETE d :ss",
		"pk = :s AND sk BETWEEN :n AND :n", `a = "x" AND b = 1.5E3`, "`a b` = -1", "a = 1e999", "\xff",
	} {
		f.Add(s)
	}
	names := map[string]string{"#m": "m", "#a": "a b"}
	vals := map[string]ddb.Value{
		":n": ddb.MustN("1"), ":s": ddb.S("x"), ":t": ddb.S("N"), ":l": ddb.L{ddb.S("y")},
		":ss": ddb.SS{"x"}, ":b": ddb.B("x"),
	}
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}}
	it := ddb.Item{
		"a": ddb.MustN("1"), "l": ddb.L{ddb.S("x"), ddb.M{"b": ddb.S("x")}}, "pk": ddb.S("x"), "sk": ddb.MustN("1"),
		"m": ddb.M{"b": ddb.L{ddb.MustN("1"), ddb.S("x")}}, "a b": ddb.SS{"x"},
	}
	isErr := func(t *testing.T, what string, err error) {
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("%s: %T %v, want an *Error", what, err, err)
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := ParseCondition(KindCondition, src, NewParams(names, vals))
		isErr(t, "ParseCondition", err)
		if err == nil {
			c.Match(it)
			c.Match(nil)
		}
		c, err = ParseLiteralCondition(src)
		isErr(t, "ParseLiteralCondition", err)
		if err == nil {
			c.Match(it)
		}
		pr, err := ParseProjection(src, NewParams(names, vals))
		isErr(t, "ParseProjection", err)
		if err == nil {
			pr.Apply(it)
		}
		_, err = ParseUpdate(src, NewParams(names, vals))
		isErr(t, "ParseUpdate", err)
		kc, err := ParseKeyCondition(src, NewParams(names, vals), ks)
		isErr(t, "ParseKeyCondition", err)
		if err == nil && kc.PartitionKey == nil {
			t.Fatalf("key condition %q without a partition key", src)
		}
	})
}
