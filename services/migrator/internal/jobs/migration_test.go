package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// migrations returns a migration store on a fresh cluster name and a
// watch of it.
func migrations(t *testing.T) (*migration.Store, *migration.Watcher) {
	t.Helper()
	cli, err := testEtcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s := migration.NewStore(cli, fmt.Sprintf("m%d", clusterSeq.Add(1)))
	w, err := s.Watch(context.Background(), migration.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return s, w
}

// setPhase creates table's migration or moves it to phase, and waits until
// w sees it.
func setPhase(t *testing.T, s *migration.Store, w *migration.Watcher, table string, phase migrationv1.Phase) {
	t.Helper()
	ctx := context.Background()
	change := migration.Change{To: phase, Who: "test"}
	if phase == migrationv1.Phase_PHASE_CUTOVER {
		change.Percent = 5
	}
	m, err := s.Transition(ctx, table, func(m *migrationv1.Migration) error {
		migration.Apply(m, change)
		return nil
	})
	if err != nil {
		m = &migrationv1.Migration{Table: table, Upstream: &migrationv1.Upstream{Table: table}}
		migration.Apply(m, change)
		if m, err = s.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the watch to see "+phase.String(), func() bool {
		got, ok := w.Migration(table)
		return ok && got.GetRevision() >= m.GetRevision()
	})
}

// TestSyncDecisionByPhase: a stream's records of a migrating table go to
// the routers' SyncItems exactly in PHASE_MIRROR to PHASE_VELTRIX, and
// are applied as images otherwise (no migration, PROXY, DONE).
func TestSyncDecisionByPhase(t *testing.T) {
	s, w := migrations(t)
	e := &Env{Migrations: w}
	if e.syncsThroughRouter("sessions") {
		t.Fatal("a table without a migration is synced through the router")
	}
	if (&Env{}).syncsThroughRouter("sessions") {
		t.Fatal("an Env without migrations syncs through the router")
	}
	for _, tc := range []struct {
		phase migrationv1.Phase
		sync  bool
	}{
		{migrationv1.Phase_PHASE_PROXY, false},
		{migrationv1.Phase_PHASE_MIRROR, true},
		{migrationv1.Phase_PHASE_SHADOW, true},
		{migrationv1.Phase_PHASE_CUTOVER, true},
		{migrationv1.Phase_PHASE_VELTRIX, true},
		{migrationv1.Phase_PHASE_DONE, false},
	} {
		setPhase(t, s, w, "sessions", tc.phase)
		if got := e.syncsThroughRouter("sessions"); got != tc.sync {
			t.Errorf("%s: synced through the router = %v, want %v", tc.phase, got, tc.sync)
		}
		if e.syncsThroughRouter("other") {
			t.Errorf("%s: a table without migration is synced", tc.phase)
		}
	}
}

// syncServer is a router's MigrationService that records SyncItems calls.
type syncServer struct {
	migrationv1.UnimplementedMigrationServiceServer
	mu    sync.Mutex
	calls [][]string
	// fail makes this many calls fail with code.
	fail     int
	failCode codes.Code
	// queue is a key the server reports it could not sync (queued).
	queue string
}

func (s *syncServer) SyncItems(_ context.Context, req *migrationv1.SyncItemsRequest) (*migrationv1.SyncItemsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetTable() != "sessions" {
		return nil, status.Errorf(codes.InvalidArgument, "table %q", req.GetTable())
	}
	if s.fail > 0 {
		s.fail--
		return nil, status.Error(s.failCode, "injected")
	}
	s.calls = append(s.calls, req.GetKeys())
	errs := make([]string, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		if k == s.queue {
			errs[i] = "upstream throttled; queued"
		}
	}
	return &migrationv1.SyncItemsResponse{Errors: errs}, nil
}

func (s *syncServer) keys() (calls int, keys []string, largest int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		keys = append(keys, c...)
		largest = max(largest, len(c))
	}
	return len(s.calls), keys, largest
}

