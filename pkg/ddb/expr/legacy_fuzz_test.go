package expr

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

var fuzzOps = append([]string{"", "eq", "PUT", "ADD", "DELETE"}, comparisonOperators...)

func (s *byteSource) valueList() []ddb.Value {
	if s.next(4) == 0 {
		return nil
	}
	vs := []ddb.Value{}
	for range s.next(4) {
		vs = append(vs, s.value(1))
	}
	return vs
}

func (s *byteSource) maybeValue() ddb.Value {
	if s.next(2) == 0 {
		return nil
	}
	return s.value(1)
}

// FuzzLegacy converts random legacy parameters: the conversions never
// panic, fail only with an *Error, and what they build evaluates (or
// applies) without panicking.
func FuzzLegacy(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 10, 2, 1, 1, 0, 3, 2, 2, 1, 1, 0, 5, 6, 7})
	f.Add([]byte("Expected with IN and BETWEEN over random values"))
	f.Add([]byte{2, 12, 3, 1, 1, 1, 1, 9, 2, 2, 2, 0, 0, 1, 4, 4, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &byteSource{b: data}
		check := func(err error) bool {
			t.Helper()
			if err == nil {
				return true
			}
			var e *Error
			if !errors.As(err, &e) || e.Message == "" {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			return false
		}
		it := ddb.Item{}
		for range s.next(4) {
			it[s.name()] = s.value(2)
		}
		conj := []string{"", "AND", "OR", "XOR"}[s.next(4)]

		exp := map[string]ExpectedValue{}
		filter := map[string]FilterCondition{}
		upd := map[string]AttributeUpdate{}
		for range 1 + s.next(3) {
			name := s.name()
			var exists *bool
			if k := s.next(3); k > 0 {
				b := k == 1
				exists = &b
			}
			exp[name] = ExpectedValue{Value: s.maybeValue(), Exists: exists,
				ComparisonOperator: fuzzOps[s.next(len(fuzzOps))], AttributeValueList: s.valueList()}
			filter[s.name()] = FilterCondition{ComparisonOperator: fuzzOps[s.next(len(fuzzOps))], AttributeValueList: s.valueList()}
			upd[s.name()] = AttributeUpdate{Action: fuzzOps[s.next(len(fuzzOps))], Value: s.maybeValue()}
		}
		if c, err := FromExpected(exp, conj); check(err) {
			c.Match(it)
			c.Match(nil)
		}
		if c, err := FromFilter("ScanFilter", filter, conj); check(err) {
			c.Match(it)
		}
		ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "a", Type: ddb.TypeS}}
		if s.next(2) == 1 {
			ks.SortKey = ddb.KeyAttribute{Name: "b", Type: ddb.TypeN}
		}
		if kc, err := FromKeyConditions(filter, ks); check(err) {
			if kc.PartitionKey == nil || kc.PartitionKey.Type() != ddb.TypeS {
				t.Fatalf("key condition without an S partition key: %#v", kc)
			}
		}
		if u, err := FromAttributeUpdates(upd); check(err) {
			if got, err := u.Apply(it); check(err) {
				if err := got.Validate(); err != nil {
					t.Fatalf("invalid result %v: %v", got, err)
				}
			}
		}
		names := []string{}
		for range s.next(4) {
			names = append(names, s.name())
		}
		if pr, err := FromAttributesToGet(names); check(err) {
			pr.Apply(it)
		}
	})
}
