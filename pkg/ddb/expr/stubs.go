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

// ParseCondition parses a ConditionExpression or FilterExpression (kind
// says which, for messages) and records the names and values it uses in p.
func ParseCondition(kind Kind, s string, p *Params) (*Condition, error) { return nil, errTODO }

// Match evaluates the condition on an item (nil or empty: no item). A nil
// *Condition matches everything.
func (c *Condition) Match(it ddb.Item) bool { return c == nil }

// ParseProjection parses a ProjectionExpression.
func ParseProjection(s string, p *Params) (*Projection, error) { return nil, errTODO }

// Apply returns the projection of it (a new item; it is not changed). A
// nil *Projection returns it unchanged.
func (pr *Projection) Apply(it ddb.Item) ddb.Item { return it }

// ParseUpdate parses an UpdateExpression.
func ParseUpdate(s string, p *Params) (*Update, error) { return nil, errTODO }

// ParseKeyCondition parses a KeyConditionExpression against the table's
// key schema: equality on the partition key, optionally one of =, <, <=,
// >, >=, BETWEEN, begins_with on the sort key; values must have the key's
// type.
func ParseKeyCondition(s string, p *Params, ks ddb.KeySchema) (*KeyCondition, error) {
	return nil, errTODO
}

// Check reports names or values that were defined but not used, or used
// but not defined, in DynamoDB's words. Call it after parsing every
// expression of the request.
func (p *Params) Check() error { return nil }
