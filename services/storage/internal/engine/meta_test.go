package engine

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestMetaAndHasData(t *testing.T) {
	fs := vfs.NewMem()
	e := openTest(t, Options{FS: fs})
	if v, found, err := e.Meta("identity"); err != nil || found || v != nil {
		t.Fatalf("fresh store: Meta = %q, %v, %v", v, found, err)
	}
	if has, err := e.HasData(); err != nil || has {
		t.Fatalf("fresh store (only the layout version): HasData = %v, %v", has, err)
	}
	if err := e.SetMeta("identity", []byte(`{"node_id":"n1"}`)); err != nil {
		t.Fatal(err)
	}
	if has, err := e.HasData(); err != nil || has {
		t.Fatalf("metadata is not data: HasData = %v, %v", has, err)
	}
	if err := e.db.Set(EncodeKey(Key{Partition: 3, TableID: 7, PartitionKey: []byte("pk")}), []byte{0}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if has, err := e.HasData(); err != nil || !has {
		t.Fatalf("after an item: HasData = %v, %v", has, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Meta("identity"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Meta after Close: %v, want ErrClosed", err)
	}
	// The record survives a reopen.
	e = openTest(t, Options{FS: fs})
	if v, found, err := e.Meta("identity"); err != nil || !found || string(v) != `{"node_id":"n1"}` {
		t.Fatalf("after reopen: Meta = %q, %v, %v", v, found, err)
	}
}
