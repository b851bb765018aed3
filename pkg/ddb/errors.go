package ddb

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Every error this package returns wraps exactly one of
// them; classify with errors.Is and read the location with errors.As into
// *Error.
var (
	// ErrSyntax reports input that is not well-formed DynamoDB JSON or Ion
	// text, or that uses an Ion feature outside the subset DynamoDB's Ion
	// mapping uses (timestamps, clobs, symbols, s-expressions, ...).
	ErrSyntax = errors.New("ddb: syntax error")
	// ErrInvalidValue reports a well-formed input whose value DynamoDB
	// would not accept: an unknown type descriptor, an empty or duplicated
	// set, bad base64, invalid UTF-8, nesting deeper than MaxDepth.
	ErrInvalidValue = errors.New("ddb: invalid attribute value")
	// ErrInvalidNumber reports a number that is not a decimal DynamoDB can
	// store: not a number, more than 38 significant digits, or a magnitude
	// outside 1E-130 .. 9.9999999999999999999999999999999999999E+125.
	ErrInvalidNumber = errors.New("ddb: invalid number")
	// ErrCorrupt reports bytes that are not a canonical encoding of a valid
	// item (see EncodeItem).
	ErrCorrupt = errors.New("ddb: corrupt item encoding")
	// ErrUnknownFormat reports an encoded item whose leading format byte
	// this version of the package does not know.
	ErrUnknownFormat = errors.New("ddb: unknown item encoding format")
	// ErrMissingKey reports an item without one of its key attributes.
	ErrMissingKey = errors.New("ddb: missing key attribute")
	// ErrInvalidKey reports a key attribute of the wrong type, an empty
	// one, one over DynamoDB's size limit, or an invalid key schema.
	ErrInvalidKey = errors.New("ddb: invalid key attribute")
)

// Error describes what is wrong with an input or an item, and where.
type Error struct {
	// Err is the sentinel this error wraps (ErrSyntax, ErrInvalidValue, ...).
	Err error
	// Path is the attribute path of the offending value in DynamoDB
	// document-path style, e.g. Item.orders[2].price or NewImage."first name".
	// Empty when the problem is not inside an attribute.
	Path string
	// Offset is the byte offset in the input where the problem was found,
	// or -1 when there is no input position (Normalize, Validate).
	Offset int
	// Line and Column (1-based; Column counts bytes) locate the problem in
	// Ion text. Zero for other inputs.
	Line, Column int
	// Msg says what is wrong.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Path != "" {
		b.WriteString(" at ")
		b.WriteString(e.Path)
	}
	switch {
	case e.Line > 0:
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(", column ")
		b.WriteString(strconv.Itoa(e.Column))
		b.WriteString(")")
	case e.Offset >= 0:
		b.WriteString(" (offset ")
		b.WriteString(strconv.Itoa(e.Offset))
		b.WriteString(")")
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	return b.String()
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// quoteInput quotes s for an error message, shortened so a huge bad input
// does not produce a huge error.
func quoteInput(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// pathSeg is one step of an attribute path: a name, or an index when
// index >= 0.
type pathSeg struct {
	name  string
	index int
}

// pathStack tracks the attribute path while decoding; it is rendered only
// when an error is reported, so the happy path does not allocate for it.
type pathStack []pathSeg

func (p *pathStack) pushName(name string) { *p = append(*p, pathSeg{name: name, index: -1}) }
func (p *pathStack) pushIndex(i int)      { *p = append(*p, pathSeg{index: i}) }
func (p *pathStack) pop()                 { *p = (*p)[:len(*p)-1] }

func (p pathStack) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(pathName(s.name))
	}
	return b.String()
}

// pathName renders an attribute name in a path: bare when it is a plain
// identifier, quoted otherwise (names may hold dots, spaces, anything).
func pathName(name string) string {
	if name == "" {
		return `""`
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return quoteInput(name)
	}
	return name
}
