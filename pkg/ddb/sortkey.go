package ddb

import (
	"fmt"
	"strings"
)

// Number sort keys. DynamoDB orders N sort keys by numeric value, S and B
// sort keys by their bytes. Storage orders sort keys as bytes, so a stored
// N sort key is not its decimal text ("10" < "9" as text) but this
// order-preserving encoding of the value:
//
//	zero      0x02
//	positive  0x03 byte(point+129) digits
//	negative  0x01 byte(126-point) digits' 0xFF
//
// where the value is ±0.digits × 10^point (digits without leading or
// trailing zeros, point in -129..126 for DynamoDB's range), digits are
// ASCII, and digits' maps each digit d to '9'-d+'0'. Negative numbers sort
// below zero, zero below positives; among positives a larger point is a
// larger number and at equal points the digit strings compare as fractions
// (a prefix is smaller). Negatives invert both, and their trailing 0xFF
// makes a prefix sort above its extensions (-0.12 > -0.123).
const (
	numKeyNegative = 0x01
	numKeyZero     = 0x02
	numKeyPositive = 0x03
	// numKeyPointBias maps the smallest point, -129 (1E-130), to 0.
	numKeyPointBias = 129
	numKeyMaxPoint  = 126
)

// EncodeNumberKey returns the order-preserving sort key bytes of n: for
// any a and b, bytes.Compare(EncodeNumberKey(a), EncodeNumberKey(b)) ==
// a.Cmp(b).
func EncodeNumberKey(n N) []byte {
	d := canonicalDecimal(n.String())
	if d.digits == "" {
		return []byte{numKeyZero}
	}
	out := make([]byte, 0, 3+len(d.digits))
	if !d.neg {
		out = append(out, numKeyPositive, byte(d.point+numKeyPointBias))
		return append(out, d.digits...)
	}
	out = append(out, numKeyNegative, byte(numKeyMaxPoint-d.point))
	for i := 0; i < len(d.digits); i++ {
		out = append(out, '9'-d.digits[i]+'0')
	}
	return append(out, 0xFF)
}

// DecodeNumberKey is the inverse of EncodeNumberKey. It rejects bytes that
// EncodeNumberKey cannot have produced.
func DecodeNumberKey(b []byte) (N, error) {
	fail := func(msg string) (N, error) {
		return N{}, &Error{Err: ErrInvalidKey, Offset: -1, Msg: fmt.Sprintf("N sort key %x: %s", b, msg)}
	}
	if len(b) == 0 {
		return fail("empty")
	}
	var d decimal
	switch b[0] {
	case numKeyZero:
		if len(b) != 1 {
			return fail("bytes after zero")
		}
		return N{}, nil
	case numKeyPositive:
		if len(b) < 3 {
			return fail("truncated")
		}
		d.point = int(b[1]) - numKeyPointBias
		d.digits = string(b[2:])
	case numKeyNegative:
		if len(b) < 4 || b[len(b)-1] != 0xFF {
			return fail("truncated")
		}
		d.neg = true
		d.point = numKeyMaxPoint - int(b[1])
		var sb strings.Builder
		for _, c := range b[2 : len(b)-1] {
			sb.WriteByte('9' - c + '0')
		}
		d.digits = sb.String()
	default:
		return fail("unknown leading byte")
	}
	for i := 0; i < len(d.digits); i++ {
		if !isDigit(d.digits[i]) {
			return fail("not a digit")
		}
	}
	if d.digits[0] == '0' || d.digits[len(d.digits)-1] == '0' {
		return fail("digits not canonical")
	}
	n, err := ParseN(d.String())
	if err != nil {
		return fail(err.Error())
	}
	return n, nil
}

// SortKeyBytes returns the stored sort key of the item's attribute attr:
// KeyBytes for S and B, EncodeNumberKey for N, so that sort keys compare as
// bytes in DynamoDB's order.
func SortKeyBytes(it Item, attr KeyAttribute) ([]byte, error) {
	b, err := KeyBytes(it, attr)
	if err != nil || attr.Type != TypeN {
		return b, err
	}
	return EncodeNumberKey(it[attr.Name].(N)), nil
}

// SortValueFromKey is the inverse of SortKeyBytes: it rebuilds the sort key
// value of type t from stored sort key bytes.
func SortValueFromKey(t Type, key []byte) (Value, error) {
	if t == TypeN {
		return DecodeNumberKey(key)
	}
	return ValueFromKey(t, key)
}

// ItemKey rebuilds an item's key attributes from its stored partition and
// sort key bytes (the inverse of Key), e.g. for DynamoDB's
// LastEvaluatedKey.
func (s KeySchema) ItemKey(partition, sort []byte) (Item, error) {
	pv, err := ValueFromKey(s.PartitionKey.Type, partition)
	if err != nil {
		return nil, err
	}
	it := Item{s.PartitionKey.Name: pv}
	if !s.HasSortKey() {
		return it, nil
	}
	sv, err := SortValueFromKey(s.SortKey.Type, sort)
	if err != nil {
		return nil, err
	}
	it[s.SortKey.Name] = sv
	return it, nil
}
