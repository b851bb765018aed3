package expr

import (
	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// ParseKeyCondition parses a KeyConditionExpression against the table's
// key schema: equality on the partition key, optionally one of =, <, <=,
// >, >=, BETWEEN, begins_with on the sort key, joined by AND; values must
// have the key's type.
func ParseKeyCondition(s string, p *Params, ks ddb.KeySchema) (*KeyCondition, error) {
	ps, err := newParser(KindKeyCondition, s, p, false)
	if err != nil {
		return nil, err
	}
	root, err := ps.condition()
	if err != nil {
		return nil, err
	}
	var leaves []node
	var flatten func(n node) error
	flatten = func(n node) error {
		switch n := n.(type) {
		case andNode:
			if err := flatten(n.l); err != nil {
				return err
			}
			return flatten(n.r)
		case orNode:
			return keyErr("Invalid operator used in KeyConditionExpression: OR")
		case notNode:
			return keyErr("Invalid operator used in KeyConditionExpression: NOT")
		case inNode:
			return keyErr("Invalid operator used in KeyConditionExpression: IN")
		}
		leaves = append(leaves, n)
		return nil
	}
	if err := flatten(root); err != nil {
		return nil, err
	}
	conds := map[string]*SortCondition{}
	for _, leaf := range leaves {
		name, sc, err := keyLeaf(leaf)
		if err != nil {
			return nil, err
		}
		if conds[name] != nil {
			return nil, keyErr("KeyConditionExpressions must only contain one condition per key")
		}
		conds[name] = sc
	}
	if len(conds) > 2 {
		return nil, keyErr("Conditions can be of length 1 or 2 only")
	}
	if !ks.HasSortKey() && len(conds) > 1 {
		return nil, keyErr("Query key condition not supported")
	}
	kc := &KeyCondition{}
	for i, attr := range []ddb.KeyAttribute{ks.PartitionKey, ks.SortKey} {
		if i == 1 && !ks.HasSortKey() {
			break
		}
		sc := conds[attr.Name]
		if sc == nil {
			if i == 0 || len(conds) > 1 {
				return nil, keyErr("Query condition missed key schema element: " + attr.Name)
			}
			continue
		}
		for _, v := range sc.Values {
			if v.Type() != attr.Type {
				return nil, keyErr("One or more parameter values were invalid: Condition parameter type does not match schema type")
			}
			if empty(v) {
				return nil, keyErr("One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty " + emptyKind(v) + " value. Key: " + attr.Name)
			}
		}
		if i == 0 {
			if sc.Op != SortEQ {
				return nil, keyErr("Query key condition not supported")
			}
			kc.PartitionKey = sc.Values[0]
		} else {
			kc.Sort = sc
		}
	}
	return kc, nil
}

func keyErr(msg string) error { return &Error{Message: msg} }

func empty(v ddb.Value) bool {
	switch x := v.(type) {
	case ddb.S:
		return x == ""
	case ddb.B:
		return len(x) == 0
	}
	return false
}

func emptyKind(v ddb.Value) string {
	if v.Type() == ddb.TypeB {
		return "binary"
	}
	return "string"
}

var sortOps = map[string]SortOp{"=": SortEQ, "<": SortLT, "<=": SortLE, ">": SortGT, ">=": SortGE}

// flipped is the operator with its operands swapped (:v < k is k > :v).
var flipped = map[SortOp]SortOp{SortEQ: SortEQ, SortLT: SortGT, SortLE: SortGE, SortGT: SortLT, SortGE: SortLE}

// keyLeaf reads one condition of a key condition: the key attribute it
// constrains and how. Its messages are DynamoDB's (as dynalite reproduces
// them).
func keyLeaf(n node) (string, *SortCondition, error) {
	var ops []operand
	var op SortOp
	switch n := n.(type) {
	case compareNode:
		var ok bool
		if op, ok = sortOps[n.op]; !ok {
			return "", nil, keyErr("Invalid operator used in KeyConditionExpression: " + n.op)
		}
		ops = []operand{n.l, n.r}
	case betweenNode:
		op, ops = SortBetween, []operand{n.v, n.lo, n.hi}
		if _, ok := n.v.(pathOperand); !ok {
			if err := nested(ops); err != nil {
				return "", nil, err
			}
			return "", nil, keyErr("Invalid condition in KeyConditionExpression: BETWEEN operator must have the key attribute as its first operand")
		}
	case funcNode:
		if n.name != "begins_with" {
			return "", nil, keyErr("Invalid operator used in KeyConditionExpression: " + n.name)
		}
		op, ops = SortBeginsWith, n.args
		if _, ok := n.args[0].(pathOperand); !ok {
			if err := nested(ops); err != nil {
				return "", nil, err
			}
			return "", nil, keyErr("Invalid condition in KeyConditionExpression: begins_with operator must have the key attribute as its first operand")
		}
	default:
		return "", nil, keyErr("Query key condition not supported")
	}
	if err := nested(ops); err != nil {
		return "", nil, err
	}
	name, at := "", -1
	var vals []ddb.Value
	for i, o := range ops {
		switch o := o.(type) {
		case pathOperand:
			if name != "" {
				return "", nil, keyErr("Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition")
			}
			if len(o.path) > 1 || o.path[0].Name == "" {
				return "", nil, keyErr("KeyConditionExpressions cannot have conditions on nested attributes")
			}
			name, at = o.path[0].Name, i
		case valueOperand:
			vals = append(vals, o.value)
		}
	}
	if name == "" {
		return "", nil, keyErr("Invalid condition in KeyConditionExpression: No key attribute specified")
	}
	if at != 0 {
		op = flipped[op]
	}
	return name, &SortCondition{Op: op, Values: vals}, nil
}

// nested refuses size() in a key condition.
func nested(ops []operand) error {
	for _, o := range ops {
		if _, ok := o.(sizeOperand); ok {
			return keyErr("KeyConditionExpressions cannot contain nested operations")
		}
	}
	return nil
}
