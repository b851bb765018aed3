package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/client"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	old := lookupEnv
	lookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	defer func() { lookupEnv = old }()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"kv"}, 2, "want one of: del, get, put, query"},
		{[]string{"kv", "fetch"}, 2, `unknown subcommand "fetch"`},
		{[]string{"kv", "get", "t"}, 2, "wrong number of arguments"},
		{[]string{"kv", "get", "t", "k", "--output", "xml"}, 2, `--output "xml"`},
		{[]string{"kv", "get", "t", "k", "--consistency", "most"}, 2, `--consistency "most"`},
		{[]string{"kv", "get", "t", "b64:!!"}, 2, "bad base64"},
		{[]string{"kv", "query", "t", "pk", "--prefix", "a", "--start", "b"}, 2, "--prefix cannot be combined"},
		{[]string{"kv", "put", "t", "k", "v", "--ttl", "-5s"}, 2, "--ttl -5s: must be positive"},
		{[]string{"kv", "put", "t", "k", "v", "--ttl", "0"}, 2, "--ttl 0s: must be positive"},
		{[]string{"table", "create", "users", "--pk", "id"}, 2, "want NAME:TYPE"},
		{[]string{"table", "create", "users", "--sk", "s:S"}, 2, "--sk needs --pk"},
		{[]string{"table", "create", "users", "--write-isolation", "x"}, 2, `--write-isolation "x"`},
		{[]string{"table", "update", "users"}, 2, "nothing to change"},
		{[]string{"import", "--table", "t", "--pk", "id:S"}, 2, "--source is required"},
		{[]string{"import", "--source", "/x", "--pk", "id:S"}, 2, "--table is required"},
		{[]string{"import", "--source", "/x", "--table", "t", "--pk", "id:Q"}, 2, `--pk "id:Q"`},
		{[]string{"import", "--source", "/x", "--table", "t", "--pk", "id:S", "--encoding", "xml"}, 2, `--encoding "xml"`},
		{[]string{"import", "--source", "/x", "--table", "t", "--pk", "id:S", "--write-path", "fast"}, 2, `--write-path "fast": want auto, batch-write or ingest`},
		{[]string{"verify", "--source", "/x", "--table", "t", "--pk", "id:S", "--sample", "2"}, 2, "--sample 2"},
		{[]string{"stream", "--kind", "kafka", "--stream", "s", "--table", "t", "--pk", "id:S"}, 2, `--kind "kafka"`},
		{[]string{"stream", "--kind", "kinesis", "--stream", "s", "--table", "t", "--pk", "id:S", "--start", "yesterday"}, 2, `--start "yesterday"`},
	}
	for _, tc := range cases {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("veltrix %s: exit %d, stderr %q; want exit %d containing %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runCLI(t, nil, "help")
	if code != 0 {
		t.Fatalf("help exit %d", code)
	}
	for _, c := range []string{"dev", "kv", "table", "status", "import", "verify", "stream", "jobs"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("help does not list %q:\n%s", c, out)
		}
	}
	if code, _, _ := runCLI(t, nil, "kv", "get", "-h"); code != 0 {
		t.Errorf("kv get -h exit %d", code)
	}
}

