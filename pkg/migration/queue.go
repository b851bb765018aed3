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

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
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
// deleted are DropStaleSyncs').
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

// StaleSyncs is the queued re-syncs of one table that DropStaleSyncs
// removed.
type StaleSyncs struct {
	Table string
	// Count is how many entries were removed.
	Count int64
	// Why: "no migration" (it was deleted) or "done" (it finished).
	Why string
}

// DropStaleSyncs removes the queues of tables whose entries no replay will
// ever apply: tables without a migration (deleted) and tables whose
// migration is DONE (Veltrix may hold newer writes than DynamoDB). Each
// queue goes in one transaction that holds only if the migration document
// is still as read (absent, or DONE at the revision read), so a migration
// started meanwhile keeps its entries. It returns what it removed.
func (s *Store) DropStaleSyncs(ctx context.Context) ([]StaleSyncs, error) {
	prefix := s.Keys.SyncPrefix()
	end := clientv3.GetPrefixRangeEnd(prefix)
	var out []StaleSyncs
	// Skip from one table's queue to the next: one read per table.
	for from := prefix; ; {
		resp, err := s.Client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly())
		if err != nil {
			return out, fmt.Errorf("migration: list queued re-syncs: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return out, nil
		}
		table, _, ok := strings.Cut(strings.TrimPrefix(string(resp.Kvs[0].Key), prefix), "/")
		if !ok {
			from = string(resp.Kvs[0].Key) + "\x00"
			continue
		}
		tablePrefix := s.Keys.SyncTablePrefix(table)
		from = clientv3.GetPrefixRangeEnd(tablePrefix)
		mkey := s.Keys.Migration(table)
		doc, err := s.Client.Get(ctx, mkey)
		if err != nil {
			return out, fmt.Errorf("migration: get %s: %w", table, err)
		}
		var (
			cond clientv3.Cmp
			why  string
		)
		switch {
		case len(doc.Kvs) == 0:
			cond, why = clientv3.Compare(clientv3.CreateRevision(mkey), "=", 0), "no migration"
		default:
			m, err := decodeMigration(doc.Kvs[0])
			if err != nil {
				return out, err
			}
			if m.GetPhase() != migrationv1.Phase_PHASE_DONE {
				continue
			}
			cond, why = clientv3.Compare(clientv3.ModRevision(mkey), "=", doc.Kvs[0].ModRevision), "done"
		}
		txn, err := s.Client.Txn(ctx).If(cond).Then(clientv3.OpDelete(tablePrefix, clientv3.WithPrefix())).Commit()
		if err != nil {
			return out, fmt.Errorf("migration: drop queued re-syncs of %s (%s): %w", table, why, err)
		}
		if !txn.Succeeded {
			continue // the migration changed meanwhile: the next round judges again
		}
		if n := txn.Responses[0].GetResponseDeleteRange().GetDeleted(); n > 0 {
			out = append(out, StaleSyncs{Table: table, Count: n, Why: why})
		}
	}
}
