package ddb

import (
	"errors"
	"strconv"
	"strings"
)

// DynamoDB's number limits.
const (
	// MaxNumberDigits is the most significant digits a DynamoDB number holds.
	MaxNumberDigits = 38
	// MinNumberExponent and MaxNumberExponent bound the decimal exponent of
	// the most significant digit of a non-zero number: DynamoDB stores
	// magnitudes from 1E-130 to 9.9999999999999999999999999999999999999E+125.
	MinNumberExponent = -130
	MaxNumberExponent = 125
)

// N is a DynamoDB number. It holds the canonical decimal text of the value
// (see Normalize), so every N is valid and two Ns are == exactly when their
// numeric values are equal. The zero value is the number 0.
//
// Build one with ParseN, MustN or NFromInt64; decoders return them already
// normalized.
type N struct {
	// text is the canonical text; "" stands for "0" so that N{} is zero
	// and == still means numerically equal.
	text string
}

// ParseN parses a DynamoDB number: an optional sign, decimal digits with an
// optional fraction, and an optional exponent (e or E), as DynamoDB accepts
// them ("12", "-0.5", "1.5E+3", ".5", "5."). The error wraps ErrInvalidNumber.
func ParseN(s string) (N, error) {
	t, err := Normalize(s)
	if err != nil {
		return N{}, err
	}
	if t == "0" {
		return N{}, nil
	}
	return N{text: t}, nil
}

// MustN is ParseN for constants; it panics if s is not a valid number.
func MustN(s string) N {
	n, err := ParseN(s)
	if err != nil {
		panic(err)
	}
	return n
}

// NFromInt64 returns the number i.
func NFromInt64(i int64) N {
	if i == 0 {
		return N{}
	}
	return N{text: strconv.FormatInt(i, 10)}
}

// String returns the canonical decimal text: plain notation, no exponent,
// no leading or trailing zeros, no "-0" (as DynamoDB returns numbers).
func (n N) String() string {
	if n.text == "" {
		return "0"
	}
	return n.text
}

// Int64 returns n as an int64, or an error if n is not an integer or does
// not fit.
func (n N) Int64() (int64, error) {
	s := n.String()
	if strings.IndexByte(s, '.') >= 0 {
		return 0, &Error{Err: ErrInvalidNumber, Offset: -1, Msg: s + " is not an integer"}
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, &Error{Err: ErrInvalidNumber, Offset: -1, Msg: s + " does not fit in 64 bits"}
	}
	return i, nil
}

// Cmp compares n and m numerically and returns -1, 0 or +1.
func (n N) Cmp(m N) int {
	if n.text == m.text {
		return 0
	}
	a, b := canonicalDecimal(n.String()), canonicalDecimal(m.String())
	return a.cmp(b)
}

// decimal is a parsed number: the value is
// ±0.digits × 10^point, i.e. the decimal point sits after point digits.
// digits has no leading or trailing zeros; it is empty for zero.
type decimal struct {
	neg    bool
	digits string
	point  int
}

func (d decimal) sign() int {
	switch {
	case d.digits == "":
		return 0
	case d.neg:
		return -1
	default:
		return 1
	}
}

