package ddb

import (
	"encoding/base64"
	"strconv"
)

// MarshalDynamoDBJSON encodes an item in DynamoDB JSON
// ({"id":{"S":"a"},"n":{"N":"1"}}), deterministically: attribute names in
// byte order, set members in canonical order (NS by numeric value), numbers
// in canonical text, binary in standard base64. The item must be valid (see
// Item.Validate); a nil item encodes as {}.
func MarshalDynamoDBJSON(it Item) ([]byte, error) {
	if err := it.Validate(); err != nil {
		return nil, err
	}
	return appendDDBAttrs(nil, it), nil
}

// MarshalValueDynamoDBJSON encodes one attribute value in DynamoDB JSON
// ({"S":"x"}), like MarshalDynamoDBJSON.
func MarshalValueDynamoDBJSON(v Value) ([]byte, error) {
	var vd validator
	if err := vd.value(v, 0); err != nil {
		return nil, err
	}
	return appendDDBValue(nil, v), nil
}

// MarshalJSON encodes the item in DynamoDB JSON (see MarshalDynamoDBJSON);
// a nil item encodes as null.
func (it Item) MarshalJSON() ([]byte, error) {
	if it == nil {
		return []byte("null"), nil
	}
	return MarshalDynamoDBJSON(it)
}

// ItemToJSON encodes an item as natural JSON: S as a string, N as a JSON
// number with its exact canonical decimal text (never through float64, so
// 38-digit values survive; readers that parse into float64 will round
// them), B as a standard base64 string, BOOL as a boolean, NULL as null, M
// as an object, L as an array, and sets as arrays in canonical order (NS by
// numeric value, BS by bytes, as base64 strings). Object keys are sorted, so
// the output is deterministic. The type information is lost: use
// MarshalDynamoDBJSON or EncodeItem to keep it. The item must be valid (see
// Item.Validate).
func ItemToJSON(it Item) ([]byte, error) {
	if err := it.Validate(); err != nil {
		return nil, err
	}
	return appendPlainAttrs(nil, it), nil
}

func appendDDBAttrs(dst []byte, m map[string]Value) []byte {
	dst = append(dst, '{')
	for i, name := range sortedNames(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, name)
		dst = append(dst, ':')
		dst = appendDDBValue(dst, m[name])
	}
	return append(dst, '}')
}

func appendDDBValue(dst []byte, v Value) []byte {
	dst = append(dst, `{"`...)
	dst = append(dst, v.Type().String()...)
	dst = append(dst, `":`...)
	switch x := v.(type) {
	case S:
		dst = appendJSONString(dst, string(x))
	case N:
		dst = strconv.AppendQuote(dst, x.String())
	case B:
		dst = appendBase64(dst, x)
	case Bool:
		dst = strconv.AppendBool(dst, bool(x))
	case Null:
		dst = append(dst, "true"...)
	case M:
		dst = appendDDBAttrs(dst, x)
	case L:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendDDBValue(dst, e)
		}
		dst = append(dst, ']')
	case SS:
		dst = appendStringArray(dst, sortedSS(x))
	case NS:
		dst = append(dst, '[')
		for i, n := range sortedNS(x) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendQuote(dst, n.String())
		}
		dst = append(dst, ']')
	case BS:
		dst = appendBase64Array(dst, sortedBS(x))
	}
	return append(dst, '}')
}

func appendPlainAttrs(dst []byte, m map[string]Value) []byte {
	dst = append(dst, '{')
	for i, name := range sortedNames(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, name)
		dst = append(dst, ':')
		dst = appendPlainValue(dst, m[name])
	}
	return append(dst, '}')
}

func appendPlainValue(dst []byte, v Value) []byte {
	switch x := v.(type) {
	case S:
		return appendJSONString(dst, string(x))
	case N:
		return append(dst, x.String()...)
	case B:
		return appendBase64(dst, x)
	case Bool:
		return strconv.AppendBool(dst, bool(x))
	case Null:
		return append(dst, "null"...)
	case M:
		return appendPlainAttrs(dst, x)
	case L:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendPlainValue(dst, e)
		}
		return append(dst, ']')
	case SS:
		return appendStringArray(dst, sortedSS(x))
	case NS:
		dst = append(dst, '[')
		for i, n := range sortedNS(x) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, n.String()...)
		}
		return append(dst, ']')
	case BS:
		return appendBase64Array(dst, sortedBS(x))
	}
	return dst
}

func appendStringArray(dst []byte, s []string) []byte {
	dst = append(dst, '[')
	for i, e := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, e)
	}
	return append(dst, ']')
}

func appendBase64Array(dst []byte, s [][]byte) []byte {
	dst = append(dst, '[')
	for i, e := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendBase64(dst, e)
	}
	return append(dst, ']')
}

func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// appendJSONString appends s (valid UTF-8) as a JSON string, escaping only
// what JSON requires, so the output is the same whatever the reader.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
