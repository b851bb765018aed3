package expr

import (
	"bytes"
	"cmp"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Applying an update (UpdateExpression or AttributeUpdates) follows
// DynamoDB's rules:
//
//   - Every operand is evaluated against the item as it was before the
//     update ("SET a = :v, b = a" copies the old a), so a missing path on
//     the right-hand side is an error even if an earlier action sets it.
//   - List indexes in paths refer to the list as it was before the update:
//     "REMOVE a[1] SET a[3] = :v" on [0 1 2 3 4] replaces the old a[3] and
//     then removes the old a[1]. So actions that shift list elements
//     (REMOVE of an element, DELETE that empties a set held in a list) and
//     SETs past a list's end (which append, in index order) are deferred:
//     appends first, then removals deepest first and, within a list, from
//     the highest index down.
//   - A path whose parent does not exist, or is not a map (for .name) or a
//     list (for [i]), is invalid for update; REMOVE of a missing map entry
//     or of an index past the end does nothing.
//
// Where dynalite (our e2e reference) deviates, checked by hand against
// dynalite 4.x: it creates a missing item for a REMOVE-only update (DynamoDB
// does not; see CreatesItem), and it stores arithmetic results DynamoDB
// refuses (1E50 + 1 needs 51 digits, 9E125 + 9E125 exceeds the range: both
// "Number overflow" in DynamoDB).
//
// The old item is never changed: a top-level attribute is deep-copied
// before the first nested change to it, and values taken from operands
// are copied into the result.

// DynamoDB's messages for updates that cannot apply to the item.
const (
	msgInvalidPath = "The document path provided in the update expression is invalid for update"
	msgOperandType = "An operand in the update expression has an incorrect data type"
	msgNoAttribute = "The provided expression refers to an attribute that does not exist in the item"
	msgNesting     = "Nesting Levels have exceeded supported limits"
)

// Apply returns the item after the update (a new item; old is not
// changed; old may be nil for a missing item, and the result then holds
// only what the update wrote: the caller adds the key). Errors are *Error
// with DynamoDB's message, e.g. "An operand in the update expression has
// an incorrect data type". A nil *Update returns a copy of old.
// Attributes the update wrote are private to the result; the others are
// shared with old, so treat both items as read-only.
//
// DynamoDB quirk kept: on a missing item (old == nil) REMOVE of a nested
// path whose parent does not exist does nothing instead of failing.
func (u *Update) Apply(old ddb.Item) (ddb.Item, error) {
	out := make(ddb.Item, len(old)+1)
	maps.Copy(out, old)
	if u == nil {
		return out, nil
	}
	vals := make([]ddb.Value, len(u.actions))
	for i, a := range u.actions {
		if a.value == nil {
			continue
		}
		v, err := evalUpdateOperand(a.value, old)
		if err != nil {
			return nil, legacyError(a, err)
		}
		vals[i] = v
	}
	ap := applier{missing: old == nil, out: out, copied: map[string]bool{}}
	for i, a := range u.actions {
		if err := ap.apply(a, vals[i]); err != nil {
			return nil, legacyError(a, err)
		}
	}
	ap.finish()
	// Only the attributes the update wrote can have become invalid (too
	// deep a nesting, say); checking just those keeps a small change to a
	// large item cheap.
	written := make(ddb.Item, len(ap.copied))
	for name := range ap.copied {
		if v, ok := out[name]; ok {
			written[name] = v
		}
	}
	if err := written.Validate(); err != nil {
		var de *ddb.Error
		if errors.As(err, &de) && strings.Contains(de.Msg, "nested more than") {
			return nil, &Error{Message: msgNesting}
		}
		return nil, &Error{Message: "One or more parameter values were invalid: " + err.Error()}
	}
	return out, nil
}

// legacyError rewords a type error for AttributeUpdates, whose values
// (unlike ExpressionAttributeValues) have no name: DynamoDB's legacy API
// says "Type mismatch for attribute to update".
func legacyError(a action, err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Message != msgOperandType {
		return err
	}
	v := a.value
	if la, ok := v.(listAppendOperand); ok { // ADD of a list
		v = la.r
	}
	if vo, ok := v.(valueOperand); ok && vo.name == "" {
		return &Error{Message: "Type mismatch for attribute to update"}
	}
	return err
}

// Touches reports whether the update sets, removes, adds to or deletes from
// the top-level attribute name (the endpoint refuses updates of key
// attributes: "Cannot update attribute pk. This attribute is part of the
// key").
func (u *Update) Touches(name string) bool {
	if u == nil {
		return false
	}
	for _, a := range u.actions {
		if len(a.path) > 0 && a.path[0].Name == name {
			return true
		}
	}
	return false
}

// CreatesItem reports whether applying the update to a missing item
// creates it. DynamoDB writes nothing when every action is a REMOVE or a
// DELETE (there is nothing to remove from a missing item: UpdateItem
// succeeds, the item stays missing and ALL_NEW returns no Attributes),
// while an update with no actions at all (an empty AttributeUpdates)
// creates an item holding just the key.
func (u *Update) CreatesItem() bool {
	if u == nil || len(u.actions) == 0 {
		return true
	}
	for _, a := range u.actions {
		if a.kind == actionSet || a.kind == actionAdd {
			return true
		}
	}
	return false
}

// evalUpdateOperand evaluates the right-hand side of a SET (or the value of
// ADD and DELETE) against the old item.
func evalUpdateOperand(op operand, old ddb.Item) (ddb.Value, error) {
	switch o := op.(type) {
	case valueOperand:
		if o.value == nil {
			return nil, &Error{Message: "An expression attribute value used in expression is not defined; attribute value: " + o.name}
		}
		return o.value, nil
	case pathOperand:
		v, ok := resolve(old, o.path)
		if !ok {
			return nil, &Error{Message: msgNoAttribute}
		}
		return v, nil
	case arithOperand:
		l, err := evalUpdateOperand(o.l, old)
		if err != nil {
			return nil, err
		}
		r, err := evalUpdateOperand(o.r, old)
		if err != nil {
			return nil, err
		}
		ln, lok := l.(ddb.N)
		rn, rok := r.(ddb.N)
		if !lok || !rok {
			return nil, &Error{Message: msgOperandType}
		}
		var n ddb.N
		if o.op == '-' {
			n, err = ln.Sub(rn)
		} else {
			n, err = ln.Add(rn)
		}
		if err != nil {
			return nil, numberError(err)
		}
		return n, nil
	case ifNotExistsOperand:
		if v, ok := resolve(old, o.path); ok {
			return v, nil
		}
		return evalUpdateOperand(o.def, old)
	case listAppendOperand:
		l, err := evalUpdateOperand(o.l, old)
		if err != nil {
			return nil, err
		}
		r, err := evalUpdateOperand(o.r, old)
		if err != nil {
			return nil, err
		}
		ll, lok := l.(ddb.L)
		rl, rok := r.(ddb.L)
		if !lok || !rok {
			return nil, &Error{Message: msgOperandType}
		}
		out := make(ddb.L, 0, len(ll)+len(rl))
		return append(append(out, ll...), rl...), nil
	case sizeOperand:
		return nil, &Error{Message: "Invalid UpdateExpression: The function is not allowed in an update expression; function: size"}
	}
	return nil, &Error{Message: "Invalid UpdateExpression: unsupported operand"}
}

// numberError turns an arithmetic error into DynamoDB's message.
func numberError(err error) error {
	var de *ddb.Error
	if errors.As(err, &de) {
		return &Error{Message: de.Msg}
	}
	return &Error{Message: err.Error()}
}

// applier applies one update's actions to out, a private copy of the item.
type applier struct {
	missing bool // the item did not exist
	out     ddb.Item
	// copied marks the top-level attributes of out that are private deep
	// copies, safe to change in place: the ones the update wrote.
	copied   map[string]bool
	appends  []listAppend
	removals []listRemoval
}

// listAppend is a SET (or ADD) past the end of the list at path.
type listAppend struct {
	path  Path
	index int
	value ddb.Value
}

// listRemoval removes element index of the list at path, which had
// origLen elements before the update.
type listRemoval struct {
	path    Path
	index   int
	origLen int
}

func (ap *applier) apply(a action, v ddb.Value) error {
	if len(a.path) == 0 || a.path[0].Name == "" {
		return &Error{Message: msgInvalidPath}
	}
	top := a.path[0].Name
	if len(a.path) == 1 {
		existing, exists := ap.out[top]
		nv, del, err := combine(a.kind, existing, exists, v)
		if err != nil {
			return err
		}
		switch {
		case del:
			delete(ap.out, top)
		case nv != nil:
			ap.out[top] = nv
			ap.copied[top] = true
		}
		return nil
	}

	invalid := func() error {
		if a.kind == actionRemove && ap.missing {
			return nil
		}
		return &Error{Message: msgInvalidPath}
	}
	cur, ok := ap.out[top]
	if !ok {
		return invalid()
	}
	if !ap.copied[top] {
		cur = copyValue(cur)
		ap.out[top] = cur
		ap.copied[top] = true
	}
	parent, ok := walk(cur, a.path[1:len(a.path)-1])
	if !ok {
		return invalid()
	}
	last := a.path[len(a.path)-1]
	switch p := parent.(type) {
	case ddb.M:
		if last.Name == "" {
			return invalid()
		}
		existing, exists := p[last.Name]
		nv, del, err := combine(a.kind, existing, exists, v)
		if err != nil {
			return err
		}
		switch {
		case del:
			delete(p, last.Name)
		case nv != nil:
			p[last.Name] = nv
		}
	case ddb.L:
		if last.Name != "" || last.Index < 0 {
			return invalid()
		}
		listPath := a.path[:len(a.path)-1]
		if last.Index >= len(p) {
			nv, _, err := combine(a.kind, nil, false, v)
			if err != nil {
				return err
			}
			if nv != nil {
				ap.appends = append(ap.appends, listAppend{path: listPath, index: last.Index, value: nv})
			}
			return nil
		}
		nv, del, err := combine(a.kind, p[last.Index], true, v)
		if err != nil {
			return err
		}
		switch {
		case del:
			ap.removals = append(ap.removals, listRemoval{path: listPath, index: last.Index, origLen: len(p)})
		case nv != nil:
			p[last.Index] = nv
		}
	default:
		return invalid()
	}
	return nil
}

// combine computes what one action does to a value: the new value (nil:
// leave it as it is) or del to remove it.
func combine(kind actionKind, existing ddb.Value, exists bool, v ddb.Value) (nv ddb.Value, del bool, err error) {
	switch kind {
	case actionSet:
		return copyValue(v), false, nil
	case actionRemove:
		return nil, exists, nil
	case actionAdd:
		switch x := v.(type) {
		case ddb.N:
			if !exists {
				return x, false, nil
			}
			en, ok := existing.(ddb.N)
			if !ok {
				return nil, false, &Error{Message: msgOperandType}
			}
			sum, err := en.Add(x)
			if err != nil {
				return nil, false, numberError(err)
			}
			return sum, false, nil
		case ddb.SS, ddb.NS, ddb.BS:
			if !exists {
				return copyValue(x), false, nil
			}
			if existing.Type() != x.Type() {
				return nil, false, &Error{Message: msgOperandType}
			}
			return setUnion(existing, x), false, nil
		}
		return nil, false, &Error{Message: "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: " + typeWord(v)}
	case actionDelete:
		switch v.(type) {
		case ddb.SS, ddb.NS, ddb.BS:
		default:
			return nil, false, &Error{Message: "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: " + typeWord(v)}
		}
		if !exists {
			return nil, false, nil
		}
		if existing.Type() != v.Type() {
			return nil, false, &Error{Message: msgOperandType}
		}
		d := setDifference(existing, v)
		if d == nil {
			return nil, true, nil
		}
		return d, false, nil
	}
	return nil, false, &Error{Message: "Invalid UpdateExpression: unknown action"}
}

// typeWord names a type as DynamoDB's operand-type messages do (the
// parser's names; sets never reach here).
func typeWord(v ddb.Value) string {
	if v == nil {
		return "NULL"
	}
	if name, ok := updateTypeNames[v.Type()]; ok {
		return name
	}
	return v.Type().String()
}

// setUnion returns a ∪ b (same set type): a's members, then b's members a
// does not hold.
func setUnion(a, b ddb.Value) ddb.Value {
	switch x := a.(type) {
	case ddb.SS:
		out := slices.Clone(x)
		for _, s := range b.(ddb.SS) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out
	case ddb.NS:
		out := slices.Clone(x)
		for _, n := range b.(ddb.NS) {
			if !slices.Contains(out, n) { // Ns are canonical: == is numeric equality
				out = append(out, n)
			}
		}
		return out
	case ddb.BS:
		out := copyValue(x).(ddb.BS)
		for _, m := range b.(ddb.BS) {
			if !slices.ContainsFunc(out, func(o []byte) bool { return bytes.Equal(o, m) }) {
				out = append(out, slices.Clone(m))
			}
		}
		return out
	}
	return nil
}

// setDifference returns a \ b (same set type), or nil when it is empty.
func setDifference(a, b ddb.Value) ddb.Value {
	switch x := a.(type) {
	case ddb.SS:
		bs := b.(ddb.SS)
		out := slices.DeleteFunc(slices.Clone(x), func(s string) bool { return slices.Contains(bs, s) })
		if len(out) > 0 {
			return out
		}
	case ddb.NS:
		bs := b.(ddb.NS)
		out := slices.DeleteFunc(slices.Clone(x), func(n ddb.N) bool { return slices.Contains(bs, n) })
		if len(out) > 0 {
			return out
		}
	case ddb.BS:
		bs := b.(ddb.BS)
		out := slices.DeleteFunc(copyValue(x).(ddb.BS), func(m []byte) bool {
			return slices.ContainsFunc(bs, func(o []byte) bool { return bytes.Equal(o, m) })
		})
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// finish applies the deferred list changes: appends in index order, then
// removals deepest first and from the highest index down, so that every
// index still means what it meant in the old item.
func (ap *applier) finish() {
	slices.SortStableFunc(ap.appends, func(a, b listAppend) int { return cmp.Compare(a.index, b.index) })
	for _, a := range ap.appends {
		ap.updateAt(a.path, func(v ddb.Value) ddb.Value {
			if l, ok := v.(ddb.L); ok {
				return append(l, a.value)
			}
			return v
		})
	}
	slices.SortStableFunc(ap.removals, func(a, b listRemoval) int {
		if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
			return c
		}
		return cmp.Compare(b.index, a.index)
	})
	for i, r := range ap.removals {
		if r.index >= r.origLen {
			continue
		}
		if i > 0 && ap.removals[i-1].index == r.index && pathEqual(ap.removals[i-1].path, r.path) {
			continue // the same element twice
		}
		ap.updateAt(r.path, func(v ddb.Value) ddb.Value {
			if l, ok := v.(ddb.L); ok && r.index < len(l) {
				return slices.Delete(l, r.index, r.index+1)
			}
			return v
		})
	}
}

// updateAt replaces the value at p in out (which must exist, within the
// private copies) by f of it.
func (ap *applier) updateAt(p Path, f func(ddb.Value) ddb.Value) {
	if len(p) == 0 {
		return
	}
	var rec func(v ddb.Value, rest Path) ddb.Value
	rec = func(v ddb.Value, rest Path) ddb.Value {
		if len(rest) == 0 {
			return f(v)
		}
		c, ok := walk(v, rest[:1])
		if !ok {
			return v
		}
		nc := rec(c, rest[1:])
		switch x := v.(type) {
		case ddb.M:
			x[rest[0].Name] = nc
		case ddb.L:
			x[rest[0].Index] = nc
		}
		return v
	}
	top, ok := ap.out[p[0].Name]
	if !ok {
		return
	}
	ap.out[p[0].Name] = rec(top, p[1:])
}

func pathEqual(a, b Path) bool { return slices.Equal(a, b) }

// copyValue returns a deep copy of v: maps, lists, sets and binaries are
// new, so changing the copy in place never changes v.
func copyValue(v ddb.Value) ddb.Value {
	switch x := v.(type) {
	case ddb.M:
		out := make(ddb.M, len(x))
		for k, e := range x {
			out[k] = copyValue(e)
		}
		return out
	case ddb.L:
		out := make(ddb.L, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	case ddb.B:
		return slices.Clone(x)
	case ddb.SS:
		return slices.Clone(x)
	case ddb.NS:
		return slices.Clone(x)
	case ddb.BS:
		out := make(ddb.BS, len(x))
		for i, b := range x {
			out[i] = slices.Clone(b)
		}
		return out
	}
	return v
}
