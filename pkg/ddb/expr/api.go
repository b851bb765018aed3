// Package expr is the DynamoDB expression language over pkg/ddb items: one
// engine for the DynamoDB-compatible endpoint (condition, filter, key
// condition, projection and update expressions, and the legacy parameters
// older SDK code still sends) and for the migrator's --filter.
//
// Semantics follow the DynamoDB developer guide ("Using expressions in
// DynamoDB"): comparisons between values of different types are false,
// not errors; a function on a missing path is false (size of a missing path
// makes the comparison false); numbers compare by value with ddb.N;
// arithmetic is exact decimal arithmetic with DynamoDB's 38-digit limit.
// Errors are *Error values whose Message reads like DynamoDB's, so the
// endpoint returns them as a ValidationException unchanged:
//
//	Invalid UpdateExpression: Syntax error; token: "=", near: "SET = :v"
//	Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}
//
// # Grammar
//
// One lexer and one recursive-descent parser serve every expression kind
// (parse.go), so paths, values, functions and messages agree everywhere:
//
//	condition  = or
//	or         = and { "OR" and }
//	and        = not { "AND" not }
//	not        = "NOT" not | primary
//	primary    = "(" condition ")" | function | operand comparison
//	comparison = ("=" | "<>" | "<" | "<=" | ">" | ">=") operand
//	           | "BETWEEN" operand "AND" operand
//	           | "IN" "(" operand { "," operand } ")"      at most 100
//	function   = attribute_exists(path) | attribute_not_exists(path)
//	           | attribute_type(path, :t) | begins_with(op, op) | contains(op, op)
//	operand    = path | ":value" | size(path) | "(" operand ")"
//	path       = name { "." name | "[" digits "]" }          at most 32 levels
//	name       = letter { letter | digit | "_" } | "#name"
//	projection = path { "," path }
//	update     = clause { clause }                          each clause once
//	clause     = "SET" set { "," set } | "REMOVE" path { "," path }
//	           | "ADD" path ":value" { "," ... } | "DELETE" path ":value" { "," ... }
//	set        = path "=" value [ ("+" | "-") value ]
//	value      = operand | if_not_exists(path, value) | list_append(value, value)
//
// Keywords are case-insensitive, function names are not. A name that is one
// of DynamoDB's 573 reserved words must be written as an
// ExpressionAttributeName. Parentheses around parentheses are refused
// ("The expression has redundant parentheses;"), as are overlapping or
// conflicting paths in one projection or update, a first operand repeated
// (a = a), request values of the wrong type where the type is known when
// parsing (ADD of a string, BETWEEN bounds out of order, < on a list), and
// expressions over 4 KB. A key condition is a condition checked against the
// table's key schema and returned as the partition key value and one sort
// key range (KeyCondition).
//
// ParseLiteralCondition is the condition grammar with values written in
// place ("x", 1.5E3) and names in `backquotes`, for the migrator's
// --filter, which has no request parameters.
package expr

import (
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Error is a validation error in DynamoDB's words. The endpoint answers it
// as a ValidationException with Message.
type Error struct {
	Message string
}

func (e *Error) Error() string { return e.Message }

// Params are a request's ExpressionAttributeNames ("#n" → name) and
// ExpressionAttributeValues (":v" → value). Parsing records which ones each
// expression uses; Check, called once every expression of the request is
// parsed, reports unused or undefined ones as DynamoDB does.
type Params struct {
	Names  map[string]string
	Values map[string]ddb.Value
	// unexported: usage bookkeeping.
	usedNames, usedValues map[string]bool
	// parsed counts the expressions parsed with these parameters; keysErr
	// is the verdict on the maps' keys, checked once (keysChecked).
	parsed      int
	keysChecked bool
	keysErr     error
}

// NewParams returns the parameters of one request.
func NewParams(names map[string]string, values map[string]ddb.Value) *Params {
	return &Params{Names: names, Values: values, usedNames: map[string]bool{}, usedValues: map[string]bool{}}
}

// Kind names the request parameter an expression came from, for messages
// ("Invalid ConditionExpression: ...").
type Kind string

// The expression parameters.
const (
	KindCondition    Kind = "ConditionExpression"
	KindFilter       Kind = "FilterExpression"
	KindKeyCondition Kind = "KeyConditionExpression"
	KindProjection   Kind = "ProjectionExpression"
	KindUpdate       Kind = "UpdateExpression"
)

// PathElem is one step of a document path: a map key (Name) or a list
// index (Index >= 0, Name "").
type PathElem struct {
	Name  string
	Index int
}

// Path is a document path such as a.b[2].c, with names already resolved
// from ExpressionAttributeNames.
type Path []PathElem

// Condition is a parsed condition or filter expression.
type Condition struct {
	root node
}

// Projection is a parsed projection (or AttributesToGet).
type Projection struct {
	Paths []Path
}

// Update is a parsed update expression (or AttributeUpdates).
type Update struct {
	actions []action
}

// KeyCondition is a parsed key condition: equality on the partition key and
// at most one condition on the sort key.
type KeyCondition struct {
	// PartitionKey is the value the partition key equals.
	PartitionKey ddb.Value
	// Sort is nil when the sort key is not constrained.
	Sort *SortCondition
}

// SortOp is a key condition operator on the sort key.
type SortOp int

// The sort key operators.
const (
	SortEQ SortOp = iota + 1
	SortLT
	SortLE
	SortGT
	SortGE
	SortBetween
	SortBeginsWith
)

// SortCondition constrains the sort key: Op with Values[0] (and Values[1]
// for BETWEEN).
type SortCondition struct {
	Op     SortOp
	Values []ddb.Value
}

// Legacy parameters (DynamoDB's pre-expression API).

// ExpectedValue is one entry of Expected (PutItem, UpdateItem, DeleteItem).
type ExpectedValue struct {
	// Value with Exists (nil = true) is the oldest form.
	Value  ddb.Value
	Exists *bool
	// ComparisonOperator with AttributeValueList is the newer form.
	ComparisonOperator string
	AttributeValueList []ddb.Value
}

// FilterCondition is one entry of QueryFilter, ScanFilter or KeyConditions.
type FilterCondition struct {
	ComparisonOperator string
	AttributeValueList []ddb.Value
}

// AttributeUpdate is one entry of AttributeUpdates (UpdateItem).
type AttributeUpdate struct {
	// Action is PUT (default), ADD or DELETE.
	Action string
	Value  ddb.Value
}

// ReturnValues selects what a write returns.
type ReturnValues int

// The ReturnValues options.
const (
	ReturnNone ReturnValues = iota
	ReturnAllOld
	ReturnUpdatedOld
	ReturnAllNew
	ReturnUpdatedNew
)
