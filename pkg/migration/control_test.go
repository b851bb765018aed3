package migration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMismatchSample(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	mk := func(i int) *migrationv1.Mismatch {
		return &migrationv1.Mismatch{Key: fmt.Sprintf(`{"pk":{"S":"%d"}}`, i), Time: timestamppb.New(base.Add(time.Duration(i) * time.Millisecond))}
	}
	// 1050 mismatches in batches of 100 (the last batch also counts 7 the
	// router could not keep).
	const n = 1050
	for start := 0; start < n; start += 100 {
		var batch []*migrationv1.Mismatch
		for i := start; i < min(start+100, n); i++ {
			batch = append(batch, mk(i))
		}
		counted := uint64(len(batch))
		if start+100 >= n {
			counted += 7
		}
		if err := s.AddMismatches(ctx, "orders", batch, counted); err != nil {
			t.Fatal(err)
		}
	}
	all, total, err := s.Mismatches(ctx, "orders", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if total != n+7 {
		t.Fatalf("total = %d, want %d", total, n+7)
	}
	if len(all) != migration.MaxMismatches {
		t.Fatalf("kept %d, want %d", len(all), migration.MaxMismatches)
	}
	// Newest first; the oldest 50 were dropped.
	for i, m := range all {
		if want := mk(n - 1 - i).GetKey(); m.GetKey() != want {
			t.Fatalf("mismatch %d = %s, want %s", i, m.GetKey(), want)
		}
	}
	few, _, err := s.Mismatches(ctx, "orders", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(few) != 3 || few[0].GetKey() != mk(n-1).GetKey() {
		t.Fatalf("Mismatches(3) = %v", few)
	}
	if none, total, err := s.Mismatches(ctx, "other", 10); err != nil || len(none) != 0 || total != 0 {
		t.Fatalf("Mismatches of a table without any = %v, %d, %v", none, total, err)
	}

	// Through the Control: the router and time are filled in.
	w, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t), RouterID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.RecordMismatch(ctx, "users", &migrationv1.Mismatch{Key: "k1", DynamodbItem: `{"a":{"S":"x"}}`, Operation: "GetItem"})
	w.RecordMismatch(ctx, "users", &migrationv1.Mismatch{Key: "k2", Router: "other"})
	if err := w.FlushMismatches(ctx); err != nil {
		t.Fatal(err)
	}
	got, total, err := s.Mismatches(ctx, "users", 10)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(got) != 2 {
		t.Fatalf("users sample = %v, total %d", got, total)
	}
	byKey := map[string]*migrationv1.Mismatch{}
	for _, m := range got {
		byKey[m.GetKey()] = m
	}
	if m := byKey["k1"]; m.GetRouter() != "r1" || m.GetTime() == nil || m.GetOperation() != "GetItem" || m.GetDynamodbItem() != `{"a":{"S":"x"}}` {
		t.Fatalf("k1 = %v", m)
	}
	if byKey["k2"].GetRouter() != "other" {
		t.Fatalf("k2's router overwritten: %v", byKey["k2"])
	}
	// Without a flush, the background writer writes it soon.
	w.RecordMismatch(ctx, "users", &migrationv1.Mismatch{Key: "k3"})
	waitFor(t, "the background write of a mismatch", func() bool {
		got, total, err := s.Mismatches(ctx, "users", 1)
		return err == nil && total == 3 && len(got) == 1 && got[0].GetKey() == "k3"
	})
}

// shadow creates table's migration in SHADOW.
func shadow(t *testing.T, s *migration.Store, table string) *migrationv1.Migration {
	t.Helper()
	m := newMigration(table)
	migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_SHADOW, Who: "t"})
	m, err := s.Create(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFiguresMergedAcrossRouters(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	shadow(t, s, "orders")
	if err := s.EnqueueSync(ctx, "orders", `{"pk":{"S":"q"}}`); err != nil {
		t.Fatal(err)
	}
	routers := map[string]*migration.Watcher{}
	for _, id := range []string{"r1", "r2"} {
		w, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t), RouterID: id, PublishInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		routers[id] = w
	}
	// r1: 100 comparisons, 1 mismatch, fast Veltrix reads; r2: 100
	// comparisons, slow DynamoDB reads, mirrored writes.
	for i := range 100 {
		routers["r1"].ShadowCompared("orders", i == 0)
		routers["r1"].ReadLatency("orders", migration.SideVeltrix, time.Millisecond)
		routers["r2"].ShadowCompared("orders", false)
		routers["r2"].ReadLatency("orders", migration.SideDynamoDB, 100*time.Millisecond)
		routers["r2"].MirrorWrite("orders", i < 2)
	}
	routers["r1"].VeltrixServerError("orders")
	var st *migrationv1.MigrationStats
	waitFor(t, "both routers' figures", func() bool {
		var err error
		st, err = s.Stats(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		return st.GetRouters() == 2 && st.GetReadsCompared() == 200 && st.GetWritesMirrored() == 100
	})
	if st.GetMismatches() != 1 || st.GetMismatchRatePercent() != 0.5 || st.GetMirrorFailures() != 2 ||
		st.GetMirrorFailureRatePercent() != 2 || st.GetVeltrix_5Xx() != 1 || st.GetMirrorPending() != 1 {
		t.Fatalf("stats = %v", st)
	}
	if p := st.GetVeltrixReadP99().AsDuration(); p < time.Millisecond || p > 1250*time.Microsecond {
		t.Fatalf("Veltrix P99 = %v, want about 1ms", p)
	}
	if p := st.GetDynamodbReadP99().AsDuration(); p < 100*time.Millisecond || p > 125*time.Millisecond {
		t.Fatalf("DynamoDB P99 = %v, want about 100ms", p)
	}
	if w := st.GetWindow().AsDuration(); w <= 0 || w > migration.Window {
		t.Fatalf("window = %v", w)
	}

	// A phase change starts the figures over on every router.
	if _, err := s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
		migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_CUTOVER, Percent: 5, Who: "t"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	routers["r2"].ShadowCompared("orders", false)
	waitFor(t, "figures of the new phase", func() bool {
		st, err := s.Stats(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		return st.GetRouters() == 2 && st.GetReadsCompared() <= 1 && st.GetWritesMirrored() == 0
	})

	// A migration that ends has its figures withdrawn (while the router
	// and its lease live on).
	shadow(t, s, "users")
	routers["r1"].ShadowCompared("users", false)
	figures := func() int64 {
		resp, err := cli.Get(ctx, s.Keys.StatsPrefix("users"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	waitFor(t, "figures of users", func() bool { return figures() == 2 })
	if err := s.Delete(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "figures of users to go", func() bool { return figures() == 0 })

	// A router that stops withdraws its figures.
	routers["r2"].Close()
	waitFor(t, "r2's figures to go", func() bool {
		st, err := s.Stats(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		return st.GetRouters() == 1
	})
	if _, err := s.Stats(ctx, "missing"); err == nil {
		t.Fatal("Stats of a table without migration succeeded")
	}
}

func TestMetrics(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	shadow(t, s, "orders")
	reg := prometheus.NewRegistry()
	w, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.ShadowCompared("orders", true)
	w.ShadowCompared("orders", false)
	w.MirrorWrite("orders", false)
	w.MirrorWrite("orders", true)
	w.MirrorWrite("orders", true)
	w.VeltrixServerError("orders")
	w.ReadLatency("orders", migration.SideVeltrix, 2*time.Millisecond)

	want := `
# HELP veltrix_migration_mirror_writes_total Writes acknowledged by DynamoDB and brought into Veltrix, by table and result (ok, or failed: queued for replay).
# TYPE veltrix_migration_mirror_writes_total counter
veltrix_migration_mirror_writes_total{result="failed",table="orders"} 2
veltrix_migration_mirror_writes_total{result="ok",table="orders"} 1
# HELP veltrix_migration_mismatches_total Shadow reads whose DynamoDB and Veltrix answers differed, by table.
# TYPE veltrix_migration_mismatches_total counter
veltrix_migration_mismatches_total{table="orders"} 1
# HELP veltrix_migration_phase Phase of a migrating table as this process sees it (1 proxy, 2 mirror, 3 shadow, 4 cutover, 5 veltrix, 6 done).
# TYPE veltrix_migration_phase gauge
veltrix_migration_phase{table="orders"} 3
# HELP veltrix_migration_reads_compared_total Shadow reads compared between DynamoDB and Veltrix, by table.
# TYPE veltrix_migration_reads_compared_total counter
veltrix_migration_reads_compared_total{table="orders"} 2
# HELP veltrix_migration_veltrix_server_errors_total Server errors (5xx) of requests of a migrating table served by Veltrix, by table.
# TYPE veltrix_migration_veltrix_server_errors_total counter
veltrix_migration_veltrix_server_errors_total{table="orders"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"veltrix_migration_mirror_writes_total", "veltrix_migration_mismatches_total", "veltrix_migration_phase",
		"veltrix_migration_reads_compared_total", "veltrix_migration_veltrix_server_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "veltrix_migration_read_duration_seconds"); n != 1 {
		t.Fatalf("read duration series = %d, want 1", n)
	}

	// The phase gauges follow the watch.
	if _, err := s.Transition(ctx, "orders", func(m *migrationv1.Migration) error {
		migration.Apply(m, migration.Change{To: migrationv1.Phase_PHASE_CUTOVER, Percent: 25, Who: "t"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the phase gauge", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP veltrix_migration_cutover_percent Percentage of a migrating table's partition keys whose reads Veltrix serves in the cutover phase.
# TYPE veltrix_migration_cutover_percent gauge
veltrix_migration_cutover_percent{table="orders"} 25
`), "veltrix_migration_cutover_percent") == nil
	})
	if err := s.Delete(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gauges of an ended migration to go", func() bool {
		return testutil.CollectAndCount(reg, "veltrix_migration_phase", "veltrix_migration_cutover_percent") == 0
	})

	// A second registration of the same metrics is an error, not a panic.
	if _, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t), Registerer: reg}); err == nil {
		t.Fatal("registering the metrics twice succeeded")
	}
}

