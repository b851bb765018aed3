package ddb

import (
	"math/big"
	"strings"
)

// DynamoDB's messages for an arithmetic result it cannot store. DynamoDB
// does not round: a sum that needs more than 38 significant digits fails
// with the overflow message too (1E+50 + 1 is "Number overflow", although
// its magnitude is in range), as does a magnitude above 9.99…E+125; a
// non-zero magnitude below 1E-130 is an underflow.
const (
	MsgNumberOverflow  = "Number overflow. Attempting to store a number with magnitude larger than supported range"
	MsgNumberUnderflow = "Number underflow. Attempting to store a number with magnitude smaller than supported range"
)

// Add returns n + m, computed exactly in decimal. The error wraps
// ErrInvalidNumber and its Msg is MsgNumberOverflow when the sum needs more
// than 38 significant digits or exceeds 9.99…E+125, MsgNumberUnderflow
// when it is non-zero and below 1E-130.
func (n N) Add(m N) (N, error) {
	return addDecimal(canonicalDecimal(n.String()), canonicalDecimal(m.String()))
}

// Sub returns n - m, computed exactly in decimal, with Add's errors.
func (n N) Sub(m N) (N, error) {
	d := canonicalDecimal(m.String())
	if d.digits != "" {
		d.neg = !d.neg
	}
	return addDecimal(canonicalDecimal(n.String()), d)
}

// addDecimal adds two decimals: each is a signed integer coefficient
// (its digits) times 10^(point-len(digits)); the coefficients are aligned
// to the smaller exponent and added as integers, so nothing is rounded.
func addDecimal(a, b decimal) (N, error) {
	if a.digits == "" {
		return decimalN(b)
	}
	if b.digits == "" {
		return decimalN(a)
	}
	ea, eb := a.point-len(a.digits), b.point-len(b.digits)
	exp := min(ea, eb)
	ca, cb := coefficient(a, ea-exp), coefficient(b, eb-exp)
	sum := ca.Add(ca, cb)
	if sum.Sign() == 0 {
		return N{}, nil
	}
	var d decimal
	d.neg = sum.Sign() < 0
	digits := sum.Abs(sum).String()
	d.point = len(digits) + exp
	d.digits = strings.TrimRight(digits, "0")
	if len(d.digits) > MaxNumberDigits || d.point-1 > MaxNumberExponent {
		return N{}, &Error{Err: ErrInvalidNumber, Offset: -1, Msg: MsgNumberOverflow}
	}
	if d.point-1 < MinNumberExponent {
		return N{}, &Error{Err: ErrInvalidNumber, Offset: -1, Msg: MsgNumberUnderflow}
	}
	return decimalN(d)
}

// coefficient returns d's digits as a signed integer followed by shift
// zeros.
func coefficient(d decimal, shift int) *big.Int {
	c, _ := new(big.Int).SetString(d.digits+strings.Repeat("0", shift), 10)
	if d.neg {
		c.Neg(c)
	}
	return c
}

// decimalN returns the N of a valid decimal.
func decimalN(d decimal) (N, error) {
	if d.digits == "" {
		return N{}, nil
	}
	return N{text: d.String()}, nil
}
