package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncDelayFS is an in-memory filesystem whose syncs take a fixed time: a
// disk with steady fsync latency, so sync-grouping measurements do not
// depend on a shared machine's disk noise.
type syncDelayFS struct {
	vfs.FS
	delay time.Duration
	syncs *atomic.Int64
}

func newSyncDelayFS(delay time.Duration) syncDelayFS {
	return syncDelayFS{FS: vfs.NewMem(), delay: delay, syncs: new(atomic.Int64)}
}

func (fs syncDelayFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return syncDelayFile{File: f, fs: fs}, nil
}

func (fs syncDelayFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}

func (fs syncDelayFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, o ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, o...))
}

func (fs syncDelayFS) ReuseForWrite(old, new string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(old, new, c))
}

type syncDelayFile struct {
	vfs.File
	fs syncDelayFS
}

func (f syncDelayFile) wait() {
	f.fs.syncs.Add(1)
	time.Sleep(f.fs.delay)
}

func (f syncDelayFile) Sync() error     { f.wait(); return f.File.Sync() }
func (f syncDelayFile) SyncData() error { f.wait(); return f.File.SyncData() }
func (f syncDelayFile) SyncTo(n int64) (bool, error) {
	f.wait()
	return f.File.SyncTo(n)
}

const simSync = time.Millisecond

const (
	benchKeys      = 100_000
	benchValueSize = 128
)

func benchKey(i int) Key {
	return Key{Partition: uint32(i % 1024), TableID: 1, PartitionKey: fmt.Appendf(nil, "user-%08d", i)}
}

// benchOptions are the engine options of the benchmarks, on a real
// directory.
func benchOptions(dir string) Options {
	return Options{Dir: dir, PurgeInterval: -1, Logger: slog.New(slog.DiscardHandler)}
}

// rawPebble opens Pebble with the options the engine would use.
func rawPebble(b *testing.B, o Options, merger *pebble.Merger) *pebble.DB {
	dir := o.Dir
	o.EnsureDefaults()
	po := (&Engine{opts: o, log: o.Logger}).pebbleOptions()
	if merger != nil {
		po.Merger = merger
	}
	db, err := pebble.Open(dir, po)
	po.Cache.Unref()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func benchOpen(b *testing.B, o Options) *Engine {
	e, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkEngineVsPebble reports point-read and write throughput of the
// engine next to raw Pebble (same options, same keys and values) in the same
// run:
//
//	go test -run x -bench EngineVsPebble ./internal/engine/
func BenchmarkEngineVsPebble(b *testing.B) {
	dir := b.TempDir()
	e := benchOpen(b, benchOptions(filepath.Join(dir, "engine")))
	nosyncOpts := benchOptions(filepath.Join(dir, "engine-nosync"))
	nosyncOpts.NoSync = true
	en := benchOpen(b, nosyncOpts)
	db := rawPebble(b, benchOptions(filepath.Join(dir, "pebble")), nil)

	val := bytes.Repeat([]byte("v"), benchValueSize)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = EncodeKey(benchKey(i))
	}
	// Load the same data into both, and flush it to sstables.
	for lo := 0; lo < benchKeys; lo += 1000 {
		recs := make([]Record, 0, 1000)
		pb := db.NewBatch()
		for i := lo; i < lo+1000; i++ {
			recs = append(recs, Record{Key: benchKey(i), Version: 1, Value: val})
			_ = pb.Set(keys[i], val, nil)
		}
		if _, err := e.Apply(recs); err != nil {
			b.Fatal(err)
		}
		if err := pb.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		_ = pb.Close()
	}
	if err := e.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}

	b.Run("Get/engine", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		for b.Loop() {
			if _, found, err := e.Get(benchKey(rng.IntN(benchKeys))); err != nil || !found {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
	b.Run("Get/pebble", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		var buf []byte
		for b.Loop() {
			// Encode the key and copy the value, as the engine does.
			v, c, err := db.Get(EncodeKey(benchKey(rng.IntN(benchKeys))))
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], v...)
			_ = c.Close()
		}
		reportOps(b)
	})

	version := uint64(1)
	setEngine := func(e *Engine) func(b *testing.B) {
		return func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, 2))
			for b.Loop() {
				version++
				if _, err := e.Apply([]Record{{Key: benchKey(rng.IntN(benchKeys)), Version: version, Value: val}}); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		}
	}
	setPebble := func(opts *pebble.WriteOptions) func(b *testing.B) {
		return func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, 2))
			for b.Loop() {
				if err := db.Set(keys[rng.IntN(benchKeys)], val, opts); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		}
	}
	b.Run("Set/sync/engine", setEngine(e))
	b.Run("Set/sync/pebble", setPebble(pebble.Sync))
	b.Run("Set/nosync/engine", setEngine(en))
	b.Run("Set/nosync/pebble", setPebble(pebble.NoSync))

	// 16 concurrent writers: where group commit matters.
	par := max(1, 16/runtime.GOMAXPROCS(0))
	var pversion atomic.Uint64
	pversion.Store(1 << 40)
	b.Run("Set/sync/16-writers/engine", func(b *testing.B) {
		b.SetParallelism(par)
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
			for pb.Next() {
				r := Record{Key: benchKey(rng.IntN(benchKeys)), Version: pversion.Add(1), Value: val}
				if _, err := e.Apply([]Record{r}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportOps(b)
	})
	b.Run("Set/sync/16-writers/pebble", func(b *testing.B) {
		b.SetParallelism(par)
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
			for pb.Next() {
				if err := db.Set(keys[rng.IntN(benchKeys)], val, pebble.Sync); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportOps(b)
	})
	// The same synced writes on a simulated disk with a steady 1ms fsync.
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("Set/sync-sim1ms/%d-writers/engine", writers), func(b *testing.B) {
			o := benchOptions("db")
			o.FS = newSyncDelayFS(simSync)
			e := benchOpen(b, o)
			runWriters(b, writers, func(rng *rand.Rand, v uint64) error {
				_, err := e.Apply([]Record{{Key: benchKey(rng.IntN(benchKeys)), Version: v, Value: val}})
				return err
			})
		})
		b.Run(fmt.Sprintf("Set/sync-sim1ms/%d-writers/pebble", writers), func(b *testing.B) {
			o := benchOptions("db")
			o.FS = newSyncDelayFS(simSync)
			db := rawPebble(b, o, nil)
			runWriters(b, writers, func(rng *rand.Rand, _ uint64) error {
				return db.Set(keys[rng.IntN(benchKeys)], val, pebble.Sync)
			})
		})
	}
}

