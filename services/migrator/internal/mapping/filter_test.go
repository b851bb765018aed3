package mapping

import (
	"errors"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
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
		{`begins_with(b, "user")`, true}, // B by bytes
		{`begins_with(n, "1")`, false},   // N never begins_with
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
		filter string
		pos    int
		msg    string
	}{
		{"pk", 3, "want '='"},
		{"pk =", 5, "want a string or number"},
		{"pk = x", 6, "want a string or number"},
		{`pk = "x" OR n = 1`, 10, "want AND"},
		{`pk = "x" AND`, 13, "want a condition"},
		{`contains(pk, "x")`, 1, "unknown function"},
		{`attribute_exists(pk`, 20, "want ')'"},
		{`attribute_exists()`, 18, "want an attribute name"},
		{`begins_with(pk)`, 15, "want ','"},
		{`begins_with(pk, 1)`, 17, "begins_with wants a string"},
		{`pk = "unterminated`, 6, "unterminated string"},
		{`pk = 1.2.3`, 6, "bad number"},
		{`pk = 1e999`, 6, "bad number"},
		{"`unterminated = 1", 1, "unterminated `name`"},
		{"`` = 1", 1, "empty attribute name"},
		{`pk = "a" pk = "b"`, 10, "want AND"},
		{`pk < 5`, 4, "want '='"},
		{`(pk = "x")`, 1, "want a condition"},
		{`pk = "bad \q escape"`, 6, "bad string"},
	} {
		t.Run(c.filter, func(t *testing.T) {
			_, err := ParseFilter(c.filter)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a SyntaxError", err)
			}
			if se.Pos != c.pos || !strings.Contains(se.Msg, c.msg) {
				t.Fatalf("err = %v, want position %d and %q", err, c.pos, c.msg)
			}
		})
	}
}
