package ddb

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ExportRecord is one line of a DynamoDB export to S3, in either format
// (DYNAMODB_JSON or ION).
//
// A full-export line sets Item. An incremental-export line sets Keys,
// WriteTimestampMicros, and NewImage and/or OldImage: NewImage is nil when
// the write deleted the item, OldImage is nil when the item did not exist
// before or the export view is NEW_IMAGE.
type ExportRecord struct {
	// Item is the item of a full-export line; nil on incremental lines.
	Item Item
	// Keys holds the key attributes of an incremental-export line; nil on
	// full-export lines.
	Keys Item
	// NewImage and OldImage are the item after and before the write.
	NewImage, OldImage Item
	// WriteTimestampMicros is Metadata.WriteTimestampMicros of an
	// incremental-export line: when DynamoDB applied the write, in
	// microseconds since the Unix epoch.
	WriteTimestampMicros int64
}

// Incremental reports whether the record came from an incremental export.
func (r ExportRecord) Incremental() bool { return r.Keys != nil }

// ExportFormat is the outputFormat of a DynamoDB export to S3, as its
// manifest-summary.json names it.
type ExportFormat string

// The export formats.
const (
	ExportDynamoDBJSON ExportFormat = "DYNAMODB_JSON"
	ExportIon          ExportFormat = "ION"
)

// DecodeExportLine decodes one data line of an export in the given format
// with DecodeJSONExportLine or DecodeIonExportLine.
func DecodeExportLine(format ExportFormat, line []byte) (ExportRecord, error) {
	switch format {
	case ExportDynamoDBJSON:
		return DecodeJSONExportLine(line)
	case ExportIon:
		return DecodeIonExportLine(line)
	}
	return ExportRecord{}, &Error{Err: ErrSyntax, Offset: -1,
		Msg: "unknown export format " + quoteInput(string(format)) + " (want DYNAMODB_JSON or ION)"}
}

