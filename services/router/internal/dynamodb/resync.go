package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// Re-sync from source (docs/design.md, "Migration mode: convergence"):
// whenever a path learns that an item may have changed in DynamoDB, it
// takes the item's Veltrix lock, reads the item from DynamoDB with
// ConsistentRead and writes what it read (a tombstone when absent) at
// version max(now + S, stored + 1).

// Errors of SyncItems. Use errors.Is.
var (
	// ErrNotMirroring: the table has no migration in PHASE_MIRROR to
	// PHASE_VELTRIX.
	ErrNotMirroring = errors.New("dynamodb: table is not in a mirroring migration phase")
	// ErrSync: an item could not be re-synced (the error says why).
	ErrSync = errors.New("dynamodb: re-sync")
)

// maxSyncParallel bounds the items of one SyncItems re-synced at once.
const maxSyncParallel = 16

// replayBatch is how many queued re-syncs one replay round takes.
const replayBatch = 100

// SyncItems brings Veltrix's copy of each item of table in line with
// DynamoDB (MigrationService.SyncItems; the endpoint's own mirrored writes
// do the same). keys are DynamoDB JSON objects of the key attributes;
// errs[i] is nil when keys[i] was synced. A key whose re-sync failed is
// queued for replay (Control.EnqueueSync) before SyncItems returns; its
// error says whether that worked. Every error wraps ErrNotMirroring when
// the table is not in PHASE_MIRROR to PHASE_VELTRIX, else ErrSync.
func (h *Handler) SyncItems(ctx context.Context, table string, keys []string) []error {
	errs := h.syncJSON(ctx, table, keys)
	for i, err := range errs {
		if err == nil || errors.Is(err, ErrNotMirroring) || errors.Is(err, errBadKey) {
			continue
		}
		if qerr := h.mig.ctl.EnqueueSync(ctx, table, keys[i]); qerr != nil {
			h.o.Metrics.syncLost()
			h.o.Logger.Error("dynamodb: migration: a re-sync failed and could not be queued: Veltrix misses the item's change until its next write or CDC record, or a verify and repair",
				"table", table, "key", keys[i], "resync_err", err, "queue_err", qerr)
			errs[i] = fmt.Errorf("%w (and queueing it for replay failed: %v)", err, qerr)
			continue
		}
		errs[i] = fmt.Errorf("%w (queued for replay)", err)
	}
	return errs
}

// errBadKey marks a key that can never be synced (not a key of the
// table): it is not queued.
var errBadKey = errors.New("not a key of the table")

// syncJSON re-syncs keys given as DynamoDB JSON, without queueing.
func (h *Handler) syncJSON(ctx context.Context, table string, keys []string) []error {
	errs := make([]error, len(keys))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	if h.mig == nil {
		return fail(fmt.Errorf("%w: table %s: the endpoint runs no migrations", ErrNotMirroring, table))
	}
	mg, ok := h.mig.ctl.Migration(table)
	if !ok || !migration.MirrorsWrites(mg) {
		return fail(fmt.Errorf("%w: table %s is in phase %s", ErrNotMirroring, table, mg.GetPhase()))
	}
	t, err := h.table(table)
	if err != nil {
		return fail(fmt.Errorf("%w: table %s: %w", ErrSync, table, err))
	}
	var valid []ddb.Item
	var idx []int
	for i, k := range keys {
		it, err := ddb.UnmarshalDynamoDBJSON([]byte(k))
		if err == nil {
			_, err = t.storageKey(it, true)
		}
		if err != nil {
			errs[i] = fmt.Errorf("%w: table %s: key %s: %w: %w", ErrSync, table, k, errBadKey, err)
			continue
		}
		valid = append(valid, it)
		idx = append(idx, i)
	}
	for j, err := range h.mig.syncKeys(ctx, mg, t, valid) {
		errs[idx[j]] = err
	}
	return errs
}

// syncKeys re-syncs each key, in parallel.
func (m *migrator) syncKeys(ctx context.Context, mg *migrationv1.Migration, t *table, keys []ddb.Item) []error {
	errs := make([]error, len(keys))
	sem := make(chan struct{}, maxSyncParallel)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := m.coalesce(ctx, mg, t, k); err != nil {
				errs[i] = fmt.Errorf("%w: table %s, key %s: %w", ErrSync, t.Name, k, err)
			}
		})
	}
	wg.Wait()
	return errs
}

// A round is one re-sync of an item (syncItem) and everyone it serves.
type syncRound struct {
	done chan struct{} // closed when the round ended; err is set then
	err  error
}

// itemSyncs are an item's rounds on this router: the one running and the
// one that starts when it ends (nil: none asked for yet).
type itemSyncs struct {
	running, next *syncRound
}