// lwwMerger resolves LWW in a Pebble merge operator: the operands are
// encoded stored values and the winner under compareLWW survives. It is the
// alternative to read-compare-write that BenchmarkLWW measures.
var lwwMerger = &pebble.Merger{
	Name: "veltrix.lww.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		m := &lwwValueMerger{}
		return m, m.offer(value)
	},
}

type lwwValueMerger struct {
	best  []byte
	state stored
}

func (m *lwwValueMerger) offer(v []byte) error {
	s, err := decodeStored(v)
	if err != nil {
		return err
	}
	if m.best == nil || compareLWW(&s, &m.state) > 0 {
		m.best = bytes.Clone(v) // Pebble may reuse v
		m.state, _ = decodeStored(m.best)
	}
	return nil
}

func (m *lwwValueMerger) MergeNewer(v []byte) error { return m.offer(v) }
func (m *lwwValueMerger) MergeOlder(v []byte) error { return m.offer(v) }
func (m *lwwValueMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.best, nil, nil
}

// rcwSet is read-compare-write on raw Pebble, without the engine's digest,
// purge index or cache.
func rcwSet(db *pebble.DB, ik []byte, s *stored, opts *pebble.WriteOptions) error {
	v, c, err := db.Get(ik)
	if err == nil {
		cur, derr := decodeStored(v)
		win := derr == nil && compareLWW(s, &cur) > 0
		_ = c.Close()
		if derr != nil {
			return derr
		}
		if !win {
			return nil
		}
	} else if err != pebble.ErrNotFound {
		return err
	}
	return db.Set(ik, s.encode(), opts)
}

