package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

func line(pk string, sk int, extra string) string {
	return testexport.Item(fmt.Sprintf(`"pk":{"S":%q},"sk":{"N":"%d"},"v":{"S":"value of %s"}%s`, pk, sk, pk, extra))
}

func goodLines(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = line(fmt.Sprintf("%s%d", prefix, i), i, "")
	}
	return out
}

func testMapping() *migratorv1.Mapping {
	return &migratorv1.Mapping{
		TargetTable:  "sessions",
		CreateTable:  true,
		PartitionKey: &migratorv1.KeyAttribute{Name: "pk", Type: migratorv1.KeyType_KEY_TYPE_S},
		SortKey:      &migratorv1.KeyAttribute{Name: "sk", Type: migratorv1.KeyType_KEY_TYPE_N},
		TtlAttribute: "exp",
	}
}

func importJob(dir string, spec func(*migratorv1.ImportSpec)) *migratorv1.Job {
	s := &migratorv1.ImportSpec{
		Source:  &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: dir}},
		Mapping: testMapping(),
	}
	if spec != nil {
		spec(s)
	}
	return &migratorv1.Job{Kind: migratorv1.JobKind_JOB_KIND_IMPORT, Spec: &migratorv1.Job_ImportSpec{ImportSpec: s}}
}

func verifyJob(dir string, checkExtra bool) *migratorv1.Job {
	return &migratorv1.Job{Kind: migratorv1.JobKind_JOB_KIND_VERIFY, Spec: &migratorv1.Job_VerifySpec{VerifySpec: &migratorv1.VerifySpec{
		Source:     &migratorv1.VerifySpec_Export{Export: &migratorv1.ExportSource{Uri: dir}},
		Mapping:    testMapping(),
		CheckExtra: checkExtra,
	}}}
}

func intp(n int) *int { return &n }

