package engine

import (
	"fmt"
	"testing"
	"time"
)

// TestBucketDigests: the buckets add up to the partition's digest, each
// record lands in exactly one bucket, and two replicas that differ in one
// record differ in exactly that record's bucket.
func TestBucketDigests(t *testing.T) {
	a := openTest(t, Options{})
	b := openTest(t, Options{})
	var recs []Record
	for i := range 500 {
		r := Record{Key: Key{Partition: 3, TableID: 1, PartitionKey: fmt.Appendf(nil, "k%d", i)}, Version: uint64(i + 1), Value: []byte("v")}
		if i%7 == 0 {
			r = Record{Key: r.Key, Version: r.Version, Tombstone: true}
		}
		recs = append(recs, r)
	}
	for _, e := range []*Engine{a, b} {
		if _, err := e.Apply(recs); err != nil {
			t.Fatal(err)
		}
	}
	// b misses a newer write of k42.
	newer := Record{Key: recs[42].Key, Version: 10_000, Value: []byte("new")}
	if _, err := a.Apply([]Record{newer}); err != nil {
		t.Fatal(err)
	}
	const n = 64
	da, err := a.BucketDigests(3, n)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.BucketDigests(3, n)
	if err != nil {
		t.Fatal(err)
	}
	var sum PartitionDigest
	var differ []int
	for i := range n {
		sum.Count += da[i].Count
		sum.Sum += da[i].Sum
		if da[i] != db[i] {
			differ = append(differ, i)
		}
	}
	if whole, _ := a.Digest(3); whole != sum {
		t.Fatalf("buckets add up to %v, partition digest %v", sum, whole)
	}
	want := BucketOf(EncodeKey(newer.Key), n)
	if len(differ) != 1 || differ[0] != want {
		t.Fatalf("differing buckets %v, want [%d]", differ, want)
	}
	// Streaming that bucket from a and applying it to b converges them.
	var got []Record
	if err := a.StreamBuckets(3, n, map[int]bool{want: true}, nil, func(r Record) error {
		if BucketOf(EncodeKey(r.Key), n) != want {
			t.Errorf("record %q of bucket %d streamed for bucket %d", r.Key.PartitionKey, BucketOf(EncodeKey(r.Key), n), want)
		}
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(got); err != nil {
		t.Fatal(err)
	}
	ga, _ := a.Digest(3)
	gb, _ := b.Digest(3)
	if ga != gb {
		t.Fatalf("after exchanging bucket %d: digests %v and %v", want, ga, gb)
	}
	if _, err := a.BucketDigests(3, 0); err == nil {
		t.Fatal("0 buckets accepted")
	}
}

// TestPurgeWaitsForSyncPoint: with PurgeNeedsSync a tombstone past its
// grace is kept until anti-entropy has set a sync point after it, so a
// replica that was away cannot resurrect the delete.
func TestPurgeWaitsForSyncPoint(t *testing.T) {
	clock := newTestClock()
	e := openTest(t, Options{Now: clock.Now, TombstoneGrace: time.Hour, PurgeNeedsSync: true, SyncSkew: time.Second, PurgeInterval: -1})
	del := Record{Key: Key{Partition: 1, PartitionKey: []byte("gone")}, Version: 5, Tombstone: true}
	if _, err := e.Apply([]Record{del}); err != nil {
		t.Fatal(err)
	}
	deletedAt := clock.Now()
	clock.Advance(2 * time.Hour)
	if st, err := e.Purge(); err != nil || st.Tombstones != 0 {
		t.Fatalf("purged %+v, %v without a sync point", st, err)
	}
	// A sync point from before the delete does not allow it either.
	if err := e.SetSyncPoint(1, deletedAt.Add(-time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Purge(); st.Tombstones != 0 {
		t.Fatal("purged with a sync point before the delete")
	}
	// Sync points only move forward.
	if err := e.SetSyncPoint(1, deletedAt.Add(time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := e.SetSyncPoint(1, deletedAt.Add(-time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if sp, _ := e.SyncPoint(1); sp != deletedAt.Add(time.Minute).UnixNano() {
		t.Fatalf("sync point moved back to %d", sp)
	}
	if st, err := e.Purge(); err != nil || st.Tombstones != 1 {
		t.Fatalf("purged %+v, %v after a sync point past the delete", st, err)
	}
	checkDigests(t, e)
}

// TestTombstoneKeepsItsDeleteTime: a tombstone copied by repair keeps the
// time the delete was first written, so replicas purge it together rather
// than copying it back and forth; a time in the future counts as now.
func TestTombstoneKeepsItsDeleteTime(t *testing.T) {
	clock := newTestClock()
	e := openTest(t, Options{Now: clock.Now, TombstoneGrace: time.Hour, PurgeInterval: -1})
	old := Record{Key: Key{Partition: 2, PartitionKey: []byte("old")}, Version: 3, Tombstone: true, DeletedAt: clock.Now().Add(-2 * time.Hour).UnixNano()}
	future := Record{Key: Key{Partition: 2, PartitionKey: []byte("future")}, Version: 3, Tombstone: true, DeletedAt: clock.Now().Add(time.Hour).UnixNano()}
	if _, err := e.Apply([]Record{old, future}); err != nil {
		t.Fatal(err)
	}
	got, _, err := e.Get(old.Key)
	if err != nil || got.DeletedAt != old.DeletedAt {
		t.Fatalf("Get: DeletedAt %d, %v; want %d", got.DeletedAt, err, old.DeletedAt)
	}
	st, err := e.Purge()
	if err != nil || st.Tombstones != 1 {
		t.Fatalf("purged %+v, %v; want only the delete written 2h ago", st, err)
	}
	if _, found, _ := e.Get(future.Key); !found {
		t.Fatal("a delete time in the future was not clamped to now")
	}
}
