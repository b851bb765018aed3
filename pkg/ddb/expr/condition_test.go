package expr

import (
	"errors"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

func TestConditionMatch(t *testing.T) {
	it := item(t, sample)
	vals := values(t, sampleValues)
	for _, c := range []struct {
		expr string
		want bool
	}{
		// Comparisons: same type by value, different types never equal.
		{"n = :n10", true},
		{"n = :n10e", true}, // 1E1 is 10
		{"n = :s", false},
		{"n <> :s", true},
		{"n <> :n10", false},
		{"nope = :n10", false},
		{"nope <> :n10", true}, // a missing attribute is not equal to anything
		{"n < :n20", true},
		{"n < :n5", false},
		{"n <= :n10", true},
		{"n > :n5", true},
		{"n >= :n11", false},
		{"neg < :n0", true},
		{"neg > :neg", true},
		{"s > :hello", true},
		{"s < :world", true},
		{"b > :b1", true},
		{"b < :b12", false},
		{"n < :s", false},  // number vs string: false, not an error
		{"t < :n5", false}, // a BOOL attribute does not order
		{"nope < :n5", false},
		{":n5 < n", true},
		{"n = n10", false}, // path vs missing path
		{"ss = :ss", true}, // sets compare as sets
		{"ss = :ss2", false},
		{"m.b = :l", true},
		{"l[2] = :m", true},
		{"nul = :null", true},
		{"t = :true", true},
		// BETWEEN and IN.
		{"n BETWEEN :n5 AND :n20", true},
		{"n BETWEEN :n10 AND :n10", true},
		{"n BETWEEN :n11 AND :n20", false},
		{"s BETWEEN :hello AND :world", true},
		{"s BETWEEN :a AND :e", false},
		{"nope BETWEEN :n5 AND :n20", false},
		{"s BETWEEN :n5 AND :n20", false},
		{"n IN (:n5, :n10e)", true},
		{"n IN (:n5, :n20)", false},
		{"s IN (:s)", true},
		{"nope IN (:n5)", false},
		{"n in (:n5, :n10)", true}, // keywords are case-insensitive
		// Functions.
		{"attribute_exists(pk)", true},
		{"attribute_exists(nul)", true}, // NULL exists
		{"attribute_exists(nope)", false},
		{"attribute_not_exists(nope)", true},
		{"attribute_exists(m.c.d)", true},
		{"attribute_exists(m.c.x)", false},
		{"attribute_exists(m.b[1])", true},
		{"attribute_exists(m.b[2])", false},
		{"attribute_exists(m[0])", false}, // a map has no index
		{"attribute_exists(l.x)", false},  // a list has no names
		{"attribute_exists(#dot)", false}, // a name with a dot is one name
		{"attribute_exists(#m.a)", true},
		{"attribute_type(n, :tN)", true},
		{"attribute_type(n, :tS)", false},
		{"attribute_type(ss, :tSS)", true},
		{"attribute_type(nul, :tNULL)", true},
		{"attribute_type(m, :tM)", true},
		{"attribute_type(nope, :tS)", false},
		{"begins_with(pk, :user)", true},
		{"begins_with(s, :world)", false},
		{"begins_with(s, :empty)", true},
		{"begins_with(b, :b12)", true},
		{"begins_with(b, :b1)", true},
		{"begins_with(b, :a)", false}, // binary vs string
		{"begins_with(nope, :a)", false},
		{"contains(s, :world)", true},
		{"contains(s, :z)", false},
		{"contains(ss, :a)", true},
		{"contains(ss, :z)", false},
		{"contains(ns, :n25)", true},
		{"contains(ns, :n5)", false},
		{"contains(bs, :b1)", true},
		{"contains(l, :x)", true},
		{"contains(l, :n1)", true},
		{"contains(l, :m)", true},
		{"contains(l, :y)", false},
		{"contains(b, :b12)", true},
		{"contains(n, :n1)", false},
		{"contains(nope, :a)", false},
		// size.
		{"size(s) = :n11", true},
		{"size(uni) = :n3", true}, // UTF-16 code units: é is 1, 𝄞 is 2
		{"size(b) = :n3", true},
		{"size(ss) = :n3", true},
		{"size(l) = :n3", true},
		{"size(m) = :n3", true},
		{"size(blank) = :n0", true},
		{"size(n) = :n2", false},    // a number has no size
		{"size(nope) < :n5", false}, // a missing path has no size
		{"size(nope) <> :n5", true},
		{"size(ss) BETWEEN :n1 AND :n3", true},
		{":n3 = size(l)", true},
		// Boolean structure and precedence: NOT binds tighter than AND,
		// AND tighter than OR.
		{"n = :n10 AND s = :s", true},
		{"n = :n10 AND s = :a", false},
		{"n = :n5 OR s = :s", true},
		{"NOT n = :n5", true},
		{"NOT n = :n10", false},
		{"not attribute_exists(nope)", true},
		{"n = :n5 AND s = :a OR t = :true", true},
		{"n = :n5 AND (s = :a OR t = :true)", false},
		{"t = :true OR n = :n5 AND s = :a", true},
		{"NOT n = :n10 OR t = :true", true},
		{"NOT (n = :n10 OR t = :true)", false},
		{"NOT NOT n = :n10", true},
		{"(n) = :n10", true},
		{"n = (:n10)", true},
		{"(size(l)) = :n3", true},
		{"((n = :n10) AND (s = :s))", true},
		{"  n\t=\n:n10  ", true},
		// Names.
		{"#pk = :x", false},
		{"begins_with(#pk, :user)", true},
		{"#sp = :s", false},
		{"attribute_exists(#sp)", true},
		{"#st = :active", true},
		{"#m.c.d = :e", true},
	} {
		t.Run(c.expr, func(t *testing.T) {
			p := NewParams(sampleNames, vals)
			cond, err := ParseCondition(KindCondition, c.expr, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := cond.Match(it); got != c.want {
				t.Fatalf("Match = %v, want %v", got, c.want)
			}
		})
	}
}

func TestConditionNoItem(t *testing.T) {
	vals := values(t, sampleValues)
	for _, c := range []struct {
		expr string
		want bool
	}{
		{"attribute_not_exists(pk)", true},
		{"attribute_exists(pk)", false},
		{"pk <> :x", true},
		{"pk = :x", false},
		{"NOT contains(pk, :x)", true},
	} {
		cond, err := ParseCondition(KindCondition, c.expr, NewParams(nil, vals))
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range []ddb.Item{nil, {}} {
			if got := cond.Match(it); got != c.want {
				t.Errorf("%s on %v: Match = %v, want %v", c.expr, it, got, c.want)
			}
		}
	}
	var nilCond *Condition
	if !nilCond.Match(nil) {
		t.Fatal("a nil condition must match")
	}
}

func TestConditionErrors(t *testing.T) {
	vals := values(t, sampleValues)
	for _, c := range []struct {
		expr, msg string
	}{
		{"", "Invalid ConditionExpression: The expression can not be empty;"},
		{"   ", "Invalid ConditionExpression: The expression can not be empty;"},
		{"foo", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "foo"`},
		{"n = = :n5", `Invalid ConditionExpression: Syntax error; token: "=", near: "= = :n5"`},
		{"n = :n5 AND", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "AND"`},
		{"n = :n5 :n10", `Invalid ConditionExpression: Syntax error; token: ":n10", near: ":n5 :n10"`},
		{"_n = :n5", `Invalid ConditionExpression: Syntax error; token: "_", near: "_n"`},
		{"1n = :n5", `Invalid ConditionExpression: Syntax error; token: "1", near: "1n"`},
		{"n == :n5", `Invalid ConditionExpression: Syntax error; token: "=", near: "== :n5"`},
		{"n != :n5", `Invalid ConditionExpression: Syntax error; token: "!", near: "n !="`},
		{"n = :n5 OR", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "OR"`},
		{"(n = :n5", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: ":n5"`},
		{"n = :n5)", `Invalid ConditionExpression: Syntax error; token: ")", near: ":n5)"`},
		{"n BETWEEN :n5", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: ":n5"`},
		{"n IN ()", `Invalid ConditionExpression: Syntax error; token: ")", near: "()"`},
		{"n IN :n5", `Invalid ConditionExpression: Syntax error; token: ":n5", near: "IN :n5"`},
		{"a[-1] = :n5", `Invalid ConditionExpression: Syntax error; token: "-", near: "[-1"`},
		{"a[x] = :n5", `Invalid ConditionExpression: Syntax error; token: "x", near: "[x]"`},
		{"a. = :n5", `Invalid ConditionExpression: Syntax error; token: "=", near: ". = :n5"`},
		{"a AND b", `Invalid ConditionExpression: Syntax error; token: "AND", near: "a AND b"`},
		{"NOT n", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "n"`},
		{"n = :n5 AND (s)", `Invalid ConditionExpression: Syntax error; token: "<EOF>", near: ")"`},
		{"a[99999999999] = :n5", `Invalid ConditionExpression: Syntax error; token: "99999999999", near: "[99999999999]"`},
		{"n = :n5 OR OR s = :s", `Invalid ConditionExpression: Syntax error; token: "OR", near: "OR OR s"`},
		{"NOT = :n5", `Invalid ConditionExpression: Syntax error; token: "=", near: "NOT = :n5"`},
		{"between = :n5", `Invalid ConditionExpression: Syntax error; token: "between", near: "between ="`},
		{"status = :active", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"},
		{"m.Size = :n5", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: Size"},
		{"#nope = :n5", "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #nope"},
		{"n = :nope", "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :nope"},
		{"foo(n)", "Invalid ConditionExpression: Invalid function name; function: foo"},
		{"if_not_exists(n, :n5) = :n5", "Invalid ConditionExpression: Invalid function name; function: if_not_exists"},
		{"attribute_exists(n, s)", "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: attribute_exists, number of operands: 2"},
		{"size(n, s) = :n5", "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: size, number of operands: 2"},
		{"begins_with(s)", "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 1"},
		{"attribute_exists(:n5)", "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_exists"},
		{"size(:s) = :n5", "Invalid ConditionExpression: Operator or function requires a document path; operator or function: size"},
		{"attribute_type(n, :n5)", "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: attribute_type, operand type: N"},
		{"attribute_type(n, :x)", "Invalid ConditionExpression: Invalid attribute type name found; type: x, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}"},
		{"begins_with(s, :n5)", "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"},
		{"size(s)", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size"},
		{"size(s) AND n = :n5", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size"},
		{"attribute_exists(s) = :true", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: attribute_exists"},
		{"n = contains(s, :a)", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: contains"},
		{"n = n", "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [n]"},
		{"m.b[1] BETWEEN :n1 AND m.b[1]", "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: BETWEEN, first operand: [m, b, [1]]"},
		{"contains(s, s)", "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: contains, first operand: [s]"},
		{"n BETWEEN :n20 AND :n5", "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {N:20}, upper bound operand: AttributeValue: {N:5}"},
		{"n BETWEEN :n5 AND :s", "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:5}, upper bound operand: AttributeValue: {S:hello world}"},
		{"n < :true", "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: <, operand type: BOOL"},
		{":l >= n", "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: >=, operand type: L"},
		{"n BETWEEN :ss AND :ss", "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: SS"},
		{"((n = :n5))", "Invalid ConditionExpression: The expression has redundant parentheses;"},
		{"((n)) = :n5", "Invalid ConditionExpression: The expression has redundant parentheses;"},
		{"n = ((:n5))", "Invalid ConditionExpression: The expression has redundant parentheses;"},
		{"n IN (" + strings.Repeat(":n5, ", 100) + ":n5)", "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101"},
		{"a" + strings.Repeat(".a", 32) + " = :n5", "Invalid ConditionExpression: The document path has too many nesting levels; nesting levels: 33"},
		{strings.Repeat("n = :n5 AND ", 341) + "n = :n5", "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; expression size: 4099"},
	} {
		name := c.expr
		if len(name) > 60 {
			name = name[:60] + "..."
		}
		t.Run(name, func(t *testing.T) {
			_, err := ParseCondition(KindCondition, c.expr, NewParams(sampleNames, vals))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if e.Message != c.msg {
				t.Fatalf("message\n got %s\nwant %s", e.Message, c.msg)
			}
		})
	}
}

func TestKindInMessages(t *testing.T) {
	_, err := ParseCondition(KindFilter, "a =", nil)
	if err == nil || err.Error() != `Invalid FilterExpression: Syntax error; token: "<EOF>", near: "="` {
		t.Fatalf("err = %v", err)
	}
}

func TestLiteralCondition(t *testing.T) {
	it := item(t, sample)
	for _, c := range []struct {
		expr string
		want bool
	}{
		{`status = "active"`, true}, // no reserved words in literal mode
		{`n = 10`, true},
		{`n = 1E1`, true},
		{`n = 10.0`, true},
		{`n = "10"`, false},
		{`neg = -2.5`, true},
		{`neg < -2`, true},
		{`n > +9.5`, true},
		{`n > .5 AND n < 10.`, false},
		{`neg < -.5 AND n >= 1E+1`, true},
		{"`a b` = \"spaced\"", true},
		{"attribute_exists(`a b`)", true},
		{`begins_with(pk, "user#") AND NOT attribute_exists(nope)`, true},
		{`s IN ("x", "hello world")`, true},
		{`n BETWEEN 1 AND 100`, true},
		{`m.b[1] = 6`, true},
		{`l[0] = "x" OR n = 0`, true},
		{`s = "h\u00e9"`, false},
		{`size(s) = 11`, true},
	} {
		t.Run(c.expr, func(t *testing.T) {
			cond, err := ParseLiteralCondition(c.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := cond.Match(it); got != c.want {
				t.Fatalf("Match = %v, want %v", got, c.want)
			}
		})
	}
	for _, c := range []struct{ expr, msg string }{
		{`n = 1 OR OR m = 2`, `Invalid filter: Syntax error; token: "OR", near: "OR OR m"`},
		{`and = 1`, `Invalid filter: Syntax error; token: "and", near: "and ="`},
		{`n = 1e999`, `Invalid filter: invalid number: "1e999": magnitude above`},
		{`n = "unterminated`, `Invalid filter: Syntax error; token: "\"unterminated", near: "= \"unterminated"`},
		{"`unterminated = 1", "Invalid filter: Syntax error; token: \"`\", near: \"`unterminated\""},
		{`n = :v`, "Invalid filter: An expression attribute value used in expression is not defined; attribute value: :v"},
		{`n = 1.2.3`, `Invalid filter: invalid number: "1.2.3": unexpected '.'`},
	} {
		_, err := ParseLiteralCondition(c.expr)
		if err == nil || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %s...", c.expr, err, c.msg)
		}
	}
}

func TestConditionAttributes(t *testing.T) {
	vals := values(t, sampleValues)
	c, err := ParseCondition(KindFilter, "#m.a = :n1 AND (size(l) > :n1 OR NOT contains(s, :a)) AND n BETWEEN :n1 AND x AND y IN (:n1, z) AND attribute_exists(#sp)", NewParams(sampleNames, vals))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Attributes(), ",")
	if want := "a b,l,m,n,s,x,y,z"; got != want {
		t.Fatalf("Attributes = %s, want %s", got, want)
	}
	var nilCond *Condition
	if nilCond.Attributes() != nil {
		t.Fatal("nil condition reads attributes")
	}
}
