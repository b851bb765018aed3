package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// rawSpace returns every key and value of a key space, byte for byte.
func rawSpace(t testing.TB, e *Engine, space byte) []string {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{space}, UpperBound: []byte{space + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%x=%x", it.Key(), v))
	}
	return out
}

// sameStore fails unless a and b hold byte-identical items (delete times
// included), purge indexes and digests.
func sameStore(t testing.TB, a, b *Engine) {
	t.Helper()
	for _, space := range []byte{spaceItem, spacePurge, spaceDigest} {
		ra, rb := rawSpace(t, a, space), rawSpace(t, b, space)
		if !slices.Equal(ra, rb) {
			t.Fatalf("key space %q differs: %d keys vs %d\n%s\n%s", space, len(ra), len(rb), strings.Join(ra, "\n"), strings.Join(rb, "\n"))
		}
	}
	da, err := a.Digests()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digests()
	if err != nil {
		t.Fatal(err)
	}
	if len(da) != len(db) {
		t.Fatalf("digests %v vs %v", da, db)
	}
	for p, d := range da {
		if db[p] != d {
			t.Fatalf("partition %d: digest %+v vs %+v", p, d, db[p])
		}
	}
	checkDigests(t, a)
	checkDigests(t, b)
}

// chunks splits recs into consecutive runs of random length up to max.
func chunks(rng *rand.Rand, recs []Record, max int) [][]Record {
	var out [][]Record
	for len(recs) > 0 {
		n := min(1+rng.IntN(max), len(recs))
		out = append(out, recs[:n])
		recs = recs[n:]
	}
	return out
}

// TestIngestMatchesApply: random histories (puts, tombstones with and
// without delete times, expiries, repeated keys, equal versions, several
// partitions), applied to one engine with Apply and to another with
// Ingest in other chunkings, on top of records both already hold, leave
// byte-identical items, purge indexes and digests, and purge the same.
func TestIngestMatchesApply(t *testing.T) {
	seeds := 15
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x1265))
			muts := randomMutations(rng, 400)
			for i := range muts {
				if muts[i].Tombstone && rng.IntN(2) == 0 {
					muts[i].DeletedAt = t0.Add(time.Duration(rng.IntN(120)) * time.Minute).UnixNano()
				}
			}
			clock := newTestClock()
			clock.Advance(90 * time.Minute)
			a := openTest(t, Options{Now: clock.Now, TombstoneGrace: time.Hour})
			// Even seeds write every run as an SST, odd ones commit these
			// small runs as batches.
			b := openTest(t, Options{Now: clock.Now, TombstoneGrace: time.Hour, Cache: newMapCache(), ingestMinSSTBytes: []int{1, 0}[seed%2]})
			pre, rest := muts[:len(muts)/3], muts[len(muts)/3:]
			for _, c := range chunks(rng, pre, 8) {
				for _, e := range []*Engine{a, b} {
					if _, err := e.Apply(c); err != nil {
						t.Fatal(err)
					}
				}
			}
			var applied, superseded int
			for _, c := range chunks(rng, rest, 8) {
				outs, err := a.Apply(c)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range outs {
					if o == OutcomeApplied {
						applied++
					} else {
						superseded++
					}
				}
			}
			var res IngestResult
			for _, c := range chunks(rng, rest, 120) {
				r, err := b.Ingest(c)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Invalid) > 0 {
					t.Fatalf("invalid records: %v", r.Invalid)
				}
				res.Applied += r.Applied
				res.Superseded += r.Superseded
				// Fill b's cache, which the next chunk must invalidate.
				for i := range muts {
					if _, _, err := b.Get(muts[i].Key); err != nil {
						t.Fatal(err)
					}
				}
			}
			if res.Applied+res.Superseded != len(rest) || res.Applied > applied {
				t.Fatalf("ingest applied %d and superseded %d of %d; Apply applied %d", res.Applied, res.Superseded, len(rest), applied)
			}
			sameStore(t, a, b)
			// Reads through b's cache see the ingested records.
			sameGets(t, a, b, muts)
			clock.Advance(2 * time.Hour)
			pa, err := a.Purge()
			if err != nil {
				t.Fatal(err)
			}
			pb, err := b.Purge()
			if err != nil {
				t.Fatal(err)
			}
			if pa != pb || pa.Tombstones+pa.Expired == 0 {
				t.Fatalf("purged %+v by Apply, %+v by Ingest", pa, pb)
			}
			sameStore(t, a, b)
		})
	}
}

