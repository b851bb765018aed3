package migration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

func newMigration(table string) *migrationv1.Migration {
	m := &migrationv1.Migration{
		Table:    table,
		Upstream: &migrationv1.Upstream{Endpoint: "http://127.0.0.1:1", Table: "up-" + table, Region: "us-east-1"},
	}
	migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_PROXY, Who: "test", Reason: "start"})
	return m
}

func TestStoreCreateGetList(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")

	if _, err := s.Get(ctx, "orders"); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("Get of a missing migration: %v, want ErrNotFound", err)
	}
	created, err := s.Create(ctx, newMigration("orders"))
	if err != nil {
		t.Fatal(err)
	}
	if created.Revision == 0 {
		t.Fatal("Create returned no revision")
	}
	if _, err := s.Create(ctx, newMigration("orders")); !errors.Is(err, migration.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if _, err := s.Create(ctx, newMigration("a/b")); !errors.Is(err, migration.ErrInvalid) {
		t.Fatalf("Create with a slash: %v, want ErrInvalid", err)
	}
	if _, err := s.Create(ctx, newMigration("users")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetPhase() != migrationv1.Phase_PHASE_PROXY || got.GetUpstream().GetTable() != "up-orders" ||
		len(got.GetHistory()) != 1 || got.GetRevision() != created.GetRevision() {
		t.Fatalf("Get = %v", got)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GetTable() != "orders" || list[1].GetTable() != "users" {
		t.Fatalf("List = %v", list)
	}
	if err := s.Delete(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "users"); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
}

func TestStoreTransition(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	if _, err := s.Transition(ctx, "orders", func(*migrationv1.Migration) error { return nil }); !errors.Is(err, migration.ErrNotFound) {
		t.Fatalf("Transition of a missing migration: %v, want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, newMigration("orders")); err != nil {
		t.Fatal(err)
	}

	t.Run("fn error writes nothing", func(t *testing.T) {
		before, err := s.Get(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		_, err = s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
			migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_MIRROR, Who: "x"})
			return boom
		})
		if err != boom {
			t.Fatalf("Transition returned %v, want fn's error unchanged", err)
		}
		after, err := s.Get(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if after.GetRevision() != before.GetRevision() || after.GetPhase() != migrationv1.Phase_PHASE_PROXY {
			t.Fatalf("failed Transition wrote: %v", after)
		}
	})

	t.Run("applies and records history", func(t *testing.T) {
		at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
		m, err := s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
			migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_MIRROR, Who: "alice", Reason: "go", Time: at})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if got.GetRevision() != m.GetRevision() || got.GetPhase() != migrationv1.Phase_PHASE_MIRROR {
			t.Fatalf("stored %v, returned %v", got, m)
		}
		h := got.GetHistory()
		last := h[len(h)-1]
		if len(h) != 2 || last.GetFrom() != migrationv1.Phase_PHASE_PROXY || last.GetTo() != migrationv1.Phase_PHASE_MIRROR ||
			last.GetWho() != "alice" || last.GetReason() != "go" || !last.GetTime().AsTime().Equal(at) {
			t.Fatalf("history = %v", h)
		}
		if !got.GetPhaseTime().AsTime().Equal(at) || !got.GetMirrorTime().AsTime().Equal(at) {
			t.Fatalf("phase_time %v mirror_time %v, want both %v", got.GetPhaseTime().AsTime(), got.GetMirrorTime().AsTime(), at)
		}
		// Moving on from MIRROR keeps the mirror time.
		later := at.Add(time.Hour)
		got, err = s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
			migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_CUTOVER, Percent: 5, Who: "bob", Forced: true,
				FailedCriteria: []string{"mismatch_rate"}, Time: later})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		last = got.GetHistory()[2]
		if !got.GetMirrorTime().AsTime().Equal(at) || !got.GetPhaseTime().AsTime().Equal(later) ||
			got.GetCutoverPercent() != 5 || !last.GetForced() || last.GetToPercent() != 5 || last.GetFailedCriteria()[0] != "mismatch_rate" {
			t.Fatalf("after cutover: %v", got)
		}
	})

	t.Run("concurrent transitions all land or conflict", func(t *testing.T) {
		// Each transition appends one history entry; concurrent ones race on
		// the revision. Every success must be in the history exactly once,
		// and every failure must be ErrConflict.
		before, err := s.Get(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				_, errs[i] = s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
					migration.Apply(m, migration.Change{To: m.GetPhase(), Percent: m.GetCutoverPercent(), Who: fmt.Sprint(i)})
					return nil
				})
			})
		}
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, migration.ErrConflict):
				t.Fatalf("transition %d: %v", i, err)
			}
		}
		after, err := s.Get(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		added := after.GetHistory()[len(before.GetHistory()):]
		if ok == 0 || len(added) != ok {
			t.Fatalf("%d transitions succeeded, %d history entries added", ok, len(added))
		}
		seen := map[string]bool{}
		for _, c := range added {
			if seen[c.GetWho()] {
				t.Fatalf("transition %s applied twice", c.GetWho())
			}
			seen[c.GetWho()] = true
		}
	})
}

