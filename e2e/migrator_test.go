package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/veltrixdb/veltrix/e2e/cluster"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	migrator "github.com/veltrixdb/veltrix/services/migrator/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// migProc is an in-process migrator and a client of it.
type migProc struct {
	srv *migrator.Server
	api migratorv1.MigratorServiceClient
}

func migStart(t testing.TB, c *cluster.Cluster, id string) *migProc {
	t.Helper()
	var routers []string
	for i := range c.Routers {
		routers = append(routers, c.RouterAddr(i))
	}
	srv, err := migrator.Start(context.Background(), migrator.Config{
		ID: id, ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdEndpoints: []string{c.Etcd.Endpoint()},
		RouterEndpoints: routers, SessionTTL: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &migProc{srv: srv}
	t.Cleanup(p.close)
	cc, err := grpcx.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	p.api = migratorv1.NewMigratorServiceClient(cc)
	return p
}

func (p *migProc) close() {
	if p.srv != nil {
		_ = p.srv.Close()
		p.srv = nil
	}
}

// sessionsMapping maps exportgen's items: composite S keys, TTL.
func sessionsMapping(table string) *migratorv1.Mapping {
	return &migratorv1.Mapping{
		TargetTable:  table,
		CreateTable:  true,
		PartitionKey: &migratorv1.KeyAttribute{Name: exportgen.PartitionKey, Type: migratorv1.KeyType_KEY_TYPE_S},
		SortKey:      &migratorv1.KeyAttribute{Name: exportgen.SortKey, Type: migratorv1.KeyType_KEY_TYPE_S},
		TtlAttribute: exportgen.TTLAttribute,
	}
}

func migImport(t testing.TB, p *migProc, src *migratorv1.ExportSource, table string, tweak func(*migratorv1.ImportSpec)) string {
	t.Helper()
	spec := &migratorv1.ImportSpec{Source: &migratorv1.ImportSpec_Export{Export: src}, Mapping: sessionsMapping(table), Parallelism: 4, BatchSize: 500}
	if tweak != nil {
		tweak(spec)
	}
	resp, err := p.api.StartImport(context.Background(), &migratorv1.StartImportRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetJob().GetId()
}

func migVerify(t testing.TB, p *migProc, src *migratorv1.ExportSource, table string) *migratorv1.Job {
	t.Helper()
	resp, err := p.api.StartVerify(context.Background(), &migratorv1.StartVerifyRequest{Spec: &migratorv1.VerifySpec{
		Source: &migratorv1.VerifySpec_Export{Export: src}, Mapping: sessionsMapping(table), CheckExtra: true}})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := migWatch(t, p, resp.GetJob().GetId(), 2*time.Minute)
	// A verify ends SUCCEEDED when its verdict passes, COMPLETED_WITH_ERRORS
	// when it found differences: both ran to the end.
	if s := j.GetState(); s != migratorv1.JobState_JOB_STATE_SUCCEEDED && s != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		t.Fatalf("verify %s: %s %q", j.GetId(), j.GetState(), j.GetError())
	}
	if passed := j.GetVerifyReport().GetPassed(); passed != (j.GetState() == migratorv1.JobState_JOB_STATE_SUCCEEDED) {
		t.Fatalf("verify %s: %s but verdict passed=%v", j.GetId(), j.GetState(), passed)
	}
	return j
}

// migWatch follows a job with WatchJob until it ends; it returns the final
// job and every snapshot seen.
func migWatch(t testing.TB, p *migProc, id string, timeout time.Duration) (*migratorv1.Job, []*migratorv1.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := p.api.WatchJob(ctx, &migratorv1.WatchJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var seen []*migratorv1.Job
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			last := &migratorv1.Job{}
			if len(seen) > 0 {
				last = seen[len(seen)-1]
			}
			t.Fatalf("watch %s: %v (last: %s %v)", id, err, last.GetState(), last.GetProgress())
		}
		seen = append(seen, resp.GetJob())
	}
	return seen[len(seen)-1], seen
}

func wantVerifyClean(t testing.TB, j *migratorv1.Job, live int) {
	t.Helper()
	r := j.GetVerifyReport()
	if r.GetMissing()+r.GetDifferent()+r.GetExtra() != 0 || len(r.GetMismatches()) != 0 {
		t.Fatalf("verify found mismatches: %v", r)
	}
	if r.GetSourceItems() != uint64(live) || r.GetCompared() != uint64(live) || r.GetTargetItems() != uint64(live) ||
		r.GetSourceChecksum() != r.GetTargetChecksum() {
		t.Fatalf("verify report %v, want %d items everywhere and equal checksums", r, live)
	}
}

// fakeS3 starts an in-process S3 with a bucket and returns the AWS options
// reaching it. Credentials come from the environment, as in production.
func fakeS3(t *testing.T, bucket string) (*s3.Client, *migratorv1.AwsOptions) {
	t.Helper()
	ts := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(ts.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "veltrix")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "veltrix")
	t.Setenv("AWS_REGION", "us-east-1")
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cli := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(ts.URL)
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	if _, err := cli.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	return cli, &migratorv1.AwsOptions{Endpoint: ts.URL, S3PathStyle: true}
}