// TestIngestInvalidAndTooLarge: invalid records are named by index and the
// others applied; a run over MaxIngestBytes applies nothing.
func TestIngestInvalidAndTooLarge(t *testing.T) {
	e := openTest(t, Options{MaxIngestBytes: MaxValueLen + itemKeyOverhead + MaxPartitionKeyLen + MaxSortKeyLen, ingestMinSSTBytes: 1})
	k := func(i int) Key { return Key{Partition: 1, TableID: 1, PartitionKey: fmt.Appendf(nil, "pk%d", i)} }
	recs := []Record{
		{Key: k(0), Version: 1, Value: []byte("a")},
		{Key: Key{Partition: 1, TableID: 1}, Version: 1},
		{Key: k(2), Version: 1, Tombstone: true, Value: []byte("x")},
		{Key: k(3), Version: 1, Value: []byte("b"), ExpireAt: -1},
		{Key: k(4), Version: 2, Tombstone: true},
		{Key: k(0), Version: 1, Value: []byte("a")},
	}
	res, err := e.Ingest(recs)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, inv := range res.Invalid {
		idx = append(idx, inv.Index)
	}
	if !slices.Equal(idx, []int{1, 2, 3}) || !strings.Contains(res.Invalid[0].Reason, "partition key is empty") ||
		!strings.Contains(res.Invalid[1].Reason, "tombstone carries") || !strings.Contains(res.Invalid[2].Reason, "negative") {
		t.Fatalf("invalid = %+v, want records 1, 2, 3 with their reasons", res.Invalid)
	}
	if res.Applied != 2 || res.Superseded != 1 {
		t.Fatalf("applied %d, superseded %d; want 2 and 1", res.Applied, res.Superseded)
	}
	for i, want := range []bool{true, false, false, false, true} {
		if _, found, err := e.Get(k(i)); err != nil || found != want {
			t.Fatalf("key %d: found %v, %v; want %v", i, found, err, want)
		}
	}
	// Ingesting the same records again changes nothing, and ingests no SST.
	ingests := e.db.Metrics().Ingest.Count
	if res, err := e.Ingest(recs); err != nil || res.Applied != 0 || res.Superseded != 3 {
		t.Fatalf("second ingest: %+v, %v; want all 3 valid records superseded", res, err)
	}
	if n := e.db.Metrics().Ingest.Count; n != ingests {
		t.Fatalf("a run with no winner ingested %d SSTs", n-ingests)
	}
	checkDigests(t, e)
	before, err := e.Digests()
	if err != nil {
		t.Fatal(err)
	}

	big := make([]byte, MaxValueLen/2)
	huge := []Record{{Key: k(10), Version: 1, Value: big}, {Key: k(11), Version: 1, Value: big}, {Key: k(12), Version: 1, Value: big}, {Key: k(13), Version: 1, Value: []byte("c")}}
	if _, err := e.Ingest(huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize run: %v, want ErrTooLarge", err)
	}
	after, err := e.Digests()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || after[1] != before[1] {
		t.Fatalf("digests changed by a refused run: %v -> %v", before, after)
	}
	if _, found, err := e.Get(k(13)); err != nil || found {
		t.Fatalf("record of a refused run: found %v, %v", found, err)
	}
}

