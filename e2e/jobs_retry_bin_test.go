package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// TestBinRetryCLI imports an export folder that does not exist yet with
// the real binaries (the job FAILS), creates the folder, and runs the same
// job again with `veltrix jobs retry`: it succeeds under its id. Retrying
// the job that succeeded is refused.
func TestBinRetryCLI(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c := framework.Start(t, framework.Options{Nodes: 1, RF: 1, Migrator: true})
	dir := filepath.Join(t.TempDir(), "export")
	conn := []string{"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr(), "--output", "json"}
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, 2*time.Minute, "", veltrix, append(args, conn...)...)
	}

	res := cli("import", "--source", dir, "--table", "retried", "--create-table",
		"--pk", exportgen.PartitionKey+":S", "--sk", exportgen.SortKey+":S", "--job-id", "retry-me")
	job := cliJob(t, "veltrix import of a missing folder", res)
	if res.code != 1 || job.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(job.GetError(), dir) {
		t.Fatalf("import of a missing folder: exit %d, %s %q; want exit 1, FAILED naming %s\nstderr:\n%s", res.code, job.GetState(), job.GetError(), dir, res.stderr)
	}

	exp, err := exportgen.Generate(dir, exportgen.Options{Items: 120, Files: 2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	res = cli("jobs", "retry", "retry-me")
	job = cliJob(t, "veltrix jobs retry", res)
	if res.code != 0 || job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || job.GetAttempts() != 2 ||
		job.GetProgress().GetItemsWritten() != uint64(exp.Live) || job.GetError() != "" {
		t.Fatalf("jobs retry: exit %d, %s attempts %d, %d items, error %q; want exit 0, SUCCEEDED, attempt 2, %d items\nstderr:\n%s",
			res.code, job.GetState(), job.GetAttempts(), job.GetProgress().GetItemsWritten(), job.GetError(), exp.Live, res.stderr)
	}

	res = cli("jobs", "retry", "retry-me")
	if res.code != 1 || !strings.Contains(res.stderr, "FailedPrecondition") || !strings.Contains(res.stderr, "already SUCCEEDED") {
		t.Fatalf("retry of a succeeded job: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}
