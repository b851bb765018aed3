package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Filter keeps the items matching every one of its conditions. Syntax:
//
//	filter    = condition { "AND" condition }
//	condition = "attribute_exists" "(" name ")"
//	          | "attribute_not_exists" "(" name ")"
//	          | "begins_with" "(" name "," string ")"
//	          | name "=" ( string | number )
//	name      = identifier            letters, digits, _; not starting with a digit
//	          | "`" any text "`"      for names with spaces or punctuation
//	string    = a JSON string literal ("x", "a\"b", "\u00e9")
//	number    = a DynamoDB number (1, -2.5, 1E3); compared by value
//
// AND is case-insensitive; function names are not (as in DynamoDB).
// Names are top-level attributes. attribute_exists is true for any value,
// NULL included; begins_with matches S values by text and B values by
// bytes; = "x" matches an S equal to x, = 1 an N equal to 1 (so 1.0 and
// 1E0 match too). Anything else is a syntax error with its position.
type Filter struct {
	src   string
	conds []condition
}

type condKind int

const (
	condExists condKind = iota
	condNotExists
	condBeginsWith
	condEqualS
	condEqualN
)

type condition struct {
	kind condKind
	name string
	text string // begins_with prefix or = string
	num  ddb.N  // = number
}

// SyntaxError is a filter that does not parse.
type SyntaxError struct {
	// Pos is the 1-based byte position of the problem in the filter.
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter: position %d: %s", e.Pos, e.Msg)
}

// ParseFilter parses a filter; the empty string (or only spaces) is nil,
// which keeps every item.
func ParseFilter(src string) (*Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	p := &filterParser{src: src}
	f := &Filter{src: src}
	for {
		c, err := p.condition()
		if err != nil {
			return nil, err
		}
		f.conds = append(f.conds, c)
		p.ws()
		if p.eof() {
			return f, nil
		}
		at := p.pos
		word := p.ident()
		if !strings.EqualFold(word, "AND") {
			return nil, p.errAt(at, "want AND or the end of the filter, found %s", p.describe(at))
		}
	}
}

// String returns the filter's source text.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Match reports whether the item satisfies every condition. A nil filter
// matches everything.
func (f *Filter) Match(it ddb.Item) bool {
	if f == nil {
		return true
	}
	for _, c := range f.conds {
		v, ok := it[c.name]
		ok = ok && v != nil
		switch c.kind {
		case condExists:
			if !ok {
				return false
			}
		case condNotExists:
			if ok {
				return false
			}
		case condBeginsWith:
			switch x := v.(type) {
			case ddb.S:
				if !strings.HasPrefix(string(x), c.text) {
					return false
				}
			case ddb.B:
				if !bytes.HasPrefix(x, []byte(c.text)) {
					return false
				}
			default:
				return false
			}
		case condEqualS:
			if s, isS := v.(ddb.S); !isS || string(s) != c.text {
				return false
			}
		case condEqualN:
			if n, isN := v.(ddb.N); !isN || n != c.num {
				return false
			}
		}
	}
	return true
}

type filterParser struct {
	src string
	pos int
}

func (p *filterParser) eof() bool { return p.pos >= len(p.src) }

func (p *filterParser) ws() {
	for !p.eof() && strings.IndexByte(" \t\r\n", p.src[p.pos]) >= 0 {
		p.pos++
	}
}

func (p *filterParser) errAt(pos int, format string, args ...any) error {
	return &SyntaxError{Pos: pos + 1, Msg: fmt.Sprintf(format, args...)}
}

// describe names what is at pos for an error message.
func (p *filterParser) describe(pos int) string {
	if pos >= len(p.src) {
		return "the end of the filter"
	}
	rest := p.src[pos:]
	if len(rest) > 16 {
		rest = rest[:16] + "..."
	}
	return fmt.Sprintf("%q", rest)
}

