package expr

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// tokKind is a lexical token class.
type tokKind int

const (
	tEOF       tokKind = iota
	tIdent             // a name: letter, then letters, digits, _
	tAttrName          // #name
	tAttrValue         // :value
	tIndex             // digits (a list index)
	tPunct             // ( ) [ ] , . = <> < <= > >= + -
	tString            // "json string" (literal mode only)
	tNumber            // a number literal (literal mode only)
	tQuoted            // `name` (literal mode only)
	tBad               // anything else: one character
)

// token is one lexeme of the source; pos and end are byte offsets.
type token struct {
	kind     tokKind
	text     string
	pos, end int
	// lit is a literal's value: the string of a tString, the name of a
	// tQuoted.
	lit string
}

// lex splits src into tokens, ending with a tEOF. It never fails: a
// character it does not know becomes a tBad token, which the parser
// reports as a syntax error where it meets it. literal enables the
// migrator filter's inline literals ("x", 1.5, `name`).
func lex(src string, literal bool) []token {
	toks := make([]token, 0, len(src)/4+2)
	i := 0
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			return append(toks, token{kind: tEOF, text: "<EOF>", pos: len(src), end: len(src)})
		}
		start := i
		c := src[i]
		kind := tBad
		lit := ""
		switch {
		case isLetter(c):
			i = scanWord(src, i+1)
			kind = tIdent
		case (c == '#' || c == ':') && i+1 < len(src) && isWordByte(src[i+1]):
			i = scanWord(src, i+1)
			kind = tAttrName
			if c == ':' {
				kind = tAttrValue
			}
		case literal && (isDigit(c) || strings.IndexByte("+-.", c) >= 0 && i+1 < len(src) && isDigit(src[i+1]) ||
			(c == '-' || c == '+') && i+2 < len(src) && src[i+1] == '.' && isDigit(src[i+2])):
			i = scanNumber(src, i)
			kind = tNumber
		case isDigit(c):
			for i < len(src) && isDigit(src[i]) {
				i++
			}
			kind = tIndex
		case literal && c == '"':
			end, s, ok := scanString(src, i)
			i = end
			if ok {
				kind, lit = tString, s
			}
		case literal && c == '`':
			if end := strings.IndexByte(src[i+1:], '`'); end > 0 {
				kind, lit = tQuoted, src[i+1:i+1+end]
				i += end + 2
			} else {
				i++
			}
		case c == '<' && i+1 < len(src) && (src[i+1] == '=' || src[i+1] == '>'),
			c == '>' && i+1 < len(src) && src[i+1] == '=':
			i += 2
			kind = tPunct
		case strings.IndexByte("()[],.=<>+-", c) >= 0:
			i++
			kind = tPunct
		default:
			_, n := utf8.DecodeRuneInString(src[i:])
			i += n
		}
		toks = append(toks, token{kind: kind, text: src[start:i], pos: start, end: i, lit: lit})
	}
}

func isSpace(c byte) bool  { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isWordByte(c byte) bool {
	return isLetter(c) || isDigit(c) || c == '_'
}

func scanWord(src string, i int) int {
	for i < len(src) && isWordByte(src[i]) {
		i++
	}
	return i
}

// scanNumber reads a number literal's text; ddb.ParseN judges it.
func scanNumber(src string, i int) int {
	if src[i] == '-' || src[i] == '+' {
		i++
	}
	for i < len(src) && (isDigit(src[i]) || src[i] == '.') {
		i++
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '-' || src[i] == '+') {
			i++
		}
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	return i
}

// scanString reads a JSON string literal starting at src[i] == '"'. On
// failure it returns the end of the bad text and ok false.
func scanString(src string, i int) (end int, s string, ok bool) {
	j := i + 1
	for ; j < len(src); j++ {
		if src[j] == '\\' {
			j++
			continue
		}
		if src[j] == '"' {
			break
		}
	}
	if j >= len(src) {
		return len(src), "", false
	}
	if err := json.Unmarshal([]byte(src[i:j+1]), &s); err != nil {
		return j + 1, "", false
	}
	return j + 1, s, true
}