// coalesce re-syncs one item, sharing the work with the other re-syncs of
// the item on this router. Taken one by one, N concurrent re-syncs of a
// hot item queue for its lock and the last waits for N lock rounds (each
// a DynamoDB read and a Veltrix write). But a re-sync only has to take
// the lock after the write it follows was acknowledged: its consistent
// read then sees that write or a later state. So a re-sync that finds one
// of its item running joins the next round, which starts (takes the lock)
// only after the running one ended, hence after every joiner's write was
// acknowledged; the first to join runs it and every joiner gets its
// result. N concurrent re-syncs take two rounds, and the convergence
// argument (docs/design.md, "Migration mode: convergence") is unchanged:
// each acknowledged write is followed by a re-sync that took the lock
// after the acknowledgement. A joiner whose round failed fails too, and
// its caller queues the key as before.
func (m *migrator) coalesce(ctx context.Context, mg *migrationv1.Migration, t *table, keyItem ddb.Item) error {
	key, err := t.storageKey(keyItem, true)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%d/%d:%s%s", key.GetTableId(), len(key.GetPartitionKey()), key.GetPartitionKey(), key.GetSortKey())
	m.syncMu.Lock()
	is := m.syncing[id]
	if is == nil {
		r := &syncRound{done: make(chan struct{})}
		m.syncing[id] = &itemSyncs{running: r}
		m.syncMu.Unlock()
		return m.runRound(ctx, id, r, mg, t, keyItem)
	}
	if r := is.next; r != nil {
		m.syncMu.Unlock()
		m.joined.Add(1)
		m.h.o.Metrics.syncJoined()
		select {
		case <-r.done:
			return r.err
		case <-ctx.Done():
			return fmt.Errorf("waiting for a re-sync of the item that started after this one: %w", context.Cause(ctx))
		}
	}
	r := &syncRound{done: make(chan struct{})}
	is.next = r
	prev := is.running
	m.syncMu.Unlock()
	// Not abandoned on ctx: r's joiners wait for this goroutine to run it
	// (prev is bounded by its own deadline).
	<-prev.done
	m.syncMu.Lock()
	is.running, is.next = r, nil
	m.syncMu.Unlock()
	return m.runRound(ctx, id, r, mg, t, keyItem)
}

// runRound runs round r of item id and ends it.
func (m *migrator) runRound(ctx context.Context, id string, r *syncRound, mg *migrationv1.Migration, t *table, keyItem ddb.Item) error {
	r.err = m.syncItem(ctx, mg, t, keyItem)
	m.syncMu.Lock()
	if is := m.syncing[id]; is != nil && is.running == r && is.next == nil {
		delete(m.syncing, id)
	}
	m.syncMu.Unlock()
	close(r.done)
	return r.err
}

// syncItem re-syncs one item. Under the item's lock it reads the stored
// version and DynamoDB's item, concurrently (both after taking the lock:
// the last re-sync to take it reads last), and writes that item at max(now+S, stored+1). A
// write from outside the lock that lands meanwhile with a newer version
// makes the write come back superseded; it is redone above that version.
func (m *migrator) syncItem(ctx context.Context, mg *migrationv1.Migration, t *table, keyItem ddb.Item) error {
	if m.o.SyncFault != nil {
		if err := m.o.SyncFault(t.Name, keyItem); err != nil {
			return err
		}
	}
	key, err := t.storageKey(keyItem, true)
	if err != nil {
		return err
	}
	co := m.h.b.Coordinator()
	owner := fmt.Sprintf("%s-%d", ownerPrefix, ownerSeq.Add(1))
	lk, err := co.Acquire(ctx, key, owner)
	if err != nil {
		return fmt.Errorf("lock the item: %w", err)
	}
	defer lk.Unlock()
	// Both reads only need to start after the lock is held, so they run
	// at once: the lock is held for the slower of them, not their sum.
	var (
		stored  *storagev1.Record
		readErr error
		wg      sync.WaitGroup
	)
	wg.Go(func() { stored, readErr = co.Read(ctx, key, coord.Quorum) })
	item, err := m.upstreamItem(ctx, mg, keyItem, true)
	wg.Wait()
	if readErr != nil {
		return fmt.Errorf("read Veltrix's copy: %w", readErr)
	}
	if err != nil {
		return err
	}
	var floor uint64
	if stored != nil {
		floor = stored.GetVersion() + 1
	}
	for range maxWriteAttempts {
		now := m.o.Now()
		rec := &storagev1.Record{Key: key, Version: max(hlc.FromTime(now.Add(m.o.Skew), 0), floor)}
		if item == nil {
			rec.Tombstone = true
		} else {
			rec.Value = ddb.EncodeItem(item)
			rec.ExpireUnixNanos = t.expiry(item, now)
		}
		outs, err := co.WriteLocked(ctx, lk, []*storagev1.Record{rec}, coord.Quorum)
		if err != nil {
			return fmt.Errorf("write Veltrix's copy: %w", err)
		}
		if outs[0].Applied {
			return nil
		}
		floor = max(floor, outs[0].Current+1)
	}
	return fmt.Errorf("Veltrix's copy kept being overwritten from outside its lock during %d attempts", maxWriteAttempts)
}