// TestImportBadInput imports an export with every kind of bad input: each
// lands in the dead-letter report with its file and line, the good lines
// around it are imported, and the counts are exact.
func TestImportBadInput(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	fake.refuse = func(m client.Mutation) bool { return string(m.Key.PartitionKey) == "refuse-me" }
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()
	file0 := []string{
		line("a1", 1, ""),
		`{"Item":{"pk":{"S":"broken"`, // 2 malformed
		line("a3", 3, ""),
		`{"Item":{"sk":{"N":"4"},"v":{"S":"no partition key"}}}`, // 4 missing key
		line("a5", 5, ""),
		line("big", 6, `,"blob":{"S":"`+strings.Repeat("x", mapping.MaxItemBytes)+`"}`), // 6 oversize
		line("a7", 7, fmt.Sprintf(`,"exp":{"N":"%d"}`, future)),
		`{"Item":{"pk":{"S":"` + strings.Repeat("y", 1<<20) + `"}}}`, // 8 longer than 1 MiB
		line("a9", 9, ""),
		line("gone", 10, fmt.Sprintf(`,"exp":{"N":"%d"}`, past)), // 10 expired
		"", // 11 blank
		line("a12", 12, ""),
	}
	long := goodLines("t", 3000)
	full := testexport.Gzip(strings.Join(long, "\n") + "\n")
	dir := t.TempDir()
	names, err := testexport.Write(dir, testexport.Options{},
		testexport.File{Lines: file0, ItemCount: intp(11)},
		testexport.File{Raw: full[:len(full)*6/10], ItemCount: intp(3000)},         // truncated
		testexport.File{Lines: goodLines("m", 5), MD5: "1B2M2Y8AsgTpgAmY7PhCfg=="}, // checksum mismatch
		testexport.File{Lines: goodLines("c", 3), ItemCount: intp(4)},              // count mismatch
		testexport.File{Lines: []string{line("r1", 1, ""), line("refuse-me", 2, ""), line("r3", 3, "")}},
	)
	if err != nil {
		t.Fatal(err)
	}
	startMigrator(t, store, fake, "m1")
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.BatchSize = 7 }))
	got := waitJob(t, store, job.GetId(), 30*time.Second)
	// Data was lost, so the job must not say SUCCEEDED: it names every
	// file that fell short, with its count.
	if got.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		t.Fatalf("job %s: %s; want COMPLETED_WITH_ERRORS", got.GetState(), got.GetError())
	}
	checkProblems(t, got, map[string]string{
		names[0] + " REJECTED_LINES":      "4 items",
		names[1] + " CORRUPT_FILE":        "", // count checked below
		names[2] + " CHECKSUM_MISMATCH":   "5 items",
		names[3] + " ITEM_COUNT_MISMATCH": "1 items",
		names[4] + " REJECTED_LINES":      "1 items",
	})
	rejects := allRejects(t, store, job.GetId())
	reasons := map[string]string{}
	for _, r := range rejects {
		reasons[fmt.Sprintf("%s:%d", r.GetSource(), r.GetLine())] = r.GetReason()
	}
	live := fake.live("sessions")
	truncatedLines := 0
	for i := range 3000 {
		if _, ok := live[fmt.Sprintf("t%d|%d", i, i)]; ok {
			truncatedLines++
		}
	}
	if truncatedLines == 0 || truncatedLines == 3000 {
		t.Fatalf("%d lines of the truncated file imported; want those before the damage", truncatedLines)
	}
	want := map[string]string{
		names[0] + ":2": "malformed line",
		names[0] + ":4": "missing key attribute",
		names[0] + ":6": "oversize item",
		names[0] + ":8": "line too long",
		fmt.Sprintf("%s:%d", names[1], truncatedLines+1): "corrupt gzip",
		names[2] + ":0": "checksum mismatch",
		names[3] + ":0": "item count mismatch: the file has 3 items, manifest-files.json says 4",
		names[4] + ":2": "Veltrix refused the write",
	}
	if len(reasons) != len(want) {
		t.Errorf("rejects: %v\nwant: %v", rejectSummary(rejects), want)
	}
	for where, substr := range want {
		if !strings.Contains(reasons[where], substr) {
			t.Errorf("reject at %s = %q, want it to say %q", where, reasons[where], substr)
		}
	}
	for _, r := range rejects {
		if r.GetLine() == 2 && r.GetSource() == names[0] && !strings.HasPrefix(string(r.GetExcerpt()), `{"Item":{"pk":{"S":"broken"`) {
			t.Errorf("excerpt %q", r.GetExcerpt())
		}
		if len(r.GetExcerpt()) > 1024 {
			t.Errorf("excerpt of %d bytes", len(r.GetExcerpt()))
		}
	}
	for _, k := range []string{"a1|1", "a3|3", "a5|5", "a7|7", "a9|9", "a12|12", "c0|0", "c2|2", "r1|1", "r3|3"} {
		if _, ok := live[k]; !ok {
			t.Errorf("item %s around the bad lines is missing", k)
		}
	}
	for _, k := range []string{"gone|10", "m0|0", "refuse-me|2"} {
		if _, ok := live[k]; ok {
			t.Errorf("item %s should not have been imported", k)
		}
	}
	if it := live["a7|7"]; it.expire.Unix() != future {
		t.Errorf("a7 expires %v, want %d", it.expire, future)
	}
	for _, pr := range got.GetProblems() {
		if pr.GetKind() == migratorv1.ProblemKind_PROBLEM_KIND_CORRUPT_FILE && pr.GetItems() != uint64(3000-truncatedLines) {
			t.Errorf("corrupt file problem counts %d items, want %d unread", pr.GetItems(), 3000-truncatedLines)
		}
	}
	p := got.GetProgress()
	wantItems := uint64(6 + truncatedLines + 3 + 2)
	if p.GetItemsWritten() != wantItems || p.GetRejects() != 8 || p.GetSkippedExpired() != 1 || p.GetFilesDone() != 5 || p.GetFilesTotal() != 5 ||
		uint64(len(live)) != wantItems || p.GetItemsTotal() != 11+3000+5+4+3 {
		t.Errorf("progress %v, want %d items, 8 rejects, 1 expired, 5/5 files; %d live", p, wantItems, len(live))
	}

	// Importing again changes nothing: same versions, same counts.
	before := fake.live("sessions")
	job2 := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.BatchSize = 7 }))
	got2 := waitJob(t, store, job2.GetId(), 30*time.Second)
	if got2.GetProgress().GetItemsWritten() != wantItems || got2.GetProgress().GetRejects() != 8 {
		t.Errorf("re-import progress %v", got2.GetProgress())
	}
	after := fake.live("sessions")
	if len(after) != len(before) {
		t.Fatalf("re-import: %d items, before %d", len(after), len(before))
	}
	for k, it := range before {
		if a := after[k]; a.version != it.version || string(a.value) != string(it.value) {
			t.Fatalf("re-import changed %s", k)
		}
	}
}

