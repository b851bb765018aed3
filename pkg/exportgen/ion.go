package exportgen

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// IonItem writes an item in the Amazon Ion text DynamoDB's ION exports
// use: structs with string field names, decimals (123., 1.5), blobs
// {{base64}}, and sets as lists annotated $dynamodb_SS::, $dynamodb_NS::,
// $dynamodb_BS::.
func IonItem(it ddb.Item) string {
	var b strings.Builder
	writeIonStruct(&b, it)
	return b.String()
}

func writeIonStruct(b *strings.Builder, m map[string]ddb.Value) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		writeIonString(b, n)
		b.WriteByte(':')
		writeIonValue(b, m[n])
	}
	b.WriteByte('}')
}

func writeIonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

func ionDecimal(n ddb.N) string {
	s := n.String()
	if !strings.Contains(s, ".") {
		return s + "."
	}
	return s
}

func writeIonValue(b *strings.Builder, v ddb.Value) {
	switch x := v.(type) {
	case ddb.S:
		writeIonString(b, string(x))
	case ddb.N:
		b.WriteString(ionDecimal(x))
	case ddb.B:
		b.WriteString("{{" + base64.StdEncoding.EncodeToString(x) + "}}")
	case ddb.Bool:
		b.WriteString(strconv.FormatBool(bool(x)))
	case ddb.Null:
		b.WriteString("null")
	case ddb.M:
		writeIonStruct(b, x)
	case ddb.L:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeIonValue(b, e)
		}
		b.WriteByte(']')
	case ddb.SS:
		b.WriteString("$dynamodb_SS::[")
		for i, s := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeIonString(b, s)
		}
		b.WriteByte(']')
	case ddb.NS:
		b.WriteString("$dynamodb_NS::[")
		for i, n := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(ionDecimal(n))
		}
		b.WriteByte(']')
	case ddb.BS:
		b.WriteString("$dynamodb_BS::[")
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("{{" + base64.StdEncoding.EncodeToString(e) + "}}")
		}
		b.WriteByte(']')
	default:
		panic(fmt.Sprintf("exportgen: unknown value %T", v))
	}
}
