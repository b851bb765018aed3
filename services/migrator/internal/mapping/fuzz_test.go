package mapping

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
)

// FuzzParseFilter checks that any filter text either parses or fails with
// an *expr.Error, never panics, and that a parsed filter can be evaluated. (The DynamoDB JSON and Ion
// decoders are fuzzed in pkg/ddb.)
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "attribute_exists(a)", "attribute_not_exists(`x y`)", `begins_with(pk, "u\u00e9")`,
		`a = "x" AND b = 1.5E3 and c = -0`, `a = 1e999`, "`", `a = "`, "begins_with(a,", "a = 1 OR b = 2",
	} {
		f.Add(s)
	}
	it := ddb.Item{"a": ddb.S("x"), "b": ddb.MustN("1500"), "pk": ddb.B("u\xc3\xa9"), "x y": ddb.Null{}}
	f.Fuzz(func(t *testing.T, src string) {
		flt, err := ParseFilter(src)
		if err != nil {
			var e *expr.Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseFilter(%q) = %v, want an *expr.Error", src, err)
			}
			return
		}
		flt.Match(it)
		if flt.String() != src && flt != nil {
			t.Fatalf("String() = %q", flt.String())
		}
	})
}
