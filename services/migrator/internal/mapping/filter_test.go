package mapping

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
)

func TestFilterMatch(t *testing.T) {
	it := ddb.Item{
		"pk":      ddb.S("user#42"),
		"n":       ddb.MustN("1"),
		"b":       ddb.B("user-bin"),
		"nothing": ddb.Null{},
		"status":  ddb.S("active"),
		"a b":     ddb.S("spaced"),
	}
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{"", true},
		{"   ", true},
		{"attribute_exists(pk)", true},
		{"attribute_exists(missing)", false},
		{"attribute_exists(nothing)", true}, // NULL exists
		{"attribute_not_exists(missing)", true},
		{"attribute_not_exists(pk)", false},
		{`begins_with(pk, "user#")`, true},
		{`begins_with(pk, "admin")`, false},
		{`begins_with(b, "user")`, false}, // B only begins with B, as in DynamoDB
		{`begins_with(n, "1")`, false},    // N never begins_with
		{`status = "active"`, true},
		{`status = "Active"`, false},
		{`n = 1`, true},
		{`n = 1.0`, true},
		{`n = 1E0`, true},
		{`n = 10E-1`, true},
		{`n = 2`, false},
		{`n = "1"`, false}, // a string never equals a number
		{`pk = 1`, false},
		{"`a b` = \"spaced\"", true},
		{`status = "active" AND begins_with(pk, "user") and attribute_exists(n) AnD n = 1`, true},
		{`status = "active" AND n = 2`, false},
		{`status = "\u0061ctive"`, true},
		{`begins_with( pk ,"user#4" )`, true},
		// The whole condition language, not only the old AND-of-four subset.
		{`status = "active" OR n = 2`, true},
		{`NOT status = "active"`, false},
		{`n BETWEEN 0 AND 1.5 AND n IN (1, 2)`, true},
		{`n < 2 AND n >= 1 AND n <> 3`, true},
		{`(status = "x" OR n = 1) AND attribute_type(pk, "S")`, true},
		{`contains(pk, "#4") AND size(pk) = 7`, true},
		{`attribute_not_exists(missing) AND missing <> 1`, true},
		{`missing < 1`, false},
	} {
		t.Run(c.filter, func(t *testing.T) {
			f, err := ParseFilter(c.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(it); got != c.want {
				t.Fatalf("Match = %v, want %v", got, c.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	for _, c := range []struct {
		filter, msg string
	}{
		{"pk", `Invalid filter: Syntax error; token: "<EOF>", near: "pk"`},
		{"pk =", `Invalid filter: Syntax error; token: "<EOF>", near: "="`},
		{`pk = "x" AND`, `Invalid filter: Syntax error; token: "<EOF>", near: "AND"`},
		{`pk = "x" pk = "y"`, `Invalid filter: Syntax error; token: "pk", near: "\"x\" pk ="`},
		{`attribute_exists(pk`, `Invalid filter: Syntax error; token: "<EOF>", near: "pk"`},
		{`attribute_exists()`, `Invalid filter: Syntax error; token: ")", near: "()"`},
		{`begins_with(pk)`, "Invalid filter: Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 1"},
		{`begins_with(pk, 1)`, "Invalid filter: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"},
		{`foo(pk)`, "Invalid filter: Invalid function name; function: foo"},
		{`pk = "unterminated`, `Invalid filter: Syntax error; token: "\"unterminated", near: "= \"unterminated"`},
		{`pk = 1e999`, `Invalid filter: invalid number: "1e999": magnitude above`},
		{"`unterminated = 1", "Invalid filter: Syntax error; token: \"`\", near: \"`unterminated\""},
		{`pk = :v`, "Invalid filter: An expression attribute value used in expression is not defined; attribute value: :v"},
	} {
		t.Run(c.filter, func(t *testing.T) {
			_, err := ParseFilter(c.filter)
			var e *expr.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *expr.Error", err)
			}
			if len(e.Message) < len(c.msg) || e.Message[:len(c.msg)] != c.msg {
				t.Fatalf("err = %v\nwant %s...", err, c.msg)
			}
		})
	}
}
