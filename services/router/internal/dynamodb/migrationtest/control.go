// Package migrationtest is an in-memory migration.Control for the DynamoDB
// endpoint's tests: migrations set by the test, a queue in memory, and
// the recorded figures kept for assertions.
package migrationtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/protobuf/proto"
)

// ErrQueueDown is what EnqueueSync returns while the queue is failing.
var ErrQueueDown = errors.New("migrationtest: queue unavailable")

// Control is an in-memory migration.Control. The zero value is not
// usable: call New.
type Control struct {
	mu         sync.Mutex
	migrations map[string]*migrationv1.Migration
	queue      map[string]migration.PendingSync
	seq        int
	queueDown  bool

	// Figures.
	Mismatches   []*migrationv1.Mismatch
	Compared     int
	Mismatched   int
	Mirrored     int
	MirrorFailed int
	ServerErrors int
	Enqueued     int
	latencies    map[migration.Side]int
}

var _ migration.Control = (*Control)(nil)

// New returns an empty Control.
func New() *Control {
	return &Control{migrations: map[string]*migrationv1.Migration{}, queue: map[string]migration.PendingSync{},
		latencies: map[migration.Side]int{}}
}

// Set stores a table's migration (a copy).
func (c *Control) Set(m *migrationv1.Migration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.migrations[m.GetTable()] = proto.Clone(m).(*migrationv1.Migration)
}

// Delete removes a table's migration (not its queued re-syncs, as in etcd).
func (c *Control) Delete(table string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.migrations, table)
}

// SetPhase changes a table's phase and cutover percentage.
func (c *Control) SetPhase(table string, p migrationv1.Phase, percent uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := proto.Clone(c.migrations[table]).(*migrationv1.Migration)
	m.Phase, m.CutoverPercent = p, percent
	c.migrations[table] = m
}

// FailQueue makes EnqueueSync fail (true) or work again.
func (c *Control) FailQueue(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queueDown = down
}

// Pending is the number of queued re-syncs.
func (c *Control) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Snapshot returns the figures under the lock.
func (c *Control) Snapshot() (compared, mismatched, mirrored, mirrorFailed, enqueued int, mismatches []*migrationv1.Mismatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Compared, c.Mismatched, c.Mirrored, c.MirrorFailed, c.Enqueued, append([]*migrationv1.Mismatch(nil), c.Mismatches...)
}

// Migration implements migration.Control.
func (c *Control) Migration(table string) (*migrationv1.Migration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.migrations[table]
	return m, ok
}

// EnqueueSync implements migration.Control.
func (c *Control) EnqueueSync(_ context.Context, table, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queueDown {
		return ErrQueueDown
	}
	c.seq++
	id := fmt.Sprintf("%08d", c.seq)
	c.queue[id] = migration.PendingSync{Table: table, Key: key, ID: id, Queued: time.Now()}
	c.Enqueued++
	return nil
}

// PendingSyncs implements migration.Control.
func (c *Control) PendingSyncs(_ context.Context, limit int) ([]migration.PendingSync, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]migration.PendingSync, 0, len(c.queue))
	for _, p := range c.queue {
		if _, ok := c.migrations[p.Table]; ok { // as the etcd queue: tables with a migration
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// DoneSync implements migration.Control.
func (c *Control) DoneSync(_ context.Context, p migration.PendingSync) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.queue, p.ID)
	return nil
}

// DropStaleSyncs implements migration.Control.
func (c *Control) DropStaleSyncs(context.Context) ([]migration.StaleSyncs, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[string]*migration.StaleSyncs{}
	for id, p := range c.queue {
		why := "no migration"
		if m, ok := c.migrations[p.Table]; ok {
			if m.GetPhase() != migrationv1.Phase_PHASE_DONE {
				continue
			}
			why = "done"
		}
		if n[p.Table] == nil {
			n[p.Table] = &migration.StaleSyncs{Table: p.Table, Why: why}
		}
		n[p.Table].Count++
		delete(c.queue, id)
	}
	out := make([]migration.StaleSyncs, 0, len(n))
	for _, s := range n {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out, nil
}

// RecordMismatch implements migration.Control.
func (c *Control) RecordMismatch(_ context.Context, _ string, m *migrationv1.Mismatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Mismatches = append(c.Mismatches, m)
}

// ShadowCompared implements migration.Recorder.
func (c *Control) ShadowCompared(_ string, mismatch bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Compared++
	if mismatch {
		c.Mismatched++
	}
}

// ReadLatency implements migration.Recorder.
func (c *Control) ReadLatency(_ string, side migration.Side, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latencies[side]++
}

// Reads returns how many reads each side served or shadowed.
func (c *Control) Reads(side migration.Side) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latencies[side]
}

// MirrorWrite implements migration.Recorder.
func (c *Control) MirrorWrite(_ string, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Mirrored++
	if failed {
		c.MirrorFailed++
	}
}

// VeltrixServerError implements migration.Recorder.
func (c *Control) VeltrixServerError(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ServerErrors++
}
