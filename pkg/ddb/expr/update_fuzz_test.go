package expr

import (
	"errors"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// byteSource turns fuzz input into choices; it yields zeros once drained.
type byteSource struct{ b []byte }

func (s *byteSource) next(n int) int {
	if len(s.b) == 0 || n <= 0 {
		return 0
	}
	c := int(s.b[0])
	s.b = s.b[1:]
	return c % n
}

var fuzzNames = []string{"a", "b", "c", "x"}

func (s *byteSource) name() string { return fuzzNames[s.next(len(fuzzNames))] }

func (s *byteSource) number() ddb.N {
	nums := []string{"0", "1", "-1", "2.5", "1E50", "9.9999999999999999999999999999999999999E+125", "-9E125", "1E-130", "12345678901234567890123456789012345678"}
	return ddb.MustN(nums[s.next(len(nums))])
}

func (s *byteSource) value(depth int) ddb.Value {
	kinds := 10
	if depth <= 0 {
		kinds = 5 // scalars only
	}
	switch s.next(kinds) {
	case 0:
		return ddb.S(s.name())
	case 1:
		return s.number()
	case 2:
		return ddb.B{byte(s.next(3))}
	case 3:
		return ddb.Bool(s.next(2) == 1)
	case 4:
		return ddb.Null{}
	case 5:
		m := ddb.M{}
		for range s.next(4) {
			m[s.name()] = s.value(depth - 1)
		}
		return m
	case 6:
		var l ddb.L = ddb.L{}
		for range s.next(5) {
			l = append(l, s.value(depth-1))
		}
		return l
	case 7:
		ss := ddb.SS{"a"}
		if s.next(2) == 1 {
			ss = append(ss, "b")
		}
		if s.next(2) == 1 {
			ss = ddb.SS{"b", "c"}
		}
		return ss
	case 8:
		ns := ddb.NS{ddb.MustN("1")}
		if s.next(2) == 1 {
			ns = append(ns, ddb.MustN("2"))
		}
		return ns
	default:
		bs := ddb.BS{{1}}
		if s.next(2) == 1 {
			bs = append(bs, []byte{2})
		}
		return bs
	}
}

func (s *byteSource) path() Path {
	p := Path{{Name: s.name()}}
	for range s.next(4) {
		if s.next(2) == 0 {
			p = append(p, PathElem{Name: s.name()})
		} else {
			p = append(p, PathElem{Index: s.next(4)})
		}
	}
	return p
}

func (s *byteSource) operand(depth int) operand {
	k := 2
	if depth > 0 {
		k = 5
	}
	switch s.next(k) {
	case 0:
		return valueOperand{name: ":v", value: s.value(2)}
	case 1:
		return pathOperand{path: s.path()}
	case 2:
		op := byte('+')
		if s.next(2) == 1 {
			op = '-'
		}
		return arithOperand{op: op, l: s.operand(depth - 1), r: s.operand(depth - 1)}
	case 3:
		return ifNotExistsOperand{path: s.path(), def: s.operand(depth - 1)}
	default:
		return listAppendOperand{l: s.operand(depth - 1), r: s.operand(depth - 1)}
	}
}

func (s *byteSource) update() *Update {
	u := &Update{}
	for range 1 + s.next(5) {
		a := action{kind: actionKind(1 + s.next(4)), path: s.path()}
		switch a.kind {
		case actionSet:
			a.value = s.operand(2)
		case actionAdd, actionDelete:
			a.value = valueOperand{name: ":v", value: s.value(1)}
		}
		u.actions = append(u.actions, a)
	}
	return u
}

// FuzzApplyUpdate applies random actions to random items: Apply never
// panics, never changes the old item, and returns either a valid item or
// an *Error; Returned never panics either.
func FuzzApplyUpdate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 6, 4, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("set a nested path in a list and remove another one"))
	f.Add([]byte{2, 5, 1, 0, 6, 4, 1, 1, 1, 0, 3, 2, 1, 1, 1, 1, 0, 2, 0, 0, 1, 3, 1, 1})
	f.Add([]byte{9, 9, 9, 9, 1, 2, 3, 200, 100, 50, 25, 12, 6, 3, 1, 0, 255, 254})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &byteSource{b: data}
		var old ddb.Item
		if s.next(8) != 0 {
			old = ddb.Item{}
			for range s.next(5) {
				old[s.name()] = s.value(3)
			}
		}
		u := s.update()
		before := ddb.EncodeItem(old)
		got, err := u.Apply(old)
		if string(ddb.EncodeItem(old)) != string(before) {
			t.Fatalf("Apply changed the old item")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Message == "" {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("invalid result %v: %v", got, err)
		}
		for rv := ReturnNone; rv <= ReturnUpdatedNew; rv++ {
			u.Returned(old, got, rv)
		}
	})
}