func (d decimal) cmp(e decimal) int {
	ds, es := d.sign(), e.sign()
	if ds != es || ds == 0 {
		return cmpInt(ds, es)
	}
	r := cmpInt(d.point, e.point)
	if r == 0 {
		// Same magnitude order: the digit strings compare as fractions,
		// and a missing trailing digit is a zero.
		r = strings.Compare(d.digits, e.digits)
	}
	return r * ds
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// canonicalDecimal parses text known to be canonical (the output of Normalize).
func canonicalDecimal(s string) decimal {
	var d decimal
	if s == "0" {
		return d
	}
	if s[0] == '-' {
		d.neg = true
		s = s[1:]
	}
	dot := strings.IndexByte(s, '.')
	if dot < 0 {
		d.digits = strings.TrimRight(s, "0")
		d.point = len(s)
		return d
	}
	intPart, frac := s[:dot], s[dot+1:]
	if intPart == "0" {
		t := strings.TrimLeft(frac, "0")
		d.digits = t
		d.point = -(len(frac) - len(t))
		return d
	}
	d.digits = intPart + frac
	d.point = len(intPart)
	return d
}

// errNumber builds the error for an invalid number.
func errNumber(s, msg string) error {
	return &Error{Err: ErrInvalidNumber, Offset: -1, Msg: quoteInput(s) + ": " + msg}
}

// Normalize returns the canonical text of the DynamoDB number s, so that
// every numeric value has exactly one text: "1", "1.0", "1E0", "01" and
// "10E-1" all give "1". The canonical text is plain notation without an
// exponent, without leading zeros or trailing fraction zeros, and without a
// sign for zero, matching what DynamoDB returns ("1.5E2" → "150",
// "-0" → "0", "0.50" → "0.5").
//
// It rejects anything that is not a number, numbers with more than 38
// significant digits and non-zero magnitudes outside 1E-130 ..
// 9.9999999999999999999999999999999999999E+125 (DynamoDB rejects them
// rather than rounding). The error wraps ErrInvalidNumber.
func Normalize(s string) (string, error) {
	d, err := parseDecimal(s)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// parseDecimal parses and checks a DynamoDB number.
func parseDecimal(s string) (decimal, error) {
	var d decimal
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		d.neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
	}
	if intPart == "" && frac == "" {
		if s == "" {
			return d, errNumber(s, "empty")
		}
		return d, errNumber(s, "not a number")
	}
	// The exponent saturates far beyond any valid value, so a huge
	// exponent is rejected as out of range (or ignored for zero) instead
	// of overflowing.
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && isDigit(s[i]) {
			if exp < 1e9 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == es {
			return d, errNumber(s, "exponent has no digits")
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return d, errNumber(s, "unexpected "+strconv.QuoteRune(rune(s[i]))+" at index "+strconv.Itoa(i))
	}

	// The significant digits run from the first to the last non-zero digit
	// of intPart+frac.
	n := len(intPart) + len(frac)
	at := func(k int) byte {
		if k < len(intPart) {
			return intPart[k]
		}
		return frac[k-len(intPart)]
	}
	first := 0
	for first < n && at(first) == '0' {
		first++
	}
	if first == n {
		return decimal{}, nil // zero, whatever its sign and exponent
	}
	last := n - 1
	for at(last) == '0' {
		last--
	}
	sig := last - first + 1
	if sig > MaxNumberDigits {
		return d, errNumber(s, strconv.Itoa(sig)+" significant digits; DynamoDB allows at most 38")
	}
	d.point = len(intPart) + exp - first
	if e := d.point - 1; e > MaxNumberExponent {
		return d, errNumber(s, "magnitude above 9.9999999999999999999999999999999999999E+125")
	} else if e < MinNumberExponent {
		return d, errNumber(s, "magnitude below 1E-130")
	}
	var buf [MaxNumberDigits]byte
	for k := first; k <= last; k++ {
		buf[k-first] = at(k)
	}
	d.digits = string(buf[:sig])
	return d, nil
}

// String formats d in canonical plain notation.
func (d decimal) String() string {
	if d.digits == "" {
		return "0"
	}
	var b strings.Builder
	b.Grow(len(d.digits) + 4 + max(d.point, -d.point))
	if d.neg {
		b.WriteByte('-')
	}
	switch {
	case d.point <= 0:
		b.WriteString("0.")
		for range -d.point {
			b.WriteByte('0')
		}
		b.WriteString(d.digits)
	case d.point >= len(d.digits):
		b.WriteString(d.digits)
		for range d.point - len(d.digits) {
			b.WriteByte('0')
		}
	default:
		b.WriteString(d.digits[:d.point])
		b.WriteByte('.')
		b.WriteString(d.digits[d.point:])
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numberErrorAt re-anchors a number error at a path and input position.
func numberErrorAt(err error, path pathStack, offset int) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Path = path.String()
		c.Offset = offset
		return &c
	}
	return err
}