// TestIngestNeverOverwritesNewer: ingestions race Apply calls that write
// newer and older versions of the same keys; every key ends at the
// highest version anyone wrote, and the digests are exact.
func TestIngestNeverOverwritesNewer(t *testing.T) {
	e := openTest(t, Options{Cache: newMapCache(), ingestMinSSTBytes: 1})
	const keys = 300
	k := func(i int) Key {
		return Key{Partition: uint32(i % 5), TableID: 3, PartitionKey: fmt.Appendf(nil, "k%04d", i)}
	}
	var mu sync.Mutex
	maxVersion := make([]uint64, keys)
	offer := func(recs []Record) {
		mu.Lock()
		for _, r := range recs {
			var i int
			fmt.Sscanf(string(r.Key.PartitionKey), "k%04d", &i)
			maxVersion[i] = max(maxVersion[i], r.Version)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 150 {
				var recs []Record
				for range 1 + rng.IntN(6) {
					i := rng.IntN(keys)
					recs = append(recs, Record{Key: k(i), Version: uint64(1 + rng.IntN(1000)), Value: fmt.Appendf(nil, "apply %d", w)})
				}
				offer(recs)
				if _, err := e.Apply(recs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 8))
			for range 15 {
				recs := make([]Record, 0, keys)
				for i := range keys {
					r := Record{Key: k(i), Version: uint64(1 + rng.IntN(1000)), Value: fmt.Appendf(nil, "ingest %d", w)}
					if rng.IntN(6) == 0 {
						r.Value, r.Tombstone = nil, true
					}
					recs = append(recs, r)
				}
				offer(recs)
				if _, err := e.Ingest(recs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range keys {
		r, found, err := e.Get(k(i))
		if err != nil || !found || r.Version != maxVersion[i] {
			t.Fatalf("key %d: version %d (found %v, %v), highest written %d", i, r.Version, found, err, maxVersion[i])
		}
	}
	checkDigests(t, e)
	if st := e.Stats(); st.Ingests != 30 || st.Ingested == 0 {
		t.Fatalf("stats: %d ingests, %d records ingested; want 30 and some", st.Ingests, st.Ingested)
	}
}

// crashRun is ingestion run r of TestIngestCrash: every key at version r,
// with tombstones and expiries that move with r, so each run rewrites the
// purge index too.
func crashRun(r int) []Record {
	recs := make([]Record, 0, 400)
	for i := range 400 {
		rec := Record{
			Key:     Key{Partition: uint32(i % 7), TableID: 9, PartitionKey: fmt.Appendf(nil, "item-%04d", (i*7919)%400)},
			Version: uint64(r),
			Value:   bytes.Repeat(fmt.Appendf(nil, "run %d|", r), 1+(i*r)%50),
		}
		switch (i + r) % 6 {
		case 0:
			rec.Value, rec.Tombstone = nil, true
		case 1:
			rec.ExpireAt = t0.Add(time.Duration(r) * time.Hour).UnixNano()
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestIngestCrash: a power loss before the SST is ingested leaves none of
// the run, after Ingest returns all of it, and at any moment in between
// (clones taken while ingestions run) one or the other; the digests always
// match the records, and leftover SSTs are removed on open.
func TestIngestCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	rng := rand.New(rand.NewPCG(3, 4))
	type clone struct {
		fs       *vfs.MemFS
		min, max int // the run versions the clone may hold
	}
	var (
		mu     sync.Mutex
		clones []clone
		run    int // the run being ingested; run-1 has returned
	)
	// takeLocked clones the filesystem; mu is held.
	takeLocked := func(lo, hi int) {
		clones = append(clones, clone{fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(60), RNG: rng}), lo, hi})
	}
	clock := newTestClock() // no item of a run has expired
	e := openTest(t, Options{FS: fs, Now: clock.Now, ingestMinSSTBytes: 1, ingestHook: func(step string) {
		mu.Lock()
		defer mu.Unlock()
		switch step {
		case "sst-written":
			takeLocked(run-1, run-1)
		case "ingested":
			takeLocked(run, run)
		}
	}})
	// Clones at random moments: while mu is held run does not move, so
	// the clone holds run-1 or run.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		jitter := rand.New(rand.NewPCG(5, 6))
		for range 25 {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(500+jitter.IntN(2000)) * time.Microsecond):
			}
			mu.Lock()
			takeLocked(run-1, run)
			mu.Unlock()
		}
	}()
	// A write through the WAL before each run, which the run's digests
	// build on.
	for r := 1; r <= 8; r++ {
		if _, err := e.Apply([]Record{{Key: Key{Partition: 100, TableID: 9, PartitionKey: fmt.Appendf(nil, "wal-%d", r)}, Version: 1, Value: []byte("w")}}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		run = r
		mu.Unlock()
		res, err := e.Ingest(crashRun(r))
		if err != nil || res.Applied != 400 {
			t.Fatalf("run %d: %+v, %v", r, res, err)
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for n, c := range clones {
		e2, err := Open(Options{FS: c.fs, Dir: "db", PurgeInterval: -1, MemTableSize: 4 << 20, Now: clock.Now, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("clone %d: reopen: %v", n, err)
		}
		got := -1
		for _, rec := range crashRun(1) {
			r, found, err := e2.Get(rec.Key)
			if err != nil {
				t.Fatal(err)
			}
			v := 0
			if found {
				v = int(r.Version)
			}
			if got != -1 && v != got {
				t.Fatalf("clone %d: keys at versions %d and %d: a run is partly there", n, got, v)
			}
			got = v
		}
		if got < c.min || got > c.max {
			t.Fatalf("clone %d: run %d there, want run %d to %d", n, got, c.min, c.max)
		}
		checkDigests(t, e2)
		if _, err := c.fs.Stat(c.fs.PathJoin("db", ingestTempDir)); err == nil {
			t.Fatalf("clone %d: %s left after open", n, ingestTempDir)
		}
		if err := e2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d crash clones, each with all or none of every run", len(clones))
}

// TestIngestAfterUnsyncedWrites: with NoSync, writes acknowledged before an
// ingestion are not synced yet, but the ingestion's digests count them; a
// power loss right after Ingest returns must keep them with the run, so the
// digests match the records.
func TestIngestAfterUnsyncedWrites(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := openTest(t, Options{FS: fs, NoSync: true, ingestMinSSTBytes: 1})
	k := func(i int) Key { return Key{Partition: 4, TableID: 1, PartitionKey: fmt.Appendf(nil, "k%03d", i)} }
	for round := range 5 {
		var live, bulk []Record
		for i := range 50 {
			live = append(live, Record{Key: k(i), Version: uint64(2*round + 2), Value: []byte("live")})
			bulk = append(bulk, Record{Key: k(25 + i), Version: uint64(2*round + 1), Value: []byte("bulk")})
		}
		if _, err := e.Apply(live); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Ingest(bulk); err != nil {
			t.Fatal(err)
		}
		e2, err := Open(Options{FS: fs.CrashClone(vfs.CrashCloneCfg{}), Dir: "db", PurgeInterval: -1, MemTableSize: 4 << 20, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		checkDigests(t, e2)
		for i := range 75 {
			want := uint64(2*round + 1)
			if i < 50 {
				want++
			}
			if r, found, err := e2.Get(k(i)); err != nil || !found || r.Version != want {
				t.Fatalf("round %d key %d: version %d (found %v, %v), want %d", round, i, r.Version, found, err, want)
			}
		}
		if err := e2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIngestLargeValues: values above ValueSeparationMinSize go into the
// ingested SST inline, read back, and move to blob files on compaction;
// an ingested value replaces a blob-separated one.
func TestIngestLargeValues(t *testing.T) {
	e := openTest(t, Options{ingestMinSSTBytes: 1})
	val := func(v int) []byte { return bytes.Repeat([]byte{byte(v)}, 300<<10) }
	k := func(i int) Key { return Key{Partition: 2, TableID: 1, PartitionKey: fmt.Appendf(nil, "big%d", i)} }
	var recs []Record
	for i := range 8 {
		recs = append(recs, Record{Key: k(i), Version: 1, Value: val(1)})
	}
	if _, err := e.Apply(recs[:4]); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Compact(context.Background(), []byte{spaceItem}, []byte{spaceItem + 1}, false); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].Version, recs[i].Value = 2, val(2)
	}
	if res, err := e.Ingest(recs); err != nil || res.Applied != 8 {
		t.Fatalf("Ingest: %+v, %v", res, err)
	}
	check := func(stage string) {
		t.Helper()
		for i := range recs {
			if r, found, err := e.Get(k(i)); err != nil || !found || r.Version != 2 || !bytes.Equal(r.Value, val(2)) {
				t.Fatalf("%s: key %d: found %v, version %d, %v", stage, i, found, r.Version, err)
			}
		}
		checkDigests(t, e)
	}
	check("ingested")
	if err := e.db.Compact(context.Background(), []byte{spaceItem}, []byte{spaceItem + 1}, false); err != nil {
		t.Fatal(err)
	}
	check("compacted")
}

// TestIngestFindsStoredRecordsEverywhere: Ingest compares each record with
// the stored one wherever Pebble keeps it — in L6 after a compaction, in an
// ingested SST above it, in the memtable — with the keys of each place
// interleaved, so every SST spans keys it does not hold (its bloom filter
// answers for them).
func TestIngestFindsStoredRecordsEverywhere(t *testing.T) {
	e := openTest(t, Options{ingestMinSSTBytes: 1})
	const keys = 300
	k := func(i int) Key {
		return Key{Partition: uint32(i % 3), TableID: 4, PartitionKey: fmt.Appendf(nil, "k%04d", i)}
	}
	rec := func(i int, v uint64) Record { return Record{Key: k(i), Version: v, Value: []byte("same")} }
	group := func(g int, v uint64) []Record {
		var recs []Record
		for i := g; i < keys; i += 3 {
			recs = append(recs, rec(i, v))
		}
		return recs
	}
	if _, err := e.Ingest(group(0, 5)); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Compact(context.Background(), []byte{spaceItem}, []byte{spaceItem + 1}, false); err != nil {
		t.Fatal(err)
	}
	if n := e.db.Metrics().Levels[6].TablesCount; n == 0 {
		t.Fatalf("no table in L6 after the compaction")
	}
	if _, err := e.Ingest(group(1, 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(group(2, 7)); err != nil {
		t.Fatal(err)
	}
	all := make([]Record, keys)
	for i := range all {
		all[i] = rec(i, 6)
	}
	res, err := e.Ingest(all)
	if err != nil {
		t.Fatal(err)
	}
	// Group 0 (v5, in L6) is replaced; group 1 (v6, the same record) and
	// group 2 (v7, in the memtable) are not.
	if res.Applied != 100 || res.Superseded != 200 {
		t.Fatalf("applied %d, superseded %d; want 100 and 200", res.Applied, res.Superseded)
	}
	for i := range keys {
		want := []uint64{6, 6, 7}[i%3]
		if r, found, err := e.Get(k(i)); err != nil || !found || r.Version != want {
			t.Fatalf("key %d: version %d (found %v, %v), want %d", i, r.Version, found, err, want)
		}
	}
	checkDigests(t, e)
}

// TestIngestPreparedRace: a large run reads and decides outside the
// committer; a write to one of its keys, or a partition drop, that lands
// between those reads and the committer makes the committer redo the run,
// so the LWW rule and the digests hold as if the run had been decided
// there. A write to other keys does not.
func TestIngestPreparedRace(t *testing.T) {
	k := func(i int) Key {
		return Key{Partition: uint32(i % 3), TableID: 4, PartitionKey: fmt.Appendf(nil, "k%03d", i)}
	}
	run := func(version uint64) []Record {
		recs := make([]Record, 0, 60)
		for i := range 60 {
			recs = append(recs, Record{Key: k(i), Version: version, Value: fmt.Appendf(nil, "ingest %d", version)})
		}
		return recs
	}
	var during func(e *Engine) // what lands between the reads and the committer
	var e *Engine
	e = openTest(t, Options{Cache: newMapCache(), ingestMinSSTBytes: 1, ingestHook: func(step string) {
		if step == "prepared" && during != nil {
			f := during
			during = nil // once: the run's next decision is left alone
			f(e)
		}
	}})
	apply := func(e *Engine, r Record) {
		if _, err := e.Apply([]Record{r}); err != nil {
			t.Error(err)
		}
	}
	version := func(i int) uint64 {
		t.Helper()
		r, found, err := e.Get(k(i))
		if err != nil || !found {
			t.Fatalf("key %d: found %v, %v", i, found, err)
		}
		return r.Version
	}
	for _, tc := range []struct {
		name    string
		version uint64 // of the run
		during  func(e *Engine)
		redone  bool
		check   func()
	}{
		{"newer write to a key of the run", 10, func(e *Engine) { apply(e, Record{Key: k(7), Version: 100, Value: []byte("live")}) }, true, func() {
			if v := version(7); v != 100 {
				t.Fatalf("key 7 at version %d: the run overwrote a newer write", v)
			}
			if v := version(8); v != 10 {
				t.Fatalf("key 8 at version %d, want the run's 10", v)
			}
		}},
		{"older write to a key of the run", 20, func(e *Engine) { apply(e, Record{Key: k(9), Version: 11, Value: []byte("live")}) }, true, func() {
			if v := version(9); v != 20 {
				t.Fatalf("key 9 at version %d, want the run's 20", v)
			}
		}},
		{"tombstone of a key of the run", 30, func(e *Engine) { apply(e, Record{Key: k(10), Version: 500, Tombstone: true}) }, true, func() {
			if r, _, err := e.Get(k(10)); err != nil || !r.Tombstone || r.Version != 500 {
				t.Fatalf("key 10: %+v %v: the run brought back a deleted item", r, err)
			}
		}},
		{"write to another key", 40, func(e *Engine) { apply(e, Record{Key: k(1000), Version: 1, Value: []byte("other")}) }, false, func() {
			if v := version(11); v != 40 {
				t.Fatalf("key 11 at version %d, want the run's 40", v)
			}
		}},
		{"partition dropped", 50, func(e *Engine) {
			if err := e.DropPartition(1); err != nil {
				t.Error(err)
			}
		}, true, func() {
			if v := version(7); v != 50 {
				t.Fatalf("key 7 at version %d after its partition was dropped, want the run's 50", v)
			}
		}},
	} {
		before := e.Stats().IngestRedone
		during = tc.during
		if _, err := e.Ingest(run(tc.version)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		during = nil
		if redone := e.Stats().IngestRedone > before; redone != tc.redone {
			t.Fatalf("%s: redone %v, want %v", tc.name, redone, tc.redone)
		}
		tc.check()
		checkDigests(t, e)
	}
}
