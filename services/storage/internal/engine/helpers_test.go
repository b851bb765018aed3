package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashDirEnv) != "" {
		// The crash helper is killed; it has nothing to check for leaks.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// t0 is the start of every injected clock.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: t0} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openTest opens an engine on an in-memory filesystem unless o says
// otherwise, with the background purger off, and closes it at the end of the
// test.
func openTest(t testing.TB, o Options) *Engine {
	t.Helper()
	if o.FS == nil {
		o.FS = vfs.NewMem()
	}
	if o.Dir == "" {
		o.Dir = "db"
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = -1
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 4 << 20
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = 8 << 20
	}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && err != ErrClosed {
			t.Error(err)
		}
	})
	return e
}

// recomputeDigests scans every item and hashes it, the slow way the engine
// never does.
func recomputeDigests(t testing.TB, e *Engine) map[uint32]PartitionDigest {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{spaceItem}, UpperBound: []byte{spaceItem + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	m := make(map[uint32]PartitionDigest)
	for ok := it.First(); ok; ok = it.Next() {
		s, err := decodeStored(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		p := binary.BigEndian.Uint32(it.Key()[1:5])
		d := m[p]
		d.add(recordHash(it.Key(), &s))
		m[p] = d
	}
	return m
}

// checkDigests fails the test unless the maintained digests equal the
// recomputed ones.
func checkDigests(t testing.TB, e *Engine) {
	t.Helper()
	got, err := e.Digests()
	if err != nil {
		t.Fatal(err)
	}
	want := recomputeDigests(t, e)
	if len(got) != len(want) {
		t.Fatalf("digests cover %d partitions, records are in %d: %v vs %v", len(got), len(want), got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Fatalf("partition %d: maintained digest %+v, recomputed %+v", p, got[p], w)
		}
		d, err := e.Digest(p)
		if err != nil || d != w {
			t.Fatalf("Digest(%d) = %+v, %v; want %+v", p, d, err, w)
		}
	}
}

// streamAll returns every record of a partition, canonically encoded, one
// per element.
func streamAll(t testing.TB, e *Engine, p uint32) [][]byte {
	t.Helper()
	var out [][]byte
	err := e.StreamPartition(p, nil, func(r Record) error {
		out = append(out, canonical(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameGets fails unless a and b answer Get alike for the keys of recs.
func sameGets(t testing.TB, a, b *Engine, recs []Record) {
	t.Helper()
	for i := range recs {
		ra, fa, err := a.Get(recs[i].Key)
		if err != nil {
			t.Fatal(err)
		}
		rb, fb, err := b.Get(recs[i].Key)
		if err != nil {
			t.Fatal(err)
		}
		if fa != fb || (fa && !bytes.Equal(canonical(ra), canonical(rb))) {
			t.Fatalf("Get(%q) differs: %v %s / %v %s", recs[i].Key.PartitionKey, fa, formatRecord(ra), fb, formatRecord(rb))
		}
	}
}

func canonical(r Record) []byte {
	var b bytes.Buffer
	b.Write(EncodeKey(r.Key))
	s := recordState(&r, 0)
	h := make([]byte, s.headerLen())
	s.putHeader(h)
	b.Write(h)
	b.Write(r.Value)
	return b.Bytes()
}

func formatRecord(r Record) string {
	s := fmt.Sprintf("p=%d t=%d pk=%s sk=%s v=%d", r.Key.Partition, r.Key.TableID, r.Key.PartitionKey, r.Key.SortKey, r.Version)
	if r.Tombstone {
		return s + " tombstone"
	}
	s += " val=" + string(r.Value)
	if r.ExpireAt != 0 {
		s += " exp=" + time.Unix(0, r.ExpireAt).Sub(t0).String()
	}
	return s
}

// mapCache is a trivial Cache for tests.
type mapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMapCache() *mapCache { return &mapCache{m: make(map[string][]byte)} }

func (c *mapCache) Get(k []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[string(k)]
	return v, ok
}

func (c *mapCache) Set(k, v []byte) {
	c.mu.Lock()
	c.m[string(k)] = v
	c.mu.Unlock()
}

func (c *mapCache) Delete(k []byte) {
	c.mu.Lock()
	delete(c.m, string(k))
	c.mu.Unlock()
}

func (c *mapCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