// BenchmarkLWW measures a Pebble merge operator against read-compare-write
// for LWW writes and for the reads that follow them:
//
//	go test -run x -bench LWW ./internal/engine/
//
// Writes are unsynced so the LWW work, not the WAL sync, is what differs.
// "engine" is the engine's full path (read-compare-write plus digest and
// purge index, through the committer) for reference.
func BenchmarkLWW(b *testing.B) {
	const keys, preload = 10_000, 20
	dir := b.TempDir()
	rcw := rawPebble(b, benchOptions(filepath.Join(dir, "rcw")), nil)
	mrg := rawPebble(b, benchOptions(filepath.Join(dir, "merge")), lwwMerger)
	o := benchOptions(filepath.Join(dir, "engine"))
	o.NoSync = true
	e := benchOpen(b, o)
	val := bytes.Repeat([]byte("v"), benchValueSize)
	ik := make([][]byte, keys)
	for i := range ik {
		ik[i] = EncodeKey(benchKey(i))
	}
	mutation := func(rng *rand.Rand) (int, stored) {
		return rng.IntN(keys), stored{version: rng.Uint64N(1 << 30), value: val}
	}

	// Preload both with the same random versions, out of order, and check
	// that the two resolve to the same winners.
	rng := rand.New(rand.NewPCG(7, 7))
	for range keys * preload {
		i, s := mutation(rng)
		if err := rcwSet(rcw, ik[i], &s, pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		if err := mrg.Merge(ik[i], s.encode(), pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	for _, db := range []*pebble.DB{rcw, mrg} {
		if err := db.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	for i := range keys {
		a, ca, err1 := rcw.Get(ik[i])
		m, cm, err2 := mrg.Get(ik[i])
		if err1 != nil || err2 != nil || !bytes.Equal(a, m) {
			b.Fatalf("key %d: merge and read-compare-write disagree (%v, %v)", i, err1, err2)
		}
		_, _ = ca.Close(), cm.Close()
	}

	// "random": versions out of order, so most writes lose (replays,
	// backfill racing live writes). "newer": every write carries a newer
	// version (HLC-stamped live writes), so every write wins.
	next := uint64(1 << 30)
	for _, order := range []string{"random", "newer"} {
		gen := func(rng *rand.Rand) (int, stored) {
			i, s := mutation(rng)
			if order == "newer" {
				next++
				s.version = next
			}
			return i, s
		}
		b.Run("write/"+order+"/rcw", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(8, 8))
			for b.Loop() {
				i, s := gen(rng)
				if err := rcwSet(rcw, ik[i], &s, pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
		b.Run("write/"+order+"/merge", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(8, 8))
			for b.Loop() {
				i, s := gen(rng)
				if err := mrg.Merge(ik[i], s.encode(), pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
		b.Run("write/"+order+"/engine", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(8, 8))
			for b.Loop() {
				i, s := gen(rng)
				if _, err := e.Apply([]Record{{Key: benchKey(i), Version: s.version, Value: s.value}}); err != nil {
					b.Fatal(err)
				}
			}
			reportOps(b)
		})
	}
	read := func(db *pebble.DB) func(b *testing.B) {
		return func(b *testing.B) {
			rng := rand.New(rand.NewPCG(9, 9))
			for b.Loop() {
				v, c, err := db.Get(ik[rng.IntN(keys)])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := decodeStored(v); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
			reportOps(b)
		}
	}
	b.Run("read/rcw", read(rcw))
	b.Run("read/merge", read(mrg))
}

// stripedRCW is the alternative to the engine's committer: read-compare-write
// under per-key striped locks, each write its own synced Pebble batch, so
// concurrent syncs are grouped by Pebble's commit pipeline alone.
type stripedRCW struct {
	db *pebble.DB
	mu [cacheStripes]sync.Mutex
}

func (s *stripedRCW) apply(ik []byte, st *stored) error {
	m := &s.mu[keyHash(ik)%cacheStripes]
	m.Lock()
	defer m.Unlock()
	return rcwSet(s.db, ik, st, pebble.Sync)
}

// BenchmarkGroupCommit measures synced single-record writes from concurrent
// writers, on a simulated disk whose fsync takes 1ms (disk=sim1ms) or 100µs
// (disk=sim100us, a fast disk: the committer's own work counts) and on
// the real temp directory (disk=real, noisy on a shared machine). Modes:
//
//   - committer: the engine: each Apply reads its keys in its own goroutine,
//     one committer groups queued Applies into one Pebble batch and builds
//     the next group while the previous one syncs (Pebble's ApplyNoSyncWait)
//   - committer-serial: the same without that overlap (build, commit, sync,
//     then the next group)
//   - committer-ungrouped: one Pebble batch per Apply, so only Pebble's WAL
//     groups the syncs
//   - striped-locks: no committer; read-compare-write under striped locks and
//     concurrent synced Pebble commits (Pebble's commit pipeline groups them)
//   - pebble: raw Pebble, a synced Set per write with no read-compare-write,
//     digest or purge index: the ceiling
//
// applies/batch is the engine's mean group size; rereads/op the keys the
// committer read again because a write became visible after the Apply read
// them; syncs/op the WAL syncs per Apply on the simulated disk. Run it with
//
//	go test -run x -bench GroupCommit ./internal/engine/
func BenchmarkGroupCommit(b *testing.B) {
	val := bytes.Repeat([]byte("v"), benchValueSize)
	type mode struct {
		name string
		tune func(*Options)
	}
	modes := []mode{
		{"committer", func(*Options) {}},
		{"committer-serial", func(o *Options) { o.noPipeline = true }},
		{"committer-ungrouped", func(o *Options) { o.maxGroupRequests = 1 }},
		{"striped-locks", nil},
		{"pebble", nil},
	}
	simDisks := map[string]time.Duration{"sim1ms": simSync, "sim100us": 100 * time.Microsecond}
	for _, disk := range []string{"sim1ms", "sim100us", "real"} {
		for _, writers := range []int{1, 4, 16, 64} {
			for _, m := range modes {
				b.Run(fmt.Sprintf("disk=%s/writers=%d/%s", disk, writers, m.name), func(b *testing.B) {
					o := benchOptions(b.TempDir())
					var syncs *atomic.Int64
					if d, ok := simDisks[disk]; ok {
						fs := newSyncDelayFS(d)
						o.FS, o.Dir, syncs = fs, "db", fs.syncs
					}
					var write func(rng *rand.Rand, version uint64) error
					var e *Engine
					if m.tune != nil {
						m.tune(&o)
						e = benchOpen(b, o)
						write = func(rng *rand.Rand, v uint64) error {
							_, err := e.Apply([]Record{{Key: benchKey(rng.IntN(benchKeys)), Version: v, Value: val}})
							return err
						}
					} else if m.name == "pebble" {
						db := rawPebble(b, o, nil)
						write = func(rng *rand.Rand, _ uint64) error {
							return db.Set(EncodeKey(benchKey(rng.IntN(benchKeys))), val, pebble.Sync)
						}
					} else {
						s := &stripedRCW{db: rawPebble(b, o, nil)}
						write = func(rng *rand.Rand, v uint64) error {
							st := stored{version: v, value: val}
							return s.apply(EncodeKey(benchKey(rng.IntN(benchKeys))), &st)
						}
					}
					var before int64
					if syncs != nil {
						before = syncs.Load()
					}
					runWriters(b, writers, write)
					if syncs != nil {
						b.ReportMetric(float64(syncs.Load()-before)/float64(b.N), "syncs/op")
					}
					if e != nil {
						st := e.Stats()
						b.ReportMetric(float64(st.CommitRequests)/float64(max(1, st.CommitGroups)), "applies/batch")
						b.ReportMetric(float64(st.CommitRereads)/float64(b.N), "rereads/op")
					}
				})
			}
		}
	}
}

// runWriters calls write b.N times from the given number of goroutines and
// reports ops/s and the process's CPU time per op (steadier than ops/s on a
// shared machine).
func runWriters(b *testing.B, writers int, write func(rng *rand.Rand, version uint64) error) {
	var version atomic.Uint64
	cpu0 := processCPU(b)
	if writers == 1 {
		rng := rand.New(rand.NewPCG(1, 1))
		for b.Loop() {
			if err := write(rng, version.Add(1)); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if err := write(rng, version.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	reportOps(b)
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngest compares importing 100k records of 1 KiB with Ingest (in
// sorted runs, as the migrator sends them: runs of 20k are written as
// SSTs, runs of 500 are under ingestMinSSTBytes and committed as batches)
// and with Apply (batches of 256 from 4 writers, what BatchWrite's storage
// side amounts to), on a real directory, into an empty store and into one
// already holding half the keys at older versions. One op imports all 100k
// records into a fresh engine; cpu-µs/item is the process's user+system
// time (Pebble's background work included) per record:
//
//	go test -run x -bench Ingest -benchtime 2x ./internal/engine/
func BenchmarkIngest(b *testing.B) {
	const (
		n       = 100_000
		batch   = 256
		writers = 4
	)
	val := bytes.Repeat([]byte("v"), 1024)
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: benchKey(i), Version: 2, Value: val}
	}
	slices.SortFunc(recs, func(a, b Record) int { return bytes.Compare(EncodeKey(a.Key), EncodeKey(b.Key)) })
	// spread is recs in 6 sorted runs, each taking one in every 6 of the
	// sorted records, with random (incompressible) values, as the bench's
	// generated export has.
	const spreadRuns = 6
	var spread []Record
	rng := rand.New(rand.NewPCG(1, 2))
	for start := range spreadRuns {
		for i := start; i < n; i += spreadRuns {
			r := recs[i]
			r.Value = make([]byte, len(val))
			for j := 0; j < len(r.Value); j += 8 {
				binary.LittleEndian.PutUint64(r.Value[j:], rng.Uint64())
			}
			spread = append(spread, r)
		}
	}
	ingest := func(b *testing.B, e *Engine, recs []Record, run int) {
		for i := 0; i < len(recs); i += run {
			if _, err := e.Ingest(recs[i:min(i+run, len(recs))]); err != nil {
				b.Fatal(err)
			}
		}
	}
	apply := func(b *testing.B, e *Engine) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(batch)) - batch
					if i >= n {
						return
					}
					if _, err := e.Apply(recs[i:min(i+batch, n)]); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	imports := []struct {
		name string
		run  func(b *testing.B, e *Engine)
	}{
		{"apply", apply},
		{"ingest-run=20000", func(b *testing.B, e *Engine) { ingest(b, e, recs, 20_000) }},
		{"ingest-run=500", func(b *testing.B, e *Engine) { ingest(b, e, recs, 500) }},
		// What the migrator sends: an export is in random key order, so
		// every run spans the whole key space and overlaps every other.
		{"ingest-spread-runs=6", func(b *testing.B, e *Engine) { ingest(b, e, spread, (n+spreadRuns-1)/spreadRuns) }},
	}
	for _, existing := range []string{"empty", "half"} {
		for _, imp := range imports {
			b.Run(fmt.Sprintf("store=%s/%s", existing, imp.name), func(b *testing.B) {
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					e := benchOpen(b, benchOptions(b.TempDir()))
					if existing == "half" {
						var old []Record
						for i := 0; i < n; i += 2 {
							r := recs[i]
							r.Version = 1
							old = append(old, r)
						}
						ingest(b, e, old, 20_000)
					}
					c0 := cpuTime(b)
					b.StartTimer()
					imp.run(b, e)
					b.StopTimer()
					cpu += cpuTime(b) - c0
					if err := e.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				items := float64(b.N) * n
				b.ReportMetric(items/b.Elapsed().Seconds(), "items/s")
				b.ReportMetric(float64(cpu.Microseconds())/items, "cpu-µs/item")
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyDuringIngest measures what an import does to live writes:
// the latency of single-record Applies from 4 writers while 16 MiB Ingest
// runs (random keys, as an export's) land one after another on the real
// disk. An ingestion reads, decides and writes its SSTs before it reaches
// the committer, so writes wait only for the landing.
func BenchmarkApplyDuringIngest(b *testing.B) {
	const (
		runItems = 16 << 10 // 1 KiB values: a 16 MiB run, the migrator's
		runs     = 4
		writers  = 4
	)
	val := make([]byte, 1024)
	for b.Loop() {
		b.StopTimer()
		e := benchOpen(b, benchOptions(b.TempDir()))
		rng := rand.New(rand.NewPCG(1, 2))
		var runRecs [][]Record
		for range runs {
			recs := make([]Record, runItems)
			for i := range recs {
				recs[i] = Record{Key: benchKey(rng.IntN(1 << 24)), Version: 1, Value: val}
			}
			runRecs = append(runRecs, recs)
		}
		b.StartTimer()
		stop := make(chan struct{})
		var (
			mu   sync.Mutex
			lats []time.Duration
			wg   sync.WaitGroup
		)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for i := 0; ; i++ {
					select {
					case <-stop:
						mu.Lock()
						lats = append(lats, mine...)
						mu.Unlock()
						return
					default:
					}
					start := time.Now()
					if _, err := e.Apply([]Record{{Key: benchKey(1<<25 + w<<20 + i), Version: 1, Value: val}}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
			}()
		}
		start := time.Now()
		for _, recs := range runRecs {
			if _, err := e.Ingest(recs); err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start)
		close(stop)
		wg.Wait()
		b.StopTimer()
		slices.Sort(lats)
		q := func(f float64) float64 { return float64(lats[int(f*float64(len(lats)-1))].Microseconds()) / 1000 }
		b.ReportMetric(q(0.5), "apply-p50-ms")
		b.ReportMetric(q(0.99), "apply-p99-ms")
		b.ReportMetric(q(1), "apply-max-ms")
		b.ReportMetric(float64(len(lats))/el.Seconds(), "applies/s")
		b.ReportMetric(float64(runs*runItems)/el.Seconds(), "ingested/s")
		b.StartTimer()
	}
}