func TestUnreachableRouterSaysWhatToDo(t *testing.T) {
	// Port 1 on loopback refuses connections.
	code, _, stderr := runCLI(t, nil, "kv", "get", "t", "k", "--endpoints", "127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "make run") || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestEnvironmentVariables(t *testing.T) {
	// VELTRIX_OUTPUT is validated like --output (yaml is valid since the
	// move to cobra).
	code, _, stderr := runCLI(t, map[string]string{"VELTRIX_OUTPUT": "xml"}, "table", "list")
	if code != 2 || !strings.Contains(stderr, `--output "xml"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestMappingFlags(t *testing.T) {
	m := mappingFlags{table: "t", pk: "user_id:S", sk: "ts:N", encoding: "attr:payload", ttlAttr: "exp", filter: "attribute_exists(a)"}
	mp, err := m.mapping()
	if err != nil {
		t.Fatal(err)
	}
	if mp.PartitionKey.Name != "user_id" || mp.PartitionKey.Type != migratorv1.KeyType_KEY_TYPE_S ||
		mp.SortKey.Type != migratorv1.KeyType_KEY_TYPE_N || mp.Encoding != migratorv1.ValueEncoding_VALUE_ENCODING_ATTRIBUTE ||
		mp.ValueAttribute != "payload" || mp.TtlAttribute != "exp" || mp.Filter != "attribute_exists(a)" {
		t.Fatalf("mapping = %v", mp)
	}
}

func TestShowAndArg(t *testing.T) {
	for _, b := range [][]byte{[]byte("hello"), {0, 1, 2, 0xff}, []byte("tab\tok"), []byte("bell\a")} {
		s := show(b)
		back, err := arg(s)
		if err != nil || !bytes.Equal(back, b) {
			t.Errorf("show(%q) = %q does not round-trip through arg: %q, %v", b, s, back, err)
		}
	}
	if show([]byte("plain")) != "plain" {
		t.Error("printable text should show as itself")
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		job  *migratorv1.Job
		code int
		want string
	}{
		{"succeeded", &migratorv1.Job{Id: "j", State: migratorv1.JobState_JOB_STATE_SUCCEEDED, VerifyReport: &migratorv1.VerifyReport{Passed: true}}, exitOK, ""},
		{"succeeded with mismatches (old migrator)", &migratorv1.Job{Id: "j", State: migratorv1.JobState_JOB_STATE_SUCCEEDED,
			VerifyReport: &migratorv1.VerifyReport{Missing: 2, Extra: 1}}, exitIncomplete, "3 mismatches"},
		{"verify failed its verdict", &migratorv1.Job{Id: "j", Kind: migratorv1.JobKind_JOB_KIND_VERIFY, State: migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS,
			Problems: []*migratorv1.Problem{{Kind: migratorv1.ProblemKind_PROBLEM_KIND_FILE_MISSING}, {Accepted: true}}}, exitIncomplete, "failed its verdict: 1 problems"},
		{"import lost data", &migratorv1.Job{Id: "j", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS,
			Problems: []*migratorv1.Problem{{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES}}}, exitIncomplete, "lost source data"},
		{"failed", &migratorv1.Job{Id: "j", State: migratorv1.JobState_JOB_STATE_FAILED, Error: "boom"}, exitFailure, "boom"},
		{"cancelled", &migratorv1.Job{Id: "j", State: migratorv1.JobState_JOB_STATE_CANCELLED}, exitFailure, "cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verdict(tc.job)
			code := exitOK
			if err != nil {
				code = exitFailure
				var ee *exitError
				if errors.As(err, &ee) {
					code = ee.code
				}
			}
			if code != tc.code || (tc.want != "" && !strings.Contains(fmt.Sprint(err), tc.want)) {
				t.Fatalf("verdict = %v (exit %d); want exit %d containing %q", err, code, tc.code, tc.want)
			}
		})
	}
}

// TestWriteOutcomeExitCodes checks that put and del print "OK" only for an
// applied write, and that a superseded one says so and exits 3, in table
// and JSON output alike.
func TestWriteOutcomeExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name, output string
		res          client.WriteResult
		code         int
		want, not    string
	}{
		{"applied", "table", client.WriteResult{Version: 5, Applied: true, CurrentVersion: 5}, 0, "OK version 5", "superseded"},
		{"superseded", "table", client.WriteResult{Version: 5, CurrentVersion: 18446744073709551615}, exitSuperseded,
			"superseded: the stored version 18446744073709551615 is newer than this write's version 5; nothing changed", "OK"},
		{"superseded json", "json", client.WriteResult{Version: 5, CurrentVersion: 9}, exitSuperseded, `"applied": false`, "OK"},
		{"applied json", "json", client.WriteResult{Version: 5, Applied: true, CurrentVersion: 5}, 0, `"applied": true`, "superseded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res
			register(command{name: "fakewrite", run: func(_ []string, w io.Writer) error {
				return printWrite(w, &conn{output: tc.output}, res, "")
			}})
			defer func() { commands = commands[:len(commands)-1] }()
			code, out, stderr := runCLI(t, nil, "fakewrite")
			if code != tc.code || !strings.Contains(out, tc.want) || strings.Contains(out, tc.not) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout containing %q and not %q", code, out, stderr, tc.code, tc.want, tc.not)
			}
		})
	}
}