// DecodeJSONExportLine decodes one line of a DYNAMODB_JSON export:
//
//	{"Item":{"id":{"S":"a"},"n":{"N":"1"}}}                   (full export)
//	{"Metadata":{"WriteTimestampMicros":{"N":"1695097218000000"}},
//	 "Keys":{...},"NewImage":{...},"OldImage":{...}}          (incremental export)
//
// WriteTimestampMicros may also be a plain string or a JSON number, as some
// sources write it; unknown Metadata fields are ignored, unknown top-level
// fields are an error (they could hold data this decoder would drop).
// Surrounding whitespace (including the \r of a CRLF line end) is allowed;
// an empty line is an error. Numbers are normalized (see Normalize).
func DecodeJSONExportLine(line []byte) (ExportRecord, error) {
	p := jsonParser{data: line}
	var rec ExportRecord
	var hasMeta, hasTS bool
	p.ws()
	if p.eof() {
		return rec, p.syntax("empty line")
	}
	start := p.pos
	seen := map[string]bool{}
	err := p.object(func(key string, keyOff int) error {
		if seen[key] {
			return p.syntaxAt(keyOff, "duplicate field "+strconv.Quote(key))
		}
		seen[key] = true
		switch key {
		case "Item", "Keys", "NewImage", "OldImage":
			p.path.pushName(key)
			defer p.path.pop()
			if p.peek() == 'n' && key != "Item" && key != "Keys" {
				return p.literal("null")
			}
			it, err := p.item(0)
			if err != nil {
				return err
			}
			switch key {
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
			p.path.pushName(key)
			defer p.path.pop()
			return p.object(func(mk string, mkOff int) error {
				if mk != "WriteTimestampMicros" {
					return p.skip(0)
				}
				if hasTS {
					return p.syntaxAt(mkOff, "duplicate field \"WriteTimestampMicros\"")
				}
				hasTS = true
				p.path.pushName(mk)
				defer p.path.pop()
				ts, err := p.timestamp()
				rec.WriteTimestampMicros = ts
				return err
			})
		default:
			return p.syntaxAt(keyOff, "unknown field "+strconv.Quote(key)+" (want Item, or Metadata, Keys, NewImage, OldImage)")
		}
	})
	if err != nil {
		return ExportRecord{}, err
	}
	if err := p.end(); err != nil {
		return ExportRecord{}, err
	}
	if err := checkRecord(&rec, seen["Item"], seen["Keys"] || seen["NewImage"] || seen["OldImage"] || hasMeta, hasTS); err != nil {
		err.(*Error).Offset = start
		return ExportRecord{}, err
	}
	return rec, nil
}

// checkRecord checks that an export line is a full-export or an
// incremental-export line and not a mix.
func checkRecord(rec *ExportRecord, full, incremental, hasTS bool) error {
	fail := func(msg string) error { return &Error{Err: ErrInvalidValue, Offset: -1, Msg: msg} }
	switch {
	case full && incremental:
		return fail("line mixes a full-export Item with incremental-export fields")
	case full:
		return nil
	case !incremental:
		return fail("line has neither Item nor Keys")
	case rec.Keys == nil:
		return fail("incremental-export line without Keys")
	case len(rec.Keys) == 0:
		return fail("incremental-export line with empty Keys")
	case !hasTS:
		return fail("incremental-export line without Metadata.WriteTimestampMicros")
	}
	return nil
}

// UnmarshalDynamoDBJSON decodes an item in DynamoDB JSON, the attribute map
// of the DynamoDB API, DynamoDB Streams and Kinesis records (their Keys,
// NewImage and OldImage): {"id":{"S":"a"},"tags":{"SS":["x","y"]}}.
func UnmarshalDynamoDBJSON(data []byte) (Item, error) {
	p := jsonParser{data: data}
	p.ws()
	it, err := p.item(0)
	if err != nil {
		return nil, err
	}
	return it, p.end()
}

// UnmarshalValueDynamoDBJSON decodes one attribute value in DynamoDB JSON:
// {"S":"x"}, {"N":"1"}, {"B":"base64"}, {"BOOL":true}, {"NULL":true},
// {"M":{...}}, {"L":[...]}, {"SS":[...]}, {"NS":[...]}, {"BS":[...]}.
//
// Type keys set to null are ignored, so the padded form some SDKs write
// ({"S":"x","N":null,"B":null,...}) decodes; exactly one type key must have
// a value. Numbers are normalized, base64 is the standard alphabet with
// padding, sets must be non-empty and free of duplicates, and nesting is
// limited to MaxDepth, as in DynamoDB.
func UnmarshalValueDynamoDBJSON(data []byte) (Value, error) {
	p := jsonParser{data: data}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	return v, p.end()
}

// UnmarshalJSON decodes DynamoDB JSON (see UnmarshalDynamoDBJSON), so an
// Item can be a field of a struct decoded with encoding/json, such as the
// dynamodb.NewImage of a Streams or Kinesis record. JSON null leaves the
// item unchanged.
func (it *Item) UnmarshalJSON(data []byte) error {
	p := jsonParser{data: data}
	p.ws()
	if p.peek() == 'n' {
		if err := p.literal("null"); err != nil {
			return err
		}
		return p.end()
	}
	v, err := p.item(0)
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	*it = v
	return nil
}

// jsonParser is a strict JSON parser that decodes DynamoDB JSON directly
// into values: no reflection, duplicate keys rejected, invalid UTF-8
// rejected (encoding/json would silently replace it), errors with the byte
// offset and attribute path.
type jsonParser struct {
	data []byte
	pos  int
	path pathStack
}

func (p *jsonParser) errAt(kind error, off int, msg string) error {
	return &Error{Err: kind, Path: p.path.String(), Offset: off, Msg: msg}
}

func (p *jsonParser) syntax(msg string) error          { return p.errAt(ErrSyntax, p.pos, msg) }
func (p *jsonParser) syntaxAt(off int, m string) error { return p.errAt(ErrSyntax, off, m) }
func (p *jsonParser) invalid(off int, msg string) error {
	return p.errAt(ErrInvalidValue, off, msg)
}

func (p *jsonParser) eof() bool { return p.pos >= len(p.data) }

func (p *jsonParser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *jsonParser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// end checks that only whitespace follows.
func (p *jsonParser) end() error {
	p.ws()
	if !p.eof() {
		return p.syntax("unexpected data after the value")
	}
	return nil
}

func (p *jsonParser) unexpected(want string) error {
	if p.eof() {
		return p.syntax("unexpected end of input, want " + want)
	}
	return p.syntax(fmt.Sprintf("unexpected %s, want %s", describeByte(p.data[p.pos]), want))
}

func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (p *jsonParser) expect(c byte) error {
	if p.peek() != c || p.eof() {
		return p.unexpected(strconv.QuoteRune(rune(c)))
	}
	p.pos++
	return nil
}

func (p *jsonParser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.unexpected(word)
	}
	p.pos += len(word)
	if p.pos < len(p.data) && isIdentByte(p.data[p.pos]) {
		return p.unexpected("delimiter after " + word)
	}
	return nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// object parses an object, calling field for each key with p positioned
// at the start of the value; field must consume the value.
func (p *jsonParser) object(field func(key string, keyOff int) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	p.ws()
	if p.peek() == '}' {
		p.pos++
		return nil
	}
	for {
		p.ws()
		keyOff := p.pos
		if p.peek() != '"' {
			return p.unexpected("string (object key)")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if err := p.expect(':'); err != nil {
			return err
		}
		p.ws()
		if err := field(key, keyOff); err != nil {
			return err
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			if p.eof() {
				return p.unexpected("',' or '}'")
			}
			p.pos++
			return nil
		default:
			return p.unexpected("',' or '}'")
		}
	}
}

// array parses an array, calling elem for each element with p positioned
// at its start.
func (p *jsonParser) array(elem func(i int) error) error {
	if err := p.expect('['); err != nil {
		return err
	}
	p.ws()
	if p.peek() == ']' {
		p.pos++
		return nil
	}
	for i := 0; ; i++ {
		p.ws()
		if err := elem(i); err != nil {
			return err
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			if p.eof() {
				return p.unexpected("',' or ']'")
			}
			p.pos++
			return nil
		default:
			return p.unexpected("',' or ']'")
		}
	}
}

// str parses a JSON string.
func (p *jsonParser) str() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	start := p.pos
	// Fast path: plain ASCII without escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.pos++
	}
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for {
		if p.eof() {
			return "", p.syntax("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.syntax(fmt.Sprintf("control character 0x%02x in string (must be escaped)", c))
		case c == '\\':
			var err error
			if buf, err = p.escape(buf); err != nil {
				return "", err
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errAt(ErrInvalidValue, p.pos, "string is not valid UTF-8")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

func (p *jsonParser) escape(buf []byte) ([]byte, error) {
	off := p.pos
	p.pos++ // the backslash
	if p.eof() {
		return nil, p.syntax("unterminated string")
	}
	c := p.data[p.pos]
	p.pos++
	switch c {
	case '"', '\\', '/':
		return append(buf, c), nil
	case 'b':
		return append(buf, '\b'), nil
	case 'f':
		return append(buf, '\f'), nil
	case 'n':
		return append(buf, '\n'), nil
	case 'r':
		return append(buf, '\r'), nil
	case 't':
		return append(buf, '\t'), nil
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return nil, p.syntaxAt(off, `invalid \u escape`)
		}
		if utf16.IsSurrogate(r) {
			var r2 rune = -1
			if r < 0xDC00 && len(p.data)-p.pos >= 2 && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
				p.pos += 2
				var ok bool
				if r2, ok = p.hex4(); !ok {
					return nil, p.syntaxAt(off, `invalid \u escape`)
				}
			}
			r = utf16.DecodeRune(r, r2)
			if r == utf8.RuneError {
				return nil, p.errAt(ErrInvalidValue, off, `unpaired UTF-16 surrogate in \u escape`)
			}
		}
		return utf8.AppendRune(buf, r), nil
	default:
		return nil, p.syntaxAt(off, "invalid escape \\"+string(rune(c)))
	}
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		d, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	p.pos += 4
	return r, true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// number parses a JSON number and returns its text.
func (p *jsonParser) number() (string, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	switch {
	case p.peek() == '0' && !p.eof():
		p.pos++
	case p.peek() >= '1' && p.peek() <= '9':
		for !p.eof() && isDigit(p.data[p.pos]) {
			p.pos++
		}
	default:
		return "", p.unexpected("digit")
	}
	if p.peek() == '.' && !p.eof() {
		p.pos++
		if !isDigit(p.peek()) || p.eof() {
			return "", p.unexpected("digit")
		}
		for !p.eof() && isDigit(p.data[p.pos]) {
			p.pos++
		}
	}
	if c := p.peek(); (c == 'e' || c == 'E') && !p.eof() {
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if !isDigit(p.peek()) || p.eof() {
			return "", p.unexpected("digit")
		}
		for !p.eof() && isDigit(p.data[p.pos]) {
			p.pos++
		}
	}
	return string(p.data[start:p.pos]), nil
}

// skip parses and discards any JSON value.
func (p *jsonParser) skip(depth int) error {
	if depth > 2*MaxDepth {
		return p.syntax("nested too deeply")
	}
	switch c := p.peek(); {
	case p.eof():
		return p.unexpected("value")
	case c == '{':
		return p.object(func(string, int) error { return p.skip(depth + 1) })
	case c == '[':
		return p.array(func(int) error { return p.skip(depth + 1) })
	case c == '"':
		_, err := p.str()
		return err
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		_, err := p.number()
		return err
	}
}

// item parses an attribute map ({"name": <attribute value>, ...}) whose
// values sit at the given depth.
func (p *jsonParser) item(depth int) (Item, error) {
	m := Item{}
	err := p.object(func(name string, off int) error {
		if _, dup := m[name]; dup {
			return p.invalid(off, "duplicate attribute name "+quoteInput(name))
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

// value parses an attribute value ({"S":"x"} etc.) at the given depth
// (the number of enclosing M and L values).
func (p *jsonParser) value(depth int) (Value, error) {
	start := p.pos
	var v Value
	var vType string
	var seen uint16
	err := p.object(func(key string, keyOff int) error {
		t, err := ParseType(key)
		if err != nil {
			return p.invalid(keyOff, "unknown type descriptor "+quoteInput(key)+" (want one of S, N, B, BOOL, NULL, M, L, SS, NS, BS)")
		}
		if seen&(1<<t) != 0 {
			return p.invalid(keyOff, "duplicate type descriptor "+key)
		}
		seen |= 1 << t
		if p.peek() == 'n' {
			// SDK padding: {"S":"x","N":null,...}.
			return p.literal("null")
		}
		if v != nil {
			return p.invalid(keyOff, "more than one type: "+vType+" and "+key)
		}
		vType = key
		v, err = p.typed(t, depth)
		return err
	})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, p.invalid(start, "attribute value has no type (want one of S, N, B, BOOL, NULL, M, L, SS, NS, BS)")
	}
	return v, nil
}

func (p *jsonParser) typed(t Type, depth int) (Value, error) {
	off := p.pos
	switch t {
	case TypeS:
		s, err := p.str()
		return S(s), err
	case TypeN:
		return p.num()
	case TypeB:
		return p.binary()
	case TypeBOOL:
		switch p.peek() {
		case 't':
			return Bool(true), p.literal("true")
		case 'f':
			return Bool(false), p.literal("false")
		}
		return nil, p.invalid(off, "BOOL must be true or false")
	case TypeNULL:
		if p.peek() != 't' {
			return nil, p.invalid(off, "NULL must be true")
		}
		return Null{}, p.literal("true")
	case TypeM:
		if depth+1 > MaxDepth {
			return nil, p.invalid(off, fmt.Sprintf("nested more than %d levels deep", MaxDepth))
		}
		if p.peek() != '{' {
			return nil, p.invalid(off, "M must be an object")
		}
		m, err := p.item(depth + 1)
		return M(m), err
	case TypeL:
		if depth+1 > MaxDepth {
			return nil, p.invalid(off, fmt.Sprintf("nested more than %d levels deep", MaxDepth))
		}
		if p.peek() != '[' {
			return nil, p.invalid(off, "L must be an array")
		}
		l := L{}
		err := p.array(func(i int) error {
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
	case TypeSS, TypeNS, TypeBS:
		return p.set(t)
	}
	panic("unreachable")
}

func (p *jsonParser) num() (N, error) {
	off := p.pos
	if p.peek() != '"' {
		return N{}, p.invalid(off, "N must be a string")
	}
	s, err := p.str()
	if err != nil {
		return N{}, err
	}
	n, err := ParseN(s)
	if err != nil {
		return N{}, numberErrorAt(err, p.path, off)
	}
	return n, nil
}

func (p *jsonParser) binary() (B, error) {
	off := p.pos
	if p.peek() != '"' {
		return nil, p.invalid(off, "B must be a base64 string")
	}
	// Fast path: a string of nothing but base64 is decoded where it lies,
	// without first copying it into a string. Anything else (escapes, a raw
	// CR or LF, which the decoder would skip but JSON forbids, or bytes the
	// decoder refuses) takes the general path, for its exact errors.
	if n := bytes.IndexByte(p.data[p.pos+1:], '"'); n >= 0 {
		raw := p.data[p.pos+1 : p.pos+1+n]
		if bytes.IndexByte(raw, '\\') < 0 && bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
			b := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
			if m, err := base64.StdEncoding.Decode(b, raw); err == nil {
				p.pos += n + 2
				return B(b[:m]), nil
			}
		}
	}
	s, err := p.str()
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, p.invalid(off, "invalid base64: "+err.Error())
	}
	return B(b), nil
}

func (p *jsonParser) set(t Type) (Value, error) {
	off := p.pos
	if p.peek() != '[' {
		return nil, p.invalid(off, t.String()+" must be an array")
	}
	var ss SS
	var ns NS
	var bs BS
	seen := map[string]bool{}
	err := p.array(func(i int) error {
		p.path.pushIndex(i)
		defer p.path.pop()
		eoff := p.pos
		var key string
		switch t {
		case TypeSS:
			if p.peek() != '"' {
				return p.invalid(eoff, "SS members must be strings")
			}
			s, err := p.str()
			if err != nil {
				return err
			}
			ss = append(ss, s)
			key = s
		case TypeNS:
			n, err := p.num()
			if err != nil {
				return err
			}
			ns = append(ns, n)
			key = n.String()
		case TypeBS:
			b, err := p.binary()
			if err != nil {
				return err
			}
			bs = append(bs, b)
			key = string(b)
		}
		if seen[key] {
			return p.invalid(eoff, "duplicate set member")
		}
		seen[key] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(seen) == 0 {
		return nil, p.invalid(off, "empty set ("+t.String()+" must have at least one member)")
	}
	switch t {
	case TypeSS:
		return ss, nil
	case TypeNS:
		return ns, nil
	default:
		return bs, nil
	}
}

// timestamp parses Metadata.WriteTimestampMicros: {"N":"123"}, "123" or 123.
func (p *jsonParser) timestamp() (int64, error) {
	off := p.pos
	var text string
	switch c := p.peek(); {
	case c == '{':
		v, err := p.value(0)
		if err != nil {
			return 0, err
		}
		n, ok := v.(N)
		if !ok {
			return 0, p.invalid(off, "WriteTimestampMicros must be a number, not "+v.Type().String())
		}
		text = n.String()
	case c == '"':
		s, err := p.str()
		if err != nil {
			return 0, err
		}
		text = s
	default:
		s, err := p.number()
		if err != nil {
			return 0, err
		}
		text = s
	}
	return parseTimestamp(text, func(msg string) error { return p.invalid(off, msg) })
}

func parseTimestamp(text string, fail func(string) error) (int64, error) {
	n, err := ParseN(text)
	if err != nil {
		return 0, fail("WriteTimestampMicros " + quoteInput(text) + " is not a number")
	}
	ts, err := n.Int64()
	if err != nil || ts < 0 {
		return 0, fail("WriteTimestampMicros " + quoteInput(text) + " is not a non-negative 64-bit integer")
	}
	return ts, nil
}
