package ddb

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxDepth is how deeply M and L values may nest: DynamoDB allows 32
// levels. A top-level attribute holding a map is at depth 1, a list inside
// it at depth 2, and so on. Decoders reject deeper input.
const MaxDepth = 32

// Type is a DynamoDB attribute type.
type Type uint8

// The DynamoDB attribute types. String returns DynamoDB's descriptor
// ("S", "N", ..., "BS").
const (
	TypeS Type = iota + 1
	TypeN
	TypeB
	TypeBOOL
	TypeNULL
	TypeM
	TypeL
	TypeSS
	TypeNS
	TypeBS
)

var typeNames = [...]string{
	TypeS: "S", TypeN: "N", TypeB: "B", TypeBOOL: "BOOL", TypeNULL: "NULL",
	TypeM: "M", TypeL: "L", TypeSS: "SS", TypeNS: "NS", TypeBS: "BS",
}

func (t Type) String() string {
	if t >= TypeS && t <= TypeBS {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses a DynamoDB type descriptor ("S", "N", "B", "BOOL",
// "NULL", "M", "L", "SS", "NS", "BS").
func ParseType(s string) (Type, error) {
	for t := TypeS; t <= TypeBS; t++ {
		if typeNames[t] == s {
			return t, nil
		}
	}
	return 0, &Error{Err: ErrInvalidValue, Offset: -1, Msg: "unknown type descriptor " + quoteInput(s)}
}

// Value is a DynamoDB attribute value: one of S, N, B, Bool, Null, M, L,
// SS, NS or BS. A nil Value is invalid.
type Value interface {
	// Type returns the DynamoDB type of the value.
	Type() Type
	isValue()
}

type (
	// S is a string (UTF-8). Empty strings are allowed except in keys.
	S string
	// B is binary data. Empty binary is allowed except in keys.
	B []byte
	// Bool is a BOOL.
	Bool bool
	// Null is DynamoDB's NULL (which is always true).
	Null struct{}
	// M is a map of attribute names to values.
	M map[string]Value
	// L is a list of values of any types.
	L []Value
	// SS is a string set: non-empty, no duplicates, order not significant.
	SS []string
	// NS is a number set: non-empty, no two members numerically equal,
	// order not significant.
	NS []N
	// BS is a binary set: non-empty, no duplicates, order not significant.
	BS [][]byte
)

// Item is a DynamoDB item: attribute names to values.
type Item map[string]Value

func (S) Type() Type    { return TypeS }
func (N) Type() Type    { return TypeN }
func (B) Type() Type    { return TypeB }
func (Bool) Type() Type { return TypeBOOL }
func (Null) Type() Type { return TypeNULL }
func (M) Type() Type    { return TypeM }
func (L) Type() Type    { return TypeL }
func (SS) Type() Type   { return TypeSS }
func (NS) Type() Type   { return TypeNS }
func (BS) Type() Type   { return TypeBS }

func (S) isValue()    {}
func (N) isValue()    {}
func (B) isValue()    {}
func (Bool) isValue() {}
func (Null) isValue() {}
func (M) isValue()    {}
func (L) isValue()    {}
func (SS) isValue()   {}
func (NS) isValue()   {}
func (BS) isValue()   {}

// Validate reports the first reason DynamoDB would not store the item:
// a nil or foreign Value, invalid UTF-8 in a name or string, an empty set,
// duplicate set members, nesting deeper than MaxDepth. Items returned by
// this package's decoders are always valid. The error wraps
// ErrInvalidValue and names the attribute path.
func (it Item) Validate() error {
	var v validator
	return v.attrs(it, 0)
}

type validator struct{ path pathStack }

func (v *validator) fail(format string, args ...any) error {
	return &Error{Err: ErrInvalidValue, Path: v.path.String(), Offset: -1, Msg: fmt.Sprintf(format, args...)}
}

func (v *validator) attrs(m map[string]Value, depth int) error {
	for _, name := range sortedNames(m) {
		v.path.pushName(name)
		if !utf8.ValidString(name) {
			return v.fail("attribute name is not valid UTF-8")
		}
		if err := v.value(m[name], depth); err != nil {
			return err
		}
		v.path.pop()
	}
	return nil
}

func (v *validator) value(val Value, depth int) error {
	switch x := val.(type) {
	case S:
		if !utf8.ValidString(string(x)) {
			return v.fail("string is not valid UTF-8")
		}
	case N, B, Bool, Null:
	case M:
		if depth+1 > MaxDepth {
			return v.fail("nested more than %d levels deep", MaxDepth)
		}
		return v.attrs(x, depth+1)
	case L:
		if depth+1 > MaxDepth {
			return v.fail("nested more than %d levels deep", MaxDepth)
		}
		for i, e := range x {
			v.path.pushIndex(i)
			if err := v.value(e, depth+1); err != nil {
				return err
			}
			v.path.pop()
		}
	case SS:
		if len(x) == 0 {
			return v.fail("empty string set")
		}
		for i, s := range x {
			if !utf8.ValidString(s) {
				v.path.pushIndex(i)
				return v.fail("string is not valid UTF-8")
			}
		}
		s := sortedSS(x)
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				return v.fail("duplicate string set member %s", quoteInput(s[i]))
			}
		}
	case NS:
		if len(x) == 0 {
			return v.fail("empty number set")
		}
		s := sortedNS(x)
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				return v.fail("duplicate number set member %s", s[i].String())
			}
		}
	case BS:
		if len(x) == 0 {
			return v.fail("empty binary set")
		}
		s := sortedBS(x)
		for i := 1; i < len(s); i++ {
			if bytes.Equal(s[i], s[i-1]) {
				return v.fail("duplicate binary set member")
			}
		}
	case nil:
		return v.fail("nil value")
	default:
		return v.fail("unsupported value type %T", val)
	}
	return nil
}

// Equal reports whether a and b are the same DynamoDB value: same type,
// numbers equal by value, sets equal as sets, maps and lists equal member
// by member. It compares canonical encodings (see EncodeItem), in which
// all invalid values (nil, foreign types) look alike.
func Equal(a, b Value) bool {
	return bytes.Equal(appendValue(nil, a), appendValue(nil, b))
}

// EqualItems reports whether two items hold the same attributes with Equal
// values. It is the same as comparing their EncodeItem bytes.
func EqualItems(a, b Item) bool {
	return bytes.Equal(EncodeItem(a), EncodeItem(b))
}

// sortedNames returns the names of m in canonical (byte-wise) order.
func sortedNames(m map[string]Value) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// sortedSS returns a sorted copy of s (byte-wise order, as DynamoDB orders
// strings).
func sortedSS(s SS) []string {
	c := slices.Clone([]string(s))
	slices.Sort(c)
	return c
}

// sortedNS returns a copy of s sorted by numeric value.
func sortedNS(s NS) []N {
	c := slices.Clone([]N(s))
	slices.SortFunc(c, N.Cmp)
	return c
}

// sortedBS returns a copy of s sorted byte-wise (unsigned).
func sortedBS(s BS) [][]byte {
	c := slices.Clone([][]byte(s))
	slices.SortFunc(c, bytes.Compare)
	return c
}

// String renders the value in DynamoDB JSON for debugging and messages.
func (it Item) String() string {
	b, err := MarshalDynamoDBJSON(it)
	if err != nil {
		return "<invalid item: " + strings.TrimPrefix(err.Error(), "ddb: ") + ">"
	}
	return string(b)
}
