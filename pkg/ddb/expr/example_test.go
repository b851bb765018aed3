package expr_test

import (
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
)

// A request's expressions share one Params; Check runs once all of them
// are parsed, as DynamoDB reports unused names and values.
func Example() {
	p := expr.NewParams(
		map[string]string{"#s": "status"},
		map[string]ddb.Value{":active": ddb.S("active"), ":min": ddb.MustN("10")},
	)
	cond, err := expr.ParseCondition(expr.KindCondition, "#s = :active AND score >= :min", p)
	if err != nil {
		panic(err)
	}
	proj, err := expr.ParseProjection("id, #s", p)
	if err != nil {
		panic(err)
	}
	if err := p.Check(); err != nil {
		panic(err)
	}
	it := ddb.Item{"id": ddb.S("u1"), "status": ddb.S("active"), "score": ddb.MustN("12.5")}
	fmt.Println(cond.Match(it))
	fmt.Println(proj.Apply(it))
	// Output:
	// true
	// {"id":{"S":"u1"},"status":{"S":"active"}}
}

// Errors read as DynamoDB's, ready for a ValidationException.
func ExampleParseUpdate() {
	_, err := expr.ParseUpdate("SET count = count + :one", expr.NewParams(nil, map[string]ddb.Value{":one": ddb.MustN("1")}))
	fmt.Println(err)
	_, err = expr.ParseUpdate("SET a = :one,", expr.NewParams(nil, map[string]ddb.Value{":one": ddb.MustN("1")}))
	fmt.Println(err)
	// Output:
	// Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: count
	// Invalid UpdateExpression: Syntax error; token: "<EOF>", near: ","
}

// The migrator's --filter: the condition language with values in place.
func ExampleParseLiteralCondition() {
	f, err := expr.ParseLiteralCondition("`Flight Status` IN (\"Cancelled\", \"Diverted\") AND delay > 30")
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Match(ddb.Item{"Flight Status": ddb.S("Diverted"), "delay": ddb.MustN("45")}))
	fmt.Println(f.Match(ddb.Item{"Flight Status": ddb.S("On Time"), "delay": ddb.MustN("45")}))
	// Output:
	// true
	// false
}

// A key condition is checked against the table's key schema and comes out
// as the values a range read needs.
func ExampleParseKeyCondition() {
	ks := ddb.KeySchema{
		PartitionKey: ddb.KeyAttribute{Name: "user", Type: ddb.TypeS},
		SortKey:      ddb.KeyAttribute{Name: "ts", Type: ddb.TypeN},
	}
	vals := map[string]ddb.Value{":u": ddb.S("u1"), ":from": ddb.MustN("100"), ":to": ddb.MustN("200")}
	kc, err := expr.ParseKeyCondition("#u = :u AND ts BETWEEN :from AND :to",
		expr.NewParams(map[string]string{"#u": "user"}, vals), ks)
	if err != nil {
		panic(err)
	}
	fmt.Println(kc.PartitionKey, kc.Sort.Op == expr.SortBetween, kc.Sort.Values)
	// Output:
	// u1 true [100 200]
}
