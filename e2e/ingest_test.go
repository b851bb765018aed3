package e2e

// Bulk import by SST ingestion (write path INGEST): the guarantees of the
// BatchWrite path, checked against a real cluster (real Pebble, etcd,
// gRPC): the same stored bytes, last-writer-wins against live writes,
// equal replica digests, resumption after a crash, the same rejects.

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/cluster"
	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
)

// clockReading is the time-dependent part of a version refusal.
var clockReading = regexp.MustCompile(`is \S+ ahead of the router's clock \([^)]*\)`)

func withPath(p migratorv1.WritePath) func(*migratorv1.ImportSpec) {
	return func(s *migratorv1.ImportSpec) { s.WritePath = p }
}

// wantImported checks an import ended SUCCEEDED with exact counts, by the
// write path wanted.
func wantImported(t *testing.T, j *migratorv1.Job, e *exportgen.Export, path migratorv1.WritePath) {
	t.Helper()
	p := j.GetProgress()
	if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != uint64(e.Live) ||
		p.GetSkippedExpired() != uint64(e.Expired) || p.GetRejects() != 0 || p.GetBytesRead() != uint64(e.Bytes) {
		t.Fatalf("import %s %q: %v; want exactly %d items, %d expired, %d bytes", j.GetState(), j.GetError(), p, e.Live, e.Expired, e.Bytes)
	}
	if got := j.GetImportSpec().GetWritePath(); got != path {
		t.Errorf("job's write path %s; want %s", got, path)
	}
}

// exportKeys are the keys of every item of e in table.
func exportKeys(e *exportgen.Export, table string) []client.Key {
	keys := make([]client.Key, e.Options.Items)
	for i := range keys {
		pk, sk := e.Options.Key(i)
		keys[i] = client.Key{Table: table, PartitionKey: []byte(pk), SortKey: []byte(sk)}
	}
	return keys
}

// digestsEqual reports whether every node reports the same digests.
func digestsEqual(t *testing.T, c *cluster.Cluster) bool {
	t.Helper()
	var first string
	for i, n := range c.Nodes {
		d, err := nodeDigests(context.Background(), n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = d
		} else if d != first {
			return false
		}
	}
	return true
}

