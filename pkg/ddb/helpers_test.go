package ddb

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// everyType is an item holding every DynamoDB type, nested maps and lists,
// extreme numbers, and empty strings and binary where DynamoDB allows them.
func everyType() Item {
	return Item{
		"pk":        S("user#1"),
		"empty":     S(""),
		"unicode":   S("naïve 下野 𝄞 \u2028"),
		"control":   S("tab\tnl\nnul\x00quote\"back\\slash/"),
		"n":         MustN("12.50"),
		"neg":       MustN("-0.001"),
		"d38":       MustN("12345678901234567890123456789012345678"),
		"max":       MustN("9.9999999999999999999999999999999999999E+125"),
		"min":       MustN("-1E-130"),
		"zero":      MustN("0"),
		"bin":       B{0x00, 0xff, 0x10, 'a'},
		"emptyBin":  B{},
		"yes":       Bool(true),
		"no":        Bool(false),
		"nothing":   Null{},
		"emptyMap":  M{},
		"emptyList": L{},
		"ss":        SS{"b", "a", "", "ä"},
		"ns":        NS{MustN("10"), MustN("9"), MustN("-1.5"), MustN("1E-130")},
		"bs":        BS{{0x02}, {}, {0x01, 0x00}, {0x01}},
		"nested": M{
			"list": L{S("x"), MustN("1"), Null{}, L{Bool(true), M{"deep": SS{"z"}}}, BS{{1}}},
			"map":  M{"a.b": S("dotted"), "": S("empty name"), "with space": NS{MustN("2")}},
		},
		"name with spaces and .dots[0]": S("odd name"),
	}
}

// canonical returns it with every set sorted and deduplicated as DecodeItem
// returns it, so reflect.DeepEqual can compare decoded items.
func canonical(it Item) Item {
	out := Item{}
	for k, v := range it {
		out[k] = canonicalValue(v)
	}
	return out
}

func canonicalValue(v Value) Value {
	switch x := v.(type) {
	case M:
		return M(canonical(Item(x)))
	case L:
		l := L{}
		for _, e := range x {
			l = append(l, canonicalValue(e))
		}
		return l
	case SS:
		return SS(slices.Compact(sortedSS(x)))
	case NS:
		return NS(slices.Compact(sortedNS(x)))
	case BS:
		s := sortedBS(x)
		out := BS{}
		for i, e := range s {
			if i == 0 || string(e) != string(s[i-1]) {
				out = append(out, e)
			}
		}
		return out
	}
	return v
}

// nestedList returns a value with depth levels of L.
func nestedList(depth int) Value {
	var v Value = S("leaf")
	for range depth {
		v = L{v}
	}
	return v
}

// gen generates random valid items.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

var genRunes = []rune{'a', 'b', 'Z', '0', ' ', '.', '"', '\'', '\\', '/', '\n', '\t', '\r', 0, 0x7f, 'é', '下', '𝄞', '\u2028', '{', '}', '[', ':', ','}

func (g *gen) str() string {
	n := g.r.IntN(10)
	var b strings.Builder
	for range n {
		b.WriteRune(genRunes[g.r.IntN(len(genRunes))])
	}
	return b.String()
}

func (g *gen) bytes() []byte {
	b := make([]byte, g.r.IntN(8))
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	return b
}

func (g *gen) num() N {
	switch g.r.IntN(4) {
	case 0:
		return NFromInt64(g.r.Int64N(2000) - 1000)
	case 1:
		return MustN(strconv.FormatFloat(g.r.NormFloat64()*1e6, 'g', -1, 64))
	}
	k := 1 + g.r.IntN(MaxNumberDigits)
	digits := make([]byte, k)
	for i := range digits {
		digits[i] = byte('0' + g.r.IntN(10))
	}
	digits[0] = byte('1' + g.r.IntN(9))
	digits[k-1] = byte('1' + g.r.IntN(9))
	exp := MinNumberExponent + g.r.IntN(MaxNumberExponent-MinNumberExponent+1)
	sign := ""
	if g.r.IntN(2) == 0 {
		sign = "-"
	}
	return MustN(fmt.Sprintf("%s0.%sE%d", sign, digits, exp+1))
}

func (g *gen) item(depth int) Item {
	it := Item{}
	for range g.r.IntN(6) {
		it[g.str()] = g.value(depth)
	}
	return it
}

