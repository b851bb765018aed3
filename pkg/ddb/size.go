package ddb

import "strings"

// MaxItemSize is DynamoDB's item size limit, 400 KB, as Size measures it.
const MaxItemSize = 400 << 10

// Size returns the item's size as DynamoDB measures it against its 400 KB
// item limit (see "Item sizes and formats" in the DynamoDB developer
// guide): each attribute's name in UTF-8 plus its value, where a string is
// its UTF-8 length, binary its length, a number one byte per two
// significant digits plus one (plus one for a negative sign), a BOOL or
// NULL one byte, a set the sum of its members, and a list or map three
// bytes plus one byte per element and the elements (with a map's key
// names). This is the limit to apply to a source item: a value encoding
// (JSON especially) can make the stored bytes larger than the item.
func (it Item) Size() int {
	n := 0
	for name, v := range it {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v Value) int {
	switch v := v.(type) {
	case S:
		return len(v)
	case B:
		return len(v)
	case N:
		return numberSize(v)
	case Bool, Null:
		return 1
	case SS:
		n := 0
		for _, s := range v {
			n += len(s)
		}
		return n
	case NS:
		n := 0
		for _, x := range v {
			n += numberSize(x)
		}
		return n
	case BS:
		n := 0
		for _, b := range v {
			n += len(b)
		}
		return n
	case L:
		n := 3
		for _, e := range v {
			n += 1 + valueSize(e)
		}
		return n
	case M:
		n := 3
		for k, e := range v {
			n += 1 + len(k) + valueSize(e)
		}
		return n
	}
	return 0
}

// numberSize is DynamoDB's size of a number: one byte per two significant
// digits, rounded up, plus one; a negative number one more.
func numberSize(x N) int {
	s := x.String()
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	digits := strings.Trim(strings.Replace(s, ".", "", 1), "0")
	n := (len(digits)+1)/2 + 1
	if neg {
		n++
	}
	return n
}
