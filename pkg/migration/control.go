package migration

import (
	"context"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// Side is where a read was served from.
type Side int

// Sides.
const (
	SideDynamoDB Side = iota
	SideVeltrix
)

// PendingSync is one queued re-sync of an item.
type PendingSync struct {
	// Table is the Veltrix table.
	Table string
	// Key is the item's primary key, DynamoDB JSON.
	Key string
	// ID identifies the queue entry (for Done).
	ID string
	// Queued is when it was queued.
	Queued time.Time
}

// Control is what a router's DynamoDB endpoint needs from the migration
// control plane. The etcd-backed implementation is *Store's watcher; every
// method is safe for concurrent use.
type Control interface {
	// Migration returns the table's migration as last seen from etcd, if
	// the table has one. The result must not be modified.
	Migration(table string) (*migrationv1.Migration, bool)
	// EnqueueSync durably queues a re-sync of one item (key: DynamoDB JSON
	// of the key attributes); it returns once the entry is in etcd, so a
	// router killed afterwards loses nothing.
	EnqueueSync(ctx context.Context, table, key string) error
	// PendingSyncs returns up to limit queued re-syncs of any table, oldest
	// first. Every router replays them; a re-sync is idempotent.
	PendingSyncs(ctx context.Context, limit int) ([]PendingSync, error)
	// DoneSync removes a replayed entry.
	DoneSync(ctx context.Context, p PendingSync) error
	// DropStaleSyncs removes the queued re-syncs of tables that have no
	// migration or whose migration is DONE, and says how many it removed.
	DropStaleSyncs(ctx context.Context) ([]StaleSyncs, error)
	// RecordMismatch counts a shadow-read mismatch and keeps it in the
	// bounded sample.
	RecordMismatch(ctx context.Context, table string, m *migrationv1.Mismatch)
	Recorder
}

// Recorder takes the per-request figures behind the exit criteria. The
// implementation keeps windowed sums per table, publishes them to etcd for
// `veltrix migrate status`, and exports them as Prometheus metrics.
type Recorder interface {
	// ShadowCompared counts one shadow comparison.
	ShadowCompared(table string, mismatch bool)
	// ReadLatency records a read's latency on one side.
	ReadLatency(table string, side Side, d time.Duration)
	// MirrorWrite counts a mirrored write; failed when its Veltrix side
	// failed and it was queued.
	MirrorWrite(table string, failed bool)
	// VeltrixServerError counts a 5xx answer of a Veltrix-served request.
	VeltrixServerError(table string)
}
