package lirs

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripts in testdata/. Commands:
//
//	new capacity=N [hir=F] [nr=F] [min-nr=N]
//	    A single-shard Cache[string, string] where every hit reorders.
//	ref
//	<key>[:cost] ...
//	    References each key as a replay does (Get, then Set on a miss) and
//	    prints, per reference, hit or miss, the key's new status and every
//	    other key whose status changed.
//	set <key> [cost=N]
//	    Set alone: a write of a new value.
//	delete <key>
//	state
//	    S from top to bottom, Q from front (next to evict) to end.
//	stats
//
// Statuses: lir, hir (resident HIR in S), hir-q (resident HIR out of S, in Q
// only), ghost (non-resident HIR in S), gone.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var d *ddCache
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "new":
				var capacity int64
				td.ScanArgs(t, "capacity", &capacity)
				opts := Options[string, string]{Capacity: capacity, Shards: 1, reorder: -1}
				td.MaybeScanArgs(t, "hir", &opts.HIRFraction)
				td.MaybeScanArgs(t, "nr", &opts.NonResidentFactor)
				td.MaybeScanArgs(t, "min-nr", &opts.MinNonResident)
				d = newDDCache(t, opts)
				s := &d.c.shards[0]
				return fmt.Sprintf("lir-limit=%d hir-reserve=%d", s.lirLimit(), capacity-s.lirLimit())
			case "ref":
				var b strings.Builder
				for _, f := range strings.Fields(td.Input) {
					k, cost := f, int64(1)
					if i := strings.IndexByte(f, ':'); i >= 0 {
						k = f[:i]
						var err error
						if cost, err = strconv.ParseInt(f[i+1:], 10, 64); err != nil {
							t.Fatal(err)
						}
					}
					before := d.status()
					hit := true
					if _, ok := d.get(k); !ok {
						hit = false
						d.set(k, cost)
					}
					fmt.Fprintf(&b, "%s: %s", k, map[bool]string{true: "hit", false: "miss"}[hit])
					d.writeChanges(&b, k, before)
				}
				return b.String()
			case "set":
				var cost int64 = 1
				td.MaybeScanArgs(t, "cost", &cost)
				k := td.CmdArgs[0].Key
				before := d.status()
				var b strings.Builder
				fmt.Fprintf(&b, "%s: set=%v", k, d.set(k, cost))
				d.writeChanges(&b, k, before)
				return b.String()
			case "delete":
				k := td.CmdArgs[0].Key
				before := d.status()
				var b strings.Builder
				fmt.Fprintf(&b, "%s: resident=%v", k, d.c.Delete(k))
				d.writeChanges(&b, k, before)
				return b.String()
			case "state":
				return d.state()
			case "stats":
				st := d.c.Stats()
				return fmt.Sprintf("hits=%d misses=%d evictions=%d rejections=%d lir=%d hir=%d non-resident=%d bytes=%d lir-bytes=%d len=%d",
					st.Hits, st.Misses, st.Evictions, st.Rejections, st.LIR, st.HIR, st.NonResident, st.Bytes, st.LIRBytes, d.c.Len())
			default:
				t.Fatalf("unknown command %q", td.Cmd)
				return ""
			}
		})
	})
}

// ddCache wraps a single-shard cache with the names behind key hashes, so
// that ghosts, which keep only a hash, can be printed.
type ddCache struct {
	t       *testing.T
	c       *Cache[string, string]
	names   map[uint64]string
	evicted []string
}

func newDDCache(t *testing.T, opts Options[string, string]) *ddCache {
	d := &ddCache{t: t, names: map[uint64]string{}}
	seed := maphash.MakeSeed()
	opts.Hash = func(k string) uint64 {
		h := maphash.String(seed, k)
		d.names[h] = k
		return h
	}
	opts.OnEvict = func(k, _ string, _ int64) { d.evicted = append(d.evicted, k) }
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	return d
}

func (d *ddCache) get(k string) (string, bool) { return d.c.Get(k) }

func (d *ddCache) set(k string, cost int64) bool { return d.c.Set(k, "v", cost) }

type ddItem struct {
	name, status string
	stamp        uint64
}

// items returns S from top to bottom and Q from front to end.
func (d *ddCache) items() (stack, queue []ddItem) {
	s := &d.c.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.s.sNext; e != &s.s; e = e.sNext {
		st := "lir"
		if e.state == stateHIR {
			st = "hir"
		}
		stack = append(stack, ddItem{e.key, st, e.stamp})
	}
	for h, stamp := range s.ghosts {
		stack = append(stack, ddItem{d.names[h], "ghost", stamp})
	}
	slices.SortFunc(stack, func(a, b ddItem) int { return cmp.Compare(b.stamp, a.stamp) })
	for e := s.q.qNext; e != &s.q; e = e.qNext {
		st := "hir"
		if e.sNext == nil {
			st = "hir-q"
		}
		queue = append(queue, ddItem{e.key, st, 0})
	}
	return stack, queue
}

func (d *ddCache) status() map[string]string {
	m := map[string]string{}
	stack, queue := d.items()
	for _, it := range stack {
		m[it.name] = it.status
	}
	for _, it := range queue {
		m[it.name] = it.status
	}
	return m
}

func (d *ddCache) writeChanges(b *strings.Builder, k string, before map[string]string) {
	after := d.status()
	get := func(m map[string]string, k string) string {
		if s, ok := m[k]; ok {
			return s
		}
		return "gone"
	}
	fmt.Fprintf(b, " → %s", get(after, k))
	var keys []string
	for name := range before {
		keys = append(keys, name)
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	for _, name := range keys {
		if name == k {
			continue
		}
		if from, to := get(before, name), get(after, name); from != to {
			fmt.Fprintf(b, "; %s %s→%s", name, from, to)
		}
	}
	if len(d.evicted) > 0 {
		fmt.Fprintf(b, "; evicted %s", strings.Join(d.evicted, " "))
		d.evicted = d.evicted[:0]
	}
	b.WriteByte('\n')
}

func (d *ddCache) state() string {
	stack, queue := d.items()
	var b strings.Builder
	b.WriteString("S:")
	for _, it := range stack {
		fmt.Fprintf(&b, " %s:%s", it.name, it.status)
	}
	b.WriteString("\nQ:")
	for _, it := range queue {
		fmt.Fprintf(&b, " %s", it.name)
	}
	b.WriteByte('\n')
	return b.String()
}
