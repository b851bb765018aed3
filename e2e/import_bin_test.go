package e2e

// The migration path a user follows, with the shipped binaries only: a
// DynamoDB export on local disk, `veltrix import` through a running
// veltrix-migrator, then `veltrix verify`.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// cliJob parses the job the CLI prints last with --output json (after any
// progress lines).
func cliJob(t *testing.T, what string, res cmdResult) *migratorv1.Job {
	t.Helper()
	out := res.stdout
	i := strings.LastIndex(out, "\n{\n")
	switch {
	case i >= 0:
		out = out[i+1:]
	case strings.HasPrefix(out, "{"):
	default:
		t.Fatalf("%s printed no JSON job (exit %d)\nstdout:\n%s\nstderr:\n%s", what, res.code, res.stdout, res.stderr)
	}
	var job migratorv1.Job
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), &job); err != nil {
		t.Fatalf("%s: job JSON: %v\n%s", what, err, out)
	}
	return &job
}

// TestBinImportVerifyCLI imports a generated DynamoDB export with the CLI
// through the migrator, verifies it, then breaks one item and checks that
// verify reports it and fails.
func TestBinImportVerifyCLI(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	// The CLI links the migrator's server package: ask for the migrator
	// first, so a missing migrator skips instead of failing the CLI build.
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)

	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Migrator: true})
	exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{Items: 400, Files: 3, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	const table = "imported_sessions"
	common := cliJobArgs(c, exp.Dir, table)
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, 2*time.Minute, "", veltrix, args...)
	}

	res := cli(append([]string{"import", "--create-table"}, common...)...)
	if res.code != 0 {
		t.Fatalf("veltrix import: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	job := cliJob(t, "veltrix import", res)
	pr := job.GetProgress()
	if job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || pr.GetItemsWritten() != uint64(exp.Live) || pr.GetRejects() != 0 ||
		pr.GetFilesDone() != uint32(len(exp.Files)) || pr.GetFilesTotal() != uint32(len(exp.Files)) {
		t.Fatalf("import job %s: state %s, %d items written, %d rejects, files %d/%d; want SUCCEEDED, %d items, 0 rejects, files %d/%d (error %q)",
			job.GetId(), job.GetState(), pr.GetItemsWritten(), pr.GetRejects(), pr.GetFilesDone(), pr.GetFilesTotal(),
			exp.Live, len(exp.Files), len(exp.Files), job.GetError())
	}

	// The items are in Veltrix: count them with a Scan through the router.
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	for _, err := range cl.Scan(ctx, table, 0, 1) {
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		n++
	}
	if n != exp.Live {
		t.Errorf("scan of %s: %d items; want %d", table, n, exp.Live)
	}

	verify := append([]string{"verify", "--check-extra"}, common...)
	res = cli(verify...)
	if res.code != 0 {
		t.Fatalf("veltrix verify: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	job = cliJob(t, "veltrix verify", res)
	vr := job.GetVerifyReport()
	if job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || vr.GetSourceItems() != uint64(exp.Live) || vr.GetCompared() != uint64(exp.Live) ||
		vr.GetMissing() != 0 || vr.GetDifferent() != 0 || vr.GetExtra() != 0 || vr.GetSourceChecksum() != vr.GetTargetChecksum() {
		t.Fatalf("verify job %s: state %s, report %v; want SUCCEEDED, %d source items all compared, no mismatch, equal checksums",
			job.GetId(), job.GetState(), vr, exp.Live)
	}

	// Delete one imported item: verify must name it and exit non-zero, in
	// either output format.
	pk, sk := exp.Options.Key(0)
	if _, err := cl.Delete(ctx, table, []byte(pk), []byte(sk)); err != nil {
		t.Fatal(err)
	}
	res = cli(verify...)
	job = cliJob(t, "veltrix verify after a delete", res)
	vr = job.GetVerifyReport()
	if res.code == 0 {
		t.Errorf("veltrix verify --output json with a missing item: exit 0; want non-zero (report %v)", vr)
	}
	if vr.GetMissing() != 1 || vr.GetDifferent() != 0 || vr.GetExtra() != 0 || len(vr.GetMismatches()) != 1 ||
		string(vr.GetMismatches()[0].GetPartitionKey()) != pk || string(vr.GetMismatches()[0].GetSortKey()) != sk {
		t.Errorf("verify after deleting %s/%s: report %v; want exactly that item missing", pk, sk, vr)
	}
	tableOut := append(append([]string(nil), verify[:len(verify)-2]...), "--output", "table")
	res = cli(tableOut...)
	if res.code != exitIncomplete || !strings.Contains(res.stdout, "missing:") || !strings.Contains(res.stdout, pk) || !strings.Contains(res.stderr, "failed its verdict") {
		t.Errorf("veltrix verify (table output) with a missing item: exit %d; want %d, the report naming %s and the error\nstdout:\n%s\nstderr:\n%s",
			res.code, exitIncomplete, pk, res.stdout, res.stderr)
	}
}
