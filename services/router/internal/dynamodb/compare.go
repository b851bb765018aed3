package dynamodb

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// maxDifferences bounds the differences one comparison lists.
const maxDifferences = 20

// CompareItems compares DynamoDB's item a with Veltrix's item b (nil:
// absent) as DynamoDB defines equality and returns the differences, each
// naming the attribute path and both values ("price: N 2 vs N 3"); none
// when they are equal. Numbers compare by value (ddb.N is canonical, so
// 1.50 == 1.5), SS, NS and BS as sets, L in order, M by key; S and B are
// compared byte for byte, so an NFC and an NFD spelling of one string
// differ, as they do in DynamoDB. The result is symmetric: swapping a and
// b swaps the two sides of each difference.
func CompareItems(a, b ddb.Item) []string {
	var c comparer
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		return []string{"item: absent vs present"}
	case b == nil:
		return []string{"item: present vs absent"}
	}
	c.attrs("", ddb.M(a), ddb.M(b))
	return c.diffs
}

type comparer struct{ diffs []string }

func (c *comparer) add(path string, format string, args ...any) {
	if len(c.diffs) < maxDifferences {
		c.diffs = append(c.diffs, path+": "+fmt.Sprintf(format, args...))
	}
}

func (c *comparer) attrs(prefix string, a, b ddb.M) {
	names := make([]string, 0, len(a)+len(b))
	for k := range a {
		names = append(names, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		path := n
		if prefix != "" {
			path = prefix + "." + n
		}
		va, oka := a[n]
		vb, okb := b[n]
		switch {
		case !oka:
			c.add(path, "absent vs %s", show(vb))
		case !okb:
			c.add(path, "%s vs absent", show(va))
		default:
			c.value(path, va, vb)
		}
	}
}

func (c *comparer) value(path string, a, b ddb.Value) {
	if a == nil || b == nil || a.Type() != b.Type() {
		c.add(path, "%s vs %s", show(a), show(b))
		return
	}
	switch x := a.(type) {
	case ddb.M:
		c.attrs(path, x, b.(ddb.M))
	case ddb.L:
		y := b.(ddb.L)
		if len(x) != len(y) {
			c.add(path, "list of %d vs list of %d", len(x), len(y))
			return
		}
		for i := range x {
			c.value(fmt.Sprintf("%s[%d]", path, i), x[i], y[i])
		}
	case ddb.S:
		if x != b.(ddb.S) {
			c.add(path, "%s vs %s", show(a), show(b))
		}
	case ddb.B:
		if !bytes.Equal(x, b.(ddb.B)) {
			c.add(path, "%s vs %s", show(a), show(b))
		}
	case ddb.SS:
		c.set(path, "SS", sortedStrings(x), sortedStrings(b.(ddb.SS)))
	case ddb.BS:
		c.set(path, "BS", sortedBytes(x), sortedBytes(b.(ddb.BS)))
	case ddb.NS:
		// ddb.N holds canonical text: equal values have equal text.
		c.set(path, "NS", sortedNumbers(x), sortedNumbers(b.(ddb.NS)))
	default:
		// N (canonical text), BOOL, NULL.
		if !ddb.Equal(a, b) {
			c.add(path, "%s vs %s", show(a), show(b))
		}
	}
}

// set compares two sets given as sorted member lists and names the
// members only one side has.
func (c *comparer) set(path, typ string, a, b []string) {
	var onlyA, onlyB []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(onlyA) > 0 || len(onlyB) > 0 {
		c.add(path, "%s members only in DynamoDB [%s], only in Veltrix [%s]", typ, strings.Join(onlyA, " "), strings.Join(onlyB, " "))
	}
}

func sortedStrings(s ddb.SS) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	slices.Sort(out)
	return out
}

func sortedBytes(s ddb.BS) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%x", v)
	}
	slices.Sort(out)
	return out
}

func sortedNumbers(s ddb.NS) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = v.String()
	}
	slices.Sort(out)
	return out
}

// show renders a value for a difference: its type and DynamoDB JSON.
func show(v ddb.Value) string {
	if v == nil {
		return "absent"
	}
	b, err := ddb.MarshalValueDynamoDBJSON(v)
	if err != nil {
		return v.Type().String() + " <invalid>"
	}
	const max = 120
	s := string(b)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