func TestImportMaxRejects(t *testing.T) {
	store := newStore(t)
	dir := t.TempDir()
	lines := goodLines("x", 50)
	lines[10], lines[20], lines[30] = "garbage", "garbage", "garbage"
	if _, err := testexport.Write(dir, testexport.Options{}, testexport.File{Lines: lines}); err != nil {
		t.Fatal(err)
	}
	startMigrator(t, store, newFake(), "m1")
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.MaxRejects = 2 }))
	got := waitJob(t, store, job.GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), "3 rejected lines exceed max_rejects 2") {
		t.Fatalf("job %s: %q", got.GetState(), got.GetError())
	}
}

func TestImportUnreachableSource(t *testing.T) {
	store := newStore(t)
	startMigrator(t, store, newFake(), "m1")
	for _, c := range []struct{ uri, want string }{
		{t.TempDir() + "/missing", "cannot open export source"},
		{t.TempDir(), "manifest-summary.json"},
	} {
		job := createJob(t, store, importJob(c.uri, nil))
		got := waitJob(t, store, job.GetId(), 30*time.Second)
		if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), c.want) {
			t.Errorf("%s: job %s: %q, want FAILED mentioning %q", c.uri, got.GetState(), got.GetError(), c.want)
		}
	}
	dir := t.TempDir()
	testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("a", 1)})
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.Mapping.CreateTable = false }))
	if got := waitJob(t, store, job.GetId(), 30*time.Second); !strings.Contains(got.GetError(), `target table "sessions" does not exist`) {
		t.Errorf("missing table: %s %q", got.GetState(), got.GetError())
	}
}

// TestImportRetriesUnavailable: a cluster briefly unavailable slows the
// import down but loses nothing.
func TestImportRetriesUnavailable(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	fake.failFor.Store(3)
	dir := t.TempDir()
	testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("a", 100)})
	startMigrator(t, store, fake, "m1")
	job := createJob(t, store, importJob(dir, nil))
	got := waitJob(t, store, job.GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || got.GetProgress().GetItemsWritten() != 100 || len(fake.live("sessions")) != 100 {
		t.Fatalf("%s %q %v", got.GetState(), got.GetError(), got.GetProgress())
	}
}

func slowExport(t *testing.T, files, perFile int) string {
	t.Helper()
	dir := t.TempDir()
	var fs []testexport.File
	for f := range files {
		fs = append(fs, testexport.File{Lines: goodLines(fmt.Sprintf("f%d-", f), perFile)})
	}
	if _, err := testexport.Write(dir, testexport.Options{}, fs...); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitProgress(t *testing.T, store *Store, id string, atLeast uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		j, _ := store.Get(context.Background(), id)
		agg, err := store.Aggregate(context.Background(), j)
		if err == nil && agg.GetProgress().GetItemsWritten() >= atLeast {
			if Terminal(agg.GetState()) {
				t.Fatalf("job ended before the test could interrupt it")
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no progress")
}

// TestImportResume stops the migrator mid-import and starts another: the
// job completes from the checkpoints with exact counts.
func TestImportResume(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	fake.delay = 15 * time.Millisecond
	dir := slowExport(t, 6, 400)
	a := startMigrator(t, store, fake, "a")
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.BatchSize = 20; s.Parallelism = 2 }))
	waitProgress(t, store, job.GetId(), 600)
	a.close()
	startMigrator(t, store, fake, "b")
	got := waitJob(t, store, job.GetId(), 60*time.Second)
	p := got.GetProgress()
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != 2400 || p.GetFilesDone() != 6 || p.GetRejects() != 0 {
		t.Fatalf("%s %q %v", got.GetState(), got.GetError(), p)
	}
	if n := len(fake.live("sessions")); n != 2400 {
		t.Fatalf("%d items in Veltrix, want 2400", n)
	}
	cps, _ := store.Checkpoints(context.Background(), job.GetId())
	owners := map[string]bool{}
	for _, cp := range cps {
		owners[cp.Owner] = true
		if cp.Lines != 400 || cp.Records != 400 || cp.Items != 400 {
			t.Errorf("checkpoint %+v", cp)
		}
	}
	if !owners["b"] {
		t.Errorf("checkpoint owners %v: the second migrator did not finish any file", owners)
	}
	t.Logf("%d writes for 2400 items (replayed after the restart: %d)", fake.writes.Load(), fake.writes.Load()-2400)
}

