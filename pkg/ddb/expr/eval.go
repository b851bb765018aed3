package expr

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Match evaluates the condition on an item (nil or empty: no item). A nil
// *Condition matches everything.
//
// As in DynamoDB a comparison between values of different types, or with
// a missing path, is false (except <>, which is true then); <, <=, >, >=
// and BETWEEN compare only numbers, strings (by UTF-8 bytes) and binary
// (by unsigned bytes); size of a missing path or of a number, BOOL or NULL
// makes its comparison false.
func (c *Condition) Match(it ddb.Item) bool {
	if c == nil || c.root == nil {
		return true
	}
	return evalNode(c.root, it)
}

func evalNode(n node, it ddb.Item) bool {
	switch n := n.(type) {
	case andNode:
		return evalNode(n.l, it) && evalNode(n.r, it)
	case orNode:
		return evalNode(n.l, it) || evalNode(n.r, it)
	case notNode:
		return !evalNode(n.x, it)
	case compareNode:
		l, lok := evalOperand(n.l, it)
		r, rok := evalOperand(n.r, it)
		if n.op == "<>" {
			return !lok || !rok || !equal(l, r)
		}
		if !lok || !rok {
			return false
		}
		if n.op == "=" {
			return equal(l, r)
		}
		c, ok := compareValues(l, r)
		if !ok {
			return false
		}
		switch n.op {
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		case ">=":
			return c >= 0
		}
		return false
	case betweenNode:
		v, ok := evalOperand(n.v, it)
		lo, lok := evalOperand(n.lo, it)
		hi, hok := evalOperand(n.hi, it)
		if !ok || !lok || !hok {
			return false
		}
		c1, ok1 := compareValues(lo, v)
		c2, ok2 := compareValues(v, hi)
		return ok1 && ok2 && c1 <= 0 && c2 <= 0
	case inNode:
		v, ok := evalOperand(n.v, it)
		if !ok {
			return false
		}
		for _, e := range n.list {
			if x, ok := evalOperand(e, it); ok && equal(v, x) {
				return true
			}
		}
		return false
	case funcNode:
		return evalFunc(n, it)
	}
	return false
}

func evalFunc(f funcNode, it ddb.Item) bool {
	a, aok := evalOperand(f.args[0], it)
	switch f.name {
	case "attribute_exists":
		return aok
	case "attribute_not_exists":
		return !aok
	}
	b, bok := evalOperand(f.args[1], it)
	if !aok || !bok {
		return false
	}
	switch f.name {
	case "attribute_type":
		s, ok := b.(ddb.S)
		return ok && a.Type().String() == string(s)
	case "begins_with":
		switch x := a.(type) {
		case ddb.S:
			y, ok := b.(ddb.S)
			return ok && strings.HasPrefix(string(x), string(y))
		case ddb.B:
			y, ok := b.(ddb.B)
			return ok && bytes.HasPrefix(x, y)
		}
	case "contains":
		return contains(a, b)
	}
	return false
}

// contains is DynamoDB's contains(a, b): a substring of a string, a
// subsequence of binary, a member of a set, an element of a list.
func contains(a, b ddb.Value) bool {
	switch x := a.(type) {
	case ddb.S:
		y, ok := b.(ddb.S)
		return ok && strings.Contains(string(x), string(y))
	case ddb.B:
		y, ok := b.(ddb.B)
		return ok && bytes.Contains(x, y)
	case ddb.SS:
		y, ok := b.(ddb.S)
		return ok && slices.Contains(x, string(y))
	case ddb.NS:
		y, ok := b.(ddb.N)
		return ok && slices.Contains(x, y)
	case ddb.BS:
		y, ok := b.(ddb.B)
		return ok && slices.ContainsFunc(x, func(e []byte) bool { return bytes.Equal(e, y) })
	case ddb.L:
		return slices.ContainsFunc(x, func(e ddb.Value) bool { return equal(e, b) })
	}
	return false
}

// equal is ddb.Equal with the scalar cases done without encoding.
func equal(a, b ddb.Value) bool {
	switch x := a.(type) {
	case ddb.S:
		y, ok := b.(ddb.S)
		return ok && x == y
	case ddb.N:
		y, ok := b.(ddb.N)
		return ok && x == y
	case ddb.B:
		y, ok := b.(ddb.B)
		return ok && bytes.Equal(x, y)
	case ddb.Bool:
		y, ok := b.(ddb.Bool)
		return ok && x == y
	case ddb.Null:
		_, ok := b.(ddb.Null)
		return ok
	}
	return ddb.Equal(a, b)
}

// compareValues orders two numbers, two strings or two binaries; ok is
// false for any other pair.
func compareValues(a, b ddb.Value) (c int, ok bool) {
	switch x := a.(type) {
	case ddb.N:
		if y, ok := b.(ddb.N); ok {
			return x.Cmp(y), true
		}
	case ddb.S:
		if y, ok := b.(ddb.S); ok {
			return strings.Compare(string(x), string(y)), true
		}
	case ddb.B:
		if y, ok := b.(ddb.B); ok {
			return bytes.Compare(x, y), true
		}
	}
	return 0, false
}

// evalOperand evaluates a condition operand on an item; ok is false when
// it has no value (a missing path, size of something sizeless).
func evalOperand(op operand, it ddb.Item) (ddb.Value, bool) {
	switch op := op.(type) {
	case valueOperand:
		return op.value, op.value != nil
	case pathOperand:
		return resolve(it, op.path)
	case sizeOperand:
		v, ok := resolve(it, op.path)
		if !ok {
			return nil, false
		}
		n, ok := size(v)
		if !ok {
			return nil, false
		}
		return ddb.NFromInt64(int64(n)), true
	}
	return nil, false
}

// size is DynamoDB's size(): a string's length in UTF-16 code units (as
// DynamoDB counts it), binary's bytes, a set's, list's or map's elements.
func size(v ddb.Value) (int, bool) {
	switch x := v.(type) {
	case ddb.S:
		n := 0
		for _, r := range string(x) {
			n += utf16.RuneLen(r)
		}
		return n, true
	case ddb.B:
		return len(x), true
	case ddb.SS:
		return len(x), true
	case ddb.NS:
		return len(x), true
	case ddb.BS:
		return len(x), true
	case ddb.L:
		return len(x), true
	case ddb.M:
		return len(x), true
	}
	return 0, false
}

// resolve returns the value at path in the item, or ok false when there
// is none (a missing name, an index past the end, a step into a value that
// is not a map or list).
func resolve(it ddb.Item, path Path) (ddb.Value, bool) {
	if len(path) == 0 || path[0].Name == "" {
		return nil, false
	}
	v, ok := it[path[0].Name]
	if !ok || v == nil {
		return nil, false
	}
	return walk(v, path[1:])
}

// walk follows path within v.
func walk(v ddb.Value, path Path) (ddb.Value, bool) {
	for _, e := range path {
		var ok bool
		switch x := v.(type) {
		case ddb.M:
			if e.Name == "" {
				return nil, false
			}
			if v, ok = x[e.Name]; !ok || v == nil {
				return nil, false
			}
		case ddb.L:
			if e.Name != "" || e.Index < 0 || e.Index >= len(x) {
				return nil, false
			}
			v = x[e.Index]
		default:
			return nil, false
		}
	}
	return v, true
}
