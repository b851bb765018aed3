package lirs

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options[string, int]
		want []string // substrings of the error; none: valid
	}{
		{name: "defaults", opts: Options[string, int]{Capacity: 1 << 20}},
		{name: "single shard", opts: Options[string, int]{Capacity: 1, Shards: 1}},
		{name: "unbounded history", opts: Options[string, int]{Capacity: 10, NonResidentFactor: math.Inf(1), MinNonResident: -1}},
		{name: "no capacity", opts: Options[string, int]{}, want: []string{"Capacity must be positive, got 0"}},
		{
			name: "everything wrong",
			opts: Options[string, int]{Capacity: -5, Shards: 6, HIRFraction: 1, NonResidentFactor: -1},
			want: []string{"Capacity must be positive", "Shards must be a power of two, got 6", "HIRFraction must be in (0, 1), got 1", "NonResidentFactor must be positive, got -1"},
		},
		{name: "NaN", opts: Options[string, int]{Capacity: 10, HIRFraction: math.NaN(), NonResidentFactor: math.NaN()}, want: []string{"HIRFraction", "NonResidentFactor"}},
		{name: "too many shards", opts: Options[string, int]{Capacity: 1 << 40, Shards: 1 << 17}, want: []string{"Shards must be at most 65536"}},
		{name: "shards over capacity", opts: Options[string, int]{Capacity: 3, Shards: 4}, want: []string{"Capacity (3) must be at least Shards (4)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if len(tc.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("New: %v, want ErrInvalidOptions", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDefaultShards(t *testing.T) {
	for _, tc := range []struct {
		capacity int64
		procs    int
		want     int
	}{
		{capacity: 100, procs: 8, want: 1},
		{capacity: 8192, procs: 8, want: 2},
		{capacity: 1 << 16, procs: 2, want: 8},
		{capacity: 1 << 30, procs: 2, want: 8},
		{capacity: 1 << 30, procs: 3, want: 16},
		{capacity: 1 << 30, procs: 64, want: 64},
	} {
		if got := defaultShards(tc.capacity, tc.procs); got != tc.want {
			t.Errorf("defaultShards(%d, %d) = %d, want %d", tc.capacity, tc.procs, got, tc.want)
		}
	}
}

// TestRandomOperations applies random Gets, Sets with random costs and
// Deletes and checks every shard's structure as it goes.
func TestRandomOperations(t *testing.T) {
	for _, shards := range []int{1, 4} {
		for _, capacity := range []int64{7, 100, 1000} {
			t.Run(fmt.Sprintf("shards=%d/capacity=%d", shards, capacity), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(shards), uint64(capacity)))
				var evicted atomic.Int64
				c, err := New(Options[int, int]{
					Capacity:          capacity,
					Shards:            shards,
					NonResidentFactor: 1 + rng.Float64()*3,
					MinNonResident:    -1,
					OnEvict:           func(int, int, int64) { evicted.Add(1) },
				})
				if err != nil {
					t.Fatal(err)
				}
				keys := int(capacity) * 3
				maxCost := max(capacity/int64(shards)/4, 1)
				n := 100_000
				if raceEnabled || testing.Short() {
					n = 20_000
				}
				for i := range n {
					k := rng.IntN(keys)
					switch op := rng.IntN(10); {
					case op < 6:
						if v, ok := c.Get(k); ok && v != k {
							t.Fatalf("Get(%d) = %d", k, v)
						}
					case op < 9:
						c.Set(k, k, 1+rng.Int64N(maxCost))
					default:
						c.Delete(k)
					}
					if i%97 == 0 {
						if err := c.checkInvariants(); err != nil {
							t.Fatalf("after %d operations: %v", i+1, err)
						}
					}
				}
				if err := c.checkInvariants(); err != nil {
					t.Fatal(err)
				}
				st := c.Stats()
				if st.Bytes > capacity {
					t.Errorf("bytes %d over capacity %d", st.Bytes, capacity)
				}
				if int64(st.Evictions) != evicted.Load() {
					t.Errorf("Stats.Evictions = %d, OnEvict calls = %d", st.Evictions, evicted.Load())
				}
				if st.Evictions == 0 || st.Hits == 0 {
					t.Errorf("stats look idle: %+v", st)
				}
			})
		}
	}
}