// TestImportSharedAndTakeover runs one job on two migrators; one of them
// dies without releasing its claims, and the other takes its files over
// once its lease expires.
func TestImportSharedAndTakeover(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	fake.delay = 15 * time.Millisecond
	dir := slowExport(t, 8, 300)
	a := startMigrator(t, store, fake, "a")
	b := startMigrator(t, store, fake, "b")
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.BatchSize = 20; s.Parallelism = 2 }))
	// Both work on it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, _ := store.Get(context.Background(), job.GetId())
		agg, _ := store.Aggregate(context.Background(), j)
		if len(agg.GetOwners()) == 2 {
			break
		}
		if time.Now().After(deadline) || Terminal(agg.GetState()) {
			t.Fatalf("owners %v (state %s): want both migrators", agg.GetOwners(), agg.GetState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a crashes: its runs stop, its lease is left to expire.
	a.mgr.abandon()
	a.mgr = nil
	got := waitJob(t, store, job.GetId(), 60*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || got.GetProgress().GetItemsWritten() != 2400 || len(fake.live("sessions")) != 2400 {
		t.Fatalf("%s %q %v", got.GetState(), got.GetError(), got.GetProgress())
	}
	_ = b
}

func TestCancel(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	fake.delay = 20 * time.Millisecond
	dir := slowExport(t, 2, 2000)
	m := startMigrator(t, store, fake, "a")
	job := createJob(t, store, importJob(dir, func(s *migratorv1.ImportSpec) { s.BatchSize = 10 }))
	waitProgress(t, store, job.GetId(), 50)
	if _, err := store.Finish(context.Background(), job.GetId(), migratorv1.JobState_JOB_STATE_CANCELLED, "", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(m.mgr.Running()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still running %v", m.mgr.Running())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := store.Finish(context.Background(), job.GetId(), migratorv1.JobState_JOB_STATE_CANCELLED, "", time.Now(), nil); !errors.Is(err, ErrFinished) {
		t.Fatalf("cancelling twice: %v", err)
	}
	n := fake.writes.Load()
	time.Sleep(200 * time.Millisecond)
	if fake.writes.Load() != n {
		t.Fatal("writes continue after cancel")
	}
}

func TestVerify(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	dir := t.TempDir()
	future := time.Now().Add(time.Hour).Unix()
	lines := goodLines("v", 1200)
	lines[7] = line("v7", 7, fmt.Sprintf(`,"exp":{"N":"%d"}`, future))
	lines[8] = line("v8", 8, fmt.Sprintf(`,"exp":{"N":"%d"}`, time.Now().Add(-time.Hour).Unix()))
	testexport.Write(dir, testexport.Options{}, testexport.File{Lines: lines[:600]}, testexport.File{Lines: lines[600:]})
	startMigrator(t, store, fake, "a")
	imp := createJob(t, store, importJob(dir, nil))
	if got := waitJob(t, store, imp.GetId(), 30*time.Second); got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatal(got)
	}
	v := createJob(t, store, verifyJob(dir, true))
	got := waitJob(t, store, v.GetId(), 30*time.Second)
	rep := got.GetVerifyReport()
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || !rep.GetPassed() || rep.GetSourceItems() != 1199 || rep.GetCompared() != 1199 ||
		rep.GetMissing()+rep.GetDifferent()+rep.GetExtra() != 0 || rep.GetTargetItems() != 1199 ||
		rep.GetSourceChecksum() != rep.GetTargetChecksum() || rep.GetSourceChecksum() == 0 || got.GetProgress().GetSkippedExpired() != 1 {
		t.Fatalf("clean verify: %s %q %v %v", got.GetState(), got.GetError(), rep, got.GetProgress())
	}

	// Change one item, delete one, add one; and one whose expiry differs.
	items := fake.live("sessions")
	changed := items["v3|3"]
	it, _ := ddb.DecodeItem(changed.value)
	it["v"] = ddb.S("tampered")
	changed.value = ddb.EncodeItem(it)
	fake.put(changed)
	del := items["v4|4"]
	del.deleted = true
	fake.put(del)
	fake.put(fakeItem{key: client.Key{Table: "sessions", PartitionKey: []byte("intruder"), SortKey: numKey("1")}, value: []byte("x"), version: 1})
	exp := items["v7|7"]
	exp.expire = exp.expire.Add(time.Second)
	fake.put(exp)

	v2 := createJob(t, store, verifyJob(dir, true))
	got = waitJob(t, store, v2.GetId(), 30*time.Second)
	rep = got.GetVerifyReport()
	if rep.GetMissing() != 1 || rep.GetDifferent() != 2 || rep.GetExtra() != 1 || rep.GetSourceChecksum() == rep.GetTargetChecksum() ||
		got.GetProgress().GetMismatches() != 4 || rep.GetTargetItems() != 1199 {
		t.Fatalf("verify after tampering: %v", rep)
	}
	if got.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS || rep.GetPassed() {
		t.Fatalf("a verify with mismatches ended %s, passed=%v", got.GetState(), rep.GetPassed())
	}
	checkProblems(t, got, map[string]string{"sessions MISMATCHES": "1 items missing, 2 different, 1 extra"})
	var kinds []string
	for _, m := range rep.GetMismatches() {
		sk, err := ddb.DecodeNumberKey(m.GetSortKey())
		if err != nil {
			t.Fatalf("mismatch %v: sort key: %v", m, err)
		}
		kinds = append(kinds, fmt.Sprintf("%s %s|%s: %s", m.GetKind(), m.GetPartitionKey(), sk, m.GetDetail()))
		// The key as DynamoDB JSON shows the N sort key as its number.
		if want := fmt.Sprintf(`{"pk":{"S":"%s"},"sk":{"N":"%s"}}`, m.GetPartitionKey(), sk); m.GetKey() != want {
			t.Errorf("mismatch key %s, want %s", m.GetKey(), want)
		}
	}
	slices.Sort(kinds)
	want := []string{
		`MISMATCH_KIND_DIFFERENT v3|3: attribute "v" differs`,
		"MISMATCH_KIND_DIFFERENT v7|7: expiry differs",
		"MISMATCH_KIND_EXTRA intruder|1: in Veltrix, not in the source",
		"MISMATCH_KIND_MISSING v4|4: in the source, not in Veltrix",
	}
	if len(kinds) != len(want) {
		t.Fatalf("mismatches %q", kinds)
	}
	for i := range want {
		if !strings.HasPrefix(kinds[i], want[i]) {
			t.Errorf("mismatch %q, want %q", kinds[i], want[i])
		}
	}

	// A sampled verify compares about that fraction, deterministically.
	vs := verifyJob(dir, false)
	vs.GetVerifySpec().SampleFraction = 0.25
	vs.GetVerifySpec().MaxMismatches = 1
	got = waitJob(t, store, createJob(t, store, vs).GetId(), 30*time.Second)
	rep = got.GetVerifyReport()
	if rep.GetSourceItems() != 1199 || rep.GetCompared() < 200 || rep.GetCompared() > 400 || len(rep.GetMismatches()) > 1 {
		t.Fatalf("sampled verify: %v", rep)
	}
}

func TestIncrementalImport(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	dir := t.TempDir()
	rec := func(ts int, pk string, newImage bool) string {
		s := fmt.Sprintf(`{"Metadata":{"WriteTimestampMicros":{"N":"%d"}},"Keys":{"pk":{"S":%q},"sk":{"N":"1"}}`, ts, pk)
		if newImage {
			s += fmt.Sprintf(`,"NewImage":{"pk":{"S":%q},"sk":{"N":"1"},"v":{"N":"%d"}}`, pk, ts)
		}
		return s + fmt.Sprintf(`,"OldImage":{"pk":{"S":%q},"sk":{"N":"1"}}}`, pk)
	}
	testexport.Write(dir, testexport.Options{Incremental: true},
		testexport.File{Lines: []string{rec(1_700_000_000_000_001, "a", true), rec(1_700_000_000_000_002, "b", false)}},
		testexport.File{Lines: []string{rec(1_700_000_000_000_003, "c", true)}})
	// b exists from an older snapshot; c from a newer one.
	fake.tables["sessions"] = true
	fake.put(fakeItem{key: client.Key{Table: "sessions", PartitionKey: []byte("b"), SortKey: numKey("1")}, value: []byte("old"), version: mapping.IncrementalVersion(1_600_000_000_000_000)})
	fake.put(fakeItem{key: client.Key{Table: "sessions", PartitionKey: []byte("c"), SortKey: numKey("1")}, value: []byte("newer"), version: mapping.IncrementalVersion(1_800_000_000_000_000)})
	startMigrator(t, store, fake, "a")
	got := waitJob(t, store, createJob(t, store, importJob(dir, nil)).GetId(), 30*time.Second)
	p := got.GetProgress()
	// c is superseded by the newer write: counted as such, not as written.
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != 1 || p.GetItemsSuperseded() != 1 || p.GetDeletes() != 1 {
		t.Fatalf("%s %q %v", got.GetState(), got.GetError(), p)
	}
	live := fake.live("sessions")
	if _, ok := live["b|1"]; ok {
		t.Error("b was not deleted")
	}
	if string(live["c|1"].value) != "newer" {
		t.Error("an older incremental record overwrote a newer write")
	}
	if a := live["a|1"]; a.version != mapping.IncrementalVersion(1_700_000_000_000_001) {
		t.Errorf("a version %d", a.version)
	}
}

// checkProblems checks a job's problems exactly: "SOURCE KIND" → a text the
// problem's line must contain ("" for any).
func checkProblems(t *testing.T, j *migratorv1.Job, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, p := range j.GetProblems() {
		got[p.GetSource()+" "+strings.TrimPrefix(p.GetKind().String(), "PROBLEM_KIND_")] = ProblemLine(p)
	}
	for k, sub := range want {
		line, ok := got[k]
		if !ok || !strings.Contains(line, sub) {
			t.Errorf("problem %s: got %q, want it saying %q", k, line, sub)
		}
	}
	for k, line := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected problem %s: %s", k, line)
		}
	}
}