func TestImports(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	export := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for i, job := range []string{"job-a", "job-b"} {
		if err := s.RecordImport(ctx, "orders", job, export.Add(time.Duration(i)*time.Hour), export.Add(time.Duration(i)*time.Hour+time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordImport(ctx, "orders", "", export, export); err == nil {
		t.Fatal("an import without a job id was recorded")
	}
	got, err := s.Imports(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Job != "job-b" || !got[0].ExportTime.Equal(export.Add(time.Hour)) ||
		!got[1].FinishTime.Equal(export.Add(time.Minute)) {
		t.Fatalf("Imports = %+v", got)
	}
	if none, err := s.Imports(ctx, "users"); err != nil || len(none) != 0 {
		t.Fatalf("Imports of another table = %v, %v", none, err)
	}
}

// TestFiguresRepublishedAfterLeaseLoss: figures whose lease expired (etcd
// unreachable longer than the TTL) are published again under a new lease.
func TestFiguresRepublishedAfterLeaseLoss(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	s := migration.NewStore(cli, "test")
	shadow(t, s, "orders")
	w, err := s.Watch(ctx, migration.WatcherOptions{Logger: testLogger(t), RouterID: "r1",
		PublishInterval: 20 * time.Millisecond, FiguresTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.ShadowCompared("orders", false)
	routers := func() uint32 {
		st, err := s.Stats(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		return st.GetRouters()
	}
	waitFor(t, "the figures", func() bool { return routers() == 1 })
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases = %v, %v", leases, err)
	}
	if _, err := cli.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	if routers() != 0 {
		t.Fatal("figures outlived their lease")
	}
	waitFor(t, "the figures under a new lease", func() bool { return routers() == 1 })
}
