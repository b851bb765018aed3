package ddb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf8"
)

// FormatV1 is the leading byte of the version 1 canonical item encoding
// (the layout is in the package documentation). A later layout will get a
// new leading byte; DecodeItem rejects bytes it does not know with
// ErrUnknownFormat.
const FormatV1 byte = 0x01

// tagInvalid is written for a nil or foreign Value, so that an invalid item
// can be encoded (EncodeItem cannot fail) but never decodes as something
// else. Other tags are the Type values.
const tagInvalid byte = 0x00

// EncodeItem returns the canonical encoding of it: attribute names sorted,
// set members sorted and deduplicated, numbers normalized. Two items that
// are equal as DynamoDB values encode to the same bytes, and different
// items to different bytes, so the bytes can be compared and hashed
// directly.
//
// EncodeItem expects a valid item (see Item.Validate; the decoders in this
// package only return valid items). It does not fail on an invalid one, but
// DecodeItem rejects the result, so an invalid item can never be read back
// as a different one.
func EncodeItem(it Item) []byte {
	// DynamoDB's size of the item (names and values) plus a few bytes of
	// types and lengths per attribute: grown from nil, the encoding of a
	// 1 KiB item was copied several times.
	return AppendItem(make([]byte, 0, it.Size()+4*len(it)+8), it)
}

// AppendItem appends the canonical encoding of it (see EncodeItem) to dst.
func AppendItem(dst []byte, it Item) []byte {
	dst = append(dst, FormatV1)
	return appendAttrs(dst, it)
}

func appendAttrs(dst []byte, m map[string]Value) []byte {
	names := sortedNames(m)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, name := range names {
		dst = appendString(dst, name)
		dst = appendValue(dst, m[name])
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendValue(dst []byte, v Value) []byte {
	switch x := v.(type) {
	case S:
		dst = append(dst, byte(TypeS))
		return appendString(dst, string(x))
	case N:
		dst = append(dst, byte(TypeN))
		return appendString(dst, x.String())
	case B:
		dst = append(dst, byte(TypeB))
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		return append(dst, x...)
	case Bool:
		dst = append(dst, byte(TypeBOOL))
		if x {
			return append(dst, 1)
		}
		return append(dst, 0)
	case Null:
		return append(dst, byte(TypeNULL))
	case M:
		dst = append(dst, byte(TypeM))
		return appendAttrs(dst, x)
	case L:
		dst = append(dst, byte(TypeL))
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		for _, e := range x {
			dst = appendValue(dst, e)
		}
		return dst
	case SS:
		dst = append(dst, byte(TypeSS))
		s := slices.Compact(sortedSS(x))
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		for _, e := range s {
			dst = appendString(dst, e)
		}
		return dst
	case NS:
		dst = append(dst, byte(TypeNS))
		s := slices.Compact(sortedNS(x))
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		for _, e := range s {
			dst = appendString(dst, e.String())
		}
		return dst
	case BS:
		dst = append(dst, byte(TypeBS))
		s := slices.CompactFunc(sortedBS(x), bytes.Equal)
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		for _, e := range s {
			dst = appendString(dst, string(e))
		}
		return dst
	default:
		return append(dst, tagInvalid)
	}
}

// DecodeItem decodes an item encoded by EncodeItem. It accepts only
// canonical encodings of valid items (so decoding then re-encoding gives
// back the same bytes) and does not retain b. Errors wrap ErrCorrupt or
// ErrUnknownFormat.
func DecodeItem(b []byte) (Item, error) {
	if len(b) == 0 {
		return nil, &Error{Err: ErrCorrupt, Offset: 0, Msg: "empty input"}
	}
	if b[0] != FormatV1 {
		return nil, &Error{Err: ErrUnknownFormat, Offset: 0, Msg: fmt.Sprintf("format byte 0x%02x", b[0])}
	}
	d := decoder{b: b, pos: 1}
	m, err := d.attrs(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(b) {
		return nil, d.fail("%d trailing bytes", len(b)-d.pos)
	}
	return Item(m), nil
}

type decoder struct {
	b    []byte
	pos  int
	path pathStack
}

func (d *decoder) fail(format string, args ...any) error {
	return &Error{Err: ErrCorrupt, Path: d.path.String(), Offset: d.pos, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) remaining() int { return len(d.b) - d.pos }

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b[d.pos:])
	if n <= 0 {
		return 0, d.fail("truncated or overlong varint")
	}
	if n > 1 && d.b[d.pos+n-1] == 0 {
		return 0, d.fail("non-minimal varint")
	}
	d.pos += n
	return v, nil
}

// count reads an element count, each element taking at least minSize bytes.
func (d *decoder) count(minSize int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(d.remaining()/minSize) {
		return 0, d.fail("count %d exceeds the remaining %d bytes", n, d.remaining())
	}
	return int(n), nil
}

// bytes reads a length-prefixed byte string; the result aliases d.b.
func (d *decoder) bytes() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(d.remaining()) {
		return nil, d.fail("length %d exceeds the remaining %d bytes", n, d.remaining())
	}
	s := d.b[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s, nil
}

func (d *decoder) text(what string) (string, error) {
	start := d.pos
	b, err := d.bytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		d.pos = start
		return "", d.fail("%s is not valid UTF-8", what)
	}
	return string(b), nil
}

func (d *decoder) number() (N, error) {
	start := d.pos
	b, err := d.bytes()
	if err != nil {
		return N{}, err
	}
	n, err := ParseN(string(b))
	if err != nil || n.String() != string(b) {
		d.pos = start
		return N{}, d.fail("number %s is not in canonical form", quoteInput(string(b)))
	}
	return n, nil
}

func (d *decoder) attrs(depth int) (map[string]Value, error) {
	n, err := d.count(2)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Value, min(n, 64))
	prev := ""
	for i := range n {
		start := d.pos
		name, err := d.text("attribute name")
		if err != nil {
			return nil, err
		}
		if i > 0 && name <= prev {
			d.pos = start
			return nil, d.fail("attribute %s out of order after %s", quoteInput(name), quoteInput(prev))
		}
		prev = name
		d.path.pushName(name)
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.path.pop()
		m[name] = v
	}
	return m, nil
}

