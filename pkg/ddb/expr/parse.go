package expr

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// DynamoDB's expression limits.
const (
	// MaxExpressionBytes is the longest expression DynamoDB accepts (4 KB).
	MaxExpressionBytes = 4096
	// MaxPathDepth is how many levels a document path may have: DynamoDB
	// nests documents at most 32 deep.
	MaxPathDepth = ddb.MaxDepth
	// MaxInOperands is how many values IN may list.
	MaxInOperands = 100
)

// kindFilter is the migrator's --filter (ParseLiteralCondition).
const kindFilter Kind = "filter"

// parser is a recursive-descent parser over the tokens of one expression.
// Every grammar shares its paths, values and functions; the conditions'
// precedence is DynamoDB's: comparisons, IN and BETWEEN bind tightest,
// then NOT, AND, OR.
type parser struct {
	kind    Kind
	src     string
	toks    []token
	i       int
	p       *Params
	literal bool
	// the token span [start, end) of the paren group closed last, to
	// catch redundant parentheses.
	groupStart, groupEnd int
}

func newParser(kind Kind, src string, p *Params, literal bool) (*parser, error) {
	if p == nil {
		p = NewParams(nil, nil)
	}
	if err := p.checkKeys(); err != nil {
		return nil, err
	}
	p.parsed++
	ps := &parser{kind: kind, src: src, p: p, literal: literal, groupStart: -1}
	if strings.TrimLeft(src, " \t\r\n") == "" {
		return nil, ps.errf("The expression can not be empty;")
	}
	if len(src) > MaxExpressionBytes {
		return nil, ps.errf("Expression size has exceeded the maximum allowed size; expression size: %d", len(src))
	}
	ps.toks = lex(src, literal)
	return ps, nil
}

// errf is an error about the expression, prefixed as DynamoDB does.
func (ps *parser) errf(format string, args ...any) error {
	return &Error{Message: "Invalid " + string(ps.kind) + ": " + fmt.Sprintf(format, args...)}
}

func (ps *parser) tok() token { return ps.toks[ps.i] }

func (ps *parser) next() token {
	t := ps.toks[ps.i]
	if t.kind != tEOF {
		ps.i++
	}
	return t
}

// syntaxErr reports the current token as DynamoDB does: the token and the
// text from the token before it to the token after it.
func (ps *parser) syntaxErr() error {
	t := ps.tok()
	from, to := t.pos, t.end
	if ps.i > 0 {
		from = ps.toks[ps.i-1].pos
	}
	switch {
	case t.kind == tEOF && ps.i > 0:
		to = ps.toks[ps.i-1].end
	case t.kind != tEOF && ps.toks[ps.i+1].kind != tEOF:
		to = ps.toks[ps.i+1].end
	}
	return ps.errf("Syntax error; token: %q, near: %q", t.text, ps.src[from:to])
}

func (ps *parser) isPunct(s string) bool {
	t := ps.tok()
	return t.kind == tPunct && t.text == s
}

func (ps *parser) isKeyword(w string) bool {
	t := ps.tok()
	return t.kind == tIdent && strings.EqualFold(t.text, w)
}

func (ps *parser) expectPunct(s string) error {
	if !ps.isPunct(s) {
		return ps.syntaxErr()
	}
	ps.i++
	return nil
}

func (ps *parser) expectEOF() error {
	if ps.tok().kind != tEOF {
		return ps.syntaxErr()
	}
	return nil
}

// isFuncCall reports whether the current token starts name(.
func (ps *parser) isFuncCall() bool {
	return ps.tok().kind == tIdent && ps.i+1 < len(ps.toks) &&
		ps.toks[ps.i+1].kind == tPunct && ps.toks[ps.i+1].text == "("
}

// Paths.

