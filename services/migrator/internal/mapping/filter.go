package mapping

import (
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/ddb/expr"
)

// Filter keeps the items matching a condition written in DynamoDB's
// condition expression language, evaluated by the same engine as the
// DynamoDB endpoint's ConditionExpression and FilterExpression (package
// expr): comparisons (= <> < <= > >=), BETWEEN, IN, AND, OR, NOT,
// parentheses, nested paths (a.b[2].c) and the functions attribute_exists,
// attribute_not_exists, attribute_type, begins_with, contains and size.
//
// A filter has no ExpressionAttributeValues or Names, so values are written
// in place and odd names quoted (expr.ParseLiteralCondition):
//
//	attribute_exists(email) AND status = "active"
//	score BETWEEN 10 AND 99.5 OR begins_with(pk, "user#")
//	`Flight Status` IN ("Cancelled", "Diverted")
//
// A string is a JSON string literal, a number a DynamoDB number compared by
// value (1, 1.0 and 1E0 are equal). As in DynamoDB, values of different
// types are never equal and a missing attribute matches only <> and
// attribute_not_exists.
type Filter struct {
	src  string
	cond *expr.Condition
}

// ParseFilter parses a filter; the empty string (or only spaces) is nil,
// which keeps every item. The error is an *expr.Error in DynamoDB's words
// ("Invalid filter: Syntax error; token: ..., near: ...").
func ParseFilter(src string) (*Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	c, err := expr.ParseLiteralCondition(src)
	if err != nil {
		return nil, err
	}
	return &Filter{src: src, cond: c}, nil
}

// String returns the filter's source text.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Match reports whether the item satisfies the filter. A nil filter
// matches everything.
func (f *Filter) Match(it ddb.Item) bool {
	if f == nil {
		return true
	}
	return f.cond.Match(it)
}