// checkItems reads some items back and compares them with the generator's.
func checkItems(t testing.TB, c *cluster.Cluster, table string, e *exportgen.Export, sample []int) {
	t.Helper()
	cli, err := client.New(context.Background(), []string{c.RouterAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, i := range sample {
		pk, sk := e.Options.Key(i)
		// QUORUM: the import's writes are acknowledged at QUORUM, and a
		// read at ONE may meet the one replica still applying them.
		item, found, err := cli.Get(context.Background(), table, []byte(pk), []byte(sk),
			client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
		if err != nil {
			t.Fatal(err)
		}
		if kind := e.Options.Kind(i); kind != exportgen.KindLive {
			if found {
				t.Errorf("item %d (kind %d) is in Veltrix", i, kind)
			}
			continue
		}
		if !found {
			t.Errorf("item %d (%s, %s) missing", i, pk, sk)
			continue
		}
		got, err := ddb.DecodeItem(item.Value)
		if err != nil {
			t.Fatal(err)
		}
		want := e.Options.Item(i)
		if !ddb.EqualItems(got, want) {
			t.Errorf("item %d:\n got %v\nwant %v", i, got, want)
		}
		if exp, ok := want[exportgen.TTLAttribute].(ddb.N); ok {
			sec, _ := exp.Int64()
			if item.ExpireTime.Unix() != sec {
				t.Errorf("item %d expires %v, want %d", i, item.ExpireTime, sec)
			}
		} else if !item.ExpireTime.IsZero() {
			t.Errorf("item %d expires %v, want never", i, item.ExpireTime)
		}
		if item.Version>>12 != uint64(e.Options.ExportTime.UnixMicro()) {
			t.Errorf("item %d version %d: want the export time %s", i, item.Version, e.Options.ExportTime)
		}
	}
}

// TestImportLarge imports an export of over 100,000 items across several
// gzip files, with every DynamoDB type, composite keys and TTLs, from an
// in-process S3, follows it with WatchJob, and verifies the result against
// the same export read from disk: 0 mismatches, equal checksums. (Imports
// from disk run in the other tests.) The cluster runs without WAL syncs
// (NoSync) to keep the test fast under -race; durability is the storage
// tests' business.
func TestImportLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100,000 items")
	}
	start := time.Now()
	dir := t.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 100_003, Files: 6, WithTTL: true, Seed: 1, PadBytes: 16, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("export: %d lines (%d live, %d expired), %d files, %.1f MB uncompressed, generated in %s",
		e.Lines, e.Live, e.Expired, len(e.Files), float64(e.Bytes)/1e6, time.Since(start).Round(time.Millisecond))
	s3c, awsOpts := fakeS3(t, "exports")
	if err := uploadS3(context.Background(), s3c, "exports", "AWSDynamoDB/01717243200000-aaaa/", dir); err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	m := migStart(t, c, "m1")

	begin := time.Now()
	src := &migratorv1.ExportSource{Uri: "s3://exports/AWSDynamoDB/01717243200000-aaaa/", Aws: awsOpts}
	id := migImport(t, m, src, "sessions", nil)
	j, seen := migWatch(t, m, id, 5*time.Minute)
	p := j.GetProgress()
	if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != uint64(e.Live) ||
		p.GetSkippedExpired() != uint64(e.Expired) || p.GetRejects() != 0 || p.GetFilesDone() != 6 ||
		p.GetItemsTotal() != uint64(e.Lines) || p.GetBytesRead() != uint64(e.Bytes) {
		t.Fatalf("import %s %q: %v; want %d items, %d expired, %d bytes", j.GetState(), j.GetError(), p, e.Live, e.Expired, e.Bytes)
	}
	took := time.Since(begin)
	var rate float64
	var sawETA, sawOwner bool
	for _, sj := range seen {
		rate = max(rate, sj.GetProgress().GetItemsPerSecond())
		sawETA = sawETA || sj.GetProgress().GetEta() != nil
		sawOwner = sawOwner || slices.Contains(sj.GetOwners(), "m1")
	}
	if len(seen) > 3 && (rate == 0 || !sawETA || !sawOwner) {
		t.Errorf("WatchJob sent %d updates but no rate (%v), ETA (%v) or owner (%v)", len(seen), rate, sawETA, sawOwner)
	}
	t.Logf("import from S3: %d items in %s (%.0f items/s; WatchJob: %d updates, peak rate %.0f/s)",
		e.Live, took.Round(time.Millisecond), float64(e.Live)/took.Seconds(), len(seen), rate)
	checkItems(t, c, "sessions", e, []int{0, 1, 2, 3, 17, 34, 1000, 50_000, 99_999, 100_002})
	begin = time.Now()
	wantVerifyClean(t, migVerify(t, m, &migratorv1.ExportSource{Uri: dir}, "sessions"), e.Live)
	t.Logf("verify against the export on disk: %s", time.Since(begin).Round(time.Millisecond))
}

// TestImportKillResume stops the migrator in the middle of an import and
// starts another: the job completes from its checkpoints with exact
// counts, and verify finds 0 mismatches.
func TestImportKillResume(t *testing.T) {
	dir := t.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 12_000, Files: 4, WithTTL: true, Seed: 2, PadBytes: 16, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	a := migStart(t, c, "a")
	src := &migratorv1.ExportSource{Uri: dir}
	id := migImport(t, a, src, "sessions", func(s *migratorv1.ImportSpec) { s.ItemsPerSecond = 4000; s.Parallelism = 2; s.BatchSize = 100 })
	waitWritten(t, a.api, id, uint64(e.Live)/3)
	a.close()
	b := migStart(t, c, "b")
	j, _ := migWatch(t, b, id, 2*time.Minute)
	p := j.GetProgress()
	if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != uint64(e.Live) ||
		p.GetSkippedExpired() != uint64(e.Expired) || p.GetRejects() != 0 || p.GetBytesRead() != uint64(e.Bytes) {
		t.Fatalf("resumed import %s %q: %v; want exactly %d items, %d expired", j.GetState(), j.GetError(), p, e.Live, e.Expired)
	}
	wantVerifyClean(t, migVerify(t, b, src, "sessions"), e.Live)
}

func jobsTerminal(j *migratorv1.Job) bool {
	s := j.GetState()
	return s == migratorv1.JobState_JOB_STATE_SUCCEEDED || s == migratorv1.JobState_JOB_STATE_FAILED || s == migratorv1.JobState_JOB_STATE_CANCELLED ||
		s == migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS
}

// TestMigrator covers the smaller cases on one cluster: bad input, other
// export formats, idempotent re-imports, verify finding differences, and
// the API's errors.
func TestMigrator(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	m := migStart(t, c, "m1")
	ctx := context.Background()
	kv, err := client.New(ctx, []string{c.RouterAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()

	t.Run("bad input", func(t *testing.T) {
		dir := t.TempDir()
		// File 0 carries bad lines between good ones (line numbers are
		// those of the file as written: each bad line is inserted before
		// the item it names).
		bad := map[int]string{
			5:  `{"Item":{"user_id":{"S":"broken"`,                                                                             // malformed
			10: `{"Item":{"session_id":{"S":"s"},"note":{"S":"no partition key"}}}`,                                            // missing key
			15: `{"Item":{"user_id":{"S":"u"},"session_id":{"S":"s"},"blob":{"B":"` + strings.Repeat("QUFB", 140_000) + `"}}}`, // oversize (420 KB)
			20: `{"Item":{"user_id":{"S":"` + strings.Repeat("x", 1<<20) + `"}}}`,                                              // over 1 MiB
		}
		e := withBadLines(t, dir, exportgen.Options{Items: 400, Files: 4, Seed: 3, WithTTL: true}, bad)
		if err := e.Truncate(1, 0.5); err != nil {
			t.Fatal(err)
		}
		if err := e.BreakChecksum(2); err != nil {
			t.Fatal(err)
		}
		if err := e.SetItemCount(3, 99); err != nil {
			t.Fatal(err)
		}
		id := migImport(t, m, &migratorv1.ExportSource{Uri: dir}, "bad", nil)
		j, _ := migWatch(t, m, id, time.Minute)
		// Data was lost: the job says so, file by file.
		if j.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS || len(j.GetProblems()) != 5 {
			t.Fatalf("%s %q; want COMPLETED_WITH_ERRORS with 5 problems", j.GetState(), j.GetError())
		}
		var rejects []*migratorv1.Reject
		tok := ""
		for {
			r, err := m.api.ListRejects(ctx, &migratorv1.ListRejectsRequest{JobId: id, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			rejects = append(rejects, r.GetRejects()...)
			if tok = r.GetNextPageToken(); tok == "" {
				break
			}
		}
		got := map[string]string{}
		for _, r := range rejects {
			got[fmt.Sprintf("%s:%d", filepath.Base(r.GetSource()), r.GetLine())] = r.GetReason()
		}
		// Line numbers: inserting before items 5, 10, 15, 20 of file 0
		// puts the bad lines at 5, 11, 17, 23.
		f := func(i int) string { return filepath.Base(e.Files[i].Name) }
		want := map[string]string{
			f(0) + ":5":  "malformed line",
			f(0) + ":11": "missing key attribute",
			f(0) + ":17": "oversize item",
			f(0) + ":23": "line too long",
			f(2) + ":0":  "checksum mismatch",
			f(3) + ":0":  "item count mismatch: the file has 100 items, manifest-files.json says 99",
			// The summary's count no longer matches the files' either.
			"manifest-summary.json:0": "item count mismatch: manifest-summary.json says 404 items, the files of manifest-files.json add up to 403",
		}
		corrupt := ""
		for where, reason := range got {
			if strings.HasPrefix(where, f(1)+":") && strings.Contains(reason, "corrupt gzip") {
				corrupt = where
			}
		}
		if corrupt == "" {
			t.Errorf("no corrupt-gzip reject for the truncated file %s", f(1))
		}
		for where, substr := range want {
			if !strings.Contains(got[where], substr) {
				t.Errorf("reject %s = %q, want %q", where, got[where], substr)
			}
		}
		if len(got) != len(want)+1 {
			t.Errorf("rejects: %v", got)
		}
		// The items around the bad lines were imported.
		var around []int
		for _, item := range []int{3, 4, 5, 9, 10, 14, 15, 19, 20, 21} {
			around = append(around, e.Files[0].Items[item-1])
		}
		checkItems(t, c, "bad", e, around)
		if p := j.GetProgress(); p.GetRejects() != 8 {
			t.Errorf("progress %v: want 8 rejects", p)
		}
	})

	t.Run("ion and incremental", func(t *testing.T) {
		base := exportgen.Options{Items: 2000, Files: 3, Seed: 4, WithTTL: true}
		full := base
		full.Format = exportgen.Ion
		inc := base
		inc.Format = exportgen.IncrementalIon
		inc.ExportTime = time.Date(2024, 6, 1, 13, 0, 0, 0, time.UTC) // an hour after the full export's default time
		incJSON := inc
		incJSON.Format = exportgen.Incremental
		dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
		ef, err := exportgen.Generate(dirs[0], full)
		if err != nil {
			t.Fatal(err)
		}
		id := migImport(t, m, &migratorv1.ExportSource{Uri: dirs[0]}, "ion", nil)
		if j, _ := migWatch(t, m, id, time.Minute); j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || j.GetProgress().GetItemsWritten() != uint64(ef.Live) {
			t.Fatalf("ion import: %s %q %v", j.GetState(), j.GetError(), j.GetProgress())
		}
		wantVerifyClean(t, migVerify(t, m, &migratorv1.ExportSource{Uri: dirs[0]}, "ion"), ef.Live)
		checkItems(t, c, "ion", ef, []int{0, 17, 1999})
		// The incremental exports (ION, then the same records in JSON)
		// update, delete and expire items written by the full one.
		for i, o := range []exportgen.Options{inc, incJSON} {
			ei, err := exportgen.Generate(dirs[i+1], o)
			if err != nil {
				t.Fatal(err)
			}
			id := migImport(t, m, &migratorv1.ExportSource{Uri: dirs[i+1]}, "ion", nil)
			j, _ := migWatch(t, m, id, time.Minute)
			p := j.GetProgress()
			if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != uint64(ei.Live) || p.GetDeletes() != uint64(ei.Deletes) {
				t.Fatalf("incremental import %d: %s %q %v (want %d puts, %d deletes)", i, j.GetState(), j.GetError(), p, ei.Live, ei.Deletes)
			}
			v := migVerify(t, m, &migratorv1.ExportSource{Uri: dirs[i+1]}, "ion")
			if r := v.GetVerifyReport(); r.GetMissing()+r.GetDifferent()+r.GetExtra() != 0 || r.GetTargetItems() != uint64(ei.Live) {
				t.Fatalf("verify after incremental %d: %v", i, r)
			}
		}
	})

	t.Run("idempotent re-import and verify finding differences", func(t *testing.T) {
		dir := t.TempDir()
		e, err := exportgen.Generate(dir, exportgen.Options{Items: 1500, Files: 2, Seed: 5, WithTTL: true})
		if err != nil {
			t.Fatal(err)
		}
		src := &migratorv1.ExportSource{Uri: dir}
		var first *migratorv1.VerifyReport
		for round := range 2 {
			id := migImport(t, m, src, "again", nil)
			j, _ := migWatch(t, m, id, time.Minute)
			if j.GetProgress().GetItemsWritten() != uint64(e.Live) {
				t.Fatalf("round %d: %v", round, j.GetProgress())
			}
			v := migVerify(t, m, src, "again")
			wantVerifyClean(t, v, e.Live)
			if first == nil {
				first = v.GetVerifyReport()
			} else if v.GetVerifyReport().GetTargetChecksum() != first.GetTargetChecksum() {
				t.Fatal("re-import changed the table's checksum")
			}
		}
		live := func(i int) (string, string) {
			for ; e.Options.Kind(i) != exportgen.KindLive; i++ {
			}
			return e.Options.Key(i)
		}
		cpk, csk := live(10)
		if _, err := kv.Put(ctx, "again", []byte(cpk), []byte(csk), []byte("changed")); err != nil {
			t.Fatal(err)
		}
		dpk, dsk := live(20)
		if _, err := kv.Delete(ctx, "again", []byte(dpk), []byte(dsk)); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "again", []byte("user#extra"), []byte("session#x"), []byte("extra")); err != nil {
			t.Fatal(err)
		}
		r := migVerify(t, m, src, "again").GetVerifyReport()
		if r.GetMissing() != 1 || r.GetDifferent() != 1 || r.GetExtra() != 1 || r.GetSourceChecksum() == r.GetTargetChecksum() {
			t.Fatalf("verify after changes: %v", r)
		}
		var found []string
		for _, mm := range r.GetMismatches() {
			found = append(found, fmt.Sprintf("%s %s %s", mm.GetKind(), mm.GetPartitionKey(), mm.GetSortKey()))
		}
		slices.Sort(found)
		want := []string{
			fmt.Sprintf("MISMATCH_KIND_DIFFERENT %s %s", cpk, csk),
			"MISMATCH_KIND_EXTRA user#extra session#x",
			fmt.Sprintf("MISMATCH_KIND_MISSING %s %s", dpk, dsk),
		}
		if !slices.Equal(found, want) {
			t.Fatalf("mismatches %q, want %q", found, want)
		}
		// The imports show in the metrics.
		mfs, err := m.srv.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, mf := range mfs {
			seen[mf.GetName()] = len(mf.GetMetric()) > 0
		}
		for _, name := range []string{"veltrix_migrator_items_written_total", "veltrix_migrator_bytes_read_total",
			"veltrix_migrator_rejects_total", "veltrix_migrator_job_progress_ratio"} {
			if !seen[name] {
				t.Errorf("metric %s missing", name)
			}
		}
	})

	t.Run("api errors", func(t *testing.T) {
		code := func(err error, want codes.Code, substr string) {
			t.Helper()
			if status.Code(err) != want || !strings.Contains(err.Error(), substr) {
				t.Errorf("got %v; want %s containing %q", err, want, substr)
			}
		}
		_, err := m.api.StartImport(ctx, &migratorv1.StartImportRequest{Spec: &migratorv1.ImportSpec{
			Source:  &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{}},
			Mapping: &migratorv1.Mapping{Filter: "a ="}, BatchSize: 5000}})
		for _, want := range []string{"spec.export.uri: required", "spec.mapping.target_table: required", "spec.mapping.partition_key.name: required", "spec.mapping.filter", "spec.batch_size"} {
			code(err, codes.InvalidArgument, want)
		}
		_, err = m.api.StartImport(ctx, &migratorv1.StartImportRequest{})
		code(err, codes.InvalidArgument, "spec: required")
		_, err = m.api.StartVerify(ctx, &migratorv1.StartVerifyRequest{Spec: &migratorv1.VerifySpec{
			Source: &migratorv1.VerifySpec_Export{Export: &migratorv1.ExportSource{Uri: "/x"}}, Mapping: sessionsMapping("t"), SampleFraction: 2}})
		code(err, codes.InvalidArgument, "spec.sample_fraction")
		_, err = m.api.GetJob(ctx, &migratorv1.GetJobRequest{Id: "no-such-job"})
		code(err, codes.NotFound, "no-such-job")
		ws, err := m.api.WatchJob(ctx, &migratorv1.WatchJobRequest{Id: "no-such-job"})
		if err == nil {
			_, err = ws.Recv()
		}
		code(err, codes.NotFound, "no-such-job")
		_, err = m.api.ListRejects(ctx, &migratorv1.ListRejectsRequest{JobId: "no-such-job"})
		code(err, codes.NotFound, "no-such-job")
		_, err = m.api.StartStream(ctx, &migratorv1.StartStreamRequest{})
		code(err, codes.InvalidArgument, "spec: required")

		// A source that is not there fails the job with a clear error.
		req := &migratorv1.StartImportRequest{JobId: "missing-source", Spec: &migratorv1.ImportSpec{
			Source:  &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: filepath.Join(t.TempDir(), "nope")}},
			Mapping: sessionsMapping("t")}}
		if _, err := m.api.StartImport(ctx, req); err != nil {
			t.Fatal(err)
		}
		j, _ := migWatch(t, m, "missing-source", time.Minute)
		if j.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetError(), "nope") {
			t.Fatalf("%s %q", j.GetState(), j.GetError())
		}
		// Starting the same job id again returns the job; cancelling a
		// finished one is a FailedPrecondition.
		again, err := m.api.StartImport(ctx, req)
		if err != nil || again.GetJob().GetState() != migratorv1.JobState_JOB_STATE_FAILED {
			t.Fatalf("same job id: %v %v", again, err)
		}
		_, err = m.api.CancelJob(ctx, &migratorv1.CancelJobRequest{Id: "missing-source"})
		code(err, codes.FailedPrecondition, "FAILED")

		// ListJobs pages newest first.
		var ids []string
		tok := ""
		for {
			r, err := m.api.ListJobs(ctx, &migratorv1.ListJobsRequest{Kind: migratorv1.JobKind_JOB_KIND_VERIFY, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range r.GetJobs() {
				if j.GetKind() != migratorv1.JobKind_JOB_KIND_VERIFY {
					t.Fatalf("ListJobs(VERIFY) returned %s", j.GetKind())
				}
				ids = append(ids, j.GetId())
			}
			if tok = r.GetNextPageToken(); tok == "" {
				break
			}
		}
		all, err := m.api.ListJobs(ctx, &migratorv1.ListJobsRequest{Kind: migratorv1.JobKind_JOB_KIND_VERIFY})
		if err != nil {
			t.Fatal(err)
		}
		sorted := slices.Clone(ids)
		slices.Sort(sorted)
		if len(ids) < 4 || len(ids) != len(all.GetJobs()) || len(slices.Compact(sorted)) != len(ids) {
			t.Fatalf("verify jobs paged: %v; in one page: %d", ids, len(all.GetJobs()))
		}
		for i := 1; i < len(all.GetJobs()); i++ {
			if all.GetJobs()[i].GetCreateTime().AsTime().After(all.GetJobs()[i-1].GetCreateTime().AsTime()) {
				t.Fatal("ListJobs is not newest first")
			}
		}
	})
}

// BenchmarkImport measures import throughput from disk into a three-node,
// RF 3 in-process cluster, with the storage nodes syncing their WALs
// (sync) or not (nosync). Each iteration imports the whole export into a
// fresh table; items/s counts the items written and MB/s the
// uncompressed export bytes read.
//
//	go test -run '^$' -bench BenchmarkImport -benchtime 2x ./e2e
func BenchmarkImport(b *testing.B) {
	dir := b.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 100_000, Files: 8, WithTTL: true, Seed: 9})
	if err != nil {
		b.Fatal(err)
	}
	for _, noSync := range []bool{false, true} {
		name := "sync"
		if noSync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			c := cluster.Start(b, cluster.Options{Nodes: 3, RF: 3, NoSync: noSync})
			m := migStart(b, c, "bench")
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				id := migImport(b, m, &migratorv1.ExportSource{Uri: dir}, fmt.Sprintf("bench%d", i), func(s *migratorv1.ImportSpec) {
					s.Parallelism = 8
					s.BatchSize = 500
				})
				j, _ := migWatch(b, m, id, 10*time.Minute)
				if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || j.GetProgress().GetItemsWritten() != uint64(e.Live) {
					b.Fatalf("%s %q %v", j.GetState(), j.GetError(), j.GetProgress())
				}
			}
			secs := time.Since(start).Seconds()
			b.ReportMetric(float64(e.Live*b.N)/secs, "items/s")
			b.ReportMetric(float64(e.Bytes*int64(b.N))/1e6/secs, "MB/s")
		})
	}
}
