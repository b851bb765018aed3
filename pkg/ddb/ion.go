package ddb

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeIonExportLine decodes one line of an ION export:
//
//	$ion_1_0 {Item:{"id":"a",n:103.,tags:$dynamodb_SS::["x","y"],b:{{aGk=}}}}
//
// The version marker $ion_1_0 is optional. Incremental-export lines have
// the same fields as in DecodeJSONExportLine:
// {Metadata:{WriteTimestampMicros:1695097218000000},Keys:{...},NewImage:{...},OldImage:{...}}.
//
// It reads the subset of Ion text that DynamoDB's Ion mapping uses, strictly:
//
//   - S: strings, short ("...") or long (between triple single quotes;
//     adjacent long strings concatenate),
//     with all Ion escapes (\n, \xHH, \uHHHH, \UHHHHHHHH, escaped newlines, ...);
//   - N: decimals (123., 1.5, 1d5, -0.), also ints (decimal, 0x hex, 0b
//     binary, with _ separators) and floats (1.5e3), taken at their exact
//     decimal text value, then normalized as by Normalize;
//   - B: blobs {{base64}};
//   - BOOL: true, false; NULL: null (or null.null);
//   - M: structs; L: lists;
//   - SS, NS, BS: lists annotated $dynamodb_SS::, $dynamodb_NS::, $dynamodb_BS::.
//
// Field names may be identifiers, 'quoted symbols' or strings; // and /* */
// comments and trailing commas are allowed. Everything else Ion has is
// rejected with an error naming it: other annotations, symbol values,
// symbol IDs, timestamps, clobs, s-expressions, typed nulls, nan and ±inf,
// other version markers, duplicate field names (legal in Ion, not in a
// DynamoDB map), more than one record per line.
func DecodeIonExportLine(line []byte) (ExportRecord, error) {
	p := ionParser{src: line}
	var rec ExportRecord
	found := false
	for {
		if err := p.ws(); err != nil {
			return ExportRecord{}, err
		}
		if p.eof() {
			break
		}
		off := p.pos
		c := p.src[p.pos]
		switch {
		case isIonIdentStart(c):
			id := p.ident()
			if isIVM(id) {
				if id != "$ion_1_0" {
					return ExportRecord{}, p.syntaxAt(off, "unsupported Ion version marker "+id+" (want $ion_1_0)")
				}
				if p.annotationFollows() {
					return ExportRecord{}, p.syntaxAt(off, "annotations on top-level values are not supported")
				}
				continue
			}
			return ExportRecord{}, p.syntaxAt(off, "unexpected top-level "+strconv.Quote(id)+", want a {Item:...} struct")
		case c == '{' && !p.hasPrefix("{{"):
			if found {
				return ExportRecord{}, p.syntaxAt(off, "more than one record on the line")
			}
			r, err := p.record()
			if err != nil {
				return ExportRecord{}, err
			}
			rec, found = r, true
		default:
			return ExportRecord{}, p.unexpected("a {Item:...} struct")
		}
	}
	if !found {
		return ExportRecord{}, p.syntaxAt(p.pos, "no record on the line")
	}
	return rec, nil
}