// path parses a document path: name { .name | [index] }.
func (ps *parser) path() (Path, error) {
	var path Path
	name, err := ps.pathName()
	if err != nil {
		return nil, err
	}
	path = append(path, PathElem{Name: name})
	for {
		switch {
		case ps.isPunct("."):
			ps.i++
			name, err := ps.pathName()
			if err != nil {
				return nil, err
			}
			path = append(path, PathElem{Name: name})
		case ps.isPunct("["):
			ps.i++
			t := ps.tok()
			if t.kind != tIndex && !(t.kind == tNumber && isDigits(t.text)) {
				return nil, ps.syntaxErr()
			}
			n, err := strconv.ParseInt(t.text, 10, 32)
			if err != nil {
				return nil, ps.syntaxErr()
			}
			ps.i++
			if err := ps.expectPunct("]"); err != nil {
				return nil, err
			}
			path = append(path, PathElem{Index: int(n)})
		default:
			if len(path) > MaxPathDepth {
				return nil, ps.errf("The document path has too many nesting levels; nesting levels: %d", len(path))
			}
			return path, nil
		}
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// grammarKeywords are the words the grammars use; they are never names.
var grammarKeywords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "BETWEEN": true, "IN": true,
	"SET": true, "REMOVE": true, "ADD": true, "DELETE": true,
}

// pathName parses one name of a path: an identifier (not a reserved
// word), an ExpressionAttributeName, or in literal mode a `quoted` name.
func (ps *parser) pathName() (string, error) {
	t := ps.tok()
	switch t.kind {
	case tIdent:
		if grammarKeywords[strings.ToUpper(t.text)] {
			return "", ps.syntaxErr()
		}
		if !ps.literal && reservedWords[strings.ToUpper(t.text)] {
			return "", ps.errf("Attribute name is a reserved keyword; reserved keyword: %s", t.text)
		}
		ps.i++
		return t.text, nil
	case tAttrName:
		name, ok := ps.p.Names[t.text]
		if !ok {
			return "", ps.errf("An expression attribute name used in the document path is not defined; attribute name: %s", t.text)
		}
		ps.p.usedNames[t.text] = true
		ps.i++
		return name, nil
	case tQuoted:
		ps.i++
		return t.lit, nil
	}
	return "", ps.syntaxErr()
}

// value parses an ExpressionAttributeValue or, in literal mode, a string
// or number literal. It reports ok false (and consumes nothing) when the
// current token is none of them.
func (ps *parser) value() (v *valueOperand, ok bool, err error) {
	t := ps.tok()
	switch t.kind {
	case tAttrValue:
		val, found := ps.p.Values[t.text]
		if !found || val == nil {
			return nil, true, ps.errf("An expression attribute value used in expression is not defined; attribute value: %s", t.text)
		}
		ps.p.usedValues[t.text] = true
		ps.i++
		return &valueOperand{name: t.text, value: val}, true, nil
	case tString:
		ps.i++
		return &valueOperand{value: ddb.S(t.lit)}, true, nil
	case tNumber:
		n, err := ddb.ParseN(t.text)
		if err != nil {
			return nil, true, ps.errf("%s", strings.TrimPrefix(err.Error(), "ddb: "))
		}
		ps.i++
		return &valueOperand{value: n}, true, nil
	}
	return nil, false, nil
}

// Conditions.

// ParseCondition parses a ConditionExpression or FilterExpression (kind
// says which, for messages) and records the names and values it uses in p.
func ParseCondition(kind Kind, s string, p *Params) (*Condition, error) {
	ps, err := newParser(kind, s, p, false)
	if err != nil {
		return nil, err
	}
	n, err := ps.condition()
	if err != nil {
		return nil, err
	}
	return &Condition{root: n}, nil
}

// ParseLiteralCondition parses a condition written without request
// parameters, for the migrator's --filter: the ConditionExpression grammar
// where a value is written in place (a JSON string "x" or a number 1.5E3)
// instead of as :v, and a name that is not an identifier is written
// `in backquotes` instead of as #n. Reserved words need no quoting (AND, OR,
// NOT, BETWEEN and IN still do).
func ParseLiteralCondition(s string) (*Condition, error) {
	ps, err := newParser(kindFilter, s, nil, true)
	if err != nil {
		return nil, err
	}
	n, err := ps.condition()
	if err != nil {
		return nil, err
	}
	return &Condition{root: n}, nil
}

// condition parses a whole condition expression.
func (ps *parser) condition() (node, error) {
	n, op, err := ps.or()
	if err != nil {
		return nil, err
	}
	if op != nil {
		return nil, ps.syntaxErr()
	}
	if err := ps.expectEOF(); err != nil {
		return nil, err
	}
	return n, nil
}

// or, and, not and primary return a condition, or an operand that a
// parenthesised group around it (as in "(a) = :v") must still compare.
func (ps *parser) or() (node, operand, error) {
	l, op, err := ps.and()
	if err != nil || op != nil {
		return l, op, err
	}
	for ps.isKeyword("OR") {
		ps.i++
		r, rop, err := ps.and()
		if err != nil {
			return nil, nil, err
		}
		if rop != nil {
			return nil, nil, ps.syntaxErr()
		}
		l = orNode{l, r}
	}
	return l, nil, nil
}

func (ps *parser) and() (node, operand, error) {
	l, op, err := ps.not()
	if err != nil || op != nil {
		return l, op, err
	}
	for ps.isKeyword("AND") {
		ps.i++
		r, rop, err := ps.not()
		if err != nil {
			return nil, nil, err
		}
		if rop != nil {
			return nil, nil, ps.syntaxErr()
		}
		l = andNode{l, r}
	}
	return l, nil, nil
}

func (ps *parser) not() (node, operand, error) {
	if !ps.isKeyword("NOT") {
		return ps.primary()
	}
	ps.i++
	x, op, err := ps.not()
	if err != nil {
		return nil, nil, err
	}
	if op != nil {
		return nil, nil, ps.syntaxErr()
	}
	return notNode{x}, nil, nil
}

// primary parses a parenthesised condition, a function condition, or a
// comparison, BETWEEN or IN.
func (ps *parser) primary() (node, operand, error) {
	start := ps.i
	var left operand
	switch {
	case ps.isPunct("("):
		ps.i++
		n, op, err := ps.or()
		if err != nil {
			return nil, nil, err
		}
		if ps.groupStart == start+1 && ps.groupEnd == ps.i {
			return nil, nil, ps.errf("The expression has redundant parentheses;")
		}
		if err := ps.expectPunct(")"); err != nil {
			return nil, nil, err
		}
		ps.groupStart, ps.groupEnd = start, ps.i
		if op == nil {
			return n, nil, nil
		}
		left = op
	case ps.isFuncCall():
		name := ps.tok().text
		f, err := ps.call()
		if err != nil {
			return nil, nil, err
		}
		if name != "size" {
			if ps.isComparison() {
				return nil, nil, ps.errf("The function is not allowed to be used this way in an expression; function: %s", name)
			}
			return f.(funcNode), nil, nil
		}
		left = f.(operand)
		if !ps.isComparison() && !ps.isPunct(")") {
			return nil, nil, ps.errf("The function is not allowed to be used this way in an expression; function: size")
		}
	default:
		op, err := ps.operand()
		if err != nil {
			return nil, nil, err
		}
		left = op
	}
	if !ps.isComparison() {
		if ps.isPunct(")") {
			return nil, left, nil
		}
		return nil, nil, ps.syntaxErr()
	}
	return ps.comparison(left)
}

var comparators = []string{"=", "<>", "<", "<=", ">", ">="}

func (ps *parser) isComparison() bool {
	t := ps.tok()
	return t.kind == tPunct && slices.Contains(comparators, t.text) || ps.isKeyword("BETWEEN") || ps.isKeyword("IN")
}

// comparison parses the rest of a comparison, BETWEEN or IN after its
// first operand.
func (ps *parser) comparison(left operand) (node, operand, error) {
	t := ps.next()
	switch {
	case strings.EqualFold(t.text, "BETWEEN"):
		lo, err := ps.operand()
		if err != nil {
			return nil, nil, err
		}
		if !ps.isKeyword("AND") {
			return nil, nil, ps.syntaxErr()
		}
		ps.i++
		hi, err := ps.operand()
		if err != nil {
			return nil, nil, err
		}
		if err := ps.distinct("BETWEEN", left, lo, hi); err != nil {
			return nil, nil, err
		}
		if err := ps.orderable("BETWEEN", left, lo, hi); err != nil {
			return nil, nil, err
		}
		if err := ps.checkBounds(lo, hi); err != nil {
			return nil, nil, err
		}
		return betweenNode{left, lo, hi}, nil, nil
	case strings.EqualFold(t.text, "IN"):
		if err := ps.expectPunct("("); err != nil {
			return nil, nil, err
		}
		list, err := ps.operandList()
		if err != nil {
			return nil, nil, err
		}
		if len(list) > MaxInOperands {
			return nil, nil, ps.errf("The IN operator is provided with too many operands; number of operands: %d", len(list))
		}
		if err := ps.distinct("IN", left, list...); err != nil {
			return nil, nil, err
		}
		return inNode{left, list}, nil, nil
	}
	right, err := ps.operand()
	if err != nil {
		return nil, nil, err
	}
	if err := ps.distinct(t.text, left, right); err != nil {
		return nil, nil, err
	}
	if t.text != "=" && t.text != "<>" {
		if err := ps.orderable(t.text, left, right); err != nil {
			return nil, nil, err
		}
	}
	return compareNode{t.text, left, right}, nil, nil
}

// orderable refuses a value operand that an order comparison cannot
// compare (only N, S and B order). A path's value of such a type only
// makes the comparison false; a value written in the request is an error.
func (ps *parser) orderable(op string, ops ...operand) error {
	for _, o := range ops {
		if v, ok := o.(valueOperand); ok {
			if t := v.value.Type(); t != ddb.TypeN && t != ddb.TypeS && t != ddb.TypeB {
				return ps.errf("Incorrect operand type for operator or function; operator or function: %s, operand type: %s", op, t)
			}
		}
	}
	return nil
}

// operandList parses operands separated by commas up to a closing
// parenthesis (consumed).
func (ps *parser) operandList() ([]operand, error) {
	var list []operand
	for {
		op, err := ps.operand()
		if err != nil {
			return nil, err
		}
		list = append(list, op)
		if ps.isPunct(",") {
			ps.i++
			continue
		}
		return list, ps.expectPunct(")")
	}
}

// operand parses a value, a path, size(path), or one of them in
// parentheses.
func (ps *parser) operand() (operand, error) {
	start := ps.i
	switch {
	case ps.isPunct("("):
		ps.i++
		op, err := ps.operand()
		if err != nil {
			return nil, err
		}
		if ps.groupStart == start+1 && ps.groupEnd == ps.i {
			return nil, ps.errf("The expression has redundant parentheses;")
		}
		if err := ps.expectPunct(")"); err != nil {
			return nil, err
		}
		ps.groupStart, ps.groupEnd = start, ps.i
		return op, nil
	case ps.isFuncCall():
		name := ps.tok().text
		f, err := ps.call()
		if err != nil {
			return nil, err
		}
		if op, ok := f.(operand); ok {
			return op, nil
		}
		return nil, ps.errf("The function is not allowed to be used this way in an expression; function: %s", name)
	}
	v, ok, err := ps.value()
	if ok {
		return v2op(v), err
	}
	p, err := ps.path()
	if err != nil {
		return nil, err
	}
	return pathOperand{p}, nil
}

// v2op keeps a nil *valueOperand from becoming a non-nil interface.
func v2op(v *valueOperand) operand {
	if v == nil {
		return nil
	}
	return *v
}

// condFuncs are the condition functions and how many operands each takes.
var condFuncs = map[string]int{
	"attribute_exists": 1, "attribute_not_exists": 1, "attribute_type": 2,
	"begins_with": 2, "contains": 2, "size": 1,
}

// call parses a condition function call; size returns a sizeOperand,
// every other function a funcNode.
func (ps *parser) call() (any, error) {
	name := ps.next().text
	want, known := condFuncs[name]
	if !known {
		return nil, ps.errf("Invalid function name; function: %s", name)
	}
	ps.i++ // (
	args, err := ps.operandList()
	if err != nil {
		return nil, err
	}
	if len(args) != want {
		return nil, ps.errf("Incorrect number of operands for operator or function; operator or function: %s, number of operands: %d", name, len(args))
	}
	needPath := func() (Path, error) {
		p, ok := args[0].(pathOperand)
		if !ok {
			return nil, ps.errf("Operator or function requires a document path; operator or function: %s", name)
		}
		return p.path, nil
	}
	switch name {
	case "size":
		p, err := needPath()
		if err != nil {
			return nil, err
		}
		return sizeOperand{p}, nil
	case "attribute_exists", "attribute_not_exists":
		if _, err := needPath(); err != nil {
			return nil, err
		}
	case "attribute_type":
		if _, err := needPath(); err != nil {
			return nil, err
		}
		v, ok := args[1].(valueOperand)
		if !ok {
			return nil, ps.errf("Incorrect operand type for operator or function; operator or function: %s, operand type: %s", name, "{NS,SS,L,BS,N,M,B,BOOL,NULL,S}")
		}
		s, ok := v.value.(ddb.S)
		if !ok {
			return nil, ps.errf("Incorrect operand type for operator or function; operator or function: %s, operand type: %s", name, v.value.Type())
		}
		if _, err := ddb.ParseType(string(s)); err != nil {
			return nil, ps.errf("Invalid attribute type name found; type: %s, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}", string(s))
		}
	case "begins_with":
		for _, a := range args {
			if v, ok := a.(valueOperand); ok && v.value.Type() != ddb.TypeS && v.value.Type() != ddb.TypeB {
				return nil, ps.errf("Incorrect operand type for operator or function; operator or function: %s, operand type: %s", name, v.value.Type())
			}
		}
		if err := ps.distinct(name, args[0], args[1]); err != nil {
			return nil, err
		}
	case "contains":
		if err := ps.distinct(name, args[0], args[1]); err != nil {
			return nil, err
		}
	}
	return funcNode{name: name, args: args}, nil
}

// distinct refuses an operator whose first operand is the same path as
// another (a = a), as DynamoDB does.
func (ps *parser) distinct(op string, first operand, rest ...operand) error {
	fp, ok := first.(pathOperand)
	if !ok {
		return nil
	}
	for _, r := range rest {
		if rp, ok := r.(pathOperand); ok && slices.Equal(fp.path, rp.path) {
			return ps.errf("The first operand must be distinct from the remaining operands for this operator or function; operator: %s, first operand: %s", op, fp.path.debug())
		}
	}
	return nil
}

// checkBounds refuses BETWEEN bounds that are both values and of
// different types or in the wrong order.
func (ps *parser) checkBounds(lo, hi operand) error {
	l, lok := lo.(valueOperand)
	h, hok := hi.(valueOperand)
	if !lok || !hok {
		return nil
	}
	if l.value.Type() != h.value.Type() {
		return ps.errf("The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: %s, upper bound operand: AttributeValue: %s", avString(l.value), avString(h.value))
	}
	if c, ok := compareValues(l.value, h.value); ok && c > 0 {
		return ps.errf("The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: %s, upper bound operand: AttributeValue: %s", avString(l.value), avString(h.value))
	}
	return nil
}

// avString renders a value as DynamoDB's messages do: {N:5}.
func avString(v ddb.Value) string {
	switch x := v.(type) {
	case ddb.S:
		return "{S:" + string(x) + "}"
	case ddb.N:
		return "{N:" + x.String() + "}"
	}
	return "{" + v.Type().String() + ":...}"
}

// debug renders a path as DynamoDB's messages do: [a, b, [2]].
func (p Path) debug() string {
	parts := make([]string, len(p))
	for i, e := range p {
		if e.Name == "" {
			parts[i] = "[" + strconv.Itoa(e.Index) + "]"
		} else {
			parts[i] = e.Name
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// String renders the path as an expression would write it: a.b[2].c.
// Names are written as they are, not escaped.
func (p Path) String() string {
	var b strings.Builder
	for i, e := range p {
		switch {
		case e.Name == "" && e.Index >= 0:
			b.WriteString("[" + strconv.Itoa(e.Index) + "]")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.Name)
		}
	}
	return b.String()
}

// overlap checks a new path against earlier ones of the same projection
// or update: no path may be a prefix of another, nor follow a map key
// where another takes a list index.
func (ps *parser) overlap(seen []Path, p Path) error {
	for _, q := range seen {
		n := min(len(p), len(q))
		same := true
		for i := range n {
			if (p[i].Name == "") != (q[i].Name == "") {
				return ps.errf("Two document paths conflict with each other; must remove or rewrite one of these paths; path one: %s, path two: %s", q.debug(), p.debug())
			}
			if p[i] != q[i] {
				same = false
				break
			}
		}
		if same {
			return ps.errf("Two document paths overlap with each other; must remove or rewrite one of these paths; path one: %s, path two: %s", q.debug(), p.debug())
		}
	}
	return nil
}

// Projections.

// ParseProjection parses a ProjectionExpression.
func ParseProjection(s string, p *Params) (*Projection, error) {
	ps, err := newParser(KindProjection, s, p, false)
	if err != nil {
		return nil, err
	}
	pr := &Projection{}
	for {
		path, err := ps.path()
		if err != nil {
			return nil, err
		}
		if err := ps.overlap(pr.Paths, path); err != nil {
			return nil, err
		}
		pr.Paths = append(pr.Paths, path)
		if !ps.isPunct(",") {
			break
		}
		ps.i++
	}
	if err := ps.expectEOF(); err != nil {
		return nil, err
	}
	return pr, nil
}

// Updates.

var updateClauses = map[string]actionKind{"SET": actionSet, "REMOVE": actionRemove, "ADD": actionAdd, "DELETE": actionDelete}

// ParseUpdate parses an UpdateExpression: clauses SET, REMOVE, ADD and
// DELETE, each at most once, in any order, each a comma-separated list of
// actions. The actions keep the order they are written in.
func ParseUpdate(s string, p *Params) (*Update, error) {
	ps, err := newParser(KindUpdate, s, p, false)
	if err != nil {
		return nil, err
	}
	u := &Update{}
	seen := map[actionKind]bool{}
	var paths []Path
	for {
		t := ps.tok()
		if t.kind == tEOF && len(u.actions) > 0 {
			return u, nil
		}
		kind := updateClauses[strings.ToUpper(t.text)]
		if t.kind != tIdent || kind == 0 {
			return nil, ps.syntaxErr()
		}
		ps.i++
		if seen[kind] {
			return nil, ps.errf("The %q section can only be used once in an update expression;", strings.ToUpper(t.text))
		}
		seen[kind] = true
		for {
			a, err := ps.action(kind)
			if err != nil {
				return nil, err
			}
			if err := ps.overlap(paths, a.path); err != nil {
				return nil, err
			}
			paths = append(paths, a.path)
			u.actions = append(u.actions, a)
			if !ps.isPunct(",") {
				break
			}
			ps.i++
		}
	}
}

// updateTypeNames are the type names DynamoDB's update messages use.
var updateTypeNames = map[ddb.Type]string{
	ddb.TypeS: "STRING", ddb.TypeN: "NUMBER", ddb.TypeB: "BINARY", ddb.TypeNULL: "NULL",
	ddb.TypeBOOL: "BOOLEAN", ddb.TypeL: "LIST", ddb.TypeM: "MAP",
}

func (ps *parser) action(kind actionKind) (action, error) {
	path, err := ps.path()
	if err != nil {
		return action{}, err
	}
	a := action{kind: kind, path: path}
	switch kind {
	case actionSet:
		if err := ps.expectPunct("="); err != nil {
			return action{}, err
		}
		if a.value, err = ps.setValue(); err != nil {
			return action{}, err
		}
	case actionAdd, actionDelete:
		v, ok, err := ps.value()
		if err != nil {
			return action{}, err
		}
		if !ok {
			return action{}, ps.syntaxErr()
		}
		t := v.value.Type()
		if name, bad := updateTypeNames[t]; bad && !(kind == actionAdd && t == ddb.TypeN) {
			op := "ADD"
			if kind == actionDelete {
				op = "DELETE"
			}
			return action{}, ps.errf("Incorrect operand type for operator or function; operator: %s, operand type: %s", op, name)
		}
		a.value = *v
	}
	return a, nil
}

// setValue parses the right side of SET: an operand, or two joined by +
// or -.
func (ps *parser) setValue() (operand, error) {
	l, err := ps.updateOperand()
	if err != nil {
		return nil, err
	}
	if !ps.isPunct("+") && !ps.isPunct("-") {
		return l, nil
	}
	if _, nested := l.(arithOperand); nested {
		return nil, ps.syntaxErr()
	}
	op := ps.next().text[0]
	rs := ps.i
	r, err := ps.updateOperand()
	if err != nil {
		return nil, err
	}
	if _, nested := r.(arithOperand); nested {
		ps.i = rs
		return nil, ps.syntaxErr()
	}
	for _, x := range []operand{l, r} {
		if v, ok := x.(valueOperand); ok && v.value.Type() != ddb.TypeN {
			return nil, ps.errf("Incorrect operand type for operator or function; operator or function: %c, operand type: %s", op, v.value.Type())
		}
	}
	return arithOperand{op: op, l: l, r: r}, nil
}

// updateOperand parses a value, a path, if_not_exists(path, operand),
// list_append(operand, operand), or a SET value in parentheses.
func (ps *parser) updateOperand() (operand, error) {
	switch {
	case ps.isPunct("("):
		ps.i++
		v, err := ps.setValue()
		if err != nil {
			return nil, err
		}
		return v, ps.expectPunct(")")
	case ps.isFuncCall():
		return ps.updateCall()
	}
	v, ok, err := ps.value()
	if ok {
		return v2op(v), err
	}
	p, err := ps.path()
	if err != nil {
		return nil, err
	}
	return pathOperand{p}, nil
}

func (ps *parser) updateCall() (operand, error) {
	name := ps.next().text
	if name != "if_not_exists" && name != "list_append" {
		return nil, ps.errf("Invalid function name; function: %s", name)
	}
	ps.i++ // (
	var args []operand
	for {
		a, err := ps.updateOperand()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if ps.isPunct(",") {
			ps.i++
			continue
		}
		if err := ps.expectPunct(")"); err != nil {
			return nil, err
		}
		break
	}
	if len(args) != 2 {
		return nil, ps.errf("Incorrect number of operands for operator or function; operator or function: %s, number of operands: %d", name, len(args))
	}
	if name == "if_not_exists" {
		p, ok := args[0].(pathOperand)
		if !ok {
			return nil, ps.errf("Operator or function requires a document path; operator or function: %s", name)
		}
		return ifNotExistsOperand{path: p.path, def: args[1]}, nil
	}
	for _, a := range args {
		if v, ok := a.(valueOperand); ok && v.value.Type() != ddb.TypeL {
			return nil, ps.errf("Incorrect operand type for operator or function; operator or function: %s, operand type: %s", name, v.value.Type())
		}
	}
	return listAppendOperand{l: args[0], r: args[1]}, nil
}

// Parameters.

// checkKeys validates the parameter maps' keys once, before the first
// expression uses them.
func (p *Params) checkKeys() error {
	if p.usedNames == nil {
		p.usedNames = map[string]bool{}
	}
	if p.usedValues == nil {
		p.usedValues = map[string]bool{}
	}
	if p.keysChecked {
		return p.keysErr
	}
	p.keysChecked = true
	switch {
	case p.Names != nil && len(p.Names) == 0:
		p.keysErr = &Error{Message: "ExpressionAttributeNames must not be empty"}
	case p.Values != nil && len(p.Values) == 0:
		p.keysErr = &Error{Message: "ExpressionAttributeValues must not be empty"}
	}
	if p.keysErr != nil {
		return p.keysErr
	}
	for _, k := range sortedKeys(p.Names) {
		if !validKey(k, '#') {
			p.keysErr = &Error{Message: fmt.Sprintf("ExpressionAttributeNames contains invalid key: Syntax error; key: %q", k)}
			return p.keysErr
		}
		if p.Names[k] == "" {
			p.keysErr = &Error{Message: "ExpressionAttributeNames contains invalid value: Empty attribute name for key " + k}
			return p.keysErr
		}
	}
	for _, k := range sortedKeys(p.Values) {
		if !validKey(k, ':') {
			p.keysErr = &Error{Message: fmt.Sprintf("ExpressionAttributeValues contains invalid key: Syntax error; key: %q", k)}
			return p.keysErr
		}
		if p.Values[k] == nil {
			p.keysErr = &Error{Message: "ExpressionAttributeValues contains invalid value: no value for key " + k}
			return p.keysErr
		}
	}
	return nil
}

func validKey(k string, prefix byte) bool {
	if len(k) < 2 || k[0] != prefix {
		return false
	}
	for i := 1; i < len(k); i++ {
		if !isWordByte(k[i]) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Check reports names or values that were defined but not used, or used
// but not defined, in DynamoDB's words. Call it after parsing every
// expression of the request. (Undefined ones are reported by the parse
// that meets them.) A nil *Params has nothing to check.
func (p *Params) Check() error {
	if p == nil {
		return nil
	}
	if err := p.checkKeys(); err != nil {
		return err
	}
	if p.parsed == 0 {
		if len(p.Names) > 0 {
			return &Error{Message: "ExpressionAttributeNames can only be specified when using expressions"}
		}
		if len(p.Values) > 0 {
			return &Error{Message: "ExpressionAttributeValues can only be specified when using expressions"}
		}
	}
	if unused := unusedKeys(p.Names, p.usedNames); unused != "" {
		return &Error{Message: "Value provided in ExpressionAttributeNames unused in expressions: keys: {" + unused + "}"}
	}
	if unused := unusedKeys(p.Values, p.usedValues); unused != "" {
		return &Error{Message: "Value provided in ExpressionAttributeValues unused in expressions: keys: {" + unused + "}"}
	}
	return nil
}

func unusedKeys[V any](m map[string]V, used map[string]bool) string {
	var out []string
	for _, k := range sortedKeys(m) {
		if !used[k] {
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}
