package ddb

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	d38 := strings.Repeat("9", 38)
	for _, tc := range []struct {
		in, want string
	}{
		{"0", "0"},
		{"-0", "0"},
		{"+0", "0"},
		{"0.000", "0"},
		{"-0.0E5", "0"},
		{"0E999999999999999999999", "0"},
		{"00", "0"},
		{".0", "0"},
		{"1", "1"},
		{"1.0", "1"},
		{"1E0", "1"},
		{"01", "1"},
		{"10E-1", "1"},
		{"0.1E1", "1"},
		{"+1", "1"},
		{"1.", "1"},
		{"-1", "-1"},
		{"00042", "42"},
		{"1.5E2", "150"},
		{"1.5e+2", "150"},
		{"150E-2", "1.5"},
		{"0.50", "0.5"},
		{".5", "0.5"},
		{"-.5", "-0.5"},
		{"-0.00120", "-0.0012"},
		{"100", "100"},
		{"1E2", "100"},
		{"1234567891234560000000000000000000000000", "1234567891234560000000000000000000000000"},
		{"1.00000000000000007629769841092E+50", "100000000000000007629769841092000000000000000000000"},
		{d38, d38},
		{"-" + d38, "-" + d38},
		{"0." + d38, "0." + d38},
		{d38 + "000", d38 + "000"},
		{"1" + strings.Repeat("0", 36) + "1", "1" + strings.Repeat("0", 36) + "1"},
		{"1" + strings.Repeat("0", 36) + "1E-20", "100000000000000000.00000000000000000001"},
		{"1E125", "1" + strings.Repeat("0", 125)},
		{"9." + strings.Repeat("9", 37) + "E+125", d38 + strings.Repeat("0", 88)},
		{"-9." + strings.Repeat("9", 37) + "E+125", "-" + d38 + strings.Repeat("0", 88)},
		{"1E-130", "0." + strings.Repeat("0", 129) + "1"},
		{"-1E-130", "-0." + strings.Repeat("0", 129) + "1"},
		{"1.5E-130", "0." + strings.Repeat("0", 129) + "15"},
		{"123.456", "123.456"},
		{"0.000000000000000000000000000000000000000000001", "0.000000000000000000000000000000000000000000001"},
		{"12345678901234567890123456789012345678E-40", "0.0012345678901234567890123456789012345678"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			again, err := Normalize(got)
			if err != nil || again != got {
				t.Fatalf("Normalize not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, tc := range []struct {
		in, msg string
	}{
		{"", "empty"},
		{"abc", "not a number"},
		{"-", "not a number"},
		{".", "not a number"},
		{"+-1", "not a number"},
		{"1e", "exponent has no digits"},
		{"1e+", "exponent has no digits"},
		{"e5", "not a number"},
		{" 1", "not a number"},
		{"1 ", "unexpected ' '"},
		{"1.2.3", "unexpected '.'"},
		{"0x10", "unexpected 'x'"},
		{"NaN", "not a number"},
		{"Infinity", "not a number"},
		{"1,5", "unexpected ','"},
		{"1_000", "unexpected '_'"},
		{"1d5", "unexpected 'd'"},
		{strings.Repeat("1", 39), "39 significant digits"},
		{"1." + strings.Repeat("1", 38), "39 significant digits"},
		{"1" + strings.Repeat("0", 37) + ".01", "40 significant digits"},
		{"1E126", "magnitude above"},
		{"10E125", "magnitude above"},
		{"1E999999999999999999999", "magnitude above"},
		{"1E-131", "magnitude below"},
		{"0.1E-130", "magnitude below"},
		{"1E-999999999999999999999", "magnitude below"},
		{strings.Repeat("9", 127), "127 significant digits"},
		{"1" + strings.Repeat("0", 126), "magnitude above"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if err == nil {
				t.Fatalf("Normalize(%q) = %q, want error", tc.in, got)
			}
			if !errors.Is(err, ErrInvalidNumber) {
				t.Fatalf("error %v does not wrap ErrInvalidNumber", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestNumberCmp(t *testing.T) {
	// Ascending numeric order.
	ordered := []string{
		"-9.9999999999999999999999999999999999999E+125", "-1E20", "-100", "-10", "-9.5",
		"-1", "-0.5", "-0.05", "-1E-130", "0", "1E-130", "0.0001", "0.001", "0.01",
		"0.1", "0.15", "0.151", "1", "1.5", "9", "10", "10.5", "11", "100", "1E20",
		"9.9999999999999999999999999999999999999E+125",
	}
	ns := make([]N, len(ordered))
	for i, s := range ordered {
		ns[i] = MustN(s)
	}
	for i := range ns {
		for j := range ns {
			if got, want := ns[i].Cmp(ns[j]), cmpInt(i, j); got != want {
				t.Errorf("Cmp(%s, %s) = %d, want %d", ns[i], ns[j], got, want)
			}
		}
	}
	shuffled := slices.Clone(ns)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, N.Cmp)
	if !slices.Equal(shuffled, ns) {
		t.Errorf("sorted = %v, want %v", shuffled, ns)
	}
}

func TestN(t *testing.T) {
	if (N{}).String() != "0" || MustN("0") != (N{}) || MustN("-0.0") != (N{}) {
		t.Fatal("zero N is not 0")
	}
	if MustN("1.50") != MustN("15E-1") {
		t.Fatal("equal numbers are not ==")
	}
	for _, i := range []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64} {
		n := NFromInt64(i)
		if n != MustN(n.String()) {
			t.Errorf("NFromInt64(%d) = %#v is not canonical", i, n)
		}
		got, err := n.Int64()
		if err != nil || got != i {
			t.Errorf("NFromInt64(%d).Int64() = %d, %v", i, got, err)
		}
	}
	for _, s := range []string{"1.5", "9223372036854775808", "-9223372036854775809", "1E30"} {
		if _, err := MustN(s).Int64(); !errors.Is(err, ErrInvalidNumber) {
			t.Errorf("MustN(%q).Int64() error = %v, want ErrInvalidNumber", s, err)
		}
	}
	if _, err := ParseN("1e200"); !errors.Is(err, ErrInvalidNumber) {
		t.Errorf("ParseN(1e200) error = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustN(x) did not panic")
		}
	}()
	MustN("x")
}
