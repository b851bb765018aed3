package expr

import (
	"slices"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Apply returns the projection of it (a new item; it is not changed, but
// the projected values are shared with it, not copied). A nil *Projection
// returns it unchanged; a nil item projects to nil.
//
// As in DynamoDB, a path that does not exist in the item is left out; a
// nested path keeps the maps and lists around the value it selects, with
// only the selected members: a.b, a.c keeps map a with members b and c, and
// l[1], l[3] keeps list l as the two selected elements, in index order.
func (pr *Projection) Apply(it ddb.Item) ddb.Item {
	if pr == nil || it == nil {
		return it
	}
	root := &projNode{}
	for _, p := range pr.Paths {
		root.add(ddb.M(it), p)
	}
	out := ddb.Item{}
	for name, n := range root.names {
		out[name] = n.value()
	}
	return out
}

// projNode is one selected value, or the selected members of a map or a
// list (keyed by name or index).
type projNode struct {
	leaf  ddb.Value
	names map[string]*projNode
	index map[int]*projNode
}

// add selects path within v (a map or list) if it exists there.
func (n *projNode) add(v ddb.Value, path Path) {
	if _, ok := walk(v, path); !ok || len(path) == 0 {
		return
	}
	cur := n
	for i, e := range path {
		if cur.leaf != nil {
			return // an overlapping path already selected the whole value
		}
		child, _ := walk(v, path[i:i+1])
		next := cur.child(e)
		if i == len(path)-1 {
			next.leaf, next.names, next.index = child, nil, nil
			return
		}
		cur, v = next, child
	}
}

// child returns the node for member e, adding it if needed.
func (n *projNode) child(e PathElem) *projNode {
	if e.Name != "" {
		if n.names == nil {
			n.names = map[string]*projNode{}
		}
		c := n.names[e.Name]
		if c == nil {
			c = &projNode{}
			n.names[e.Name] = c
		}
		return c
	}
	if n.index == nil {
		n.index = map[int]*projNode{}
	}
	c := n.index[e.Index]
	if c == nil {
		c = &projNode{}
		n.index[e.Index] = c
	}
	return c
}

func (n *projNode) value() ddb.Value {
	switch {
	case n.leaf != nil:
		return n.leaf
	case n.index != nil:
		idx := make([]int, 0, len(n.index))
		for i := range n.index {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		l := make(ddb.L, len(idx))
		for k, i := range idx {
			l[k] = n.index[i].value()
		}
		return l
	default:
		m := make(ddb.M, len(n.names))
		for name, c := range n.names {
			m[name] = c.value()
		}
		return m
	}
}