func (g *gen) value(depth int) Value {
	n := 10
	if depth >= 4 {
		n = 5 // scalars only
	}
	switch g.r.IntN(n) {
	case 0:
		return S(g.str())
	case 1:
		return g.num()
	case 2:
		return B(g.bytes())
	case 3:
		return Bool(g.r.IntN(2) == 0)
	case 4:
		return Null{}
	case 5:
		return M(g.item(depth + 1))
	case 6:
		l := L{}
		for range g.r.IntN(5) {
			l = append(l, g.value(depth+1))
		}
		return l
	case 7:
		seen := map[string]bool{}
		var s SS
		for range 1 + g.r.IntN(4) {
			if e := g.str(); !seen[e] {
				seen[e] = true
				s = append(s, e)
			}
		}
		return s
	case 8:
		seen := map[N]bool{}
		var s NS
		for range 1 + g.r.IntN(4) {
			if e := g.num(); !seen[e] {
				seen[e] = true
				s = append(s, e)
			}
		}
		return s
	default:
		seen := map[string]bool{}
		var s BS
		for range 1 + g.r.IntN(4) {
			if e := g.bytes(); !seen[string(e)] {
				seen[string(e)] = true
				s = append(s, e)
			}
		}
		return s
	}
}

// ionLine writes an item as an ION export line, the way DynamoDB does
// (decimals for numbers, annotated lists for sets), with some variation
// (long strings, symbols as field names, comments) to exercise the reader.
func ionLine(it Item, fancy bool) []byte {
	var b strings.Builder
	if !fancy {
		b.WriteString("$ion_1_0 ")
	}
	b.WriteString("{Item:")
	writeIonStruct(&b, it, fancy)
	if fancy {
		b.WriteString(", /* trailing comma */")
	}
	b.WriteString("}")
	return []byte(b.String())
}

func writeIonStruct(b *strings.Builder, m map[string]Value, fancy bool) {
	b.WriteString("{")
	for i, name := range sortedNames(m) {
		if i > 0 {
			b.WriteString(",")
			if fancy {
				b.WriteString(" // comment\n ")
			}
		}
		if fancy && isPlainIdent(name) {
			b.WriteString(name)
		} else if fancy {
			writeIonText(b, name, '\'')
		} else {
			writeIonText(b, name, '"')
		}
		b.WriteString(":")
		writeIonValue(b, m[name], fancy)
	}
	b.WriteString("}")
}

func isPlainIdent(s string) bool {
	if s == "" || isKeyword(s) || s[0] == '$' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIonIdentByte(s[i]) || i == 0 && isDigit(s[i]) {
			return false
		}
	}
	return true
}

func writeIonText(b *strings.Builder, s string, quote byte) {
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, "\\x%02x", r)
		case r > 0xffff && quote == '\'':
			fmt.Fprintf(b, "\\U%08x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
}

// writeIonLong writes the body of a long string: raw newlines and tabs,
// other control characters escaped.
func writeIonLong(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
}

func ionDecimal(n N) string {
	s := n.String()
	if !strings.Contains(s, ".") {
		return s + "."
	}
	return s
}

func writeIonValue(b *strings.Builder, v Value, fancy bool) {
	switch x := v.(type) {
	case S:
		if fancy && len(x) > 2 {
			// Split into two adjacent long strings.
			cut := len(x) / 2
			for cut > 0 && !isRuneStart(x[cut]) {
				cut--
			}
			b.WriteString("'''")
			writeIonLong(b, string(x[:cut]))
			b.WriteString("''' /* c */ '''")
			writeIonLong(b, string(x[cut:]))
			b.WriteString("'''")
			return
		}
		writeIonText(b, string(x), '"')
	case N:
		b.WriteString(ionDecimal(x))
	case B:
		b.WriteString("{{")
		b.WriteString(base64.StdEncoding.EncodeToString(x))
		b.WriteString("}}")
	case Bool:
		b.WriteString(strconv.FormatBool(bool(x)))
	case Null:
		b.WriteString("null")
	case M:
		writeIonStruct(b, x, fancy)
	case L:
		b.WriteString("[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			writeIonValue(b, e, fancy)
		}
		if fancy && len(x) > 0 {
			b.WriteString(",")
		}
		b.WriteString("]")
	case SS:
		b.WriteString("$dynamodb_SS::[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			writeIonText(b, e, '"')
		}
		b.WriteString("]")
	case NS:
		b.WriteString("$dynamodb_NS::[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(ionDecimal(e))
		}
		b.WriteString("]")
	case BS:
		b.WriteString("$dynamodb_BS::[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("{{")
			b.WriteString(base64.StdEncoding.EncodeToString(e))
			b.WriteString("}}")
		}
		b.WriteString("]")
	}
}

// mustEqualItems fails the test if got and want are not the same item.
func mustEqualItems(t *testing.T, got, want Item) {
	t.Helper()
	if !EqualItems(got, want) {
		t.Fatalf("items differ:\n got %v\nwant %v", got, want)
	}
}
