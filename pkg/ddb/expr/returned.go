package expr

import "github.com/veltrixdb/veltrix/pkg/ddb"

// ParseReturnValues parses ReturnValues ("" is NONE).
func ParseReturnValues(s string) (ReturnValues, error) {
	switch s {
	case "", "NONE":
		return ReturnNone, nil
	case "ALL_OLD":
		return ReturnAllOld, nil
	case "UPDATED_OLD":
		return ReturnUpdatedOld, nil
	case "ALL_NEW":
		return ReturnAllNew, nil
	case "UPDATED_NEW":
		return ReturnUpdatedNew, nil
	}
	return ReturnNone, &Error{Message: "1 validation error detected: Value '" + s +
		"' at 'returnValues' failed to satisfy constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]"}
}

// String returns DynamoDB's name of the option.
func (rv ReturnValues) String() string {
	switch rv {
	case ReturnAllOld:
		return "ALL_OLD"
	case ReturnUpdatedOld:
		return "UPDATED_OLD"
	case ReturnAllNew:
		return "ALL_NEW"
	case ReturnUpdatedNew:
		return "UPDATED_NEW"
	}
	return "NONE"
}

// Returned is what a write returns for rv, given the item before and after
// it (nil or empty for no item): ALL_OLD the whole old item, ALL_NEW the
// whole new item, UPDATED_OLD and UPDATED_NEW only what the update's paths
// select, NONE nil. The result is nil when it would be empty, as DynamoDB
// then leaves Attributes out.
//
// UPDATED_* returns the updated paths as a projection of them would, as
// DynamoDB does: "SET a.b = :v" returns {a: {b: …}}, not all of a; list
// elements come back in index order ("SET a.c[1]" returns {a: {c: [x]}}).
// So a path that no longer exists is left out: a REMOVEd attribute in
// UPDATED_NEW, and a SET past a list's end (the element landed at another
// index), while REMOVE a[1] returns in UPDATED_NEW the element that moved
// into a[1]. A nil *Update returns nil for UPDATED_*.
func (u *Update) Returned(old, new ddb.Item, rv ReturnValues) ddb.Item {
	var out ddb.Item
	switch rv {
	case ReturnAllOld:
		out = old
	case ReturnAllNew:
		out = new
	case ReturnUpdatedOld:
		out = u.updated(old)
	case ReturnUpdatedNew:
		out = u.updated(new)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// updated projects it on the update's paths.
func (u *Update) updated(it ddb.Item) ddb.Item {
	if u == nil || len(it) == 0 || len(u.actions) == 0 {
		return nil
	}
	pr := &Projection{Paths: make([]Path, 0, len(u.actions))}
	for _, a := range u.actions {
		pr.Paths = append(pr.Paths, a.path)
	}
	return pr.Apply(it)
}
