package ddb

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestNumberKeyOrder(t *testing.T) {
	nums := []string{
		"-9.9999999999999999999999999999999999999E+125", "-1E10", "-123.45", "-123.4", "-12", "-1.5", "-1",
		"-0.123", "-0.12", "-0.1", "-1E-130", "0", "1E-130", "0.1", "0.12", "0.123", "1", "1.5", "9", "10",
		"12", "123.4", "123.45", "1E10", "9.9999999999999999999999999999999999999E+125",
	}
	var prev []byte
	for i, s := range nums {
		n := MustN(s)
		k := EncodeNumberKey(n)
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			t.Errorf("%s: key %x not above previous %x (%s)", s, k, prev, nums[i-1])
		}
		back, err := DecodeNumberKey(k)
		if err != nil || back != n {
			t.Errorf("%s: decode %x = %v, %v", s, k, back, err)
		}
		prev = k
	}
}

func TestNumberKeyRandomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func() N {
		digits := r.IntN(38) + 1
		var b []byte
		if r.IntN(2) == 0 {
			b = append(b, '-')
		}
		for i := 0; i < digits; i++ {
			b = append(b, byte('0'+r.IntN(10)))
		}
		b = append(b, 'E')
		b = strconv.AppendInt(b, int64(r.IntN(160)-80), 10)
		n, err := ParseN(string(b))
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return n
	}
	for i := 0; i < 20000; i++ {
		a, b := gen(), gen()
		if got, want := bytes.Compare(EncodeNumberKey(a), EncodeNumberKey(b)), a.Cmp(b); got != want {
			t.Fatalf("%s vs %s: bytes compare %d, numbers %d", a, b, got, want)
		}
	}
}

func TestDecodeNumberKeyRejects(t *testing.T) {
	for _, b := range [][]byte{nil, {0x02, 0}, {0x03, 129}, {0x03, 129, '0'}, {0x03, 129, '1', '0'}, {0x03, 129, 'x'}, {0x01, 1, '1'}, {0x09}} {
		if _, err := DecodeNumberKey(b); err == nil {
			t.Errorf("DecodeNumberKey(%x) accepted", b)
		}
	}
}

func TestItemKeyRoundTrip(t *testing.T) {
	s := KeySchema{PartitionKey: KeyAttribute{Name: "pk", Type: TypeN}, SortKey: KeyAttribute{Name: "sk", Type: TypeN}}
	it := Item{"pk": MustN("10"), "sk": MustN("-2.5"), "x": S("y")}
	pk, sk, err := s.Key(it)
	if err != nil {
		t.Fatal(err)
	}
	if string(pk) != "10" {
		t.Errorf("partition key %q, want the decimal text", pk)
	}
	back, err := s.ItemKey(pk, sk)
	if err != nil || !EqualItems(back, Item{"pk": MustN("10"), "sk": MustN("-2.5")}) {
		t.Fatalf("ItemKey = %v, %v", back, err)
	}
}