// isIVM reports whether a top-level symbol is an Ion version marker.
func isIVM(id string) bool {
	rest, ok := strings.CutPrefix(id, "$ion_")
	if !ok {
		return false
	}
	major, minor, ok := strings.Cut(rest, "_")
	return ok && allDigits(major) && allDigits(minor)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

type ionParser struct {
	src  []byte
	pos  int
	path pathStack
}

func (p *ionParser) errAt(kind error, off int, msg string) error {
	line, col := 1, 1
	if off > len(p.src) {
		off = len(p.src)
	}
	if nl := bytes.LastIndexByte(p.src[:off], '\n'); nl >= 0 {
		line = bytes.Count(p.src[:off], []byte{'\n'}) + 1
		col = off - nl
	} else {
		col = off + 1
	}
	return &Error{Err: kind, Path: p.path.String(), Offset: off, Line: line, Column: col, Msg: msg}
}

func (p *ionParser) syntaxAt(off int, msg string) error  { return p.errAt(ErrSyntax, off, msg) }
func (p *ionParser) invalidAt(off int, msg string) error { return p.errAt(ErrInvalidValue, off, msg) }

func (p *ionParser) eof() bool { return p.pos >= len(p.src) }

func (p *ionParser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *ionParser) hasPrefix(s string) bool {
	return len(p.src)-p.pos >= len(s) && string(p.src[p.pos:p.pos+len(s)]) == s
}

func (p *ionParser) unexpected(want string) error {
	if p.eof() {
		return p.syntaxAt(p.pos, "unexpected end of input, want "+want)
	}
	c := p.src[p.pos]
	what := describeByte(c)
	if c >= utf8.RuneSelf {
		if r, _ := utf8.DecodeRune(p.src[p.pos:]); r != utf8.RuneError {
			what = strconv.QuoteRune(r)
		}
	}
	return p.syntaxAt(p.pos, "unexpected "+what+", want "+want)
}

func isIonWS(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// ws skips whitespace and comments.
func (p *ionParser) ws() error {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case isIonWS(c):
			p.pos++
		case p.hasPrefix("//"):
			if nl := bytes.IndexByte(p.src[p.pos:], '\n'); nl >= 0 {
				p.pos += nl + 1
			} else {
				p.pos = len(p.src)
			}
		case p.hasPrefix("/*"):
			end := bytes.Index(p.src[p.pos+2:], []byte("*/"))
			if end < 0 {
				return p.syntaxAt(p.pos, "unterminated /* comment")
			}
			p.pos += 2 + end + 2
		default:
			return nil
		}
	}
	return nil
}

func isIonIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
}

func isIonIdentByte(c byte) bool { return isIonIdentStart(c) || isDigit(c) }

// ident reads an identifier symbol; p is at an identifier start.
func (p *ionParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) && isIonIdentByte(p.src[p.pos]) {
		p.pos++
	}
	return string(p.src[start:p.pos])
}

// annotationFollows consumes "::" (after optional whitespace) if present.
func (p *ionParser) annotationFollows() bool {
	save := p.pos
	if p.ws() == nil && p.hasPrefix("::") {
		p.pos += 2
		return true
	}
	p.pos = save
	return false
}

func isKeyword(id string) bool {
	return id == "null" || id == "true" || id == "false" || id == "nan"
}

// symbolText checks an unquoted symbol used as a field name or annotation.
func (p *ionParser) symbolText(off int, id string) error {
	if isKeyword(id) {
		return p.syntaxAt(off, "keyword "+id+" must be quoted to be used as a symbol")
	}
	if len(id) > 1 && id[0] == '$' && allDigits(id[1:]) {
		return p.syntaxAt(off, "symbol ID "+id+" is not supported (no symbol tables in DynamoDB exports)")
	}
	return nil
}

// record parses the top-level struct of an export line.
func (p *ionParser) record() (ExportRecord, error) {
	var rec ExportRecord
	start := p.pos
	p.pos++ // '{'
	seen := map[string]bool{}
	var hasMeta, hasTS bool
	err := p.fields(func(name string, off int) error {
		if seen[name] {
			return p.syntaxAt(off, "duplicate field "+strconv.Quote(name))
		}
		seen[name] = true
		switch name {
		case "Item", "Keys", "NewImage", "OldImage":
			p.path.pushName(name)
			defer p.path.pop()
			if name == "NewImage" || name == "OldImage" {
				if p.hasPrefix("null") && (len(p.src) == p.pos+4 || !isIonIdentByte(p.src[p.pos+4]) && p.src[p.pos+4] != '.') {
					p.pos += 4
					return nil
				}
			}
			if p.peek() != '{' || p.hasPrefix("{{") {
				return p.invalidAt(p.pos, name+" must be a struct")
			}
			p.pos++
			it, err := p.item(0)
			if err != nil {
				return err
			}
			switch name {
			case "Item":
				rec.Item = it
			case "Keys":
				rec.Keys = it
			case "NewImage":
				rec.NewImage = it
			case "OldImage":
				rec.OldImage = it
			}
			return nil
		case "Metadata":
			hasMeta = true
			p.path.pushName(name)
			defer p.path.pop()
			if p.peek() != '{' || p.hasPrefix("{{") {
				return p.invalidAt(p.pos, "Metadata must be a struct")
			}
			p.pos++
			return p.fields(func(mk string, moff int) error {
				p.path.pushName(mk)
				defer p.path.pop()
				voff := p.pos
				v, err := p.value(0)
				if err != nil || mk != "WriteTimestampMicros" {
					return err // other metadata is ignored
				}
				if hasTS {
					return p.syntaxAt(moff, "duplicate field \"WriteTimestampMicros\"")
				}
				hasTS = true
				fail := func(msg string) error { return p.invalidAt(voff, msg) }
				switch x := v.(type) {
				case N:
					rec.WriteTimestampMicros, err = parseTimestamp(x.String(), fail)
				case S:
					rec.WriteTimestampMicros, err = parseTimestamp(string(x), fail)
				default:
					err = fail("WriteTimestampMicros must be a number, not " + v.Type().String())
				}
				return err
			})
		default:
			return p.syntaxAt(off, "unknown field "+strconv.Quote(name)+" (want Item, or Metadata, Keys, NewImage, OldImage)")
		}
	})
	if err != nil {
		return ExportRecord{}, err
	}
	if err := checkRecord(&rec, seen["Item"], seen["Keys"] || seen["NewImage"] || seen["OldImage"] || hasMeta, hasTS); err != nil {
		var e *Error
		errors.As(err, &e)
		return ExportRecord{}, p.errAt(e.Err, start, e.Msg)
	}
	return rec, nil
}

