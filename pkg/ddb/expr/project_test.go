package expr

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func TestProjection(t *testing.T) {
	it := item(t, sample)
	for _, c := range []struct {
		expr, want string
	}{
		{"pk", `{"pk":{"S":"user#42"}}`},
		{"pk, n, nope", `{"n":{"N":"10"},"pk":{"S":"user#42"}}`},
		{"#sp, #pk", `{"a b":{"S":"spaced"},"pk":{"S":"user#42"}}`},
		{"m.a", `{"m":{"M":{"a":{"N":"1"}}}}`},
		{"m.a, m.c.d", `{"m":{"M":{"a":{"N":"1"},"c":{"M":{"d":{"S":"e"}}}}}}`},
		{"m.b[1]", `{"m":{"M":{"b":{"L":[{"N":"6"}]}}}}`},
		{"l[2].deep, l[0]", `{"l":{"L":[{"S":"x"},{"M":{"deep":{"S":"y"}}}]}}`},
		{"l[5], m.nope, m.a.x, s.x, n[0], nope.x", `{}`}, // paths that do not exist leave nothing behind
		{"m.c.nope, n", `{"n":{"N":"10"}}`},
		{"#m.c", `{"m":{"M":{"c":{"M":{"d":{"S":"e"}}}}}}`},
		{"#dot", `{}`},
	} {
		t.Run(c.expr, func(t *testing.T) {
			p := NewParams(sampleNames, nil)
			pr, err := ParseProjection(c.expr, p)
			if err != nil {
				t.Fatal(err)
			}
			got := pr.Apply(it)
			want := item(t, c.want)
			if !ddb.EqualItems(got, want) {
				t.Fatalf("Apply = %v, want %v", got, want)
			}
		})
	}
	before := item(t, sample)
	pr, _ := ParseProjection("m.a", nil)
	pr.Apply(it)
	if !ddb.EqualItems(it, before) {
		t.Fatal("Apply changed its item")
	}
	var nilPr *Projection
	if got := nilPr.Apply(it); !ddb.EqualItems(got, it) {
		t.Fatal("a nil projection must return the item")
	}
	if got := pr.Apply(nil); got != nil {
		t.Fatalf("projection of no item = %v", got)
	}
}

func TestProjectionErrors(t *testing.T) {
	for _, c := range []struct{ expr, msg string }{
		{"", "Invalid ProjectionExpression: The expression can not be empty;"},
		{"a,", `Invalid ProjectionExpression: Syntax error; token: "<EOF>", near: ","`},
		{"a,,b", `Invalid ProjectionExpression: Syntax error; token: ",", near: ",,b"`},
		{"a b", `Invalid ProjectionExpression: Syntax error; token: "b", near: "a b"`},
		{"a = b", `Invalid ProjectionExpression: Syntax error; token: "=", near: "a = b"`},
		{":v", `Invalid ProjectionExpression: Syntax error; token: ":v", near: ":v"`},
		{"name", "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name"},
		{"#x", "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; attribute name: #x"},
		{"a, a", "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]"},
		{"a.b, a", "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a]"},
		{"a[1].b, a[1]", "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a, [1], b], path two: [a, [1]]"},
		{"a.b, a[0]", "Invalid ProjectionExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a, [0]]"},
	} {
		_, err := ParseProjection(c.expr, NewParams(nil, nil))
		if err == nil || err.Error() != c.msg {
			t.Errorf("%q: err = %v\nwant %s", c.expr, err, c.msg)
		}
	}
}
