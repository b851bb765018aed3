package expr

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// The endpoint parses every request's expressions; these say what that
// costs (no parsed-expression cache yet: parsing resolves the request's
// names and values into the tree).

func BenchmarkParseCondition(b *testing.B) {
	vals := map[string]ddb.Value{":v": ddb.S("active"), ":n": ddb.MustN("10"), ":p": ddb.S("user#")}
	names := map[string]string{"#s": "status"}
	const src = "#s = :v AND attribute_exists(email) AND (score > :n OR begins_with(pk, :p))"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCondition(KindCondition, src, NewParams(names, vals)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseUpdate(b *testing.B) {
	vals := map[string]ddb.Value{":one": ddb.MustN("1"), ":now": ddb.S("2026-12-07"), ":l": ddb.L{ddb.S("x")}}
	const src = "SET seen = :now, hits = if_not_exists(hits, :one) + :one, tags = list_append(tags, :l) REMOVE stale"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseUpdate(src, NewParams(nil, vals)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	vals := map[string]ddb.Value{":v": ddb.S("active"), ":n": ddb.MustN("10"), ":p": ddb.S("user#")}
	c, err := ParseCondition(KindCondition, "#s = :v AND attribute_exists(email) AND (score > :n OR begins_with(pk, :p))",
		NewParams(map[string]string{"#s": "status"}, vals))
	if err != nil {
		b.Fatal(err)
	}
	it := ddb.Item{"pk": ddb.S("user#1"), "status": ddb.S("active"), "email": ddb.S("a@b"), "score": ddb.MustN("7.5")}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Match(it) {
			b.Fatal("no match")
		}
	}
}