// TestVerifyCountsWhatImportLost imports an adversarial export and
// verifies it: every item the export holds counts, so the verdict fails on
// each way data was lost, names each one by file, and accepting the
// import's rejects accepts only lines the import rejected too.
func TestVerifyCountsWhatImportLost(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	long := goodLines("t", 2000)
	full := testexport.Gzip(strings.Join(long, "\n") + "\n")
	dir := t.TempDir()
	summary := 2 + 1 + 2000 + 30 + 10 + 3 + 5 // one more than the files say
	names, err := testexport.Write(dir, testexport.Options{SummaryItemCount: &summary},
		testexport.File{Lines: []string{line("a1", 1, ""), `{"Item":{"pk":{"S":"broken"`, // 2 malformed
			line("big", 3, `,"blob":{"S":"`+strings.Repeat("x", mapping.MaxItemBytes)+`"}`)}, ItemCount: intp(2)}, // 3 oversize; manifest says 2 of 3
		testexport.File{Raw: full[:len(full)/2], ItemCount: intp(2000)},             // truncated gzip
		testexport.File{Lines: goodLines("m", 30), MD5: "1B2M2Y8AsgTpgAmY7PhCfg=="}, // checksum mismatch
		testexport.File{Lines: goodLines("x", 10), Missing: true},                   // listed, absent
		testexport.File{Lines: goodLines("ok", 3)},
		testexport.File{Lines: goodLines("c", 5)},
	)
	if err != nil {
		t.Fatal(err)
	}
	startMigrator(t, store, fake, "m1")
	imp := createJob(t, store, importJob(dir, nil))
	if got := waitJob(t, store, imp.GetId(), 30*time.Second); got.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		t.Fatalf("import of an adversarial export ended %s: %s", got.GetState(), got.GetError())
	}
	// Someone deletes an item after the import: a plain mismatch.
	del := fake.live("sessions")["c2|2"]
	del.deleted = true
	del.version++
	fake.put(del)

	verify := func(accept string) *migratorv1.Job {
		j := verifyJob(dir, false)
		j.GetVerifySpec().AcceptRejectsJob = accept
		return waitJob(t, store, createJob(t, store, j).GetId(), 30*time.Second)
	}
	got := verify("")
	rep := got.GetVerifyReport()
	if got.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS || rep.GetPassed() {
		t.Fatalf("verify of what the import lost ended %s, passed=%v: %s", got.GetState(), rep.GetPassed(), got.GetError())
	}
	truncated := 0
	for i := range 2000 {
		if _, ok := fake.live("sessions")[fmt.Sprintf("t%d|%d", i, i)]; ok {
			truncated++
		}
	}
	// The checksum-mismatch file was not imported but is readable: its 30
	// items are MISSING. c2 was deleted: MISSING.
	if rep.GetMissing() != 31 || rep.GetUnreadable() != uint64(10+2000-truncated) || rep.GetRejects() != 2 || rep.GetAcceptedRejects() != 0 {
		t.Fatalf("report %v; want 31 missing, %d unreadable, 2 rejects", rep, 10+2000-truncated)
	}
	if want := uint64(1 + 2 + truncated + 30 + 10 + (2000 - truncated) + 3 + 5); rep.GetSourceItems() != want {
		t.Errorf("source items %d, want every item the export holds: %d", rep.GetSourceItems(), want)
	}
	problems := map[string]string{
		"manifest-summary.json ITEM_COUNT_MISMATCH": "says 2051 items, the files of manifest-files.json add up to 2050",
		names[0] + " REJECTED_LINES":                "2 lines rejected",
		names[0] + " ITEM_COUNT_MISMATCH":           "the file has 3 records, manifest-files.json says 2",
		names[1] + " CORRUPT_FILE":                  fmt.Sprintf("(%d items)", 2000-truncated),
		names[2] + " CHECKSUM_MISMATCH":             "compared anyway",
		names[3] + " FILE_MISSING":                  "(10 items)",
		"sessions MISMATCHES":                       "31 items missing",
	}
	checkProblems(t, got, problems)

	// Accepting the import's rejects accepts the two lines it rejected
	// too, and nothing else: the verdict still fails.
	got = verify(imp.GetId())
	rep = got.GetVerifyReport()
	if got.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS || rep.GetAcceptedRejects() != 2 || rep.GetAcceptRejectsJob() != imp.GetId() {
		t.Fatalf("verify accepting %s: %s %v", imp.GetId(), got.GetState(), rep)
	}
	delete(problems, names[0]+" REJECTED_LINES")
	problems[names[0]+" REJECTED_LINES"] = "accepted"
	checkProblems(t, got, problems)

	// Accepting a job that is not an import is refused.
	v := verify("no-such-job")
	if v.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(v.GetError(), "no such job") {
		t.Fatalf("accepting a missing job: %s %q", v.GetState(), v.GetError())
	}
}