// fields parses the fields of a struct whose '{' has been consumed,
// calling field with p at the start of each value (after whitespace);
// field must consume the value.
func (p *ionParser) fields(field func(name string, off int) error) error {
	for {
		if err := p.ws(); err != nil {
			return err
		}
		if p.peek() == '}' && !p.eof() {
			p.pos++
			return nil
		}
		off := p.pos
		name, err := p.fieldName()
		if err != nil {
			return err
		}
		if err := p.ws(); err != nil {
			return err
		}
		if p.peek() != ':' || p.hasPrefix("::") {
			return p.unexpected("':' after field name")
		}
		p.pos++
		if err := p.ws(); err != nil {
			return err
		}
		if err := field(name, off); err != nil {
			return err
		}
		if err := p.ws(); err != nil {
			return err
		}
		switch {
		case p.peek() == ',' && !p.eof():
			p.pos++
		case p.peek() == '}' && !p.eof():
			p.pos++
			return nil
		default:
			return p.unexpected("',' or '}'")
		}
	}
}

func (p *ionParser) fieldName() (string, error) {
	off := p.pos
	switch c := p.peek(); {
	case p.eof():
		return "", p.unexpected("a field name")
	case isIonIdentStart(c):
		id := p.ident()
		return id, p.symbolText(off, id)
	case c == '"':
		p.pos++
		return p.text(off, '"')
	case p.hasPrefix("'''"):
		return p.longStrings()
	case c == '\'':
		p.pos++
		return p.text(off, '\'')
	}
	return "", p.unexpected("a field name")
}

// list parses the elements of a list whose '[' has been consumed.
func (p *ionParser) list(elem func(i int) error) error {
	for i := 0; ; i++ {
		if err := p.ws(); err != nil {
			return err
		}
		if p.peek() == ']' && !p.eof() {
			p.pos++
			return nil
		}
		if err := elem(i); err != nil {
			return err
		}
		if err := p.ws(); err != nil {
			return err
		}
		switch {
		case p.peek() == ',' && !p.eof():
			p.pos++
		case p.peek() == ']' && !p.eof():
			p.pos++
			return nil
		default:
			return p.unexpected("',' or ']'")
		}
	}
}