// upstreamItem reads one item from the migration's DynamoDB table (nil
// when absent).
func (m *migrator) upstreamItem(ctx context.Context, mg *migrationv1.Migration, keyItem ddb.Item, consistent bool) (ddb.Item, error) {
	req := struct {
		TableName      string
		Key            ddb.Item
		ConsistentRead bool
	}{mg.GetUpstream().GetTable(), keyItem, consistent}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := m.up.call(ctx, mg.GetUpstream(), "GetItem", body)
	if err != nil {
		return nil, err
	}
	if !resp.ok() {
		return nil, fmt.Errorf("%w: GetItem answered HTTP %d: %s", ErrUpstream, resp.status, truncate(resp.body, 300))
	}
	var out struct{ Item ddb.Item }
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("%w: GetItem: cannot decode the answer: %v", ErrUpstream, err)
	}
	return out.Item, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// replayLoop replays queued re-syncs every ReplayInterval until the
// handler closes. Every router replays every entry; a re-sync is
// idempotent, so two routers replaying one entry is only extra work.
func (m *migrator) replayLoop() {
	tick := time.NewTicker(m.o.ReplayInterval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.stop
		cancel()
	}()
	for round := 0; ; round++ {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		if round%staleSyncsEvery == 0 {
			m.dropStale(ctx)
		}
		m.replay(ctx)
	}
}

// staleSyncsEvery is how many replay rounds go between two removals of the
// queues of deleted and finished migrations (10 s by default).
const staleSyncsEvery = 20

// dropStale removes the queued re-syncs of tables that have no migration or
// whose migration is DONE: no replay will ever apply them (in DONE Veltrix
// may hold newer writes than DynamoDB). Each removal is logged at error
// level, since those items may differ from DynamoDB, and counted.
func (m *migrator) dropStale(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, m.h.o.RequestTimeout)
	defer cancel()
	dropped, err := m.ctl.DropStaleSyncs(rctx)
	for _, d := range dropped {
		m.h.o.Logger.Error("dynamodb: migration: dropped the queued re-syncs of a table no longer migrating; verify and repair its items",
			"table", d.Table, "entries", d.Count, "why", d.Why)
		m.h.o.Metrics.syncDropped(d.Count)
	}
	if err != nil && ctx.Err() == nil {
		m.h.o.Logger.Warn("dynamodb: migration: cannot drop the queued re-syncs of deleted or finished migrations", "err", err)
	}
}

// replay replays one batch of queued re-syncs and reports how many were
// done.
func (m *migrator) replay(ctx context.Context) int {
	rctx, cancel := context.WithTimeout(ctx, m.h.o.RequestTimeout)
	defer cancel()
	pending, err := m.ctl.PendingSyncs(rctx, replayBatch)
	if err != nil {
		if ctx.Err() == nil {
			m.h.o.Logger.Warn("dynamodb: migration: cannot list queued re-syncs", "err", err)
		}
		return 0
	}
	done := 0
	var mu sync.Mutex
	sem := make(chan struct{}, maxSyncParallel)
	var wg sync.WaitGroup
	for _, p := range pending {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			mg, ok := m.ctl.Migration(p.Table)
			if ok && migration.MirrorsWrites(mg) {
				if err := m.h.syncJSON(rctx, p.Table, []string{p.Key})[0]; err != nil {
					m.h.o.Logger.Warn("dynamodb: migration: replay of a queued re-sync failed; it stays queued", "table", p.Table, "key", p.Key, "err", err)
					return
				}
			} else {
				// Out of the mirroring phases the entry can never be
				// applied safely (in DONE Veltrix may hold newer
				// writes): drop it loudly rather than block the queue.
				m.h.o.Logger.Error("dynamodb: migration: dropping a queued re-sync of a table no longer mirroring; verify and repair the item",
					"table", p.Table, "key", p.Key, "phase", mg.GetPhase().String())
				m.h.o.Metrics.syncDropped(1)
			}
			if err := m.ctl.DoneSync(rctx, p); err != nil {
				m.h.o.Logger.Warn("dynamodb: migration: cannot remove a replayed re-sync; it will be replayed again", "table", p.Table, "key", p.Key, "err", err)
				return
			}
			mu.Lock()
			done++
			mu.Unlock()
		})
	}
	wg.Wait()
	return done
}