func isIdentStart(c byte) bool { return c == '_' || (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isIdentByte(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

func (p *filterParser) ident() string {
	start := p.pos
	if p.eof() || !isIdentStart(p.src[p.pos]) {
		return ""
	}
	for !p.eof() && isIdentByte(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *filterParser) expect(c byte) error {
	p.ws()
	if p.eof() || p.src[p.pos] != c {
		return p.errAt(p.pos, "want %q, found %s", c, p.describe(p.pos))
	}
	p.pos++
	return nil
}

// name reads an attribute name: an identifier or a `quoted` name.
func (p *filterParser) name() (string, error) {
	p.ws()
	at := p.pos
	if !p.eof() && p.src[p.pos] == '`' {
		end := strings.IndexByte(p.src[p.pos+1:], '`')
		if end < 0 {
			return "", p.errAt(at, "unterminated `name`")
		}
		n := p.src[p.pos+1 : p.pos+1+end]
		if n == "" {
			return "", p.errAt(at, "empty attribute name")
		}
		p.pos += end + 2
		return n, nil
	}
	if n := p.ident(); n != "" {
		return n, nil
	}
	return "", p.errAt(at, "want an attribute name, found %s", p.describe(at))
}

func (p *filterParser) condition() (condition, error) {
	p.ws()
	at := p.pos
	if !p.eof() && p.src[p.pos] == '`' {
		n, err := p.name()
		if err != nil {
			return condition{}, err
		}
		return p.equality(n)
	}
	word := p.ident()
	if word == "" {
		return condition{}, p.errAt(at, "want a condition (attribute_exists(a), attribute_not_exists(a), begins_with(a, \"x\") or a = value), found %s", p.describe(at))
	}
	save := p.pos
	p.ws()
	if p.eof() || p.src[p.pos] != '(' {
		p.pos = save
		return p.equality(word)
	}
	var c condition
	switch word {
	case "attribute_exists":
		c.kind = condExists
	case "attribute_not_exists":
		c.kind = condNotExists
	case "begins_with":
		c.kind = condBeginsWith
	default:
		return condition{}, p.errAt(at, "unknown function %q (want attribute_exists, attribute_not_exists or begins_with)", word)
	}
	p.pos++ // (
	n, err := p.name()
	if err != nil {
		return condition{}, err
	}
	c.name = n
	if c.kind == condBeginsWith {
		if err := p.expect(','); err != nil {
			return condition{}, err
		}
		p.ws()
		if p.eof() || p.src[p.pos] != '"' {
			return condition{}, p.errAt(p.pos, "begins_with wants a string, found %s", p.describe(p.pos))
		}
		if c.text, err = p.str(); err != nil {
			return condition{}, err
		}
	}
	if err := p.expect(')'); err != nil {
		return condition{}, err
	}
	return c, nil
}

// equality parses the rest of `name = value`.
func (p *filterParser) equality(name string) (condition, error) {
	if err := p.expect('='); err != nil {
		return condition{}, err
	}
	p.ws()
	at := p.pos
	if p.eof() {
		return condition{}, p.errAt(at, "want a string or number after =, found the end of the filter")
	}
	if p.src[p.pos] == '"' {
		s, err := p.str()
		if err != nil {
			return condition{}, err
		}
		return condition{kind: condEqualS, name: name, text: s}, nil
	}
	for !p.eof() && strings.IndexByte("+-.0123456789eE", p.src[p.pos]) >= 0 {
		p.pos++
	}
	if p.pos == at {
		return condition{}, p.errAt(at, "want a string or number after =, found %s", p.describe(at))
	}
	n, err := ddb.ParseN(p.src[at:p.pos])
	if err != nil {
		return condition{}, p.errAt(at, "bad number %q: %v", p.src[at:p.pos], err)
	}
	return condition{kind: condEqualN, name: name, num: n}, nil
}

// str reads a JSON string literal.
func (p *filterParser) str() (string, error) {
	at := p.pos
	i := p.pos + 1
	for ; i < len(p.src); i++ {
		if p.src[i] == '\\' {
			i++
			continue
		}
		if p.src[i] == '"' {
			break
		}
	}
	if i >= len(p.src) {
		return "", p.errAt(at, "unterminated string")
	}
	var s string
	if err := json.Unmarshal([]byte(p.src[at:i+1]), &s); err != nil {
		return "", p.errAt(at, "bad string %s: %v", p.src[at:i+1], err)
	}
	p.pos = i + 1
	return s, nil
}
