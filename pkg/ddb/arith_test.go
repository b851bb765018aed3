package ddb

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestAddSub(t *testing.T) {
	d38 := strings.Repeat("9", 38)
	for _, tc := range []struct {
		a, b     string
		sum      string // "" with sumErr
		sumErr   string
		diff     string
		diffErr  string
		skipDiff bool
	}{
		{a: "0", b: "0", sum: "0", diff: "0"},
		{a: "1", b: "2", sum: "3", diff: "-1"},
		{a: "0.1", b: "0.2", sum: "0.3", diff: "-0.1"},
		{a: "-5", b: "5", sum: "0", diff: "-10"},
		{a: "1.5", b: "-1.5", sum: "0", diff: "3"},
		{a: "10000000000000000000000", b: "1", sum: "10000000000000000000001", diff: "9999999999999999999999"},
		{a: "123.456", b: "0.544", sum: "124", diff: "122.912"},
		{a: "1E-130", b: "0", sum: MustN("1E-130").String(), diff: MustN("1E-130").String()},
		// 38 nines plus one is 1E+38: one significant digit, fine.
		{a: d38, b: "1", sum: "1" + strings.Repeat("0", 38), diff: strings.Repeat("9", 37) + "8"},
		// DynamoDB refuses rather than rounds.
		{a: "1E50", b: "1", sumErr: MsgNumberOverflow, diffErr: MsgNumberOverflow},
		{a: "9E125", b: "9E125", sumErr: MsgNumberOverflow, diff: "0"},
		{a: "9E125", b: "-9E125", sum: "0", diffErr: MsgNumberOverflow},
		{a: "9E125", b: "9E124", sum: "99" + strings.Repeat("0", 124), diff: "81" + strings.Repeat("0", 124)},
		{a: "1.1E-130", b: "-1E-130", sumErr: MsgNumberUnderflow, diff: MustN("2.1E-130").String()},
		{a: "1E125", b: "1E-130", sumErr: MsgNumberOverflow, diffErr: MsgNumberOverflow},
	} {
		a, b := MustN(tc.a), MustN(tc.b)
		check := func(op, got string, err error, want, wantErr string) {
			t.Helper()
			if wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || e.Msg != wantErr || !errors.Is(err, ErrInvalidNumber) {
					t.Errorf("%s %s %s: got %q, %v; want error %q", tc.a, op, tc.b, got, err, wantErr)
				}
				return
			}
			if err != nil || got != want {
				t.Errorf("%s %s %s = %q, %v; want %q", tc.a, op, tc.b, got, err, want)
			}
		}
		s, err := a.Add(b)
		check("+", s.String(), err, tc.sum, tc.sumErr)
		d, err := a.Sub(b)
		check("-", d.String(), err, tc.diff, tc.diffErr)
	}
}

// TestAddSubProperty checks Add and Sub against math/big's exact rationals:
// the result is the exact sum whenever DynamoDB can store it (ParseN of the
// exact decimal text succeeds), and an error otherwise.
func TestAddSubProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		a, b := randomN(r), randomN(r)
		if i%7 == 0 {
			b = a // exercise cancellation
		}
		for _, op := range []byte{'+', '-'} {
			ra, rb := ratOf(t, a), ratOf(t, b)
			var exact big.Rat
			var got N
			var err error
			if op == '+' {
				exact.Add(ra, rb)
				got, err = a.Add(b)
			} else {
				exact.Sub(ra, rb)
				got, err = a.Sub(b)
			}
			want, werr := ParseN(exactText(&exact))
			switch {
			case werr != nil:
				var e *Error
				if err == nil || !errors.As(err, &e) || (e.Msg != MsgNumberOverflow && e.Msg != MsgNumberUnderflow) {
					t.Fatalf("%v %c %v = %v, %v; want an overflow error (%v)", a, op, b, got, err, werr)
				}
				small := new(big.Rat).Abs(&exact).Cmp(big.NewRat(1, 1)) < 0
				if small != (e.Msg == MsgNumberUnderflow) && !strings.Contains(werr.Error(), "significant digits") {
					t.Fatalf("%v %c %v: %q for exact %s", a, op, b, e.Msg, exactText(&exact))
				}
			case err != nil:
				t.Fatalf("%v %c %v: %v; want %v", a, op, b, err, want)
			case got != want:
				t.Fatalf("%v %c %v = %v; want %v", a, op, b, got, want)
			}
		}
	}
}

func randomN(r *rand.Rand) N {
	if r.IntN(10) == 0 {
		return N{}
	}
	nd := 1 + r.IntN(MaxNumberDigits)
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteByte('-')
	}
	b.WriteByte(byte('1' + r.IntN(9)))
	for range nd - 1 {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	// Exponents cluster so that operands often overlap, and sometimes
	// reach the limits.
	var exp int
	switch r.IntN(4) {
	case 0:
		exp = r.IntN(MaxNumberExponent-MinNumberExponent+1) + MinNumberExponent
	case 1:
		exp = MaxNumberExponent - r.IntN(3)
	case 2:
		exp = MinNumberExponent + r.IntN(3)
	default:
		exp = r.IntN(41) - 20
	}
	// b holds d.ddd… with the point after the first digit: exponent exp.
	s := b.String()
	n, err := ParseN(s + "E" + strconv.Itoa(exp-(nd-1)))
	if err != nil {
		return N{}
	}
	return n
}

func ratOf(t *testing.T, n N) *big.Rat {
	r, ok := new(big.Rat).SetString(n.String())
	if !ok {
		t.Fatalf("big.Rat cannot parse %q", n)
	}
	return r
}

// exactText renders a rational whose denominator is a power of ten exactly.
func exactText(r *big.Rat) string {
	s := r.FloatString(300)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