func TestOversizedSet(t *testing.T) {
	c, err := New(Options[string, string]{Capacity: 100, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Set("k", "small", 10) {
		t.Fatal("Set of a small entry failed")
	}
	if c.Set("k", "huge", 51) {
		t.Fatal("Set of an entry larger than its shard succeeded")
	}
	if v, ok := c.Get("k"); ok {
		t.Fatalf("Get after a rejected Set = %q, want the old value removed", v)
	}
	if st := c.Stats(); st.Rejections != 1 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClear(t *testing.T) {
	c, err := New(Options[int, int]{Capacity: 64, Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		c.Set(i, i, 1)
	}
	c.Clear()
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after Clear = %d", n)
	}
	if st := c.Stats(); st.LIR+st.HIR+st.NonResident != 0 || st.Bytes != 0 {
		t.Fatalf("stats after Clear: %+v", st)
	}
	if err := c.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	c.Set(1, 1, 1)
	if v, ok := c.Get(1); !ok || v != 1 {
		t.Fatalf("Get after Clear and Set = %d, %v", v, ok)
	}
}

// TestConcurrentStress runs readers, writers, deleters and Clear in
// parallel; run it with -race. Values carry their key, so a Get that returns
// another key's value is caught.
func TestConcurrentStress(t *testing.T) {
	ops := 200_000
	if raceEnabled || testing.Short() {
		ops = 30_000
	}
	type val struct{ key, version int }
	for _, tc := range []struct {
		shards  int
		reorder int
	}{{1, 0}, {8, 0}, {4, -1}} {
		t.Run(fmt.Sprintf("shards=%d/exact=%v", tc.shards, tc.reorder < 0), func(t *testing.T) {
			var evicted atomic.Int64
			c, err := New(Options[int, *val]{
				Capacity: 2000,
				Shards:   tc.shards,
				reorder:  tc.reorder,
				OnEvict: func(k int, v *val, _ int64) {
					if v.key != k {
						t.Errorf("OnEvict(%d) with the value of %d", k, v.key)
					}
					evicted.Add(1)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			workers := max(4, 2*runtime.GOMAXPROCS(0))
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					zipf := rand.NewZipf(rng, 1.1, 1, 20_000)
					for i := range ops {
						k := int(zipf.Uint64())
						switch op := rng.IntN(100); {
						case op < 75:
							if v, ok := c.Get(k); ok && v.key != k {
								t.Errorf("Get(%d) returned the value of %d", k, v.key)
								return
							}
						case op < 95:
							c.Set(k, &val{key: k, version: i}, 1+rng.Int64N(8))
						case op < 99:
							c.Delete(k)
						default:
							if w == 0 && i%1000 == 0 {
								c.Clear()
							}
							_ = c.Stats()
							_ = c.Len()
						}
					}
				})
			}
			wg.Wait()
			if err := c.checkInvariants(); err != nil {
				t.Fatal(err)
			}
			st := c.Stats()
			if st.Hits == 0 || st.Misses == 0 || st.Evictions == 0 {
				t.Errorf("stats look idle: %+v", st)
			}
			if st.Bytes > 2000 {
				t.Errorf("bytes %d over capacity", st.Bytes)
			}
			if int64(st.Evictions) != evicted.Load() {
				t.Errorf("Stats.Evictions = %d, OnEvict calls = %d", st.Evictions, evicted.Load())
			}
		})
	}
}

// TestMemoryBounded inserts 10 million distinct keys (300,000 under the
// race detector, which is about ten times slower, or -short) and requires
// the cache's memory, non-resident history included, to stay proportional
// to its capacity.
func TestMemoryBounded(t *testing.T) {
	n := 10_000_000
	if raceEnabled || testing.Short() {
		n = 300_000
	}
	const capacity = 1 << 14
	c, err := New(Options[uint64, uint64]{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	peakGhosts := 0
	for i := range uint64(n) {
		if _, ok := c.Get(i); !ok {
			c.Set(i, i, 1)
		}
		// Rereference a few recent keys so that some become LIR and S
		// keeps history.
		if i%3 == 0 && i > 100 {
			c.Get(i - 50)
		}
		if i%(1<<20) == 0 {
			peakGhosts = max(peakGhosts, c.Stats().NonResident)
		}
	}
	st := c.Stats()
	if err := c.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	resident := st.LIR + st.HIR
	if resident != capacity {
		t.Errorf("resident entries = %d, want %d", resident, capacity)
	}
	if bound := max(2*resident, DefaultMinNonResident); st.NonResident > bound || peakGhosts > bound {
		t.Errorf("non-resident entries = %d (peak %d), bound %d", st.NonResident, peakGhosts, bound)
	}
	var slots, queued int
	for i := range c.shards {
		slots += len(c.shards[i].tab.slots)
		queued += len(c.shards[i].nrq) - c.shards[i].nrHead
	}
	if slots > 8*capacity || queued > 4*(st.NonResident+64*len(c.shards)) {
		t.Errorf("index has %d slots, non-resident queue %d pairs, for %d entries", slots, queued, capacity)
	}
	// An entry with its table slot is about 120 bytes here, a ghost about
	// 40 in its map and queue; allow three times that.
	grown := int64(heap()) - int64(base)
	if limit := int64(3 * (120*resident + 40*(st.NonResident+DefaultMinNonResident))); grown > limit {
		t.Errorf("heap grew by %d bytes after %d inserts, limit %d", grown, n, limit)
	}
	t.Logf("%d inserts: %+v; heap +%d KiB, %d table slots", n, st, grown>>10, slots)
	runtime.KeepAlive(c)
}