func serveSync(t *testing.T, srv *syncServer) migrationv1.MigrationServiceClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	migrationv1.RegisterMigrationServiceServer(gs, srv)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return migrationv1.NewMigrationServiceClient(cc)
}

// TestStreamSyncsMigratingTable runs a stream job into a table in
// PHASE_MIRROR: every record's key reaches SyncItems (DynamoDB JSON of the
// key attributes, at most 100 per call, retried while the router is
// unavailable or has not seen the phase yet) and no image is applied; once
// the migration is DONE, records are applied as images again.
func TestStreamSyncsMigratingTable(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	ms, w := migrations(t)
	setPhase(t, ms, w, "sessions", migrationv1.Phase_PHASE_MIRROR)
	srv := &syncServer{fail: 2, failCode: codes.Unavailable, queue: `{"pk":{"S":"k7"},"sk":{"N":"7"}}`}
	sync := serveSync(t, srv)

	sf, endpoint, arn := sessionsStream(t)
	at := time.Now().Add(-time.Minute)
	const n = 250
	var recs []json.RawMessage
	var want []string
	for i := range n {
		key := skey(fmt.Sprint("k", i), i)
		if i%10 == 9 {
			recs = append(recs, streamsfake.NewRecord("REMOVE", key, nil, at, false))
		} else {
			recs = append(recs, streamsfake.NewRecord("INSERT", key, sitem(fmt.Sprint("k", i), i, "v"), at, false))
		}
		b, err := ddb.MarshalDynamoDBJSON(key)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(b))
	}
	if _, err := sf.Put(arn, "shardId-1", recs...); err != nil {
		t.Fatal(err)
	}
	startMigratorEnv(t, store, fake, "a", func(e *Env) { e.Migrations, e.Sync = w, sync })
	job := createJob(t, store, streamJob(endpoint, arn))
	waitFor(t, 20*time.Second, "every key to be synced", func() bool {
		_, keys, _ := srv.keys()
		return len(keys) >= n
	})
	calls, keys, largest := srv.keys()
	if largest > maxSyncKeys || calls < (n+maxSyncKeys-1)/maxSyncKeys {
		t.Fatalf("%d SyncItems calls, the largest with %d keys: want batches of at most %d", calls, largest, maxSyncKeys)
	}
	if len(keys) != n {
		t.Fatalf("%d keys synced, want %d (no duplicates: a failed call is retried, a succeeded one is not)", len(keys), n)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("key %d = %s, want %s (shard order)", i, keys[i], want[i])
		}
	}
	if live := liveValues(fake); len(live) != 0 {
		t.Fatalf("images applied to a migrating table: %v", live)
	}
	waitFor(t, 10*time.Second, "the progress", func() bool {
		j, _ := store.Get(context.Background(), job.GetId())
		p := j.GetProgress()
		return p.GetItemsWritten() == n-n/10 && p.GetDeletes() == n/10
	})

	// The router refuses with FAILED_PRECONDITION once the migration is
	// DONE; this migrator's watch sees it and applies the images.
	srv.mu.Lock()
	srv.fail, srv.failCode = 1<<30, codes.FailedPrecondition
	srv.mu.Unlock()
	setPhase(t, ms, w, "sessions", migrationv1.Phase_PHASE_DONE)
	if _, err := sf.Put(arn, "shardId-1", streamsfake.NewRecord("INSERT", skey("after", 1), sitem("after", 1, "done"), at, false)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the image after DONE", func() bool { return liveValues(fake)["after|1"] == "done" })
	if c, _, _ := srv.keys(); c != calls {
		t.Fatalf("SyncItems called after DONE: %d calls, was %d", c, calls)
	}
	if j, _ := store.Get(context.Background(), job.GetId()); j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job %s %q", j.GetState(), j.GetError())
	}
}