// TestImportCountsSuperseded: items Veltrix already holds at a newer
// version are not written, and the job says so instead of calling them
// written (a far-future version once made writes print OK while doing
// nothing).
func TestImportCountsSuperseded(t *testing.T) {
	store := newStore(t)
	fake := newFake()
	dir := t.TempDir()
	if _, err := testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("s", 20)}); err != nil {
		t.Fatal(err)
	}
	fake.tables["sessions"] = true
	for i := range 5 { // newer than any export version
		fake.put(fakeItem{key: client.Key{Table: "sessions", PartitionKey: []byte(fmt.Sprintf("s%d", i)), SortKey: numKey(fmt.Sprint(i))},
			value: []byte("newer"), version: ^uint64(0)})
	}
	startMigrator(t, store, fake, "m1")
	got := waitJob(t, store, createJob(t, store, importJob(dir, nil)).GetId(), 30*time.Second)
	p := got.GetProgress()
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || p.GetItemsWritten() != 15 || p.GetItemsSuperseded() != 5 {
		t.Fatalf("import over newer items: %s, %d written, %d superseded; want SUCCEEDED, 15 written, 5 superseded (%s)",
			got.GetState(), p.GetItemsWritten(), p.GetItemsSuperseded(), got.GetError())
	}
	if v := fake.live("sessions")["s0|0"]; string(v.value) != "newer" {
		t.Fatalf("a superseded import overwrote a newer item: %q", v.value)
	}
}