func (d *decoder) value(depth int) (Value, error) {
	if d.remaining() == 0 {
		return nil, d.fail("missing value")
	}
	tag := d.b[d.pos]
	d.pos++
	switch Type(tag) {
	case TypeS:
		s, err := d.text("string")
		return S(s), err
	case TypeN:
		return d.number()
	case TypeB:
		b, err := d.bytes()
		return B(bytes.Clone(b)), err
	case TypeBOOL:
		if d.remaining() == 0 || d.b[d.pos] > 1 {
			return nil, d.fail("BOOL payload must be 0 or 1")
		}
		d.pos++
		return Bool(d.b[d.pos-1] == 1), nil
	case TypeNULL:
		return Null{}, nil
	case TypeM:
		if depth+1 > MaxDepth {
			return nil, d.fail("nested more than %d levels deep", MaxDepth)
		}
		m, err := d.attrs(depth + 1)
		return M(m), err
	case TypeL:
		if depth+1 > MaxDepth {
			return nil, d.fail("nested more than %d levels deep", MaxDepth)
		}
		n, err := d.count(1)
		if err != nil {
			return nil, err
		}
		l := make(L, 0, min(n, 256))
		for i := range n {
			d.path.pushIndex(i)
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			d.path.pop()
			l = append(l, v)
		}
		return l, nil
	case TypeSS:
		n, err := d.setCount()
		if err != nil {
			return nil, err
		}
		s := make(SS, 0, min(n, 256))
		for i := range n {
			start := d.pos
			e, err := d.text("string set member")
			if err != nil {
				return nil, err
			}
			if i > 0 && e <= s[i-1] {
				d.pos = start
				return nil, d.fail("string set members not strictly ascending")
			}
			s = append(s, e)
		}
		return s, nil
	case TypeNS:
		n, err := d.setCount()
		if err != nil {
			return nil, err
		}
		s := make(NS, 0, min(n, 256))
		for i := range n {
			start := d.pos
			e, err := d.number()
			if err != nil {
				return nil, err
			}
			if i > 0 && e.Cmp(s[i-1]) <= 0 {
				d.pos = start
				return nil, d.fail("number set members not strictly ascending")
			}
			s = append(s, e)
		}
		return s, nil
	case TypeBS:
		n, err := d.setCount()
		if err != nil {
			return nil, err
		}
		s := make(BS, 0, min(n, 256))
		for i := range n {
			start := d.pos
			e, err := d.bytes()
			if err != nil {
				return nil, err
			}
			if i > 0 && bytes.Compare(e, s[i-1]) <= 0 {
				d.pos = start
				return nil, d.fail("binary set members not strictly ascending")
			}
			s = append(s, bytes.Clone(e))
		}
		return s, nil
	default:
		d.pos--
		if tag == tagInvalid {
			return nil, d.fail("nil or unsupported value (the item was invalid when encoded)")
		}
		return nil, d.fail("unknown value tag 0x%02x", tag)
	}
}

func (d *decoder) setCount() (int, error) {
	n, err := d.count(1)
	if err == nil && n == 0 {
		return 0, d.fail("empty set")
	}
	return n, err
}
