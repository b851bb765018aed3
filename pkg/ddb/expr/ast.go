package expr

import "github.com/veltrixdb/veltrix/pkg/ddb"

// The syntax tree every expression parses to, and every legacy parameter
// converts to: one evaluator serves both.

// operand is a value in an expression.
type operand interface{ isOperand() }

type (
	// pathOperand is a document path; it evaluates to the value there, or
	// to nothing when the path does not exist.
	pathOperand struct{ path Path }
	// valueOperand is an ExpressionAttributeValue (name ":v") or, from a
	// legacy parameter or a migrator filter literal, a value with no name.
	valueOperand struct {
		name  string
		value ddb.Value
	}
	// sizeOperand is size(path) in a condition.
	sizeOperand struct{ path Path }
	// arithOperand is a + b or a - b in an update's SET.
	arithOperand struct {
		op   byte // '+' or '-'
		l, r operand
	}
	// ifNotExistsOperand is if_not_exists(path, operand) in SET.
	ifNotExistsOperand struct {
		path Path
		def  operand
	}
	// listAppendOperand is list_append(a, b) in SET.
	listAppendOperand struct{ l, r operand }
)

func (pathOperand) isOperand()        {}
func (valueOperand) isOperand()       {}
func (sizeOperand) isOperand()        {}
func (arithOperand) isOperand()       {}
func (ifNotExistsOperand) isOperand() {}
func (listAppendOperand) isOperand()  {}

// node is a condition.
type node interface{ isNode() }

type (
	// compareNode is l op r with op one of = <> < <= > >=.
	compareNode struct {
		op   string
		l, r operand
	}
	// betweenNode is v BETWEEN lo AND hi.
	betweenNode struct{ v, lo, hi operand }
	// inNode is v IN (list...).
	inNode struct {
		v    operand
		list []operand
	}
	andNode struct{ l, r node }
	orNode  struct{ l, r node }
	notNode struct{ x node }
	// funcNode is attribute_exists(path), attribute_not_exists(path),
	// attribute_type(path, :t), begins_with(path, :v) or
	// contains(path, :v).
	funcNode struct {
		name string
		args []operand
	}
)

func (compareNode) isNode() {}
func (betweenNode) isNode() {}
func (inNode) isNode()      {}
func (andNode) isNode()     {}
func (orNode) isNode()      {}
func (notNode) isNode()     {}
func (funcNode) isNode()    {}

// actionKind is an update clause.
type actionKind int

const (
	actionSet actionKind = iota + 1
	actionRemove
	actionAdd
	actionDelete
)

// action is one update action: SET path = value, REMOVE path, ADD path
// value, DELETE path value (value nil for REMOVE).
type action struct {
	kind  actionKind
	path  Path
	value operand
}
