package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestValidateKey(t *testing.T) {
	long := func(n int) []byte { return bytes.Repeat([]byte("k"), n) }
	for _, tc := range []struct {
		name string
		k    Key
		err  string
	}{
		{"minimal", Key{PartitionKey: []byte("a")}, ""},
		{"largest", Key{PartitionKey: long(MaxPartitionKeyLen), SortKey: long(MaxSortKeyLen)}, ""},
		{"empty partition key", Key{SortKey: []byte("s")}, "partition key is empty"},
		{"long partition key", Key{PartitionKey: long(MaxPartitionKeyLen + 1)}, "partition key is 2049 bytes, limit 2048"},
		{"long sort key", Key{PartitionKey: []byte("a"), SortKey: long(MaxSortKeyLen + 1)}, "sort key is 1025 bytes, limit 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateKey(tc.k)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				k, err := DecodeKey(EncodeKey(tc.k))
				if err != nil || !bytes.Equal(k.PartitionKey, tc.k.PartitionKey) || !bytes.Equal(k.SortKey, tc.k.SortKey) {
					t.Fatalf("round trip: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}

// TestKeyContiguity checks that the items of one partition key, one table and
// one partition are each a contiguous key range.
func TestKeyContiguity(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var keys []Key
	for range 2000 {
		pk := make([]byte, 1+rng.IntN(3))
		sk := make([]byte, rng.IntN(4))
		for i := range pk {
			pk[i] = byte(rng.IntN(3)) * 0x7f
		}
		for i := range sk {
			sk[i] = byte(rng.IntN(3)) * 0x7f
		}
		keys = append(keys, Key{Partition: uint32(rng.IntN(3)), TableID: uint64(rng.IntN(3)), PartitionKey: pk, SortKey: sk})
	}
	enc := make([][]byte, len(keys))
	for i, k := range keys {
		enc[i] = EncodeKey(k)
	}
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	sortBy := func(i, j int) int { return bytes.Compare(enc[i], enc[j]) }
	slices.SortFunc(idx, sortBy)
	group := func(name string, id func(Key) string) {
		seen := make(map[string]bool)
		prev := ""
		for _, i := range idx {
			g := id(keys[i])
			if g != prev && seen[g] {
				t.Fatalf("%s %q is not contiguous", name, g)
			}
			seen[g], prev = true, g
		}
	}
	group("partition", func(k Key) string { return fmt.Sprint(k.Partition) })
	group("table", func(k Key) string { return fmt.Sprint(k.Partition, k.TableID) })
	group("partition key", func(k Key) string { return fmt.Sprintf("%d/%d/%x", k.Partition, k.TableID, k.PartitionKey) })
	// Within a partition key, sort keys are in byte order.
	for n := 1; n < len(idx); n++ {
		a, b := keys[idx[n-1]], keys[idx[n]]
		if a.Partition == b.Partition && a.TableID == b.TableID && bytes.Equal(a.PartitionKey, b.PartitionKey) &&
			bytes.Compare(a.SortKey, b.SortKey) > 0 {
			t.Fatalf("sort keys out of order: %x before %x", a.SortKey, b.SortKey)
		}
	}
}

func TestApplyValidation(t *testing.T) {
	e := openTest(t, Options{MaxBatchBytes: MaxValueLen + 64<<10})
	ok := Record{Key: Key{PartitionKey: []byte("ok")}, Version: 1, Value: []byte("v")}
	var recs []Record
	for i := range 25 {
		recs = append(recs, ok)
		if i%2 == 1 {
			recs[i].ExpireAt = -1
		}
	}
	_, err := e.Apply(recs)
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("got %v", err)
	}
	want := "record 1: expiry -1 is negative; record 3: expiry -1 is negative"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "and 2 more invalid records") {
		t.Fatalf("error %q does not name the records", err)
	}
	tomb := Record{Key: ok.Key, Version: 2, Tombstone: true, ExpireAt: 5}
	if _, err := e.Apply([]Record{ok, tomb}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "record 1: tombstone carries an expiry") {
		t.Fatalf("got %v", err)
	}
	big := make([]byte, 40<<20)
	_, err = e.Apply([]Record{{Key: ok.Key, Version: 1, Value: big}, {Key: ok.Key, Version: 2, Value: big}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, found, _ := e.Get(ok.Key); found {
		t.Fatal("a record of a failed batch was applied")
	}
	out, err := e.Apply(nil)
	if err != nil || len(out) != 0 {
		t.Fatalf("empty Apply: %v %v", out, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{TombstoneGrace: -time.Second, MemTableSize: 1, MaxIngestBytes: 1 << 20}
	o.EnsureDefaults()
	err := o.Validate()
	for _, want := range []string{"Dir is empty", "TombstoneGrace is negative", "MemTableSize 1", "MaxIngestBytes 1048576"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}

// TestLargeValue writes a 64 MiB value and reads it back through the
// memtable, an sstable (or blob file) after flush and compaction, and a
// reopen.
func TestLargeValue(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	dir := t.TempDir()
	o := Options{Dir: dir, PurgeInterval: -1, Logger: testLogger(t)}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, MaxValueLen)
	for i := range val {
		val[i] = byte(i * 31 / 7)
	}
	k := Key{Partition: 9, TableID: 1, PartitionKey: []byte("big"), SortKey: []byte("s")}
	out, err := e.Apply([]Record{{Key: k, Version: 1, Value: val}, {Key: Key{Partition: 9, TableID: 1, PartitionKey: []byte("small")}, Version: 1, Value: []byte("x")}})
	if err != nil || out[0] != OutcomeApplied {
		t.Fatalf("Apply: %v %v", out, err)
	}
	check := func(stage string) {
		t.Helper()
		r, found, err := e.Get(k)
		if err != nil || !found || !bytes.Equal(r.Value, val) {
			t.Fatalf("%s: Get: found %v, %d bytes, %v", stage, found, len(r.Value), err)
		}
		recs, _, err := e.Scan(ScanOptions{Partition: 9, TableID: 1, PartitionKey: []byte("big")})
		if err != nil || len(recs) != 1 || !bytes.Equal(recs[0].Value, val) {
			t.Fatalf("%s: Scan: %d records, %v", stage, len(recs), err)
		}
		n := 0
		if err := e.StreamPartition(9, nil, func(r Record) error { n += len(r.Value); return nil }); err != nil || n != MaxValueLen+1 {
			t.Fatalf("%s: stream: %d bytes, %v", stage, n, err)
		}
		checkDigests(t, e)
	}
	check("memtable")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Compact(context.Background(), []byte{spaceItem}, []byte{spaceItem + 1}, false); err != nil {
		t.Fatal(err)
	}
	check("compacted")
	if m := e.db.Metrics(); m.BlobFiles.LiveCount == 0 || m.BlobFiles.ValueSize < MaxValueLen {
		t.Fatalf("the 64 MiB value is not in a blob file: %+v", m.BlobFiles)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	check("reopened")
	if _, err := e.Apply([]Record{{Key: k, Version: 2, Value: make([]byte, MaxValueLen+1)}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("value over the limit: %v", err)
	}
}

// TestConcurrentApply: concurrent writers racing on the same keys lose no
// update: each key ends at the highest version anyone wrote.
func TestConcurrentApply(t *testing.T) {
	e := openTest(t, Options{})
	const writers, keys, steps = 8, 16, 200
	var wg sync.WaitGroup
	var max [keys]atomic.Uint64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for range steps {
				var batch []Record
				for range 1 + rng.IntN(4) {
					k := rng.IntN(keys)
					v := rng.Uint64N(1 << 20)
					batch = append(batch, Record{Key: Key{Partition: uint32(k % 3), TableID: 1, PartitionKey: fmt.Appendf(nil, "k%d", k)}, Version: v, Value: fmt.Appendf(nil, "%d", v)})
					for {
						cur := max[k].Load()
						if v <= cur || max[k].CompareAndSwap(cur, v) {
							break
						}
					}
				}
				if _, err := e.Apply(batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for k := range keys {
		r, found, err := e.Get(Key{Partition: uint32(k % 3), TableID: 1, PartitionKey: fmt.Appendf(nil, "k%d", k)})
		if err != nil || !found || r.Version != max[k].Load() {
			t.Fatalf("key %d: version %d, want %d (%v)", k, r.Version, max[k].Load(), err)
		}
	}
	checkDigests(t, e)
	st := e.Stats()
	if st.Applies != writers*steps || st.CommitGroups == 0 || st.Pebble == nil {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("%d applies in %d commit groups", st.Applies, st.CommitGroups)
}

// TestCacheCoherence: once Apply returns, no Get (through the cache) returns
// an older version, while readers keep filling the cache concurrently.
func TestCacheCoherence(t *testing.T) {
	for _, pipeline := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipeline=%v", pipeline), func(t *testing.T) {
			cache := newMapCache()
			e := openTest(t, Options{Cache: cache, noPipeline: !pipeline})
			const keys = 4
			key := func(i int) Key { return Key{PartitionKey: fmt.Appendf(nil, "k%d", i)} }
			var acked [keys]atomic.Uint64
			var stop atomic.Bool
			var wg sync.WaitGroup
			for r := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; !stop.Load(); n++ {
						i := (n + r) % keys
						floor := acked[i].Load()
						rec, found, err := e.Get(key(i))
						if err != nil {
							t.Error(err)
							return
						}
						if floor > 0 && (!found || rec.Version < floor) {
							t.Errorf("key %d: read version %d after version %d was acknowledged", i, rec.Version, floor)
							return
						}
					}
				}()
			}
			for v := uint64(1); v <= 2000 && !t.Failed(); v++ {
				i := int(v % keys)
				rec := Record{Key: key(i), Version: v, Value: fmt.Appendf(nil, "%d", v)}
				if v%7 == 0 {
					rec.Value, rec.Tombstone = nil, true
				}
				if _, err := e.Apply([]Record{rec}); err != nil {
					t.Fatal(err)
				}
				acked[i].Store(v)
			}
			stop.Store(true)
			wg.Wait()
			st := e.Stats()
			if st.CacheHits == 0 || st.CacheMisses == 0 {
				t.Fatalf("cache unused: %+v", st)
			}
			t.Logf("cache hits %d misses %d", st.CacheHits, st.CacheMisses)
		})
	}
}

func TestCacheLimits(t *testing.T) {
	cache := newMapCache()
	e := openTest(t, Options{Cache: cache, CacheMaxItemBytes: 100})
	small := Record{Key: Key{PartitionKey: []byte("s")}, Version: 1, Value: []byte("x")}
	large := Record{Key: Key{PartitionKey: []byte("l")}, Version: 1, Value: make([]byte, 200)}
	if _, err := e.Apply([]Record{small, large}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, r := range []Record{small, large} {
			got, found, err := e.Get(r.Key)
			if err != nil || !found || !bytes.Equal(got.Value, r.Value) {
				t.Fatalf("Get: %v %v", found, err)
			}
			got.Value = append(got.Value[:0], "mutated"...) // must not reach the cache
		}
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d entries, want only the small one", cache.Len())
	}
	if st := e.Stats(); st.CacheHits != 1 || st.CacheMisses != 3 {
		t.Fatalf("hits %d misses %d", st.CacheHits, st.CacheMisses)
	}
}

// TestGetBatchShared: a shared read of a cacheable value returns the
// cache's slice itself (no copy), GetBatch still returns copies, and a
// newer write is seen by the next shared read.
func TestGetBatchShared(t *testing.T) {
	cache := newMapCache()
	e := openTest(t, Options{Cache: cache, CacheMaxItemBytes: 100})
	small := Record{Key: Key{PartitionKey: []byte("s")}, Version: 1, Value: []byte("x")}
	large := Record{Key: Key{PartitionKey: []byte("l")}, Version: 1, Value: bytes.Repeat([]byte("y"), 200)}
	missing := Key{PartitionKey: []byte("m")}
	if _, err := e.Apply([]Record{small, large}); err != nil {
		t.Fatal(err)
	}
	keys := []Key{small.Key, large.Key, missing}
	check := func(name string, recs []Record, found []bool, want ...Record) {
		t.Helper()
		if found[2] || len(recs) != 3 {
			t.Fatalf("%s: found %v", name, found)
		}
		for i, w := range want {
			if !found[i] || recs[i].Version != w.Version || !bytes.Equal(recs[i].Value, w.Value) {
				t.Fatalf("%s: key %q: found %v version %d value %q, want version %d value %q", name, w.Key.PartitionKey, found[i], recs[i].Version, recs[i].Value, w.Version, w.Value)
			}
		}
	}
	for round := range 2 { // a miss that fills the cache, then a hit
		recs, found, err := e.GetBatchShared(keys)
		if err != nil {
			t.Fatal(err)
		}
		check("GetBatchShared", recs, found, small, large)
		cached, ok := cache.Get(cacheKey(e.cacheEpoch.Load(), appendItemKey(nil, small.Key)))
		if !ok || &recs[0].Value[0] != &cached[len(cached)-1] {
			t.Fatalf("round %d: the shared value of %q is not the cached slice", round, small.Key.PartitionKey)
		}
		copied, found, err := e.GetBatch(keys)
		if err != nil {
			t.Fatal(err)
		}
		check("GetBatch", copied, found, small, large)
		copied[0].Value[0] = 'z' // a copy: must not reach the cache
	}
	small.Version, small.Value = 2, []byte("w")
	if _, err := e.Apply([]Record{small}); err != nil {
		t.Fatal(err)
	}
	recs, found, err := e.GetBatchShared(keys)
	if err != nil {
		t.Fatal(err)
	}
	check("GetBatchShared after a write", recs, found, small, large)
}

func TestStreamPartitionResume(t *testing.T) {
	e := openTest(t, Options{streamRefresh: 3})
	var recs []Record
	for i := range 10 {
		recs = append(recs, Record{Key: Key{Partition: 5, TableID: 1, PartitionKey: []byte("p"), SortKey: fmt.Appendf(nil, "%02d", i)}, Version: 1, Value: []byte{byte(i)}})
	}
	recs = append(recs, Record{Key: Key{Partition: 6, TableID: 1, PartitionKey: []byte("p")}, Version: 1})
	if _, err := e.Apply(recs); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	var got []Record
	var after []byte
	for {
		n := 0
		err := e.StreamPartition(5, after, func(r Record) error {
			if n == 4 {
				return stop
			}
			n++
			got = append(got, r)
			return nil
		})
		if len(got) > 0 {
			after = EncodeKey(got[len(got)-1].Key)
		}
		if err == nil {
			break
		}
		if err != stop {
			t.Fatalf("StreamPartition returned %v, want fn's error as is", err)
		}
	}
	if len(got) != 10 {
		t.Fatalf("streamed %d records, want 10", len(got))
	}
	for i, r := range got {
		if r.Value[0] != byte(i) {
			t.Fatalf("record %d out of order: %v", i, r.Value)
		}
	}
	err := e.StreamPartition(5, EncodeKey(recs[10].Key), func(Record) error { return nil })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("resume point in another partition: %v", err)
	}
	if err := e.StreamPartition(5, []byte("junk"), func(Record) error { return nil }); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("junk resume point: %v", err)
	}
}

func TestPartitionBoundaries(t *testing.T) {
	e := openTest(t, Options{})
	last := ^uint32(0)
	recs := []Record{
		{Key: Key{Partition: last, TableID: ^uint64(0), PartitionKey: []byte{0xff}, SortKey: []byte{0xff, 0xff}}, Version: 1, Value: []byte("max")},
		{Key: Key{Partition: last - 1, TableID: 1, PartitionKey: []byte("x")}, Version: 1, Value: []byte("below")},
	}
	if _, err := e.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if got := streamAll(t, e, last); len(got) != 1 {
		t.Fatalf("partition max streamed %d records", len(got))
	}
	got, _, err := e.Scan(ScanOptions{Partition: last, TableID: ^uint64(0), PartitionKey: []byte{0xff}, Prefix: []byte{0xff}})
	if err != nil || len(got) != 1 {
		t.Fatalf("scan with an all-0xff prefix: %d, %v", len(got), err)
	}
	if err := e.DropPartition(last); err != nil {
		t.Fatal(err)
	}
	if got := streamAll(t, e, last-1); len(got) != 1 {
		t.Fatal("dropping the last partition touched its neighbour")
	}
	checkDigests(t, e)
}

func TestClose(t *testing.T) {
	e := openTest(t, Options{PurgeInterval: time.Millisecond})
	k := Key{PartitionKey: []byte("a")}
	if _, err := e.Apply([]Record{{Key: k, Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.Apply([]Record{{Key: k, Version: 2}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if _, _, err := e.Get(k); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, _, err := e.Scan(ScanOptions{PartitionKey: []byte("a")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
	if err := e.StreamPartition(0, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("StreamPartition after Close: %v", err)
	}
	if _, err := e.Purge(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Purge after Close: %v", err)
	}
	if err := e.DropPartition(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("DropPartition after Close: %v", err)
	}
	if e.Stats().Pebble != nil {
		t.Fatal("Pebble metrics after Close")
	}
}

// TestCloseWithWritersInFlight: Close waits for in-flight Apply calls, later
// ones fail with ErrClosed, and nothing is left running (goleak checks).
func TestCloseWithWritersInFlight(t *testing.T) {
	fs := vfs.NewMem()
	e := openTest(t, Options{FS: fs})
	var wg sync.WaitGroup
	var acked [4]atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				_, err := e.Apply([]Record{{Key: Key{PartitionKey: fmt.Appendf(nil, "w%d", w)}, Version: uint64(i)}})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				acked[w].Store(int64(i))
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	e2 := openTest(t, Options{FS: fs})
	for w := range 4 {
		r, _, err := e2.Get(Key{PartitionKey: fmt.Appendf(nil, "w%d", w)})
		if err != nil || r.Version < uint64(acked[w].Load()) {
			t.Fatalf("writer %d: version %d after acknowledging %d (%v)", w, r.Version, acked[w].Load(), err)
		}
	}
}

func TestBackgroundPurge(t *testing.T) {
	clock := newTestClock()
	e := openTest(t, Options{Now: clock.Now, PurgeInterval: time.Millisecond, TombstoneGrace: time.Hour})
	k := Key{PartitionKey: []byte("a")}
	if _, err := e.Apply([]Record{{Key: k, Version: 1, Tombstone: true}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e.st.purgedTombs.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background purger did not purge the tombstone")
		}
		time.Sleep(time.Millisecond)
	}
	if _, found, _ := e.Get(k); found {
		t.Fatal("tombstone still there")
	}
	checkDigests(t, e)
	if st := e.Stats(); st.PurgedTombs != 1 || st.PurgePasses == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestPurgeMany purges more candidates than one committer request carries.
func TestPurgeMany(t *testing.T) {
	clock := newTestClock()
	e := openTest(t, Options{Now: clock.Now, TombstoneGrace: time.Hour})
	var recs []Record
	for i := range 3*purgeChunk + 7 {
		r := Record{Key: Key{Partition: uint32(i % 5), PartitionKey: fmt.Appendf(nil, "%d", i)}, Version: 1}
		if i%2 == 0 {
			r.Tombstone = true
		} else {
			r.ExpireAt = t0.Add(time.Duration(i) * time.Second).UnixNano()
		}
		recs = append(recs, r)
	}
	recs = append(recs, Record{Key: Key{PartitionKey: []byte("keep")}, Version: 1, Value: []byte("v")})
	if _, err := e.Apply(recs); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	st, err := e.Purge()
	if err != nil {
		t.Fatal(err)
	}
	if st.Tombstones+st.Expired != len(recs)-1 || st.Tombstones != (len(recs))/2 {
		t.Fatalf("purged %+v of %d", st, len(recs)-1)
	}
	checkDigests(t, e)
	if d, _ := e.Digests(); len(d) != 1 || d[0].Count != 1 {
		t.Fatalf("digests after purge: %v", d)
	}
}

func TestOutcomeString(t *testing.T) {
	if OutcomeApplied.String() != "applied" || OutcomeSuperseded.String() != "superseded" || Outcome(9).String() != "Outcome(9)" {
		t.Fatal("Outcome.String")
	}
}

// TestApplyCurrent checks that a superseded record reports the version that
// beat it, including the huge versions a caller can supply, and that a
// record beaten by an earlier one of the same call names that one.
func TestApplyCurrent(t *testing.T) {
	e := openTest(t, Options{})
	k := Key{PartitionKey: []byte("pk")}
	other := Key{PartitionKey: []byte("other")}
	for _, tc := range []struct {
		name string
		recs []Record
		out  []Outcome
		cur  []uint64
	}{
		{"first write", []Record{{Key: k, Version: 10, Value: []byte("a")}}, []Outcome{OutcomeApplied}, []uint64{10}},
		{"older", []Record{{Key: k, Version: 5, Value: []byte("b")}}, []Outcome{OutcomeSuperseded}, []uint64{10}},
		{"older delete", []Record{{Key: k, Version: 9, Tombstone: true}}, []Outcome{OutcomeSuperseded}, []uint64{10}},
		{"repeat", []Record{{Key: k, Version: 10, Value: []byte("a")}}, []Outcome{OutcomeSuperseded}, []uint64{10}},
		{"max version", []Record{{Key: k, Version: math.MaxUint64, Value: []byte("c")}}, []Outcome{OutcomeApplied}, []uint64{math.MaxUint64}},
		{"after max", []Record{{Key: k, Version: 1 << 62, Tombstone: true}}, []Outcome{OutcomeSuperseded}, []uint64{math.MaxUint64}},
		{"same call", []Record{
			{Key: other, Version: 30, Value: []byte("x")},
			{Key: other, Version: 25, Value: []byte("y")},
			{Key: other, Version: 31, Tombstone: true},
		}, []Outcome{OutcomeApplied, OutcomeSuperseded, OutcomeApplied}, []uint64{30, 30, 31}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, cur, err := e.ApplyCurrent(tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out, tc.out) || !slices.Equal(cur, tc.cur) {
				t.Fatalf("got %v %v, want %v %v", out, cur, tc.out, tc.cur)
			}
		})
	}
}

// TestDropPartitionRemovesEverything: a drop removes the partition's items,
// tombstones, purge index entries, digest and sync point, serves none of
// its records from the cache afterwards, and leaves other partitions alone.
func TestDropPartitionRemovesEverything(t *testing.T) {
	clk := newTestClock()
	e := openTest(t, Options{Cache: newMapCache(), Now: clk.Now})
	k := func(p uint32, pk string) Key { return Key{Partition: p, TableID: 1, PartitionKey: []byte(pk)} }
	if _, err := e.Apply([]Record{
		{Key: k(3, "a"), Version: 1, Value: []byte("v")},
		{Key: k(3, "b"), Version: 2, Tombstone: true},
		{Key: k(3, "c"), Version: 1, Value: []byte("x"), ExpireAt: clk.Now().Add(time.Hour).UnixNano()},
		{Key: k(4, "a"), Version: 1, Value: []byte("keep")},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Get(k(3, "a")); err != nil { // fills the cache
		t.Fatal(err)
	}
	if err := e.SetSyncPoint(3, clk.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := e.DropPartition(3); err != nil {
		t.Fatal(err)
	}
	if _, found, err := e.Get(k(3, "a")); err != nil || found {
		t.Fatalf("dropped item read back: found=%v err=%v", found, err)
	}
	if got := streamAll(t, e, 3); len(got) != 0 {
		t.Fatalf("dropped partition streams %d records", len(got))
	}
	if d, err := e.Digest(3); err != nil || d != (PartitionDigest{}) {
		t.Fatalf("dropped partition digest = %+v, %v", d, err)
	}
	if sp, err := e.SyncPoint(3); err != nil || sp != 0 {
		t.Fatalf("dropped partition sync point = %d, %v", sp, err)
	}
	lo, hi := partitionSpan(spacePurge, 3)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Fatalf("purge index entry %x left after the drop", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if r, found, err := e.Get(k(4, "a")); err != nil || !found || string(r.Value) != "keep" {
		t.Fatalf("neighbour partition: %+v found=%v err=%v", r, found, err)
	}
	// Dropping again is harmless.
	if err := e.DropPartition(3); err != nil {
		t.Fatal(err)
	}
	checkDigests(t, e)
}

// TestApplyStalePrefetch: Apply reads its keys before it queues; a write
// that becomes visible between that read and the commit (another Apply, a
// purge, a partition drop) must be what LWW compares with and what the
// digest replaces, with or without a cache.
func TestApplyStalePrefetch(t *testing.T) {
	k := Key{Partition: 5, TableID: 1, PartitionKey: []byte("k")}
	for _, tc := range []struct {
		name    string
		initial Record
		between func(t *testing.T, e *Engine, clk *testClock)
		rec     Record
		out     Outcome
		cur     uint64
	}{
		{"newer write", Record{Key: k, Version: 1, Value: []byte("a")},
			func(t *testing.T, e *Engine, _ *testClock) {
				if _, err := e.Apply([]Record{{Key: k, Version: 3, Value: []byte("c")}}); err != nil {
					t.Fatal(err)
				}
			},
			Record{Key: k, Version: 2, Value: []byte("b")}, OutcomeSuperseded, 3},
		{"older write", Record{Key: k, Version: 1, Value: []byte("a")},
			func(t *testing.T, e *Engine, _ *testClock) {
				if _, err := e.Apply([]Record{{Key: k, Version: 2, Value: []byte("b")}}); err != nil {
					t.Fatal(err)
				}
			},
			Record{Key: k, Version: 3, Value: []byte("c")}, OutcomeApplied, 3},
		{"purge", Record{Key: k, Version: 5, Tombstone: true},
			func(t *testing.T, e *Engine, clk *testClock) {
				clk.Advance(2 * time.Hour)
				if st, err := e.Purge(); err != nil || st.Tombstones != 1 {
					t.Fatalf("purge: %+v, %v", st, err)
				}
			},
			Record{Key: k, Version: 4, Value: []byte("d")}, OutcomeApplied, 4},
		{"drop", Record{Key: k, Version: 5, Value: []byte("a")},
			func(t *testing.T, e *Engine, _ *testClock) {
				if err := e.DropPartition(k.Partition); err != nil {
					t.Fatal(err)
				}
			},
			Record{Key: k, Version: 4, Value: []byte("d")}, OutcomeApplied, 4},
	} {
		for _, cache := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cache=%v", tc.name, cache), func(t *testing.T) {
				clk := newTestClock()
				o := Options{Now: clk.Now, TombstoneGrace: time.Hour}
				if cache {
					o.Cache = newMapCache()
				}
				e := openTest(t, o)
				if _, err := e.Apply([]Record{tc.initial}); err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.Get(k); err != nil { // fills the cache
					t.Fatal(err)
				}
				recs := []Record{tc.rec}
				keys, size, err := e.prepare(recs)
				if err != nil {
					t.Fatal(err)
				}
				r := &request{kind: reqApply, recs: recs, keys: keys, pre: e.prefetch(recs, keys), size: size, done: make(chan struct{})}
				tc.between(t, e, clk)
				e.reqs <- r
				<-r.done
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.outcomes[0] != tc.out || r.current[0] != tc.cur {
					t.Fatalf("outcome %v, current %d; want %v, %d", r.outcomes[0], r.current[0], tc.out, tc.cur)
				}
				if got, found, err := e.Get(k); err != nil || !found || got.Version != tc.cur {
					t.Fatalf("stored %s (found %v, %v), want version %d", formatRecord(got), found, err, tc.cur)
				}
				checkDigests(t, e)
				if e.Stats().CommitRereads != 1 {
					t.Fatalf("the committer read the key %d times again, want 1", e.Stats().CommitRereads)
				}
			})
		}
	}
}
