package expr

// This file is the API the expression engine implements; every function
// below is replaced by its implementation (ast.go, parse.go, eval.go,
// update.go, legacy.go). It exists so the endpoint compiles against the
// contract while the engine is written.

import (
	"errors"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

var errTODO = errors.New("expr: not implemented yet")

// Apply returns the item after the update (a new item; old is not
// changed; old may be nil for a missing item). Errors are *Error with
// DynamoDB's message, e.g. "An operand in the update expression has an
// incorrect data type".
func (u *Update) Apply(old ddb.Item) (ddb.Item, error) { return nil, errTODO }

// Touches reports whether the update sets, removes, adds to or deletes from
// the top-level attribute name (the endpoint refuses updates of key
// attributes: "Cannot update attribute pk. This attribute is part of the
// key").
func (u *Update) Touches(name string) bool { return false }

// Returned is what a write returns for rv, given the item before and after
// it: ALL_OLD the whole old item, ALL_NEW the whole new item, UPDATED_OLD
// and UPDATED_NEW only the attributes the update touched (as DynamoDB
// defines them), NONE nil.
func (u *Update) Returned(old, new ddb.Item, rv ReturnValues) ddb.Item { return nil }

// ParseReturnValues parses ReturnValues ("" is NONE).
func ParseReturnValues(s string) (ReturnValues, error) { return ReturnNone, errTODO }

// FromExpected converts the legacy Expected parameter (with
// ConditionalOperator AND/OR, "" = AND) into a condition.
func FromExpected(exp map[string]ExpectedValue, conditionalOperator string) (*Condition, error) {
	return nil, errTODO
}

// FromFilter converts QueryFilter or ScanFilter (kind names which, for
// messages) into a condition.
func FromFilter(kind string, conds map[string]FilterCondition, conditionalOperator string) (*Condition, error) {
	return nil, errTODO
}

// FromKeyConditions converts the legacy KeyConditions parameter.
func FromKeyConditions(conds map[string]FilterCondition, ks ddb.KeySchema) (*KeyCondition, error) {
	return nil, errTODO
}

// FromAttributeUpdates converts the legacy AttributeUpdates parameter.
func FromAttributeUpdates(upd map[string]AttributeUpdate) (*Update, error) { return nil, errTODO }

// FromAttributesToGet converts the legacy AttributesToGet parameter.
func FromAttributesToGet(names []string) (*Projection, error) { return nil, errTODO }