func TestWatchersSeeChanges(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	if _, err := s.Create(ctx, newMigration("before")); err != nil {
		t.Fatal(err)
	}
	var ws []*migration.Watcher
	for range 2 {
		w, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	changes := ws[0].Changes()
	for i, w := range ws {
		if m, ok := w.Migration("before"); !ok || m.GetPhase() != migrationv1.Phase_PHASE_PROXY {
			t.Fatalf("watcher %d did not load the existing migration: %v %v", i, m, ok)
		}
		if _, ok := w.Migration("orders"); ok {
			t.Fatalf("watcher %d has a migration that does not exist", i)
		}
	}

	if _, err := s.Create(ctx, newMigration("orders")); err != nil {
		t.Fatal(err)
	}
	rolled, err := s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
		migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_SHADOW, Who: "t"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		waitFor(t, fmt.Sprintf("watcher %d to see SHADOW", i), func() bool {
			m, ok := w.Migration("orders")
			return ok && m.GetPhase() == migrationv1.Phase_PHASE_SHADOW && m.GetRevision() == rolled.GetRevision()
		})
	}
	select {
	case <-changes:
	default:
		t.Fatal("no change notification")
	}
	if err := s.Delete(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		waitFor(t, fmt.Sprintf("watcher %d to see the delete", i), func() bool {
			_, ok := w.Migration("before")
			return !ok
		})
		if len(w.Migrations()) != 1 {
			t.Fatalf("watcher %d: %v", i, w.Migrations())
		}
	}
}

func TestSyncQueue(t *testing.T) {
	e, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	for _, table := range []string{"a", "b"} {
		if _, err := s.Create(ctx, newMigration(table)); err != nil {
			t.Fatal(err)
		}
	}
	// Interleave two tables: oldest first must merge them by time.
	var want []string
	for i := range 6 {
		table := []string{"a", "b"}[i%2]
		key := fmt.Sprintf(`{"pk":{"S":"%d"}}`, i)
		if err := s.EnqueueSync(ctx, table, key); err != nil {
			t.Fatal(err)
		}
		want = append(want, table+key)
	}
	// Another client (a restarted router) sees every entry, in order.
	cli2, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	s2 := migration.NewStore(cli2, "test")
	all, err := s2.PendingSyncs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("PendingSyncs = %v", all)
	}
	for i, p := range all {
		if p.Table+p.Key != want[i] || p.Queued.IsZero() || p.ID == "" {
			t.Fatalf("entry %d = %+v, want %s", i, p, want[i])
		}
	}
	// The Control (a watcher) lists the same, from the tables it watches.
	w, err := s2.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	viaControl, err := w.PendingSyncs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(viaControl, all) {
		t.Fatalf("Watcher.PendingSyncs = %v, Store.PendingSyncs = %v", viaControl, all)
	}
	first, err := s2.PendingSyncs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 || first[2].Table+first[2].Key != want[2] {
		t.Fatalf("PendingSyncs(3) = %v", first)
	}
	if n, err := s2.PendingSyncCount(ctx, "a"); err != nil || n != 3 {
		t.Fatalf("PendingSyncCount(a) = %d, %v", n, err)
	}
	for _, p := range first {
		if err := s2.DoneSync(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Done twice (two routers replayed it) is fine.
	if err := s.DoneSync(ctx, first[0]); err != nil {
		t.Fatal(err)
	}
	rest, err := s.PendingSyncs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 3 || rest[0].Table+rest[0].Key != want[3] {
		t.Fatalf("after DoneSync: %v", rest)
	}
	if none, err := s.PendingSyncs(ctx, 0); err != nil || len(none) != 0 {
		t.Fatalf("PendingSyncs(0) = %v, %v", none, err)
	}
}

// TestSyncQueueSurvivesRestart: queued re-syncs are in etcd's data, so an
// etcd restarted on the same directory still has them.
func TestSyncQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func() (*etcdembed.Etcd, *migration.Store) {
		e, err := etcdembed.Start(etcdembed.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		cli, err := e.Client()
		if err != nil {
			e.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cli.Close()
			e.Close()
		})
		return e, migration.NewStore(cli, "test")
	}
	e, s := start()
	if _, err := s.Create(ctx, newMigration("orders")); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueSync(ctx, "orders", `{"pk":{"S":"a"}}`); err != nil {
		t.Fatal(err)
	}
	s.Client.Close()
	e.Close()
	_, s = start()
	got, err := s.PendingSyncs(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != `{"pk":{"S":"a"}}` {
		t.Fatalf("after a restart: %v", got)
	}
}

// TestDropStaleSyncs: the queues of a deleted migration and of a finished
// one are removed, each counted; those of migrations still running, and of
// a table whose migration was started again, stay.
func TestDropStaleSyncs(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	phases := map[string]migrationv1.Phase{
		"mirror": migrationv1.Phase_PHASE_MIRROR, "done": migrationv1.Phase_PHASE_DONE,
		"deleted": migrationv1.Phase_PHASE_MIRROR, "veltrix": migrationv1.Phase_PHASE_VELTRIX,
	}
	for table, p := range phases {
		if _, err := s.Create(ctx, newMigration(table)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Transition(ctx, table, func(m *migrationv1.Migration) error {
			migration.Apply(m, migration.Change{To: p, Who: "test"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	queued := map[string]int{"mirror": 2, "done": 3, "deleted": 2, "veltrix": 1, "a-b": 1}
	for table, n := range queued {
		for i := range n {
			if err := s.EnqueueSync(ctx, table, fmt.Sprintf(`{"pk":{"S":"%d"}}`, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.DropStaleSyncs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []migration.StaleSyncs{{Table: "a-b", Count: 1, Why: "no migration"}, {Table: "deleted", Count: 2, Why: "no migration"}, {Table: "done", Count: 3, Why: "done"}}
	if !slices.Equal(dropped, want) {
		t.Fatalf("DropStaleSyncs = %+v, want %+v", dropped, want)
	}
	for table, n := range map[string]uint64{"mirror": 2, "veltrix": 1, "done": 0, "deleted": 0, "a-b": 0} {
		if got, err := s.PendingSyncCount(ctx, table); err != nil || got != n {
			t.Errorf("%s: %d queued (%v), want %d", table, got, err, n)
		}
	}
	if again, err := s.DropStaleSyncs(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second DropStaleSyncs = %v, %v; want nothing", again, err)
	}
}
