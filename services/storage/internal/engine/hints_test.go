package engine

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func hintRecs(from, n int, value string) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: Key{Partition: 3, TableID: 1, PartitionKey: fmt.Appendf(nil, "k%04d", from+i), SortKey: []byte("s")}, Version: uint64(100 + from + i), Value: []byte(value)}
	}
	return recs
}

// TestHintsSurviveCrash: hints acknowledged by StoreHints are on disk (a
// crash keeps only synced data), are counted again after the reopen, and
// new hints get fresh sequences.
func TestHintsSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e, err := Open(Options{FS: fs, Dir: "db", PurgeInterval: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.StoreHints("n2", hintRecs(0, 10, "a")); err != nil {
		t.Fatal(err)
	}
	tomb := Record{Key: Key{Partition: 3, TableID: 1, PartitionKey: []byte("gone")}, Version: 7, Tombstone: true}
	if err := e.StoreHints("n3", []Record{tomb}); err != nil {
		t.Fatal(err)
	}
	before := e.HintTotals()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // only what was synced
	_ = e.Close()

	e2 := openTest(t, Options{FS: crashed, Dir: "db"})
	if got := e2.HintTotals(); got != before || got.Pending != 11 {
		t.Fatalf("after the crash: %+v, before %+v", got, before)
	}
	hs, err := e2.Hints("n2", 100, 1<<20)
	if err != nil || len(hs) != 10 {
		t.Fatalf("Hints(n2): %d, %v", len(hs), err)
	}
	for i, h := range hs {
		want := hintRecs(i, 1, "a")[0]
		if h.Target != "n2" || h.Record.Version != want.Version || !bytes.Equal(h.Record.Key.PartitionKey, want.Key.PartitionKey) || string(h.Record.Value) != "a" {
			t.Fatalf("hint %d: %+v", i, h)
		}
	}
	th, err := e2.Hints("n3", 100, 1<<20)
	if err != nil || len(th) != 1 || !th[0].Record.Tombstone || th[0].Record.DeletedAt != th[0].StoredAt || th[0].StoredAt == 0 {
		t.Fatalf("tombstone hint: %+v, %v", th, err)
	}
	if err := e2.StoreHints("n2", hintRecs(10, 1, "b")); err != nil {
		t.Fatal(err)
	}
	hs, _ = e2.Hints("n2", 100, 1<<20)
	if len(hs) != 11 || hs[10].Seq <= hs[9].Seq || hs[10].Seq <= th[0].Seq {
		t.Fatalf("sequence after reopen: %d hints, last seqs %d %d", len(hs), hs[9].Seq, hs[10].Seq)
	}
	// Hints are not items: no read, digest or data sees them.
	if has, err := e2.HasData(); err != nil || has {
		t.Fatalf("HasData with only hints: %v %v", has, err)
	}
}

func TestHintsBudget(t *testing.T) {
	e := openTest(t, Options{MaxHintBytes: 4 << 10})
	var stored int
	var err error
	for err == nil {
		if err = e.StoreHints("n2", hintRecs(stored, 1, string(make([]byte, 500)))); err == nil {
			stored++
		}
	}
	if !errors.Is(err, ErrHintsFull) || stored == 0 || stored > 8 {
		t.Fatalf("after %d hints: %v", stored, err)
	}
	full := e.HintTotals()
	if full.Bytes > 4<<10 || full.Pending != uint64(stored) {
		t.Fatalf("held %+v", full)
	}
	// A refused batch stores nothing.
	if err := e.StoreHints("n3", append(hintRecs(100, 1, "x"), hintRecs(101, 1, string(make([]byte, 500)))...)); !errors.Is(err, ErrHintsFull) || e.HintTotals() != full {
		t.Fatalf("a batch past the budget: %v, held %+v", err, e.HintTotals())
	}
	// Deleting makes room again.
	hs, err := e.Hints("n2", 2, 1<<20)
	if err != nil || len(hs) != 2 {
		t.Fatal(len(hs), err)
	}
	if n, err := e.DeleteHints(hs); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := e.DeleteHints(hs); n != 0 || err != nil { // a second delete counts nothing
		t.Fatal(n, err)
	}
	if got := e.HintTotals(); got.Pending != full.Pending-2 {
		t.Fatalf("after delete: %+v", got)
	}
	if err := e.StoreHints("n2", hintRecs(1000, 1, string(make([]byte, 500)))); err != nil {
		t.Fatal(err)
	}
	// Bad input is refused, not stored.
	for _, bad := range [][]Record{{{Key: Key{PartitionKey: []byte("k")}}}, {{Key: Key{}, Version: 1}}} {
		if err := e.StoreHints("n2", bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("bad record: %v", err)
		}
	}
	if err := e.StoreHints("", hintRecs(0, 1, "a")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no target: %v", err)
	}
}

func TestHintsMaxBytesPerRead(t *testing.T) {
	e := openTest(t, Options{})
	if err := e.StoreHints("n2", hintRecs(0, 10, string(make([]byte, 1000)))); err != nil {
		t.Fatal(err)
	}
	hs, err := e.Hints("n2", 100, 3000)
	if err != nil || len(hs) != 2 {
		t.Fatalf("3000 bytes: %d hints, %v", len(hs), err)
	}
	if hs, _ = e.Hints("n2", 100, 1); len(hs) != 1 {
		t.Fatalf("at least one hint: %d", len(hs))
	}
	if hs, _ = e.Hints("n2", 4, 1<<20); len(hs) != 4 {
		t.Fatalf("4 records: %d", len(hs))
	}
	if hs, _ = e.Hints("n", 100, 1<<20); len(hs) != 0 { // a prefix of another target
		t.Fatalf("target n: %d", len(hs))
	}
}

func TestHintsDropOld(t *testing.T) {
	clock := newTestClock()
	e := openTest(t, Options{Now: clock.Now})
	if err := e.StoreHints("n2", hintRecs(0, 3, "old")); err != nil {
		t.Fatal(err)
	}
	if err := e.StoreHints("n3", hintRecs(0, 1, "old")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if err := e.StoreHints("n2", hintRecs(3, 2, "new")); err != nil {
		t.Fatal(err)
	}
	dropped, err := e.DropHintsBefore(clock.Now().Add(-30 * time.Minute).UnixNano())
	if err != nil || dropped["n2"] != 3 || dropped["n3"] != 1 {
		t.Fatalf("dropped %v, %v", dropped, err)
	}
	hs, _ := e.Hints("n2", 100, 1<<20)
	if len(hs) != 2 || string(hs[0].Record.Value) != "new" {
		t.Fatalf("left: %+v", hs)
	}
	if tg := e.HintTargets(); len(tg) != 1 || tg["n2"].Pending != 2 {
		t.Fatalf("targets: %+v", tg)
	}
}
