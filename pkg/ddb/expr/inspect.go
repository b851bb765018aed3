package expr

import "slices"

// Attributes returns the top-level attribute names the condition reads,
// sorted, each once: the endpoint uses it to refuse a Query's
// FilterExpression on a key attribute ("Filter Expression can only contain
// non-primary key attributes: Primary key attribute: pk"). A nil
// *Condition reads none.
func (c *Condition) Attributes() []string {
	if c == nil || c.root == nil {
		return nil
	}
	var names []string
	var walkNode func(n node)
	walkOp := func(op operand) {
		var p Path
		switch op := op.(type) {
		case pathOperand:
			p = op.path
		case sizeOperand:
			p = op.path
		}
		if len(p) > 0 && p[0].Name != "" {
			names = append(names, p[0].Name)
		}
	}
	walkNode = func(n node) {
		switch n := n.(type) {
		case andNode:
			walkNode(n.l)
			walkNode(n.r)
		case orNode:
			walkNode(n.l)
			walkNode(n.r)
		case notNode:
			walkNode(n.x)
		case compareNode:
			walkOp(n.l)
			walkOp(n.r)
		case betweenNode:
			walkOp(n.v)
			walkOp(n.lo)
			walkOp(n.hi)
		case inNode:
			walkOp(n.v)
			for _, e := range n.list {
				walkOp(e)
			}
		case funcNode:
			for _, a := range n.args {
				walkOp(a)
			}
		}
	}
	walkNode(c.root)
	slices.Sort(names)
	return slices.Compact(names)
}
