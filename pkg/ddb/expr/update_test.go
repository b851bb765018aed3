package expr

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Test helpers that build the syntax tree directly, so update application
// is tested without the parser.

// tp parses a test path: names and [i] indexes, e.g. "a.b[2].c".
func tp(s string) Path {
	var p Path
	for _, part := range strings.Split(s, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			p = append(p, PathElem{Name: name})
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil {
				panic("bad test path " + s)
			}
			p = append(p, PathElem{Index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return p
}

func n(s string) ddb.N { return ddb.MustN(s) }

func val(v ddb.Value) operand         { return valueOperand{name: ":v", value: v} }
func pth(s string) operand            { return pathOperand{path: tp(s)} }
func plus(l, r operand) operand       { return arithOperand{op: '+', l: l, r: r} }
func minus(l, r operand) operand      { return arithOperand{op: '-', l: l, r: r} }
func ine(s string, d operand) operand { return ifNotExistsOperand{path: tp(s), def: d} }
func lapp(l, r operand) operand       { return listAppendOperand{l: l, r: r} }

func set(p string, v operand) action   { return action{kind: actionSet, path: tp(p), value: v} }
func rm(p string) action               { return action{kind: actionRemove, path: tp(p)} }
func add(p string, v ddb.Value) action { return action{kind: actionAdd, path: tp(p), value: val(v)} }
func del(p string, v ddb.Value) action { return action{kind: actionDelete, path: tp(p), value: val(v)} }

func upd(acts ...action) *Update { return &Update{actions: acts} }

// sameItem compares items as DynamoDB values, and sets regardless of order.
func sameItem(a, b ddb.Item) bool { return ddb.EqualItems(a, b) }

func TestApply(t *testing.T) {
	doc := func() ddb.Item {
		return ddb.Item{
			"pk":  ddb.S("k"),
			"n":   n("5"),
			"s":   ddb.S("hello"),
			"ss":  ddb.SS{"a", "b", "c"},
			"ns":  ddb.NS{n("1"), n("2")},
			"bs":  ddb.BS{{1}, {2}},
			"l":   ddb.L{n("0"), n("1"), n("2"), n("3"), n("4"), n("5")},
			"m":   ddb.M{"x": n("3"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": ddb.L{ddb.S("hi"), ddb.M{"x": ddb.M{"y": ddb.L{n("3"), n("5"), n("7")}}, "q": n("2")}}},
			"one": ddb.M{"b": n("1")},
		}
	}
	with := func(kv ...any) ddb.Item {
		it := doc()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(it, kv[i].(string))
				continue
			}
			it[kv[i].(string)] = kv[i+1].(ddb.Value)
		}
		return it
	}
	for _, tc := range []struct {
		name    string
		old     ddb.Item // nil: doc()
		missing bool     // old is nil: the item does not exist
		u       *Update
		want    ddb.Item
		wantErr string
	}{
		// SET
		{name: "set new attribute", u: upd(set("b", val(n("4")))), want: with("b", n("4"))},
		{name: "set replaces", u: upd(set("s", val(n("4")))), want: with("s", n("4"))},
		{name: "set several", u: upd(set("x", val(n("4"))), set("y", val(n("4")))), want: with("x", n("4"), "y", n("4"))},
		{name: "set copy", u: upd(set("b", pth("s"))), want: with("b", ddb.S("hello"))},
		{name: "set copy missing", u: upd(set("c", pth("z"))), wantErr: msgNoAttribute},
		{name: "operands read the old item", u: upd(set("x", val(n("4"))), set("y", pth("x"))), wantErr: msgNoAttribute},
		{name: "set a = a", u: upd(set("s", pth("s"))), want: doc()},
		{name: "set on missing item", missing: true, u: upd(set("b", val(n("4")))), want: ddb.Item{"b": n("4")}},
		{name: "empty list map string binary", missing: true,
			u:    upd(set("d", val(ddb.L{})), set("e", val(ddb.M{})), set("f", val(ddb.S(""))), set("g", val(ddb.B{}))),
			want: ddb.Item{"d": ddb.L{}, "e": ddb.M{}, "f": ddb.S(""), "g": ddb.B{}}},
		// arithmetic
		{name: "plus", u: upd(set("b", plus(val(n("4")), val(n("3"))))), want: with("b", n("7"))},
		{name: "minus", u: upd(set("b", minus(val(n("5")), val(n("2"))))), want: with("b", n("3"))},
		{name: "rmw plus", u: upd(set("n", plus(pth("n"), val(n("3"))))), want: with("n", n("8"))},
		{name: "rmw plus reversed", u: upd(set("n", plus(val(n("4")), pth("n")))), want: with("n", n("9"))},
		{name: "both paths", u: upd(set("n", plus(pth("n"), pth("m.x")))), want: with("n", n("8"))},
		{name: "nested minus", u: upd(set("nn", minus(val(n("7")), pth("n")))), want: with("nn", n("2"))},
		{name: "exact precision", u: upd(set("b", plus(val(n("1")), val(n("10000000000000000000000"))))), want: with("b", n("10000000000000000000001"))},
		{name: "decimal", u: upd(set("b", plus(val(n("0.1")), val(n("0.2"))))), want: with("b", n("0.3"))},
		{name: "plus string", u: upd(set("b", plus(val(ddb.S("dog")), val(n("3"))))), wantErr: msgOperandType},
		{name: "plus path string", u: upd(set("b", plus(pth("s"), val(n("3"))))), wantErr: msgOperandType},
		{name: "minus list", u: upd(set("b", minus(val(n("3")), pth("l")))), wantErr: msgOperandType},
		{name: "plus missing", u: upd(set("b", plus(pth("zz"), val(n("3"))))), wantErr: msgNoAttribute},
		{name: "plus overflow", u: upd(set("b", plus(val(n("9e125")), val(n("9e125"))))), wantErr: ddb.MsgNumberOverflow},
		{name: "minus overflow", u: upd(set("b", minus(val(n("9e125")), val(n("-9e125"))))), wantErr: ddb.MsgNumberOverflow},
		{name: "plus in range", u: upd(set("b", plus(val(n("9e125")), val(n("9e124"))))), want: with("b", n("9.9e125"))},
		{name: "plus imprecise", u: upd(set("b", plus(val(n("1e50")), val(n("1"))))), wantErr: ddb.MsgNumberOverflow},
		{name: "minus imprecise", u: upd(set("b", minus(val(n("1e50")), val(n("1"))))), wantErr: ddb.MsgNumberOverflow},
		// if_not_exists
		{name: "if_not_exists missing", u: upd(set("a", ine("a", val(n("2"))))), want: with("a", n("2"))},
		{name: "if_not_exists present", u: upd(set("n", ine("n", val(n("2"))))), want: doc()},
		{name: "if_not_exists other attribute", u: upd(set("b", ine("s", val(n("6"))))), want: with("b", ddb.S("hello"))},
		{name: "if_not_exists nested", u: upd(set("b", ine("m.c.y", val(n("6"))))), want: with("b", n("3"))},
		{name: "if_not_exists plus", u: upd(set("b", plus(ine("b", val(n("2"))), val(n("3"))))), want: with("b", n("5"))},
		// list_append
		{name: "list_append values", u: upd(set("a", lapp(val(ddb.L{n("4"), ddb.S("hello")}), val(ddb.L{ddb.S("hi"), n("7")})))),
			want: with("a", ddb.L{n("4"), ddb.S("hello"), ddb.S("hi"), n("7")})},
		{name: "list_append to path", u: upd(set("l", lapp(pth("l"), val(ddb.L{n("6")})))),
			want: with("l", ddb.L{n("0"), n("1"), n("2"), n("3"), n("4"), n("5"), n("6")})},
		{name: "list_append prepend", u: upd(set("l", lapp(val(ddb.L{ddb.S("dog")}), pth("l")))),
			want: with("l", ddb.L{ddb.S("dog"), n("0"), n("1"), n("2"), n("3"), n("4"), n("5")})},
		{name: "list_append if_not_exists", u: upd(set("a", lapp(ine("a", val(ddb.L{})), val(ddb.L{ddb.S("x")})))), want: with("a", ddb.L{ddb.S("x")})},
		{name: "list_append not a list", u: upd(set("a", lapp(val(ddb.L{n("4")}), val(ddb.S("hi"))))), wantErr: msgOperandType},
		{name: "list_append path not a list", u: upd(set("a", lapp(pth("s"), val(ddb.L{n("4")})))), wantErr: msgOperandType},
		{name: "list_append missing path", u: upd(set("a", lapp(pth("zz"), val(ddb.L{n("4")})))), wantErr: msgNoAttribute},
		// REMOVE
		{name: "remove", u: upd(rm("s")), want: with("s", nil)},
		{name: "remove missing attribute", u: upd(rm("zz")), want: doc()},
		{name: "remove then copy reads old", u: upd(rm("s"), set("b", pth("s"))), want: with("s", nil, "b", ddb.S("hello"))},
		{name: "remove nested", u: upd(rm("m.list[1].x.y[1]"), rm("m.list[1].q")),
			want: with("m", ddb.M{"x": n("3"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": ddb.L{ddb.S("hi"), ddb.M{"x": ddb.M{"y": ddb.L{n("3"), n("7")}}}}})},
		{name: "remove list element after end", u: upd(rm("l[17]")), want: doc()},
		{name: "remove missing map entry", u: upd(rm("m.zz")), want: doc()},
		{name: "remove singleton map", u: upd(rm("one.b")), want: with("one", ddb.M{})},
		{name: "remove singleton list", old: ddb.Item{"a": ddb.L{n("1")}}, u: upd(rm("a[0]")), want: ddb.Item{"a": ddb.L{}}},
		{name: "remove shifts, indexes are the old ones", u: upd(rm("l[1]"), set("l[3]", val(n("17")))),
			want: with("l", ddb.L{n("0"), n("2"), n("17"), n("4"), n("5")})},
		{name: "remove shifts, order does not matter", u: upd(set("l[3]", val(n("17"))), rm("l[1]")),
			want: with("l", ddb.L{n("0"), n("2"), n("17"), n("4"), n("5")})},
		{name: "remove several elements", u: upd(rm("l[1]"), rm("l[4]"), rm("l[2]")),
			want: with("l", ddb.L{n("0"), n("3"), n("5")})},
		{name: "remove element and inside a later one", u: upd(rm("m.list[0]"), rm("m.list[1].q")),
			want: with("m", ddb.M{"x": n("3"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": ddb.L{ddb.M{"x": ddb.M{"y": ddb.L{n("3"), n("5"), n("7")}}}}})},
		{name: "remove through a scalar", u: upd(rm("s.c")), wantErr: msgInvalidPath},
		{name: "remove through a list by name", u: upd(rm("l.c")), wantErr: msgInvalidPath},
		{name: "remove through a missing attribute", u: upd(rm("c.c")), wantErr: msgInvalidPath},
		{name: "remove index of a scalar", u: upd(rm("s[0]")), wantErr: msgInvalidPath},
		{name: "remove index of a missing attribute", u: upd(rm("zz[0]")), wantErr: msgInvalidPath},
		{name: "remove nested from a missing item", missing: true, u: upd(rm("x.y"), rm("x[0]")), want: ddb.Item{}},
		// nested SET
		{name: "set nested", u: upd(set("m.x", val(n("7")))), want: with("m", ddb.M{"x": n("7"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": doc()["m"].(ddb.M)["list"]})},
		{name: "set nested new", u: upd(set("one.d", val(n("3")))), want: with("one", ddb.M{"b": n("1"), "d": n("3")})},
		{name: "set nested different type", u: upd(set("m.c", val(n("7")))), want: with("m", ddb.M{"x": n("3"), "y": n("4"), "c": n("7"), "list": doc()["m"].(ddb.M)["list"]})},
		{name: "set list element", u: upd(set("l[1]", val(ddb.S("hello")))), want: with("l", ddb.L{n("0"), ddb.S("hello"), n("2"), n("3"), n("4"), n("5")})},
		{name: "set deep", u: upd(set("m.list[1].x.y[1]", val(n("9")))),
			want: with("m", ddb.M{"x": n("3"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": ddb.L{ddb.S("hi"), ddb.M{"x": ddb.M{"y": ddb.L{n("3"), n("9"), n("7")}}, "q": n("2")}}})},
		{name: "set from deep path", u: upd(set("z", pth("m.list[1].x.y[2]"))), want: with("z", n("7"))},
		{name: "multi nested", old: ddb.Item{"a": ddb.M{"x": n("3"), "y": n("4"), "c": ddb.M{"y": n("3")}}, "b": ddb.M{"x": n("1"), "y": n("2")}},
			u:    upd(set("a.b", val(n("10"))), set("a.c.d", val(ddb.S("dog"))), set("b.x", val(n("17"))), rm("a.x"), rm("b.y")),
			want: ddb.Item{"a": ddb.M{"y": n("4"), "b": n("10"), "c": ddb.M{"y": n("3"), "d": ddb.S("dog")}}, "b": ddb.M{"x": n("17")}}},
		{name: "set past the end appends", old: ddb.Item{"a": ddb.L{ddb.S("one"), ddb.S("two"), ddb.S("three")}},
			u: upd(set("a[7]", val(ddb.S("hello")))), want: ddb.Item{"a": ddb.L{ddb.S("one"), ddb.S("two"), ddb.S("three"), ddb.S("hello")}}},
		{name: "appends in index order", old: ddb.Item{"a": ddb.L{ddb.S("one")}},
			u:    upd(set("a[84]", val(ddb.S("a1"))), set("a[37]", val(ddb.S("a2"))), set("a[17]", val(ddb.S("a3"))), set("a[50]", val(ddb.S("a4")))),
			want: ddb.Item{"a": ddb.L{ddb.S("one"), ddb.S("a3"), ddb.S("a2"), ddb.S("a4"), ddb.S("a1")}}},
		{name: "append and remove", old: ddb.Item{"a": ddb.L{n("0"), n("1"), n("2")}},
			u: upd(rm("a[0]"), set("a[9]", val(n("9"))), rm("a[3]")), want: ddb.Item{"a": ddb.L{n("1"), n("2"), n("9")}}},
		{name: "set through a scalar", u: upd(set("s.c", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set through a list by name", u: upd(set("l.c", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set through a missing attribute", u: upd(set("c.c", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set index of a scalar", u: upd(set("s[0]", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set index of a map", u: upd(set("m[0]", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set index of a missing attribute", u: upd(set("b[0]", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set nested on a missing item", missing: true, u: upd(set("c.c", val(n("7")))), wantErr: msgInvalidPath},
		{name: "set through a missing list element", u: upd(set("l[9].x", val(n("7")))), wantErr: msgInvalidPath},
		// ADD
		{name: "add number", u: upd(add("n", n("4"))), want: with("n", n("9"))},
		{name: "add negative", u: upd(add("n", n("-5.5"))), want: with("n", n("-0.5"))},
		{name: "add number new", u: upd(add("b", n("7"))), want: with("b", n("7"))},
		{name: "add number on missing item", missing: true, u: upd(add("b", n("8"))), want: ddb.Item{"b": n("8")}},
		{name: "add string value", u: upd(add("n", ddb.S("hello"))), wantErr: "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"},
		{name: "add to a string", u: upd(add("s", n("1"))), wantErr: msgOperandType},
		{name: "add list value", u: upd(add("l", ddb.L{n("1")})), wantErr: "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: LIST"},
		{name: "add overflow", old: ddb.Item{"n": n("9.9999999999999999999999999999999999999E+125")}, u: upd(add("n", n("1e125"))), wantErr: ddb.MsgNumberOverflow},
		{name: "add to string set", u: upd(add("ss", ddb.SS{"d"})), want: with("ss", ddb.SS{"a", "b", "c", "d"})},
		{name: "add to string set overlapping", u: upd(add("ss", ddb.SS{"c", "a", "x"})), want: with("ss", ddb.SS{"a", "b", "c", "x"})},
		{name: "add to number set by value", u: upd(add("ns", ddb.NS{n("1.0"), n("3")})), want: with("ns", ddb.NS{n("1"), n("2"), n("3")})},
		{name: "add to binary set", u: upd(add("bs", ddb.BS{{2}, {3}})), want: with("bs", ddb.BS{{1}, {2}, {3}})},
		{name: "add set new", u: upd(add("b", ddb.SS{"dog"})), want: with("b", ddb.SS{"dog"})},
		{name: "add set of another type", u: upd(add("ss", ddb.NS{n("1")})), wantErr: msgOperandType},
		{name: "add set to a number", u: upd(add("n", ddb.NS{n("1")})), wantErr: msgOperandType},
		{name: "add number to a set", u: upd(add("ns", n("1"))), wantErr: msgOperandType},
		{name: "add nested number", u: upd(add("m.x", n("1"))), want: with("m", ddb.M{"x": n("4"), "y": n("4"), "c": ddb.M{"y": n("3")}, "list": doc()["m"].(ddb.M)["list"]})},
		{name: "add nested new", u: upd(add("one.c", ddb.SS{"z"})), want: with("one", ddb.M{"b": n("1"), "c": ddb.SS{"z"}})},
		{name: "add through a missing attribute", u: upd(add("zz.c", n("1"))), wantErr: msgInvalidPath},
		// DELETE
		{name: "delete from set", u: upd(del("ss", ddb.SS{"c", "b"})), want: with("ss", ddb.SS{"a"})},
		{name: "delete absent element", u: upd(del("ss", ddb.SS{"pig"})), want: doc()},
		{name: "delete every element removes the attribute", u: upd(del("ss", ddb.SS{"a", "b", "c", "d"})), want: with("ss", nil)},
		{name: "delete from a missing attribute", u: upd(del("zz", ddb.SS{"a"})), want: doc()},
		{name: "delete from number set by value", u: upd(del("ns", ddb.NS{n("2.00")})), want: with("ns", ddb.NS{n("1")})},
		{name: "delete from binary set", u: upd(del("bs", ddb.BS{{1}})), want: with("bs", ddb.BS{{2}})},
		{name: "delete type mismatch", u: upd(del("ss", ddb.NS{n("1")})), wantErr: msgOperandType},
		{name: "delete from a string", u: upd(del("s", ddb.SS{"h"})), wantErr: msgOperandType},
		{name: "delete a string", u: upd(del("ss", ddb.S("a"))), wantErr: "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: STRING"},
		{name: "delete empties a set in a list", old: ddb.Item{"a": ddb.L{ddb.SS{"x"}, n("1")}}, u: upd(del("a[0]", ddb.SS{"x"})), want: ddb.Item{"a": ddb.L{n("1")}}},
		{name: "delete nested", old: ddb.Item{"a": ddb.M{"s": ddb.SS{"x", "y"}}}, u: upd(del("a.s", ddb.SS{"x"})), want: ddb.Item{"a": ddb.M{"s": ddb.SS{"y"}}}},
		// mixed, in order
		{name: "all clauses", u: upd(set("b", val(n("1"))), rm("s"), add("n", n("1")), del("ss", ddb.SS{"a"})),
			want: with("b", n("1"), "s", nil, "n", n("6"), "ss", ddb.SS{"b", "c"})},
		{name: "nil update", u: nil, want: doc()},
		{name: "empty path", u: upd(action{kind: actionSet, value: val(n("1"))}), wantErr: msgInvalidPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := tc.old
			if old == nil && !tc.missing {
				old = doc()
			}
			before := ddb.EncodeItem(old)
			got, err := tc.u.Apply(old)
			if string(ddb.EncodeItem(old)) != string(before) {
				t.Fatalf("Apply changed the old item: %v", old)
			}
			if tc.wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || e.Message != tc.wantErr {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !sameItem(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("result invalid: %v", err)
			}
		})
	}
}

// TestApplyDoesNotShare checks that the result shares nothing mutable with
// the old item or the update's values: changing the result in place leaves
// both as they were, so a retried Apply gives the same answer.
func TestApplyDoesNotShare(t *testing.T) {
	v := ddb.M{"k": ddb.L{n("1")}}
	old := ddb.Item{"a": ddb.M{"b": ddb.L{n("1"), n("2")}}, "c": ddb.SS{"x"}}
	u := upd(set("v", val(v)), set("a.b[0]", val(n("9"))), add("c", ddb.SS{"y"}), set("w", pth("a")))
	want, err := u.Apply(old)
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Apply(old)
	if err != nil {
		t.Fatal(err)
	}
	got["v"].(ddb.M)["k"].(ddb.L)[0] = ddb.S("changed")
	got["a"].(ddb.M)["b"].(ddb.L)[1] = ddb.S("changed")
	got["w"].(ddb.M)["b"].(ddb.L)[1] = ddb.S("changed")
	got["c"].(ddb.SS)[0] = "changed"
	if !ddb.Equal(v, ddb.M{"k": ddb.L{n("1")}}) {
		t.Errorf("update value changed: %v", v)
	}
	if !sameItem(old, ddb.Item{"a": ddb.M{"b": ddb.L{n("1"), n("2")}}, "c": ddb.SS{"x"}}) {
		t.Errorf("old item changed: %v", old)
	}
	again, err := u.Apply(old)
	if err != nil || !sameItem(again, want) {
		t.Errorf("second Apply = %v, %v; want %v", again, err, want)
	}
}

func TestApplyNesting(t *testing.T) {
	var deep ddb.Value = n("1")
	for range ddb.MaxDepth {
		deep = ddb.M{"x": deep}
	}
	u := upd(set("a", val(deep)))
	if _, err := u.Apply(nil); err != nil {
		t.Fatalf("%d levels: %v", ddb.MaxDepth, err)
	}
	u = upd(set("a", val(ddb.L{deep})))
	var e *Error
	if _, err := u.Apply(nil); !errors.As(err, &e) || e.Message != msgNesting {
		t.Fatalf("%d levels: got %v, want %q", ddb.MaxDepth+1, err, msgNesting)
	}
}

func TestTouches(t *testing.T) {
	u := upd(set("a.b", val(n("1"))), rm("c[2]"), add("d", n("1")), del("e", ddb.SS{"x"}))
	for name, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": true, "f": false} {
		if got := u.Touches(name); got != want {
			t.Errorf("Touches(%q) = %v, want %v", name, got, want)
		}
	}
	if (*Update)(nil).Touches("a") {
		t.Error("nil update touches a")
	}
}

func TestCreatesItem(t *testing.T) {
	for _, tc := range []struct {
		u    *Update
		want bool
	}{
		{nil, true},
		{upd(), true},
		{upd(rm("a")), false},
		{upd(rm("a"), del("b", ddb.SS{"x"})), false},
		{upd(rm("a"), set("b", val(n("1")))), true},
		{upd(add("a", n("1"))), true},
	} {
		if got := tc.u.CreatesItem(); got != tc.want {
			t.Errorf("%v: CreatesItem = %v, want %v", tc.u, got, tc.want)
		}
	}
}

// BenchmarkApply measures the read-modify-write hot path: an ADD counter
// increment on a typical item, and a nested SET on a larger one.
func BenchmarkApply(b *testing.B) {
	small := ddb.Item{"pk": ddb.S("user#1"), "counter": n("41"), "name": ddb.S("Ada"), "tags": ddb.SS{"a", "b"}}
	large := ddb.Item{"pk": ddb.S("user#1")}
	for i := range 100 {
		large["attr"+strconv.Itoa(i)] = ddb.M{"list": ddb.L{n("1"), n("2"), ddb.S(strings.Repeat("x", 100))}}
	}
	for _, bc := range []struct {
		name string
		old  ddb.Item
		u    *Update
	}{
		{"add-counter", small, upd(add("counter", n("1")))},
		{"set-nested-large-item", large, upd(set("attr7.list[1]", val(n("5"))))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.u.Apply(bc.old); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
