package migration

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// newID returns an id that sorts in time order (nanoseconds since the
// epoch, fixed width) with a random suffix so ids made at once by several
// routers differ.
func newID(now time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%016x-%08x", uint64(now.UnixNano()), binary.BigEndian.Uint32(r[:]))
}

// syncEntry is a queued re-sync as stored.
type syncEntry struct {
	// Key is the item's key, DynamoDB JSON.
	Key string `json:"key"`
	// Queued is when it was queued.
	Queued time.Time `json:"queued"`
}

// EnqueueSync durably queues a re-sync of one item of table (key: DynamoDB
// JSON of the key attributes); it returns once the entry is in etcd.
func (s *Store) EnqueueSync(ctx context.Context, table, key string) error {
	if err := validName("table", table); err != nil {
		return err
	}
	now := time.Now()
	b, err := json.Marshal(syncEntry{Key: key, Queued: now.UTC()})
	if err != nil {
		return err
	}
	if _, err := s.Client.Put(ctx, s.Keys.SyncTablePrefix(table)+newID(now), string(b)); err != nil {
		return fmt.Errorf("migration: queue re-sync of %s %s: %w", table, key, err)
	}
	return nil
}

// PendingSyncs returns up to limit queued re-syncs, oldest first, of the
// tables that have a migration (entries of a table whose migration was
// deleted stay where they are).
func (s *Store) PendingSyncs(ctx context.Context, limit int) ([]PendingSync, error) {
	if limit <= 0 {
		return nil, nil
	}
	migs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	tables := make([]string, len(migs))
	for i, m := range migs {
		tables[i] = m.GetTable()
	}
	return s.pendingSyncs(ctx, tables, limit)
}

// pendingSyncs is PendingSyncs over the queues of tables.
func (s *Store) pendingSyncs(ctx context.Context, tables []string, limit int) ([]PendingSync, error) {
	var out []PendingSync
	for _, table := range tables {
		// Ids sort in time order, so each table's first entries by key are
		// its oldest; merging those gives the oldest overall.
		prefix := s.Keys.SyncTablePrefix(table)
		resp, err := s.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(int64(limit)))
		if err != nil {
			return nil, fmt.Errorf("migration: list queued re-syncs of %s: %w", table, err)
		}
		for _, kv := range resp.Kvs {
			var e syncEntry
			if err := json.Unmarshal(kv.Value, &e); err != nil {
				return nil, fmt.Errorf("migration: decode %s: %w", kv.Key, err)
			}
			out = append(out, PendingSync{Table: table, Key: e.Key, ID: strings.TrimPrefix(string(kv.Key), prefix), Queued: e.Queued})
		}
	}
	slices.SortFunc(out, func(a, b PendingSync) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// DoneSync removes a replayed entry. Removing one already removed (by
// another router's replay) is not an error.
func (s *Store) DoneSync(ctx context.Context, p PendingSync) error {
	if err := validName("table", p.Table); err != nil {
		return err
	}
	if err := validName("queue entry", p.ID); err != nil {
		return err
	}
	if _, err := s.Client.Delete(ctx, s.Keys.SyncTablePrefix(p.Table)+p.ID); err != nil {
		return fmt.Errorf("migration: remove queued re-sync of %s %s: %w", p.Table, p.Key, err)
	}
	return nil
}

// PendingSyncCount is the number of table's queued re-syncs.
func (s *Store) PendingSyncCount(ctx context.Context, table string) (uint64, error) {
	resp, err := s.Client.Get(ctx, s.Keys.SyncTablePrefix(table), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("migration: count queued re-syncs of %s: %w", table, err)
	}
	return uint64(resp.Count), nil
}