// TestImportRecordedForMigration: an import that succeeds into a table
// with a migration is recorded with its export time; one into a table
// without migration, or one that does not succeed, is not.
func TestImportRecordedForMigration(t *testing.T) {
	store := newStore(t)
	ms, w := migrations(t)
	setPhase(t, ms, w, "sessions", migrationv1.Phase_PHASE_MIRROR)
	startMigratorEnv(t, store, newFake(), "a", func(e *Env) { e.Migrations = w })
	ctx := context.Background()

	good := t.TempDir()
	if _, err := testexport.Write(good, testexport.Options{}, testexport.File{Lines: goodLines("g", 5)}); err != nil {
		t.Fatal(err)
	}
	ok := waitJob(t, store, createJob(t, store, importJob(good, nil)).GetId(), 30*time.Second)
	if ok.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("import: %s %q", ok.GetState(), ok.GetError())
	}
	other := waitJob(t, store, createJob(t, store, importJob(good, func(s *migratorv1.ImportSpec) { s.GetMapping().TargetTable = "other" })).GetId(), 30*time.Second)
	if other.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("import into other: %s %q", other.GetState(), other.GetError())
	}
	bad := t.TempDir()
	if _, err := testexport.Write(bad, testexport.Options{}, testexport.File{Lines: append(goodLines("b", 2), `{"Item":{"pk":`)}); err != nil {
		t.Fatal(err)
	}
	partial := waitJob(t, store, createJob(t, store, importJob(bad, nil)).GetId(), 30*time.Second)
	if partial.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		t.Fatalf("import with a bad line: %s %q", partial.GetState(), partial.GetError())
	}

	recs, err := ms.Imports(ctx, "sessions")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Job != ok.GetId() || !recs[0].ExportTime.Equal(testexport.ExportTime) ||
		recs[0].FinishTime.Before(recs[0].ExportTime) {
		t.Fatalf("import records of sessions = %+v, want job %s exported at %s", recs, ok.GetId(), testexport.ExportTime)
	}
	if recs, err := ms.Imports(ctx, "other"); err != nil || len(recs) != 0 {
		t.Fatalf("import records of a table without migration = %+v, %v", recs, err)
	}
}

// TestTableScanImportRecordedForMigration: a table-scan import that
// succeeds into a migrating table is recorded with the scan's start as its
// export time (the version its items carry).
func TestTableScanImportRecordedForMigration(t *testing.T) {
	ddbServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := []byte(`{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"only Scan here"}`)
		status := http.StatusBadRequest
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".Scan") {
			body, status = []byte(`{"Items":[{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"x"}}],"Count":1,"ScannedCount":1}`), http.StatusOK
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	defer ddbServer.Close()
	store := newStore(t)
	ms, w := migrations(t)
	setPhase(t, ms, w, "sessions", migrationv1.Phase_PHASE_MIRROR)
	fake := newFake()
	startMigratorEnv(t, store, fake, "a", func(e *Env) { e.Migrations = w })
	before := time.Now().Truncate(time.Microsecond)
	job := &migratorv1.Job{Kind: migratorv1.JobKind_JOB_KIND_IMPORT, Spec: &migratorv1.Job_ImportSpec{ImportSpec: &migratorv1.ImportSpec{
		Source:  &migratorv1.ImportSpec_TableScan{TableScan: &migratorv1.TableScanSource{TableName: "up", Segments: 1, Aws: &migratorv1.AwsOptions{Endpoint: ddbServer.URL}}},
		Mapping: testMapping(),
	}}}
	got := waitJob(t, store, createJob(t, store, job).GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("table-scan import: %s %q", got.GetState(), got.GetError())
	}
	recs, err := ms.Imports(context.Background(), "sessions")
	if err != nil {
		t.Fatal(err)
	}
	var version uint64
	for _, it := range fake.live("sessions") {
		version = it.version
	}
	if len(recs) != 1 || recs[0].Job != got.GetId() || recs[0].ExportTime.Before(before) ||
		!recs[0].ExportTime.Equal(hlc.Time(version)) {
		t.Fatalf("import records = %+v, want job %s with the scan's start (the items' version %s)", recs, got.GetId(), hlc.Time(version))
	}
}
