package lirs

import (
	"container/list"
	"math"
	"math/rand/v2"
	"testing"
)

// refLIRS is a line-by-line model of LIRS_Repl in the authors' simulator
// (lirs.c, Song Jiang, 2002), with unit costs and no bound on the stack. It
// shares no code with the cache, so that the differential test below checks
// the cache against the reference algorithm rather than against itself.
type refLIRS struct {
	memSize, hirLimit int
	free, numLIR      int
	pages             map[uint64]*refPage
	stack             *list.List // front is the top of S
	hirList           *list.List // resident HIR blocks; front is the newest
	lirBottom         *list.Element
	last              uint64
	started           bool
}

type refPage struct {
	num      uint64
	resident bool
	hir      bool
	inStack  bool // recency == S_STACK_IN
	sElem    *list.Element
	qElem    *list.Element
}

func newRefLIRS(memSize int) *refLIRS {
	hir := int(1.0 / 100.0 * float64(memSize))
	hir = max(hir, 2)
	return &refLIRS{
		memSize:  memSize,
		hirLimit: hir,
		free:     memSize,
		pages:    map[uint64]*refPage{},
		stack:    list.New(),
		hirList:  list.New(),
	}
}

// findLastLIR walks up from lirBottom over HIR blocks, which leave the stack.
func (r *refLIRS) findLastLIR() {
	for r.lirBottom != nil && r.lirBottom.Value.(*refPage).hir {
		p := r.lirBottom.Value.(*refPage)
		p.inStack = false
		prev := r.lirBottom.Prev()
		r.stack.Remove(r.lirBottom)
		p.sElem = nil
		r.lirBottom = prev
	}
}

func (r *refLIRS) removeFromStack(p *refPage) {
	if p.sElem == nil {
		return
	}
	if p.sElem == r.lirBottom {
		r.lirBottom = p.sElem.Prev()
		r.stack.Remove(p.sElem)
		p.sElem = nil
		r.findLastLIR()
		return
	}
	r.stack.Remove(p.sElem)
	p.sElem = nil
}

// access references block b and reports whether it was a hit.
func (r *refLIRS) access(b uint64) bool {
	if r.started && b == r.last {
		return true
	}
	r.started, r.last = true, b
	p := r.pages[b]
	if p == nil {
		p = &refPage{num: b, hir: true}
		r.pages[b] = p
	}
	hit := p.resident
	if !hit {
		if r.free == 0 {
			t := r.hirList.Back()
			tp := t.Value.(*refPage)
			tp.resident = false
			r.hirList.Remove(t)
			tp.qElem = nil
			r.free++
		} else if r.free > r.hirLimit {
			p.hir = false
			r.numLIR++
		}
		r.free--
	} else if p.hir {
		r.hirList.Remove(p.qElem)
		p.qElem = nil
	}
	r.removeFromStack(p)
	p.sElem = r.stack.PushFront(p)
	if r.lirBottom == nil {
		r.lirBottom = r.stack.Back()
	}
	p.resident = true
	if p.hir && p.inStack {
		p.hir = false
		r.numLIR++
		if r.numLIR > r.memSize-r.hirLimit {
			bp := r.lirBottom.Value.(*refPage)
			bp.qElem = r.hirList.PushFront(bp)
			bp.hir = true
			bp.inStack = false
			r.numLIR--
			r.findLastLIR()
		}
	} else if p.hir {
		p.qElem = r.hirList.PushFront(p)
	}
	p.inStack = true
	return hit
}

// exactCache is a single-shard cache configured as the reference: every hit
// reorders and the stack is unbounded.
func exactCache(t testing.TB, size int) *Cache[uint64, uint64] {
	t.Helper()
	c, err := New(Options[uint64, uint64]{
		Capacity:          int64(size),
		Shards:            1,
		NonResidentFactor: math.Inf(1),
		reorder:           -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// getOrSet is a cache reference as a trace replay makes it: Get, and Set on
// a miss.
func getOrSet(c *Cache[uint64, uint64], k uint64) bool {
	if _, ok := c.Get(k); ok {
		return true
	}
	c.Set(k, k, 1)
	return false
}

// TestMatchesReference replays random traces through the cache and the
// model of lirs.c and requires the same hit or miss at every reference.
func TestMatchesReference(t *testing.T) {
	type tc struct {
		name       string
		size, keys int
		n          int
		loop       bool
	}
	cases := []tc{
		{name: "uniform-small", size: 10, keys: 30, n: 20000},
		{name: "uniform", size: 100, keys: 400, n: 50000},
		{name: "zipf", size: 200, keys: 5000, n: 50000},
		{name: "loop", size: 100, keys: 150, n: 20000, loop: true},
		{name: "mixed", size: 500, keys: 3000, n: 100000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(c.size)))
			zipf := rand.NewZipf(rng, 1.1, 1, uint64(c.keys-1))
			ref := newRefLIRS(c.size)
			cache := exactCache(t, c.size)
			var hits int
			for i := range c.n {
				var k uint64
				switch {
				case c.loop:
					k = uint64(i % c.keys)
				case c.name == "zipf":
					k = zipf.Uint64()
				case c.name == "mixed" && i%5000 < 1000:
					k = uint64(c.keys + i) // a scan of new keys
				case c.name == "mixed":
					k = zipf.Uint64()
				default:
					k = rng.Uint64N(uint64(c.keys))
				}
				want := ref.access(k)
				got := getOrSet(cache, k)
				if got != want {
					t.Fatalf("reference %d (key %d): cache hit=%v, lirs.c hit=%v", i, k, got, want)
				}
				if got {
					hits++
				}
			}
			st := cache.Stats()
			if st.LIR+st.HIR != c.size {
				t.Errorf("resident entries = %d, want %d", st.LIR+st.HIR, c.size)
			}
			t.Logf("hit ratio %.2f%%, %+v", 100*float64(hits)/float64(c.n), st)
		})
	}
}
