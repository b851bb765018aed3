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
	if len(leaves) > 2 {
		return nil, keyErr("Conditions can be of length 1 or 2 only")
	}
	kc := &KeyCondition{}
	var sawPK, sawSK bool
	for _, leaf := range leaves {
		name, sc, err := keyLeaf(leaf)
		if err != nil {
			return nil, err
		}
		var attr ddb.KeyAttribute
		switch {
		case name == ks.PartitionKey.Name:
			if sawPK {
				return nil, keyErr("KeyConditionExpressions must only contain one condition per key")
			}
			sawPK, attr = true, ks.PartitionKey
			if sc.Op != SortEQ {
				return nil, keyErr("Query key condition not supported")
			}
			kc.PartitionKey = sc.Values[0]
		case ks.HasSortKey() && name == ks.SortKey.Name:
			if sawSK {
				return nil, keyErr("KeyConditionExpressions must only contain one condition per key")
			}
			sawSK, attr = true, ks.SortKey
			kc.Sort = sc
		default:
			return nil, keyErr("Query key condition not supported")
		}
		for _, v := range sc.Values {
			if v.Type() != attr.Type {
				return nil, keyErr("One or more parameter values were invalid: Condition parameter type does not match schema type")
			}
			if empty(v) {
				return nil, keyErr("One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty " + emptyKind(v) + " value. Key: " + attr.Name)
			}
		}
	}
	if !sawPK {
		return nil, keyErr("Query condition missed key schema element: " + ks.PartitionKey.Name)
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
// constrains and how.
func keyLeaf(n node) (string, *SortCondition, error) {
	switch n := n.(type) {
	case compareNode:
		op, ok := sortOps[n.op]
		if !ok {
			return "", nil, keyErr("Invalid operator used in KeyConditionExpression: " + n.op)
		}
		name, v, swapped, err := keyOperands(n.l, n.r)
		if err != nil {
			return "", nil, err
		}
		if swapped {
			op = flipped[op]
		}
		return name, &SortCondition{Op: op, Values: []ddb.Value{v}}, nil
	case betweenNode:
		name, err := keyPath(n.v)
		if err != nil {
			return "", nil, err
		}
		lo, lok := n.lo.(valueOperand)
		hi, hok := n.hi.(valueOperand)
		if !lok || !hok {
			return "", nil, keyErr("Query key condition not supported")
		}
		return name, &SortCondition{Op: SortBetween, Values: []ddb.Value{lo.value, hi.value}}, nil
	case funcNode:
		if n.name != "begins_with" {
			return "", nil, keyErr("Invalid operator used in KeyConditionExpression: " + n.name)
		}
		name, err := keyPath(n.args[0])
		if err != nil {
			return "", nil, err
		}
		v, ok := n.args[1].(valueOperand)
		if !ok {
			return "", nil, keyErr("Query key condition not supported")
		}
		return name, &SortCondition{Op: SortBeginsWith, Values: []ddb.Value{v.value}}, nil
	}
	return "", nil, keyErr("Query key condition not supported")
}

// keyOperands finds the key attribute and the value of a comparison,
// whichever side each is on.
func keyOperands(l, r operand) (name string, v ddb.Value, swapped bool, err error) {
	if lv, ok := l.(valueOperand); ok {
		name, err = keyPath(r)
		return name, lv.value, true, err
	}
	name, err = keyPath(l)
	if err != nil {
		return "", nil, false, err
	}
	rv, ok := r.(valueOperand)
	if !ok {
		return "", nil, false, keyErr("Query key condition not supported")
	}
	return name, rv.value, false, nil
}

func keyPath(op operand) (string, error) {
	switch op := op.(type) {
	case pathOperand:
		if len(op.path) != 1 || op.path[0].Name == "" {
			return "", keyErr("KeyConditionExpressions cannot have conditions on nested attributes")
		}
		return op.path[0].Name, nil
	case sizeOperand:
		return "", keyErr("Invalid operator used in KeyConditionExpression: size")
	}
	return "", keyErr("Query key condition not supported")
}
