package e2e

// The promise the product rests on — "decommission DynamoDB after verify
// reports 0 mismatches" — tried the way an export goes wrong in real life:
// a data file whose checksum fails, one the manifest lists that is gone, a
// gzip stream cut short, malformed lines, an oversize item and a summary
// whose item count disagrees with its files. Import and verify, through the
// CLI and the real binaries, must both end with a failing verdict that names
// every one of those problems and an exit code a script can rely on.

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// Exit codes of the veltrix CLI (cmd/veltrix: exitCodes).
const (
	exitIncomplete = 3
)

func TestBinAdversarialExport(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c := framework.Start(t, framework.Options{Nodes: 3, RF: 3, Migrator: true})

	oversize := fmt.Sprintf(`{"Item":{%q:{"S":"user#big"},%q:{"S":"s"},"blob":{"S":%q}}}`,
		exportgen.PartitionKey, exportgen.SortKey, strings.Repeat("x", 410<<10))
	exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{
		Items: 600, Files: 5, Seed: 12, Lean: true,
		Lines: func(file, line, item int, data []byte) [][]byte {
			switch {
			case file == 3 && line == 5:
				return [][]byte{data, []byte(`{"Item":{"user_id":{"S":"broken"`)} // malformed
			case file == 3 && line == 9:
				return [][]byte{data, []byte(oversize)}
			}
			return [][]byte{data}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := func(i int) string { return filepath.Join(exp.Dir, exp.Files[i].Name) }
	// File 0: same items, recompressed: its MD5 no longer matches.
	raw, err := os.ReadFile(path(0))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var plain, re bytes.Buffer
	if _, err := plain.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(&re, gzip.BestCompression)
	_, _ = zw.Write(plain.Bytes())
	_ = zw.Close()
	if err := os.WriteFile(path(0), re.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// File 1: listed, absent.
	if err := os.Remove(path(1)); err != nil {
		t.Fatal(err)
	}
	// File 2: the gzip stream cut in the middle.
	raw, err = os.ReadFile(path(2))
	if err != nil {
		t.Fatal(err)
	}
	cut := raw[:len(raw)/2]
	if err := os.WriteFile(path(2), cut, 0o644); err != nil {
		t.Fatal(err)
	}
	// ... with a manifest that vouches for the cut bytes (damaged before it
	// was summed), so only the stream itself can tell.
	files := filepath.Join(exp.Dir, "manifest-files.json")
	mf, err := os.ReadFile(files)
	if err != nil {
		t.Fatal(err)
	}
	cutSum := md5.Sum(cut)
	mf = bytes.Replace(mf, []byte(exp.Files[2].MD5), []byte(base64.StdEncoding.EncodeToString(cutSum[:])), 1)
	rewriteWithMD5(t, files, mf)
	// The summary claims 7 more items than the files hold.
	sumPath := filepath.Join(exp.Dir, "manifest-summary.json")
	sum, err := os.ReadFile(sumPath)
	if err != nil {
		t.Fatal(err)
	}
	claimed := exp.Lines + 7
	sum = regexp.MustCompile(`"itemCount":\d+`).ReplaceAll(sum, []byte(`"itemCount":`+strconv.Itoa(claimed)))
	rewriteWithMD5(t, sumPath, sum)

	common := []string{
		"--source", exp.Dir, "--table", "adversarial",
		"--pk", exportgen.PartitionKey + ":S", "--sk", exportgen.SortKey + ":S",
		"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr(),
	}
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBin(t, 2*time.Minute, "", veltrix, args...)
	}
	name := func(i int) string { return exp.Files[i].Name }
	wantProblems := map[string]string{
		"manifest-summary.json ITEM_COUNT_MISMATCH": fmt.Sprintf("says %d items", claimed),
		name(0) + " CHECKSUM_MISMATCH":              "",
		name(1) + " FILE_MISSING":                   fmt.Sprintf("(%d items)", exp.Files[1].Lines),
		name(2) + " CORRUPT_FILE":                   "gzip stream damaged",
		name(3) + " REJECTED_LINES":                 "2 lines rejected",
	}
	checkProblems := func(what string, j *migratorv1.Job, want map[string]string) {
		t.Helper()
		got := map[string]*migratorv1.Problem{}
		for _, p := range j.GetProblems() {
			got[p.GetSource()+" "+strings.TrimPrefix(p.GetKind().String(), "PROBLEM_KIND_")] = p
		}
		for k, sub := range want {
			p, ok := got[k]
			if !ok || !strings.Contains(fmt.Sprintf("(%d items) %s", p.GetItems(), p.GetDetail()), sub) {
				t.Errorf("%s: problem %s = %v; want one saying %q", what, k, p, sub)
			}
		}
		for k, p := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected problem %s: %v", what, k, p)
			}
		}
	}

	// Import: COMPLETED_WITH_ERRORS, exit 3, every problem named.
	res := cli(append([]string{"import", "--create-table", "--job-id", "adv-import", "--output", "json"}, common...)...)
	imp := cliJob(t, "veltrix import", res)
	if res.code != exitIncomplete || imp.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		t.Fatalf("import of a damaged export: exit %d, state %s; want exit %d, COMPLETED_WITH_ERRORS\nstderr:\n%s", res.code, imp.GetState(), exitIncomplete, res.stderr)
	}
	checkProblems("import", imp, wantProblems)
	for _, p := range imp.GetProblems() {
		if p.GetKind() == migratorv1.ProblemKind_PROBLEM_KIND_CHECKSUM_MISMATCH && p.GetItems() != uint64(exp.Files[0].Lines) {
			t.Errorf("checksum problem counts %d items, want the file's %d", p.GetItems(), exp.Files[0].Lines)
		}
	}

	// Verify: the same problems, plus the items the import skipped, which
	// are MISSING whatever the import thought of them.
	res = cli(append([]string{"verify", "--job-id", "adv-verify", "--output", "json"}, common...)...)
	v := cliJob(t, "veltrix verify", res)
	vr := v.GetVerifyReport()
	if res.code != exitIncomplete || v.GetState() != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS || vr.GetPassed() {
		t.Fatalf("verify of a damaged import: exit %d, state %s, report %v; want exit %d, COMPLETED_WITH_ERRORS, not passed", res.code, v.GetState(), vr, exitIncomplete)
	}
	verifyWant := map[string]string{"adversarial MISMATCHES": "missing"}
	for k, s := range wantProblems {
		verifyWant[k] = s
	}
	verifyWant[name(0)+" CHECKSUM_MISMATCH"] = "compared anyway"
	checkProblems("verify", v, verifyWant)
	if vr.GetMissing() < uint64(exp.Files[0].Lines) || vr.GetUnreadable() < uint64(exp.Files[1].Lines) || vr.GetRejects() != 2 {
		t.Errorf("verify report %v; want at least %d missing (the checksum file), %d unreadable (the missing file), 2 rejects",
			vr, exp.Files[0].Lines, exp.Files[1].Lines)
	}

	// Accepting the import's rejects accepts the two lines and nothing
	// else, and is recorded; the verdict still fails. The table output
	// names every problem.
	res = cli(append([]string{"verify", "--job-id", "adv-verify-accept", "--accept-rejects", "adv-import", "--output", "table"}, common...)...)
	if res.code != exitIncomplete || !strings.Contains(res.stdout, "verdict:") || !strings.Contains(res.stdout, "FAILED") ||
		!strings.Contains(res.stdout, "2 accepted as rejected by import adv-import") || !strings.Contains(res.stderr, "failed its verdict") {
		t.Errorf("verify --accept-rejects: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{name(0), name(1), name(2), name(3), "manifest-summary.json", "[accepted]"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("verify's table report does not name %q:\n%s", want, res.stdout)
		}
	}

	// jobs list tells the truth too.
	res = cli("jobs", "list", "--migrator", c.MigratorAddr(), "--endpoints", strings.Join(c.RouterAddrs(), ","))
	for _, id := range []string{"adv-import", "adv-verify", "adv-verify-accept"} {
		if !regexp.MustCompile(id + `\s+\S+\s+COMPLETED_WITH_ERRORS`).MatchString(res.stdout) {
			t.Errorf("jobs list does not show %s as COMPLETED_WITH_ERRORS:\n%s", id, res.stdout)
		}
	}
	if res.code != 0 {
		t.Errorf("jobs list: exit %d: %s", res.code, res.stderr)
	}
}

// rewriteWithMD5 writes a manifest (name.json) and its name.md5.
func rewriteWithMD5(t *testing.T, path string, data []byte) {
	t.Helper()
	md := md5.Sum(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".json")+".md5", []byte(base64.StdEncoding.EncodeToString(md[:])), 0o644); err != nil {
		t.Fatal(err)
	}
}
