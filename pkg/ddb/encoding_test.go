package ddb

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		it   Item
	}{
		{"every type", everyType()},
		{"empty item", Item{}},
		{"nil item", nil},
		{"max depth", Item{"deep": nestedList(MaxDepth)}},
		{"max depth map", Item{"deep": func() Value {
			var v Value = Null{}
			for range MaxDepth {
				v = M{"m": v}
			}
			return v
		}()}},
		{"big binary", Item{"b": B(bytes.Repeat([]byte{0xab}, 1<<20))}},
		{"long name", Item{strings.Repeat("n", 70000): S("v")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := EncodeItem(tc.it)
			got, err := DecodeItem(enc)
			if err != nil {
				t.Fatalf("DecodeItem: %v", err)
			}
			if want := canonical(tc.it); !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %v\nwant %v", got, want)
			}
			if again := EncodeItem(got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, enc)
			}
		})
	}
}

func TestEncodeRandomItems(t *testing.T) {
	g := newGen(1)
	for i := range 2000 {
		it := g.item(0)
		if err := it.Validate(); err != nil {
			t.Fatalf("generated invalid item %v: %v", it, err)
		}
		enc := EncodeItem(it)
		got, err := DecodeItem(enc)
		if err != nil {
			t.Fatalf("item %d %v: DecodeItem: %v", i, it, err)
		}
		if !reflect.DeepEqual(got, canonical(it)) {
			t.Fatalf("item %d round trip:\n got %v\nwant %v", i, got, it)
		}
		if !bytes.Equal(EncodeItem(got), enc) {
			t.Fatalf("item %d: re-encoding differs", i)
		}
	}
}

// The layout is a stored format: these bytes must never change.
func TestEncodeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		it   Item
		hex  string
	}{
		{"empty", Item{}, "01 00"},
		{"S and N", Item{"b": MustN("1.0"), "a": S("x")},
			"01 02 0161 01 0178 0162 02 0131"},
		{"B BOOL NULL", Item{"b": B{0xff}, "t": Bool(true), "f": Bool(false), "n": Null{}},
			"01 04 0162 03 01ff 0166 04 00 016e 05 0174 04 01"},
		{"M and L", Item{"m": M{"k": L{S(""), Null{}}}},
			"01 01 016d 06 01 016b 07 02 01 00 05"},
		{"sets sorted and deduplicated", Item{
			"ss": SS{"b", "a", "b"},
			"ns": NS{MustN("10"), MustN("9"), MustN("1E1"), MustN("-0.5")},
			"bs": BS{{0x02}, {0x01, 0x00}, {0x02}},
		}, "01 03 026273 0a 02 020100 0102 026e73 09 03 042d302e35 0139 023130 027373 08 02 0161 0162"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := EncodeItem(tc.it); !bytes.Equal(got, want) {
				t.Fatalf("EncodeItem = %x, want %x", got, want)
			}
		})
	}
}

func TestEncodeDeterministic(t *testing.T) {
	a := Item{
		"ss": SS{"c", "a", "b", "a"},
		"ns": NS{MustN("3"), MustN("1"), MustN("2"), MustN("1.0")},
		"bs": BS{{3}, {1}, {2}},
		"m":  M{"z": S("1"), "y": S("2"), "x": S("3"), "w": S("4")},
	}
	b := Item{
		"m":  M{"w": S("4"), "x": S("3"), "y": S("2"), "z": S("1")},
		"bs": BS{{2}, {3}, {1}},
		"ns": NS{MustN("2E0"), MustN("3"), MustN("0.1E1")},
		"ss": SS{"b", "c", "a"},
	}
	want := EncodeItem(a)
	for range 50 {
		if got := EncodeItem(b); !bytes.Equal(got, want) {
			t.Fatalf("equal items encode differently:\n%x\n%x", got, want)
		}
	}
	if !EqualItems(a, b) || !Equal(M(a), M(b)) {
		t.Fatal("equal items not Equal")
	}
	if Equal(S("1"), MustN("1")) || Equal(SS{"a"}, SS{"a", "b"}) || EqualItems(a, Item{}) {
		t.Fatal("different values Equal")
	}
}

func TestDecodeItemRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex, msg string
		kind           error
	}{
		{"empty", "", "empty input", ErrCorrupt},
		{"unknown format", "02 00", "format byte 0x02", ErrUnknownFormat},
		{"truncated count", "01", "truncated", ErrCorrupt},
		{"trailing bytes", "01 00 00", "1 trailing bytes", ErrCorrupt},
		{"non-minimal varint", "01 8000", "non-minimal varint", ErrCorrupt},
		{"count too large", "01 7f", "exceeds", ErrCorrupt},
		{"name too long", "01 01 05 61", "exceeds", ErrCorrupt},
		{"missing value", "01 01 0161", "missing value", ErrCorrupt},
		{"names out of order", "01 02 0162 05 0161 05", "out of order", ErrCorrupt},
		{"duplicate names", "01 02 0161 05 0161 05", "out of order", ErrCorrupt},
		{"name not UTF-8", "01 01 01ff 05", "not valid UTF-8", ErrCorrupt},
		{"string not UTF-8", "01 01 0161 01 01ff", "not valid UTF-8", ErrCorrupt},
		{"number not canonical", "01 01 0161 02 03312e30", "not in canonical form", ErrCorrupt},
		{"number invalid", "01 01 0161 02 0178", "not in canonical form", ErrCorrupt},
		{"number empty", "01 01 0161 02 00", "not in canonical form", ErrCorrupt},
		{"bool 2", "01 01 0161 04 02", "BOOL payload", ErrCorrupt},
		{"bool truncated", "01 01 0161 04", "BOOL payload", ErrCorrupt},
		{"unknown tag", "01 01 0161 0b", "unknown value tag 0x0b", ErrCorrupt},
		{"nil marker", "01 01 0161 00", "nil or unsupported value", ErrCorrupt},
		{"empty set", "01 01 0161 08 00", "empty set", ErrCorrupt},
		{"unsorted SS", "01 01 0161 08 02 0162 0161", "not strictly ascending", ErrCorrupt},
		{"duplicate SS", "01 01 0161 08 02 0161 0161", "not strictly ascending", ErrCorrupt},
		{"unsorted NS", "01 01 0161 09 02 023130 0139", "not strictly ascending", ErrCorrupt},
		{"unsorted BS", "01 01 0161 0a 02 0102 0101", "not strictly ascending", ErrCorrupt},
		{"list count too large", "01 01 0161 07 05 05", "exceeds", ErrCorrupt},
		{"nested path", "01 01 0161 06 01 0162 07 02 05 0b", "unknown value tag", ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			it, err := DecodeItem(b)
			if err == nil {
				t.Fatalf("DecodeItem(%x) = %v, want error", b, it)
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v does not wrap %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
	// The path of the nested error names the list element.
	b, _ := hex.DecodeString("0101016106010162070205" + "0b")
	_, err := DecodeItem(b)
	var e *Error
	if !errors.As(err, &e) || e.Path != "a.b[1]" {
		t.Fatalf("error %v: want path a.b[1]", err)
	}
}

func TestDecodeItemTooDeep(t *testing.T) {
	// Hand-build a list nested one level deeper than allowed.
	b := []byte{FormatV1, 1, 1, 'a'}
	for range MaxDepth + 1 {
		b = append(b, byte(TypeL), 1)
	}
	b = append(b, byte(TypeNULL))
	if _, err := DecodeItem(b); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "levels deep") {
		t.Fatalf("DecodeItem(too deep) error = %v", err)
	}
	// A hostile input nesting millions of levels must fail, not overflow
	// the stack.
	b = []byte{FormatV1, 1, 1, 'a'}
	for range 1 << 20 {
		b = append(b, byte(TypeL), 1)
	}
	if _, err := DecodeItem(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeItem(very deep) error = %v", err)
	}
}

// An invalid item encodes (EncodeItem cannot fail) but never decodes.
func TestEncodeInvalidItem(t *testing.T) {
	for _, tc := range []struct {
		name string
		it   Item
	}{
		{"nil value", Item{"a": nil}},
		{"nil in list", Item{"a": L{S("x"), nil}}},
		{"pointer value", Item{"a": new(S)}},
		{"empty SS", Item{"a": SS{}}},
		{"empty NS", Item{"a": NS{}}},
		{"empty BS", Item{"a": BS(nil)}},
		{"too deep", Item{"a": nestedList(MaxDepth + 1)}},
		{"bad UTF-8 string", Item{"a": S("\xff")}},
		{"bad UTF-8 name", Item{"\xff": S("x")}},
		{"bad UTF-8 set member", Item{"a": SS{"\xfe"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.it.Validate(); !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("Validate() = %v, want ErrInvalidValue", err)
			}
			if got, err := DecodeItem(EncodeItem(tc.it)); err == nil {
				t.Fatalf("DecodeItem(EncodeItem(%v)) = %v, want error", tc.it, got)
			}
			if _, err := MarshalDynamoDBJSON(tc.it); err == nil {
				t.Fatal("MarshalDynamoDBJSON accepted an invalid item")
			}
			if _, err := ItemToJSON(tc.it); err == nil {
				t.Fatal("ItemToJSON accepted an invalid item")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	if err := everyType().Validate(); err != nil {
		t.Fatalf("everyType: %v", err)
	}
	if err := (Item{"d": nestedList(MaxDepth)}).Validate(); err != nil {
		t.Fatalf("MaxDepth: %v", err)
	}
	for _, tc := range []struct {
		it   Item
		path string
		msg  string
	}{
		{Item{"a": M{"b": L{S("x"), SS{"y", "y"}}}}, "a.b[1]", `duplicate string set member "y"`},
		{Item{"a": NS{MustN("1"), MustN("1.00")}}, "a", "duplicate number set member 1"},
		{Item{"a": BS{{1}, {1}}}, "a", "duplicate binary set member"},
		{Item{"x y": L{nil}}, `"x y"[0]`, "nil value"},
		{Item{"a": nestedList(MaxDepth + 1)}, "a" + strings.Repeat("[0]", MaxDepth), "nested more than 32 levels deep"},
		{Item{"a": new(S)}, "a", "unsupported value type *ddb.S"},
	} {
		err := tc.it.Validate()
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalidValue) {
			t.Fatalf("Validate(%v) = %v", tc.it, err)
		}
		if e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("Validate(%v) = path %q msg %q, want %q %q", tc.it, e.Path, e.Msg, tc.path, tc.msg)
		}
	}
}

func TestTypes(t *testing.T) {
	values := []Value{S(""), N{}, B{}, Bool(false), Null{}, M{}, L{}, SS{}, NS{}, BS{}}
	for i, v := range values {
		want := Type(i + 1)
		if v.Type() != want {
			t.Errorf("%T.Type() = %v, want %v", v, v.Type(), want)
		}
		got, err := ParseType(want.String())
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %v, %v", want.String(), got, err)
		}
	}
	if _, err := ParseType("X"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("ParseType(X) error = %v", err)
	}
	if s := Type(99).String(); s != "Type(99)" {
		t.Errorf("Type(99).String() = %q", s)
	}
}