// item parses the fields of a struct ('{' consumed) as an attribute map
// whose values sit at the given depth.
func (p *ionParser) item(depth int) (Item, error) {
	m := Item{}
	err := p.fields(func(name string, off int) error {
		if _, dup := m[name]; dup {
			return p.invalidAt(off, "duplicate attribute name "+quoteInput(name))
		}
		p.path.pushName(name)
		v, err := p.value(depth)
		if err != nil {
			return err
		}
		p.path.pop()
		m[name] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// value parses one attribute value at the given depth (the number of
// enclosing M and L values).
func (p *ionParser) value(depth int) (Value, error) {
	if err := p.ws(); err != nil {
		return nil, err
	}
	off := p.pos
	if p.eof() {
		return nil, p.unexpected("a value")
	}
	switch c := p.src[p.pos]; {
	case isIonIdentStart(c):
		id := p.ident()
		switch id {
		case "null":
			return p.null(off)
		case "true":
			return Bool(true), nil
		case "false":
			return Bool(false), nil
		case "nan":
			return nil, p.errAt(ErrInvalidNumber, off, "nan is not a DynamoDB number")
		}
		if p.annotationFollows() {
			if err := p.symbolText(off, id); err != nil {
				return nil, err
			}
			return p.annotated(off, id, depth)
		}
		return nil, p.syntaxAt(off, "symbol value "+strconv.Quote(id)+" is not supported (DynamoDB writes strings as \"...\")")
	case p.hasPrefix("'''"):
		s, err := p.longStrings()
		return S(s), err
	case c == '\'':
		p.pos++
		sym, err := p.text(off, '\'')
		if err != nil {
			return nil, err
		}
		if p.annotationFollows() {
			return p.annotated(off, sym, depth)
		}
		return nil, p.syntaxAt(off, "symbol value "+quoteInput(sym)+" is not supported (DynamoDB writes strings as \"...\")")
	case c == '"':
		p.pos++
		s, err := p.text(off, '"')
		return S(s), err
	case p.hasPrefix("{{"):
		return p.blob()
	case c == '{':
		if depth+1 > MaxDepth {
			return nil, p.invalidAt(off, fmt.Sprintf("nested more than %d levels deep", MaxDepth))
		}
		p.pos++
		m, err := p.item(depth + 1)
		return M(m), err
	case c == '[':
		if depth+1 > MaxDepth {
			return nil, p.invalidAt(off, fmt.Sprintf("nested more than %d levels deep", MaxDepth))
		}
		p.pos++
		l := L{}
		err := p.list(func(i int) error {
			p.path.pushIndex(i)
			v, err := p.value(depth + 1)
			if err != nil {
				return err
			}
			p.path.pop()
			l = append(l, v)
			return nil
		})
		return l, err
	case c == '(':
		return nil, p.syntaxAt(off, "s-expressions are not supported")
	case c == '-' || isDigit(c):
		return p.number()
	case c == '+':
		if p.hasPrefix("+inf") {
			return nil, p.errAt(ErrInvalidNumber, off, "+inf is not a DynamoDB number")
		}
	}
	return nil, p.unexpected("a value")
}

func (p *ionParser) null(off int) (Value, error) {
	if p.peek() != '.' || p.eof() {
		return Null{}, nil
	}
	p.pos++
	if !isIonIdentStart(p.peek()) || p.eof() {
		return nil, p.unexpected("a type name after null.")
	}
	t := p.ident()
	switch t {
	case "null":
		return Null{}, nil
	case "bool", "int", "float", "decimal", "timestamp", "symbol", "string", "clob", "blob", "list", "sexp", "struct":
		return nil, p.syntaxAt(off, "typed null null."+t+" is not supported (DynamoDB NULL is written as null)")
	}
	return nil, p.syntaxAt(off, "unknown typed null null."+t)
}

// annotated parses the value after an annotation: only DynamoDB's set
// annotations on lists are supported.
func (p *ionParser) annotated(off int, ann string, depth int) (Value, error) {
	var t Type
	switch ann {
	case "$dynamodb_SS":
		t = TypeSS
	case "$dynamodb_NS":
		t = TypeNS
	case "$dynamodb_BS":
		t = TypeBS
	default:
		return nil, p.syntaxAt(off, "unsupported annotation "+quoteInput(ann)+" (want $dynamodb_SS, $dynamodb_NS or $dynamodb_BS)")
	}
	if err := p.ws(); err != nil {
		return nil, err
	}
	if p.peek() != '[' || p.eof() {
		if p.anotherAnnotation() {
			return nil, p.syntaxAt(p.pos, "more than one annotation")
		}
		return nil, p.invalidAt(p.pos, ann+" must annotate a list")
	}
	p.pos++
	var ss SS
	var ns NS
	var bs BS
	seen := map[string]bool{}
	err := p.list(func(i int) error {
		p.path.pushIndex(i)
		defer p.path.pop()
		eoff := p.pos
		v, err := p.value(depth + 1)
		if err != nil {
			return err
		}
		var key string
		switch x := v.(type) {
		case S:
			ss, key = append(ss, string(x)), string(x)
		case N:
			ns, key = append(ns, x), x.String()
		case B:
			bs, key = append(bs, x), string(x)
		}
		if v.Type() != t-TypeSS+TypeS { // SS, NS, BS hold S, N, B
			want := [...]string{TypeSS: "a string", TypeNS: "a number", TypeBS: "a blob"}[t]
			return p.invalidAt(eoff, fmt.Sprintf("%s member must be %s, not %s", t, want, v.Type()))
		}
		if seen[key] {
			return p.invalidAt(eoff, "duplicate set member")
		}
		seen[key] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case len(seen) == 0:
		return nil, p.invalidAt(off, "empty set ("+t.String()+" must have at least one member)")
	case t == TypeSS:
		return ss, nil
	case t == TypeNS:
		return ns, nil
	default:
		return bs, nil
	}
}

// anotherAnnotation reports whether an annotation (a symbol and "::")
// starts at p.pos, without consuming anything.
func (p *ionParser) anotherAnnotation() bool {
	save := p.pos
	defer func() { p.pos = save }()
	switch {
	case isIonIdentStart(p.peek()) && !p.eof():
		p.ident()
	case p.peek() == '\'' && !p.hasPrefix("'''"):
		p.pos++
		if _, err := p.text(save, '\''); err != nil {
			return false
		}
	default:
		return false
	}
	return p.annotationFollows()
}

// text reads the body of a short string ("...") or quoted symbol ('...')
// whose opening quote has been consumed; off is the opening quote.
func (p *ionParser) text(off int, quote byte) (string, error) {
	return p.textUntil(off, quote, false)
}

// longStrings reads one or more adjacent long (triple-quoted) strings and
// concatenates them, as Ion does.
func (p *ionParser) longStrings() (string, error) {
	var out strings.Builder
	for {
		off := p.pos
		p.pos += 3
		s, err := p.textUntil(off, '\'', true)
		if err != nil {
			return "", err
		}
		out.WriteString(s)
		save := p.pos
		if err := p.ws(); err != nil || !p.hasPrefix("'''") {
			p.pos = save
			return out.String(), nil
		}
	}
}

func (p *ionParser) textUntil(off int, quote byte, long bool) (string, error) {
	start := p.pos
	var buf []byte
	plain := true // no escapes so far: the text is src[start:p.pos]
	for {
		if p.eof() {
			what := "string"
			if quote == '\'' && !long {
				what = "quoted symbol"
			}
			return "", p.syntaxAt(off, "unterminated "+what)
		}
		c := p.src[p.pos]
		if c == quote && (!long || p.hasPrefix("'''")) {
			var s string
			if plain {
				s = string(p.src[start:p.pos])
			} else {
				s = string(buf)
			}
			if long {
				p.pos += 3
			} else {
				p.pos++
			}
			return s, nil
		}
		switch {
		case c == '\\':
			if plain {
				buf = append(buf, p.src[start:p.pos]...)
				plain = false
			}
			var err error
			if buf, err = p.escape(buf); err != nil {
				return "", err
			}
			continue
		case c < utf8.RuneSelf:
			if c < 0x20 && c != '\t' && c != '\v' && c != '\f' && !(long && (c == '\n' || c == '\r')) {
				return "", p.syntaxAt(p.pos, fmt.Sprintf("control character 0x%02x must be escaped", c))
			}
			if !plain {
				buf = append(buf, c)
			}
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.src[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.invalidAt(p.pos, "text is not valid UTF-8")
			}
			if !plain {
				buf = append(buf, p.src[p.pos:p.pos+size]...)
			}
			p.pos += size
		}
	}
}

func (p *ionParser) escape(buf []byte) ([]byte, error) {
	off := p.pos
	p.pos++ // the backslash
	if p.eof() {
		return nil, p.syntaxAt(off, "unterminated escape")
	}
	c := p.src[p.pos]
	p.pos++
	switch c {
	case 'a':
		return append(buf, '\a'), nil
	case 'b':
		return append(buf, '\b'), nil
	case 't':
		return append(buf, '\t'), nil
	case 'n':
		return append(buf, '\n'), nil
	case 'f':
		return append(buf, '\f'), nil
	case 'r':
		return append(buf, '\r'), nil
	case 'v':
		return append(buf, '\v'), nil
	case '0':
		return append(buf, 0), nil
	case '?', '\'', '"', '/', '\\':
		return append(buf, c), nil
	case '\n':
		return buf, nil // escaped newline: nothing
	case '\r':
		if p.peek() == '\n' && !p.eof() {
			p.pos++
		}
		return buf, nil
	case 'x', 'u', 'U':
		n := 2
		if c == 'u' {
			n = 4
		} else if c == 'U' {
			n = 8
		}
		r, ok := p.hex(n)
		if !ok {
			return nil, p.syntaxAt(off, "invalid \\"+string(rune(c))+" escape: want "+strconv.Itoa(n)+" hex digits")
		}
		if c == 'u' && utf16.IsSurrogate(r) && r < 0xDC00 && p.hasPrefix(`\u`) {
			save := p.pos
			p.pos += 2
			if r2, ok := p.hex(4); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
				return utf8.AppendRune(buf, utf16.DecodeRune(r, r2)), nil
			}
			p.pos = save
		}
		if r > utf8.MaxRune || utf16.IsSurrogate(r) {
			return nil, p.invalidAt(off, fmt.Sprintf("escape \\%c names U+%04X, which is not a Unicode scalar value", c, r))
		}
		return utf8.AppendRune(buf, r), nil
	}
	return nil, p.syntaxAt(off, "invalid escape \\"+describeEscape(c))
}

func describeEscape(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return fmt.Sprintf("followed by byte 0x%02x", c)
}

func (p *ionParser) hex(n int) (rune, bool) {
	if len(p.src)-p.pos < n {
		return 0, false
	}
	var r rune
	for _, c := range p.src[p.pos : p.pos+n] {
		d, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
		if r > utf8.MaxRune {
			r = utf8.MaxRune + 1 // keep it out of range without overflowing
		}
	}
	p.pos += n
	return r, true
}

// blob parses {{base64}}; p is at "{{".
func (p *ionParser) blob() (Value, error) {
	off := p.pos
	p.pos += 2
	var b64 []byte
	for {
		if p.eof() {
			return nil, p.syntaxAt(off, "unterminated blob")
		}
		c := p.src[p.pos]
		switch {
		case isIonWS(c):
			p.pos++
		case c == '}':
			if !p.hasPrefix("}}") {
				return nil, p.unexpected("}} to end the blob")
			}
			p.pos += 2
			b, err := base64.StdEncoding.DecodeString(string(b64))
			if err != nil {
				return nil, p.invalidAt(off, "invalid base64 in blob: "+err.Error())
			}
			return B(b), nil
		case c == '"' || c == '\'':
			if len(b64) == 0 {
				return nil, p.syntaxAt(off, "clobs are not supported (DynamoDB writes binary as a {{base64}} blob)")
			}
			return nil, p.unexpected("base64 in blob")
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '+' || c == '/' || c == '=':
			b64 = append(b64, c)
			p.pos++
		default:
			return nil, p.unexpected("base64 in blob")
		}
	}
}

// isNumericStop reports whether a number token may end at p.pos.
func (p *ionParser) isNumericStop() bool {
	if p.eof() {
		return true
	}
	switch c := p.src[p.pos]; c {
	case ',', ']', '}', ')', '[', '{', '(', '"', '\'':
		return true
	default:
		return isIonWS(c) || p.hasPrefix("//") || p.hasPrefix("/*")
	}
}

// number parses an Ion int, decimal or float as a DynamoDB number.
func (p *ionParser) number() (Value, error) {
	off := p.pos
	var text []byte
	if p.peek() == '-' {
		text = append(text, '-')
		p.pos++
		if p.hasPrefix("inf") {
			return nil, p.errAt(ErrInvalidNumber, off, "-inf is not a DynamoDB number")
		}
	}
	if !isDigit(p.peek()) || p.eof() {
		return nil, p.unexpected("a digit")
	}
	if text == nil && p.looksLikeTimestamp() {
		return nil, p.syntaxAt(off, "Ion timestamps are not supported (DynamoDB exports have none)")
	}
	if p.hasPrefix("0x") || p.hasPrefix("0X") {
		return p.radixInt(off, text != nil, 16)
	}
	if p.hasPrefix("0b") || p.hasPrefix("0B") {
		return p.radixInt(off, text != nil, 2)
	}
	if p.peek() == '0' {
		text = append(text, '0')
		p.pos++
		if (isDigit(p.peek()) || p.peek() == '_') && !p.eof() {
			return nil, p.syntaxAt(off, "leading zeros are not allowed in Ion numbers")
		}
	} else {
		var err error
		if text, err = p.digits(text); err != nil {
			return nil, err
		}
	}
	if p.peek() == '.' && !p.eof() {
		p.pos++
		text = append(text, '.')
		if isDigit(p.peek()) && !p.eof() {
			var err error
			if text, err = p.digits(text); err != nil {
				return nil, err
			}
		}
	}
	if c := p.peek(); (c == 'd' || c == 'D' || c == 'e' || c == 'E') && !p.eof() {
		p.pos++
		text = append(text, 'e')
		if c := p.peek(); (c == '+' || c == '-') && !p.eof() {
			text = append(text, c)
			p.pos++
		}
		if !isDigit(p.peek()) || p.eof() {
			return nil, p.unexpected("exponent digits")
		}
		for !p.eof() && isDigit(p.src[p.pos]) {
			text = append(text, p.src[p.pos])
			p.pos++
		}
	}
	if !p.isNumericStop() {
		return nil, p.unexpected("a delimiter after the number")
	}
	return p.toN(off, string(text))
}

func (p *ionParser) toN(off int, text string) (Value, error) {
	n, err := ParseN(text)
	if err != nil {
		var e *Error
		errors.As(err, &e)
		return nil, p.errAt(ErrInvalidNumber, off, e.Msg)
	}
	return n, nil
}

// digits reads DEC_DIGIT (UNDERSCORE? DEC_DIGIT)* and appends the digits.
func (p *ionParser) digits(text []byte) ([]byte, error) {
	for {
		text = append(text, p.src[p.pos])
		p.pos++
		if p.eof() {
			return text, nil
		}
		c := p.src[p.pos]
		if c == '_' {
			p.pos++
			if !isDigit(p.peek()) || p.eof() {
				return nil, p.syntaxAt(p.pos-1, "'_' in a number must sit between two digits")
			}
			continue
		}
		if !isDigit(c) {
			return text, nil
		}
	}
}

func (p *ionParser) looksLikeTimestamp() bool {
	if len(p.src)-p.pos < 5 {
		return false
	}
	for i := range 4 {
		if !isDigit(p.src[p.pos+i]) {
			return false
		}
	}
	c := p.src[p.pos+4]
	return c == '-' || c == 'T'
}

// radixInt parses a 0x or 0b int; p is at the leading 0.
func (p *ionParser) radixInt(off int, neg bool, base int) (Value, error) {
	p.pos += 2
	valid := func(c byte) bool {
		if base == 2 {
			return c == '0' || c == '1'
		}
		_, ok := hexVal(c)
		return ok
	}
	var digits []byte
	for {
		if p.eof() || !valid(p.src[p.pos]) {
			return nil, p.unexpected("a base-" + strconv.Itoa(base) + " digit")
		}
		digits = append(digits, p.src[p.pos])
		p.pos++
		if p.peek() == '_' && !p.eof() {
			p.pos++
			continue
		}
		if p.eof() || !valid(p.src[p.pos]) {
			break
		}
	}
	if !p.isNumericStop() {
		return nil, p.unexpected("a delimiter after the number")
	}
	trimmed := bytes.TrimLeft(digits, "0")
	// 10^126 < 2^419 = 16^105, so more digits than that are out of range
	// whatever they are; checking first keeps big.Int work bounded.
	if base == 16 && len(trimmed) > 105 || base == 2 && len(trimmed) > 419 {
		return nil, p.errAt(ErrInvalidNumber, off, "magnitude above 9.9999999999999999999999999999999999999E+125")
	}
	var v big.Int
	if len(trimmed) > 0 {
		v.SetString(string(trimmed), base)
	}
	if neg {
		v.Neg(&v)
	}
	return p.toN(off, v.String())
}
