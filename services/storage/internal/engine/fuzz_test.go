package engine

import (
	"bytes"
	"testing"
)

// FuzzDecodeKey: StreamPartition's resume point comes from outside.
func FuzzDecodeKey(f *testing.F) {
	f.Add(EncodeKey(Key{Partition: 1, TableID: 2, PartitionKey: []byte("pk"), SortKey: []byte("sk")}))
	f.Add([]byte{spaceItem, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKey(b)
		if err != nil {
			return
		}
		if ValidateKey(k) != nil || !bytes.Equal(EncodeKey(k), b) {
			t.Fatalf("DecodeKey(%x) = %+v does not round-trip", b, k)
		}
	})
}

// FuzzDecodeStored: stored values are ours, but a decoder of bytes on disk
// must fail cleanly on corruption.
func FuzzDecodeStored(f *testing.F) {
	for _, s := range []stored{
		{version: 7, value: []byte("v")},
		{version: 8, tombstone: true, deletedAt: 99},
		{version: 9, expireAt: 5, value: []byte("x")},
	} {
		f.Add(s.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeStored(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.encode(), b) {
			t.Fatalf("decodeStored(%x) = %+v does not round-trip", b, s)
		}
	})
}

// FuzzScanResume: resume tokens come from clients.
func FuzzScanResume(f *testing.F) {
	e := openTest(f, Options{})
	var recs []Record
	for _, sk := range []string{"", "a", "b", "c"} {
		recs = append(recs, Record{Key: Key{PartitionKey: []byte("p"), SortKey: []byte(sk)}, Version: 1, Value: []byte(sk)})
	}
	if _, err := e.Apply(recs); err != nil {
		f.Fatal(err)
	}
	_, tok, err := e.Scan(ScanOptions{PartitionKey: []byte("p"), Limit: 1})
	if err != nil || tok == nil {
		f.Fatal(err)
	}
	f.Add(tok, false)
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, tok []byte, reverse bool) {
		got, _, err := e.Scan(ScanOptions{PartitionKey: []byte("p"), Resume: tok, Reverse: reverse, Limit: 2})
		if err == nil && len(got) > 2 {
			t.Fatalf("limit 2 returned %d records", len(got))
		}
	})
}
