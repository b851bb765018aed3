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
