package expr

import (
	"bytes"
	"slices"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// The legacy parameters (Expected, QueryFilter, ScanFilter, KeyConditions,
// AttributeUpdates, AttributesToGet) convert into the same syntax tree as
// the expressions, so one evaluator serves both. Their values are
// valueOperands without a name. Conditions on several attributes are
// joined in attribute-name order, so errors and evaluation are
// deterministic. Messages are DynamoDB's (checked against dynalite, whose
// validation mirrors DynamoDB's answers).

// dynalite deviates on Expected with ConditionalOperator OR: it fails the
// condition as soon as one entry is false, so {x = 5 OR y missing} on an
// item without y fails there and holds in DynamoDB (and here).

const invalidParam = "One or more parameter values were invalid: "

// comparisonOperators lists the legacy operators, in the order DynamoDB's
// enum error lists them.
var comparisonOperators = []string{"IN", "NULL", "BETWEEN", "LT", "NOT_CONTAINS", "EQ", "GT", "NOT_NULL", "NE", "LE", "BEGINS_WITH", "GE", "CONTAINS"}

// filterTypes are the value types each operator accepts in QueryFilter,
// ScanFilter and KeyConditions (Expected does not restrict them: EQ and NE
// there compare any type, lists and maps included).
var filterTypes = map[string][]ddb.Type{
	"EQ":           {ddb.TypeS, ddb.TypeN, ddb.TypeB, ddb.TypeSS, ddb.TypeNS, ddb.TypeBS},
	"NE":           {ddb.TypeS, ddb.TypeN, ddb.TypeB, ddb.TypeSS, ddb.TypeNS, ddb.TypeBS},
	"LE":           {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"LT":           {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"GE":           {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"GT":           {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"CONTAINS":     {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"NOT_CONTAINS": {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"BEGINS_WITH":  {ddb.TypeS, ddb.TypeB},
	"IN":           {ddb.TypeS, ddb.TypeN, ddb.TypeB},
	"BETWEEN":      {ddb.TypeS, ddb.TypeN, ddb.TypeB},
}

func enumError(value, at string, set string) error {
	return &Error{Message: "1 validation error detected: Value '" + value + "' at '" + at +
		"' failed to satisfy constraint: Member must satisfy enum value set: [" + set + "]"}
}

// lowerFirst turns a parameter name into the member name DynamoDB's
// validation messages use (ScanFilter → scanFilter).
func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// parseConditionalOperator checks ConditionalOperator; it reports whether
// it is OR.
func parseConditionalOperator(op string) (or bool, err error) {
	switch op {
	case "", "AND":
		return false, nil
	case "OR":
		return true, nil
	}
	return false, enumError(op, "conditionalOperator", "OR, AND")
}

// checkArgs checks an operator's argument count, that the arguments share
// one type, and that BETWEEN's bounds are in order.
func checkArgs(op string, vals []ddb.Value) error {
	ok := false
	switch op {
	case "EQ", "NE", "LE", "LT", "GE", "GT", "CONTAINS", "NOT_CONTAINS", "BEGINS_WITH":
		ok = len(vals) == 1
	case "NULL", "NOT_NULL":
		ok = len(vals) == 0
	case "IN":
		ok = len(vals) > 0
	case "BETWEEN":
		ok = len(vals) == 2
	}
	if !ok {
		return &Error{Message: invalidParam + "Invalid number of argument(s) for the " + op + " ComparisonOperator"}
	}
	for _, v := range vals[min(1, len(vals)):] {
		if v.Type() != vals[0].Type() {
			return &Error{Message: invalidParam + "AttributeValues inside AttributeValueList must be of same type"}
		}
	}
	if op == "BETWEEN" && compareScalars(vals[0], vals[1]) > 0 {
		return &Error{Message: "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"}
	}
	return nil
}

// compareScalars orders two values of the same scalar type (S, N or B) as
// DynamoDB does; other values compare as equal.
func compareScalars(a, b ddb.Value) int {
	switch x := a.(type) {
	case ddb.S:
		if y, ok := b.(ddb.S); ok {
			return strings.Compare(string(x), string(y))
		}
	case ddb.N:
		if y, ok := b.(ddb.N); ok {
			return x.Cmp(y)
		}
	case ddb.B:
		if y, ok := b.(ddb.B); ok {
			return bytes.Compare(x, y)
		}
	}
	return 0
}

// legacyNode is the condition "attribute op vals". NE and NOT_CONTAINS hold
// when the attribute is missing, as in DynamoDB's legacy API.
func legacyNode(attr, op string, vals []ddb.Value) node {
	p := pathOperand{path: Path{{Name: attr}}}
	v := func(i int) operand { return valueOperand{value: vals[i]} }
	missing := funcNode{name: "attribute_not_exists", args: []operand{p}}
	switch op {
	case "EQ":
		return compareNode{op: "=", l: p, r: v(0)}
	case "NE":
		return orNode{l: missing, r: compareNode{op: "<>", l: p, r: v(0)}}
	case "LE":
		return compareNode{op: "<=", l: p, r: v(0)}
	case "LT":
		return compareNode{op: "<", l: p, r: v(0)}
	case "GE":
		return compareNode{op: ">=", l: p, r: v(0)}
	case "GT":
		return compareNode{op: ">", l: p, r: v(0)}
	case "NOT_NULL":
		return funcNode{name: "attribute_exists", args: []operand{p}}
	case "NULL":
		return missing
	case "CONTAINS":
		return funcNode{name: "contains", args: []operand{p, v(0)}}
	case "NOT_CONTAINS":
		return orNode{l: missing, r: notNode{x: funcNode{name: "contains", args: []operand{p, v(0)}}}}
	case "BEGINS_WITH":
		return funcNode{name: "begins_with", args: []operand{p, v(0)}}
	case "IN":
		list := make([]operand, len(vals))
		for i := range vals {
			list[i] = v(i)
		}
		return inNode{v: p, list: list}
	case "BETWEEN":
		return betweenNode{v: p, lo: v(0), hi: v(1)}
	}
	panic("expr: unchecked legacy operator " + op)
}

// joinNodes joins conditions with AND or OR; nil for none.
func joinNodes(nodes []node, or bool) *Condition {
	if len(nodes) == 0 {
		return nil
	}
	root := nodes[0]
	for _, n := range nodes[1:] {
		if or {
			root = orNode{l: root, r: n}
		} else {
			root = andNode{l: root, r: n}
		}
	}
	return &Condition{root: root}
}

// FromExpected converts the legacy Expected parameter (with
// ConditionalOperator AND/OR, "" = AND) into a condition; nil (matches
// everything) when exp is empty. Each entry is either {Value, Exists}
// (Exists false: the attribute must not exist; otherwise it must equal
// Value) or {ComparisonOperator, AttributeValueList} (or Value as the
// single argument).
func FromExpected(exp map[string]ExpectedValue, conditionalOperator string) (*Condition, error) {
	or, err := parseConditionalOperator(conditionalOperator)
	if err != nil {
		return nil, err
	}
	var nodes []node
	for _, attr := range sortedKeys(exp) {
		e := exp[attr]
		if e.AttributeValueList != nil && e.Value != nil {
			return nil, &Error{Message: invalidParam + "Value and AttributeValueList cannot be used together for Attribute: " + attr}
		}
		if e.ComparisonOperator == "" {
			if e.AttributeValueList != nil {
				return nil, &Error{Message: invalidParam + "AttributeValueList can only be used with a ComparisonOperator for Attribute: " + attr}
			}
			exists := e.Exists == nil || *e.Exists
			switch {
			case exists && e.Value == nil:
				word := "null"
				if e.Exists != nil {
					word = "true"
				}
				return nil, &Error{Message: invalidParam + "Value must be provided when Exists is " + word + " for Attribute: " + attr}
			case !exists && e.Value != nil:
				return nil, &Error{Message: invalidParam + "Value cannot be used when Exists is false for Attribute: " + attr}
			case !exists:
				nodes = append(nodes, legacyNode(attr, "NULL", nil))
			default:
				nodes = append(nodes, legacyNode(attr, "EQ", []ddb.Value{e.Value}))
			}
			continue
		}
		if !slices.Contains(comparisonOperators, e.ComparisonOperator) {
			return nil, enumError(e.ComparisonOperator, "expected."+attr+".member.comparisonOperator", strings.Join(comparisonOperators, ", "))
		}
		if e.Exists != nil {
			return nil, &Error{Message: invalidParam + "Exists and ComparisonOperator cannot be used together for Attribute: " + attr}
		}
		vals := e.AttributeValueList
		if vals == nil && e.Value != nil {
			vals = []ddb.Value{e.Value}
		}
		if vals == nil && e.ComparisonOperator != "NULL" && e.ComparisonOperator != "NOT_NULL" {
			return nil, &Error{Message: invalidParam + "Value or AttributeValueList must be used with ComparisonOperator: " + e.ComparisonOperator + " for Attribute: " + attr}
		}
		if err := checkArgs(e.ComparisonOperator, vals); err != nil {
			return nil, err
		}
		nodes = append(nodes, legacyNode(attr, e.ComparisonOperator, vals))
	}
	return joinNodes(nodes, or), nil
}

// checkFilterCondition checks one entry of QueryFilter, ScanFilter or
// KeyConditions (param names it, for messages).
func checkFilterCondition(param, attr string, c FilterCondition) error {
	at := lowerFirst(param) + "." + attr + ".member.comparisonOperator"
	if c.ComparisonOperator == "" {
		return &Error{Message: "1 validation error detected: Value null at '" + at + "' failed to satisfy constraint: Member must not be null"}
	}
	if !slices.Contains(comparisonOperators, c.ComparisonOperator) {
		return enumError(c.ComparisonOperator, at, strings.Join(comparisonOperators, ", "))
	}
	if err := checkArgs(c.ComparisonOperator, c.AttributeValueList); err != nil {
		return err
	}
	for _, v := range c.AttributeValueList {
		if !slices.Contains(filterTypes[c.ComparisonOperator], v.Type()) {
			return &Error{Message: invalidParam + "ComparisonOperator " + c.ComparisonOperator + " is not valid for " + v.Type().String() + " AttributeValue type"}
		}
	}
	return nil
}

// FromFilter converts QueryFilter or ScanFilter (kind names which, for
// messages) into a condition; nil (matches everything) when conds is
// empty.
func FromFilter(kind string, conds map[string]FilterCondition, conditionalOperator string) (*Condition, error) {
	or, err := parseConditionalOperator(conditionalOperator)
	if err != nil {
		return nil, err
	}
	var nodes []node
	for _, attr := range sortedKeys(conds) {
		c := conds[attr]
		if err := checkFilterCondition(kind, attr, c); err != nil {
			return nil, err
		}
		nodes = append(nodes, legacyNode(attr, c.ComparisonOperator, c.AttributeValueList))
	}
	return joinNodes(nodes, or), nil
}

// legacySortOps maps the legacy operators allowed on a sort key.
var legacySortOps = map[string]SortOp{
	"EQ": SortEQ, "LT": SortLT, "LE": SortLE, "GT": SortGT, "GE": SortGE,
	"BETWEEN": SortBetween, "BEGINS_WITH": SortBeginsWith,
}

// FromKeyConditions converts the legacy KeyConditions parameter: EQ on the
// partition key and, optionally, EQ, LE, LT, GE, GT, BEGINS_WITH or
// BETWEEN on the sort key, with values of the keys' types.
func FromKeyConditions(conds map[string]FilterCondition, ks ddb.KeySchema) (*KeyCondition, error) {
	for _, attr := range sortedKeys(conds) {
		if err := checkFilterCondition("KeyConditions", attr, conds[attr]); err != nil {
			return nil, err
		}
	}
	if len(conds) != 1 && len(conds) != 2 {
		return nil, &Error{Message: "Conditions can be of length 1 or 2 only"}
	}
	if !ks.HasSortKey() && len(conds) > 1 {
		return nil, &Error{Message: "Query key condition not supported"}
	}
	kc := &KeyCondition{}
	keys := []ddb.KeyAttribute{ks.PartitionKey}
	if ks.HasSortKey() {
		keys = append(keys, ks.SortKey)
	}
	for i, key := range keys {
		c, ok := conds[key.Name]
		if !ok {
			if i == 0 || len(conds) > 1 {
				return nil, &Error{Message: "Query condition missed key schema element: " + key.Name}
			}
			continue
		}
		op, indexable := legacySortOps[c.ComparisonOperator]
		if !indexable {
			return nil, &Error{Message: "Attempted conditional constraint is not an indexable operation"}
		}
		for _, v := range c.AttributeValueList {
			if v.Type() != key.Type {
				return nil, &Error{Message: invalidParam + "Condition parameter type does not match schema type"}
			}
		}
		if i == 0 {
			if op != SortEQ {
				return nil, &Error{Message: "Query key condition not supported"}
			}
			kc.PartitionKey = c.AttributeValueList[0]
			continue
		}
		kc.Sort = &SortCondition{Op: op, Values: slices.Clone(c.AttributeValueList)}
	}
	return kc, nil
}

// FromAttributeUpdates converts the legacy AttributeUpdates parameter:
// PUT (the default) sets the attribute, DELETE without a Value removes it
// and with a set removes those members, ADD adds a number, adds members to
// a set or appends to a list (creating the attribute when it is missing).
// An empty map is an update that changes nothing.
func FromAttributeUpdates(upd map[string]AttributeUpdate) (*Update, error) {
	u := &Update{}
	for _, attr := range sortedKeys(upd) {
		au := upd[attr]
		p := Path{{Name: attr}}
		switch au.Action {
		case "", "PUT", "ADD", "DELETE":
		default:
			return nil, enumError(au.Action, "attributeUpdates."+attr+".member.action", "ADD, PUT, DELETE")
		}
		if au.Value == nil {
			if au.Action != "DELETE" {
				return nil, &Error{Message: invalidParam + "Only DELETE action is allowed when no attribute value is specified"}
			}
			u.actions = append(u.actions, action{kind: actionRemove, path: p})
			continue
		}
		v := valueOperand{value: au.Value}
		switch au.Action {
		case "", "PUT":
			u.actions = append(u.actions, action{kind: actionSet, path: p, value: v})
		case "ADD":
			switch au.Value.Type() {
			case ddb.TypeN, ddb.TypeSS, ddb.TypeNS, ddb.TypeBS:
				u.actions = append(u.actions, action{kind: actionAdd, path: p, value: v})
			case ddb.TypeL:
				// Appending to a list, which may be missing:
				// SET a = list_append(if_not_exists(a, []), v).
				appendOp := listAppendOperand{l: ifNotExistsOperand{path: p, def: valueOperand{value: ddb.L{}}}, r: v}
				u.actions = append(u.actions, action{kind: actionSet, path: p, value: appendOp})
			default:
				return nil, &Error{Message: invalidParam + "ADD action is not supported for the type " + au.Value.Type().String()}
			}
		case "DELETE":
			switch au.Value.Type() {
			case ddb.TypeSS, ddb.TypeNS, ddb.TypeBS:
				u.actions = append(u.actions, action{kind: actionDelete, path: p, value: v})
			default:
				return nil, &Error{Message: invalidParam + "DELETE action with value is not supported for the type " + au.Value.Type().String()}
			}
		}
	}
	return u, nil
}

// FromAttributesToGet converts the legacy AttributesToGet parameter: each
// entry is a top-level attribute name, taken literally (a dot is part of
// the name). nil returns a nil *Projection (every attribute); an empty
// list, more than 255 names or a duplicate name is an error.
func FromAttributesToGet(names []string) (*Projection, error) {
	if names == nil {
		return nil, nil
	}
	if len(names) == 0 || len(names) > 255 {
		constraint := "Member must have length greater than or equal to 1"
		if len(names) > 255 {
			constraint = "Member must have length less than or equal to 255"
		}
		return nil, &Error{Message: "1 validation error detected: Value '[" + strings.Join(names, ", ") +
			"]' at 'attributesToGet' failed to satisfy constraint: " + constraint}
	}
	pr := &Projection{Paths: make([]Path, 0, len(names))}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			return nil, &Error{Message: invalidParam + "Duplicate value in attribute name: " + name}
		}
		seen[name] = true
		pr.Paths = append(pr.Paths, Path{{Name: name}})
	}
	return pr, nil
}
