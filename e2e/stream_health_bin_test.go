package e2e

// Stream jobs whose source is missing or unreachable, seen the way a user
// sees them: `veltrix jobs list` and `veltrix jobs get` against the real
// binaries show the health and an unknown lag, and the job ends FAILED
// with a non-zero exit once fail_after has passed.

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
)

func TestBinStreamHealthCLI(t *testing.T) {
	binTest(t)
	awsTestEnv(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)

	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	arn := sf.CreateStream("src", "NEW_AND_OLD_IMAGES")
	if err := sf.CreateShard(arn, "shardId-00000001", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sf.Put(arn, "shardId-00000001", streamsfake.NewRecord("INSERT", ddb.Item{"pk": ddb.S("a")}, cdcItem("a", 1), time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	c := framework.Start(t, framework.Options{Nodes: 1, RF: 1, Migrator: true})
	conn := []string{"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr()}
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, time.Minute, "", veltrix, append(args, conn...)...)
	}
	const missing = "arn:aws:dynamodb:us-east-1:123456789012:table/gone/stream/2026-01-01T00:00:00.000"
	start := func(id, stream, awsEndpoint, failAfter string) {
		t.Helper()
		res := cli("stream", "--kind", "dynamodb", "--stream", stream, "--aws-endpoint", awsEndpoint, "--table", "health_"+strings.ReplaceAll(id, "-", "_"),
			"--create-table", "--pk", "pk:S", "--fail-after", failAfter, "--job-id", id, "--detach")
		if res.code != 0 {
			t.Fatalf("veltrix stream %s: exit %d\n%s\n%s", id, res.code, res.stdout, res.stderr)
		}
	}
	start("missing", missing, endpoint, "10s")
	start("unreachable", arn, closed, "10s")
	start("healthy", arn, endpoint, "1m")

	// jobs list: a HEALTH column saying which job fails, for how long and
	// how often; the healthy one is ok.
	row := func(out, id string) string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == id {
				return line
			}
		}
		return ""
	}
	var list cmdResult
	waitUntil(t, 8*time.Second, "jobs list to show the failing jobs", func() bool {
		list = cli("jobs", "list")
		return strings.Contains(row(list.stdout, "missing"), "RUNNING") && strings.Contains(row(list.stdout, "missing"), "failing ") &&
			strings.Contains(row(list.stdout, "unreachable"), "failing ") && strings.Contains(row(list.stdout, "healthy"), " ok ")
	})
	if !strings.Contains(list.stdout, "HEALTH") {
		t.Fatalf("jobs list has no HEALTH column:\n%s", list.stdout)
	}
	t.Logf("veltrix jobs list:\n%s", list.stdout)

	// jobs get: the last error (the AWS error text), failing since, and a
	// lag that is unknown rather than 0.
	for id, want := range map[string]string{"missing": "ResourceNotFoundException", "unreachable": "connection refused"} {
		get := cli("jobs", "get", id)
		if get.code != 0 || !strings.Contains(get.stdout, "RUNNING") || !strings.Contains(get.stdout, "last error:") ||
			!strings.Contains(get.stdout, want) || !strings.Contains(get.stdout, "failing since:") || !hasLine(get.stdout, "lag:", "unknown") {
			t.Fatalf("veltrix jobs get %s: exit %d; want RUNNING, the health with %q and lag unknown\n%s\n%s", id, get.code, want, get.stdout, get.stderr)
		}
	}

	// jobs watch follows the job to FAILED and exits 1; the JSON job
	// carries the SOURCE_UNAVAILABLE problem.
	for id, want := range map[string]string{"missing": "ResourceNotFoundException", "unreachable": "connection refused"} {
		res := cli("jobs", "watch", id, "--output", "json")
		if res.code != 1 || !strings.Contains(res.stderr, want) {
			t.Fatalf("veltrix jobs watch %s: exit %d, want 1 with %q\n%s\n%s", id, res.code, want, res.stdout, res.stderr)
		}
		job := cliJob(t, "veltrix jobs watch "+id, res)
		ps := job.GetProblems()
		if job.GetState() != migratorv1.JobState_JOB_STATE_FAILED || len(ps) != 1 ||
			ps[0].GetKind() != migratorv1.ProblemKind_PROBLEM_KIND_SOURCE_UNAVAILABLE || job.GetHealth().GetConsecutiveFailures() == 0 {
			t.Fatalf("job %s: %s %q problems %v health %v; want FAILED with one SOURCE_UNAVAILABLE and its health", id, job.GetState(), job.GetError(), ps, job.GetHealth())
		}
	}
	list = cli("jobs", "list")
	if r := row(list.stdout, "missing"); !strings.Contains(r, "FAILED") || !strings.Contains(r, "failing ") {
		t.Fatalf("jobs list after the failure: %q\n%s", r, list.stdout)
	}
	get := cli("jobs", "get", "healthy")
	if get.code != 0 || !strings.Contains(get.stdout, "RUNNING") || !hasLine(get.stdout, "health:", "ok") ||
		hasLine(get.stdout, "lag:", "unknown") {
		t.Fatalf("veltrix jobs get healthy: exit %d\n%s\n%s", get.code, get.stdout, get.stderr)
	}
	if res := cli("jobs", "cancel", "healthy"); res.code != 0 {
		t.Fatalf("veltrix jobs cancel: exit %d\n%s", res.code, res.stderr)
	}
}

// hasLine reports whether out has a line made of these fields.
func hasLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); strings.Join(f, " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}