// partitionDigests are node i's digests of its partitions holding data.
func partitionDigests(t *testing.T, c *cluster.Cluster, i int) map[uint32]*storagev1.PartitionDigest {
	t.Helper()
	cc, err := grpcx.Dial(c.Nodes[i].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := storagev1.NewStorageServiceClient(cc).PartitionDigests(context.Background(), &storagev1.PartitionDigestsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]*storagev1.PartitionDigest{}
	for _, d := range resp.GetDigests() {
		if d.GetCount() > 0 {
			got[d.GetPartition()] = d
		}
	}
	return got
}

// replicaDigests fails the test unless every node reports the same digest
// for every partition (RF = nodes: each node holds every partition).
func replicaDigests(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	var first map[uint32]*storagev1.PartitionDigest
	for i, n := range c.Nodes {
		got := partitionDigests(t, c, i)
		if i == 0 {
			first = got
			if len(first) == 0 {
				t.Fatal("node 0 holds no data")
			}
			continue
		}
		if len(got) != len(first) {
			t.Errorf("node %s: %d partitions with data, node %s: %d", n.ID(), len(got), c.Nodes[0].ID(), len(first))
		}
		for p, d := range first {
			if g := got[p]; g.GetCount() != d.GetCount() || g.GetSum() != d.GetSum() {
				t.Errorf("partition %d: node %s digest %v, node %s %v", p, c.Nodes[0].ID(), d, n.ID(), g)
			}
		}
	}
}

// withBadLines generates an export whose file 0 has bad[n] inserted before
// its n-th item (line numbers are those of the file as written).
func withBadLines(t *testing.T, dir string, o exportgen.Options, bad map[int]string) *exportgen.Export {
	t.Helper()
	o.Lines = func(file, line, item int, data []byte) [][]byte {
		if b, ok := bad[line]; ok && file == 0 {
			return [][]byte{[]byte(b), data}
		}
		return [][]byte{data}
	}
	e, err := exportgen.Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cliJobArgs are the flags `veltrix import` and `verify` share: the source,
// exportgen's keys, the cluster and JSON output.
func cliJobArgs(c *framework.Cluster, dir, table string) []string {
	return []string{
		"--source", dir, "--table", table,
		"--pk", exportgen.PartitionKey + ":S", "--sk", exportgen.SortKey + ":S",
		"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr(),
		"--output", "json",
	}
}

// listRejects returns a job's rejects as "file:line: reason [excerpt]".
func listRejects(t *testing.T, m *migProc, id string) []string {
	t.Helper()
	var out []string
	tok := ""
	for range 1000 {
		r, err := m.api.ListRejects(context.Background(), &migratorv1.ListRejectsRequest{JobId: id, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, rj := range r.GetRejects() {
			out = append(out, fmt.Sprintf("%s:%d: %s [%q]", filepath.Base(rj.GetSource()), rj.GetLine(), rj.GetReason(), rj.GetExcerpt()))
		}
		if tok = r.GetNextPageToken(); tok == "" {
			return out
		}
	}
	t.Fatal("ListRejects: more than 1000 pages")
	return nil
}

// TestIngestImport imports one export by INGEST and by BATCH_WRITE into two
// tables of one RF3 cluster and compares them item by item; checks the
// replicas' digests after ingestion, verify's verdict, live writes made
// during an ingestion, and that a damaged export leaves the same rejects
// by both paths.
func TestIngestImport(t *testing.T) {
	dir := t.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 6000, Files: 3, WithTTL: true, Seed: 21, PadBytes: 16, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	m := migStart(t, c, "m1")
	ctx := context.Background()
	kv, err := client.New(ctx, []string{c.RouterAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	src := &migratorv1.ExportSource{Uri: dir}
	ingest, batch := migratorv1.WritePath_WRITE_PATH_INGEST, migratorv1.WritePath_WRITE_PATH_BATCH_WRITE

	j, _ := migWatch(t, m, migImport(t, m, src, "by_ingest", withPath(ingest)), 2*time.Minute)
	wantImported(t, j, e, ingest)
	// Every replica acknowledged every run: the digests agree at once.
	replicaDigests(t, c)
	wantVerifyClean(t, migVerify(t, m, src, "by_ingest"), e.Live)

	// The small export's automatic path is BATCH_WRITE.
	j, _ = migWatch(t, m, migImport(t, m, src, "by_batch", nil), 2*time.Minute)
	wantImported(t, j, e, batch)

	t.Run("byte-identical to BatchWrite", func(t *testing.T) {
		a, err := kv.BatchGet(ctx, exportKeys(e, "by_ingest"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
		if err != nil {
			t.Fatal(err)
		}
		b, err := kv.BatchGet(ctx, exportKeys(e, "by_batch"), client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for i := range a {
			x, y := a[i], b[i]
			if x.Found != y.Found || string(x.Item.Value) != string(y.Item.Value) || x.Item.Version != y.Item.Version || !x.Item.ExpireTime.Equal(y.Item.ExpireTime) {
				t.Fatalf("item %d: ingested %v %+v, batch-written %v %+v", i, x.Found, x.Item, y.Found, y.Item)
			}
			if x.Found {
				found++
			}
		}
		if found != e.Live {
			t.Errorf("%d items found; want %d", found, e.Live)
		}
	})

	t.Run("newer live writes survive", func(t *testing.T) {
		keys := exportKeys(e, "live")
		if _, err := kv.CreateTable(ctx, "live"); err != nil {
			t.Fatal(err)
		}
		live := map[int][]byte{}
		put := func(i int) {
			v := fmt.Appendf(nil, "live write of item %d", i)
			if _, err := kv.Put(ctx, "live", keys[i].PartitionKey, keys[i].SortKey, v); err != nil {
				t.Error(err)
				return
			}
			live[i] = v
		}
		// Before the import: every ingested run meets them.
		before := 0
		for i := 0; i < e.Options.Items; i += 97 {
			put(i)
			if e.Options.Kind(i) == exportgen.KindLive {
				before++
			}
		}
		id := migImport(t, m, src, "live", withPath(ingest))
		var wg sync.WaitGroup
		wg.Go(func() {
			// During the import, until it ends (bounded).
			for i := 1; i < e.Options.Items; i += 89 {
				r, err := m.api.GetJob(ctx, &migratorv1.GetJobRequest{Id: id})
				if err != nil || jobsTerminal(r.GetJob()) {
					return
				}
				put(i)
			}
		})
		j, _ := migWatch(t, m, id, 2*time.Minute)
		wg.Wait()
		if j.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("import %s %q", j.GetState(), j.GetError())
		}
		// The items put before are superseded; those put during the
		// import may be, if their run came later.
		if sup := j.GetProgress().GetItemsSuperseded(); sup < uint64(before) || sup > uint64(len(live)) {
			t.Errorf("%d items superseded; want %d to %d", sup, before, len(live))
		}
		for i, v := range live {
			it, found, err := kv.Get(ctx, "live", keys[i].PartitionKey, keys[i].SortKey, client.WithConsistency(kvv1.Consistency_CONSISTENCY_QUORUM))
			if err != nil {
				t.Fatal(err)
			}
			if !found || string(it.Value) != string(v) {
				t.Errorf("item %d: %q (found %v); want the live write %q", i, it.Value, found, v)
			}
		}
		replicaDigests(t, c)
	})

	t.Run("same rejects", func(t *testing.T) {
		bad := map[int]string{
			5:  `{"Item":{"user_id":{"S":"broken"`,
			10: `{"Item":{"session_id":{"S":"s"},"note":{"S":"no partition key"}}}`,
			15: `{"Item":{"user_id":{"S":"u"},"session_id":{"S":"s"},"blob":{"B":"` + strings.Repeat("QUFB", 140_000) + `"}}}`,
			// Sort keys are 1024 bytes at most.
			20: `{"Item":{"user_id":{"S":"u"},"session_id":{"S":"` + strings.Repeat("s", 1500) + `"}}}`,
		}
		dir := t.TempDir()
		be := withBadLines(t, dir, exportgen.Options{Items: 400, Files: 3, Seed: 22, WithTTL: true}, bad)
		if err := be.Truncate(1, 0.5); err != nil {
			t.Fatal(err)
		}
		// An export taken "3 hours from now": Veltrix refuses versions
		// that far ahead of its clock, so every item it maps is refused
		// by the write path itself.
		fdir := t.TempDir()
		if _, err := exportgen.Generate(fdir, exportgen.Options{Items: 30, Files: 1, Seed: 25, ExportTime: time.Now().Add(3 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		for i, bsrc := range []*migratorv1.ExportSource{{Uri: dir}, {Uri: fdir}} {
			ji, _ := migWatch(t, m, migImport(t, m, bsrc, fmt.Sprintf("bad%d_ingest", i), withPath(ingest)), time.Minute)
			jb, _ := migWatch(t, m, migImport(t, m, bsrc, fmt.Sprintf("bad%d_batch", i), withPath(batch)), time.Minute)
			ri, rb := listRejects(t, m, ji.GetId()), listRejects(t, m, jb.GetId())
			// Only the clock readings in a version refusal differ.
			for _, r := range [][]string{ri, rb} {
				for k := range r {
					r[k] = clockReading.ReplaceAllString(r[k], "is … ahead of the router's clock (…)")
				}
			}
			if strings.Join(ri, "\n") != strings.Join(rb, "\n") {
				t.Errorf("rejects differ:\nINGEST:\n%s\nBATCH_WRITE:\n%s", strings.Join(ri, "\n"), strings.Join(rb, "\n"))
			}
			if want := "Veltrix refused the write: invalid argument: mutations[0].version"; i == 1 && (len(ri) != 30 || !strings.Contains(ri[0], want)) {
				t.Errorf("%d rejects of the future export; want 30 saying %q:\n%s", len(ri), want, strings.Join(ri, "\n"))
			}
			pi, pb := ji.GetProgress(), jb.GetProgress()
			if ji.GetState() != jb.GetState() || pi.GetItemsWritten() != pb.GetItemsWritten() || pi.GetRejects() != pb.GetRejects() ||
				pi.GetSkippedExpired() != pb.GetSkippedExpired() || len(ji.GetProblems()) != len(jb.GetProblems()) {
				t.Errorf("INGEST %s %v, BATCH_WRITE %s %v; want the same outcome", ji.GetState(), pi, jb.GetState(), pb)
			}
		}
	})
}

// waitWritten waits until a running import has written more than n items;
// it fails the test if the job ends first.
func waitWritten(t *testing.T, api migratorv1.MigratorServiceClient, id string, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d items written", n), func() bool {
		r, err := api.GetJob(context.Background(), &migratorv1.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if jobsTerminal(r.GetJob()) {
			t.Fatalf("import ended before it could be interrupted: %v", r.GetJob())
		}
		return r.GetJob().GetProgress().GetItemsWritten() > n
	})
}

// TestIngestKillResume stops the migrator in the middle of an INGEST import
// and starts another: the job completes from its checkpoints with exact
// counts, and verify finds 0 mismatches.
func TestIngestKillResume(t *testing.T) {
	dir := t.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 12_000, Files: 6, WithTTL: true, Seed: 23, PadBytes: 16, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	a := migStart(t, c, "a")
	src := &migratorv1.ExportSource{Uri: dir}
	id := migImport(t, a, src, "sessions", func(s *migratorv1.ImportSpec) {
		s.WritePath = migratorv1.WritePath_WRITE_PATH_INGEST
		s.ItemsPerSecond = 4000
		s.Parallelism = 2
	})
	waitWritten(t, a.api, id, uint64(e.Live)/3)
	a.close()
	b := migStart(t, c, "b")
	j, _ := migWatch(t, b, id, 2*time.Minute)
	wantImported(t, j, e, migratorv1.WritePath_WRITE_PATH_INGEST)
	wantVerifyClean(t, migVerify(t, b, src, "sessions"), e.Live)
	replicaDigests(t, c)
}

// TestBinIngestImportKill runs an INGEST import with the shipped binaries
// (`veltrix import --write-path ingest`), SIGKILLs the migrator in the
// middle, restarts it, and checks the job finishes with exact counts and
// verify finds 0 mismatches.
func TestBinIngestImportKill(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Migrator: true, MigratorArgs: []string{"--session-ttl", "2s"}})
	exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{Items: 12_000, Files: 6, Seed: 24, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	common := cliJobArgs(c, exp.Dir, "ingested")
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, 2*time.Minute, "", veltrix, args...)
	}
	res := cli(append([]string{"import", "--create-table", "--detach", "--write-path", "ingest", "--rate", "4000", "--parallelism", "2"}, common...)...)
	if res.code != 0 {
		t.Fatalf("veltrix import: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	id := cliJob(t, "veltrix import --detach", res).GetId()
	cc, err := grpcx.Dial(c.MigratorAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := migratorv1.NewMigratorServiceClient(cc)
	waitWritten(t, api, id, uint64(exp.Live)/3)
	c.Migrator.Kill(t)
	c.Migrator.Restart(t)
	res = cli("jobs", "watch", id, "--migrator", c.MigratorAddr(), "--output", "json")
	job := cliJob(t, "veltrix jobs watch", res)
	pr := job.GetProgress()
	if res.code != 0 || job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || pr.GetItemsWritten() != uint64(exp.Live) ||
		pr.GetSkippedExpired() != uint64(exp.Expired) || pr.GetRejects() != 0 || job.GetImportSpec().GetWritePath() != migratorv1.WritePath_WRITE_PATH_INGEST {
		t.Fatalf("resumed import (exit %d): %s %q %v, write path %s; want SUCCEEDED with exactly %d items by INGEST\nstderr:\n%s",
			res.code, job.GetState(), job.GetError(), pr, job.GetImportSpec().GetWritePath(), exp.Live, res.stderr)
	}
	res = cli(append([]string{"verify", "--check-extra"}, common...)...)
	vr := cliJob(t, "veltrix verify", res).GetVerifyReport()
	if res.code != 0 || vr.GetMissing()+vr.GetDifferent()+vr.GetExtra() != 0 || vr.GetCompared() != uint64(exp.Live) {
		t.Fatalf("veltrix verify: exit %d, report %v; want %d items compared, 0 mismatches", res.code, vr, exp.Live)
	}
}

// TestIngestNodeDown imports by INGEST while one of three replicas is
// stopped: the runs it cannot take go through BatchWrite (QUORUM, hints)
// instead, the job succeeds with exact counts and verify finds 0
// mismatches; once the node is back, hinted handoff brings its copy level
// with the others.
func TestIngestNodeDown(t *testing.T) {
	dir := t.TempDir()
	e, err := exportgen.Generate(dir, exportgen.Options{Items: 3000, Files: 3, WithTTL: true, Seed: 26, PadBytes: 16, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Start(t, cluster.Options{Nodes: 3, RF: 3, NoSync: true})
	m := migStart(t, c, "m1")
	c.StopNode(2)
	src := &migratorv1.ExportSource{Uri: dir}
	j, _ := migWatch(t, m, migImport(t, m, src, "sessions", withPath(migratorv1.WritePath_WRITE_PATH_INGEST)), 2*time.Minute)
	wantImported(t, j, e, migratorv1.WritePath_WRITE_PATH_INGEST)
	wantVerifyClean(t, migVerify(t, m, src, "sessions"), e.Live)
	c.StartNode(2)
	deadline := time.Now().Add(time.Minute)
	for !digestsEqual(t, c) {
		if time.Now().After(deadline) {
			replicaDigests(t, c) // names the partitions that differ
			t.Fatal("replicas still differ a minute after the node came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
