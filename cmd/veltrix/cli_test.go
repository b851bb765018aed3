package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"
)

// fakeKV answers Get with the key it was asked for, so a test sees which
// arguments reached the command as positional.
type fakeKV struct {
	kvv1.UnimplementedKVServiceServer
	mu   sync.Mutex
	keys []string
}

func (f *fakeKV) Get(_ context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	f.mu.Lock()
	f.keys = append(f.keys, r.GetKey().GetTable()+"/"+string(r.GetKey().GetPartitionKey())+"/"+string(r.GetKey().GetSortKey()))
	f.mu.Unlock()
	return &kvv1.GetResponse{Found: true, Value: []byte("v"), Version: 7}, nil
}

func startFakeKV(t *testing.T) (*fakeKV, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKV{}
	srv := grpc.NewServer()
	kvv1.RegisterKVServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

// TestDoubleDash: after "--" every argument is positional, even one that
// looks like a flag (Go's flag package took "-k" after "--" for a flag).
func TestDoubleDash(t *testing.T) {
	f, addr := startFakeKV(t)
	code, out, stderr := runCLI(t, nil, "kv", "get", "--endpoints", addr, "t", "--", "-k", "--output")
	if code != exitOK || !strings.Contains(out, "-k") {
		t.Fatalf("kv get t -- -k --output: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if got := strings.Join(f.keys, "|"); got != "t/-k/--output" {
		t.Errorf("keys asked for %q, want t/-k/--output", got)
	}
	// Without "--", -k is an unknown flag: a usage error naming it.
	code, _, stderr = runCLI(t, nil, "kv", "get", "--endpoints", addr, "t", "-k")
	if code != exitUsage || !strings.Contains(stderr, "'k'") {
		t.Errorf("kv get t -k: exit %d, stderr %q; want %d naming k", code, stderr, exitUsage)
	}
}

// TestSingleDashFlags: long flags given with one dash, as Go's flag package
// accepted them, still work; so do shorthands and flag values that start
// with a dash.
func TestSingleDashFlags(t *testing.T) {
	f, addr := startFakeKV(t)
	for _, args := range [][]string{
		{"kv", "get", "-endpoints", addr, "-output", "json", "t", "k"},
		{"kv", "get", "-endpoints=" + addr, "-output=json", "-timeout", "5s", "t", "k"},
		{"-endpoints", addr, "kv", "get", "t", "k", "-o", "json"},
		{"kv", "get", "t", "k", "--endpoints", addr, "-consistency", "quorum", "-ojson"},
	} {
		code, out, stderr := runCLI(t, nil, args...)
		var item itemJSON
		if code != exitOK || json.Unmarshal([]byte(out), &item) != nil || item.Version != 7 {
			t.Errorf("veltrix %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, stderr)
		}
	}
	if n := len(f.keys); n != 4 {
		t.Errorf("%d Gets, want 4", n)
	}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"kv", "get", "-endpoints", "a", "t", "k"}, []string{"kv", "get", "--endpoints", "a", "t", "k"}},
		{[]string{"import", "-filter", "-detach", "-detach"}, []string{"import", "--filter", "-detach", "--detach"}},
		{[]string{"kv", "get", "-o", "-json", "t", "--", "-endpoints"}, []string{"kv", "get", "-o", "-json", "t", "--", "-endpoints"}},
		{[]string{"bench", "-v", "-help", "-sync=false", "-x"}, []string{"bench", "-v", "--help", "--sync=false", "-x"}},
	} {
		got := normalizeArgs(tc.in, flagTable(newRoot(nil)))
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("normalizeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFlagTableConsistent: a flag name means the same kind of flag (takes a
// value or not) in every command, so normalizeArgs can skip values.
func TestFlagTableConsistent(t *testing.T) {
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			takes := f.NoOptDefVal == ""
			if prev, ok := seen[f.Name]; ok && prev != takes {
				t.Errorf("flag --%s takes a value in one command and not in another (%s)", f.Name, c.CommandPath())
			}
			seen[f.Name] = takes
		}
		c.LocalFlags().VisitAll(check)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRoot(nil))
}

func TestUnknownFlag(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "table", "list", "--frobnicate")
	if code != exitUsage || !strings.Contains(stderr, "--frobnicate") {
		t.Fatalf("unknown flag: exit %d, stderr %q; want %d naming --frobnicate", code, stderr, exitUsage)
	}
	code, _, stderr = runCLI(t, nil, "status", "-frobnicate")
	if code != exitUsage || !strings.Contains(stderr, "frobnicate") {
		t.Fatalf("unknown single-dash flag: exit %d, stderr %q", code, stderr)
	}
}

func TestOutputYAML(t *testing.T) {
	_, addr := startFakeKV(t)
	code, out, stderr := runCLI(t, nil, "kv", "get", "t", "k", "--endpoints", addr, "-o", "yaml")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var item itemJSON
	if err := yaml.Unmarshal([]byte(out), &item); err != nil || item.Version != 7 || item.PartitionKey != "k" || !strings.Contains(out, "partition_key: k\n") {
		t.Fatalf("yaml output %q: %+v, %v", out, item, err)
	}
	// Proto messages keep protojson's field names.
	_, admin := startFakeAdmin(t)
	code, out, stderr = runCLI(t, map[string]string{"VELTRIX_OUTPUT": "yaml"}, "cluster", "rebalance", "status", "--endpoints", admin)
	if code != exitOK || !strings.Contains(out, "placementEpoch: ") {
		t.Fatalf("rebalance status as yaml: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "veltrix ") || !strings.Contains(out, "go1") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, nil, "version", "-o", "json")
	var v versionInfo
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || v.GoVersion == "" {
		t.Fatalf("version -o json: exit %d, %q", code, out)
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_veltrix", "zsh": "#compdef veltrix", "fish": "complete -c veltrix", "powershell": "Register-ArgumentCompleter"} {
		code, out, stderr := runCLI(t, nil, "completion", shell)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %d bytes lacking %q, stderr %q", shell, code, len(out), want, stderr)
		}
	}
	// Dynamic completion knows the subcommands and the output formats.
	_, out, _ := runCLI(t, nil, "__complete", "kv", "")
	for _, want := range []string{"get", "put", "del", "query"} {
		if !strings.Contains(out, want) {
			t.Errorf("kv completions lack %q:\n%s", want, out)
		}
	}
	_, out, _ = runCLI(t, nil, "__complete", "status", "--output", "")
	if !strings.Contains(out, "yaml") {
		t.Errorf("--output completions lack yaml:\n%s", out)
	}
}

// TestHelperCLI is the veltrix binary for the tests below when
// VELTRIX_TEST_CLI is set: they run the test binary as a subprocess.
func TestHelperCLI(t *testing.T) {
	if os.Getenv("VELTRIX_TEST_CLI") == "" {
		t.Skip("only a subprocess of TestInterrupt runs it")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// interrupt runs veltrix args in a subprocess, waits for its first line of
// output, sends SIGINT and returns the exit code and the output.
func interrupt(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperCLI$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "VELTRIX_TEST_CLI=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	first, err := r.ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("veltrix %s printed nothing: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		rest <- string(b)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("veltrix %s did not stop on SIGINT", strings.Join(args, " "))
	}
	out := first + <-rest
	t.Logf("veltrix %s:\n%s%s", strings.Join(args, " "), out, stderr.String())
	return cmd.ProcessState.ExitCode(), out + stderr.String()
}

// neverBalanced answers RebalanceStatus with a rebalance that goes on.
type neverBalanced struct{ fakeAdmin }

func (*neverBalanced) RebalanceStatus(context.Context, *kvv1.RebalanceStatusRequest) (*kvv1.RebalanceStatusResponse, error) {
	return rebalancing(), nil
}

// runningJob serves a job that stays RUNNING: WatchJob sends it, then
// blocks until the client goes away.
type runningJob struct {
	migratorv1.UnimplementedMigratorServiceServer
}

func (runningJob) job() *migratorv1.Job {
	return &migratorv1.Job{Id: "j1", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_RUNNING}
}

func (j runningJob) GetJob(context.Context, *migratorv1.GetJobRequest) (*migratorv1.GetJobResponse, error) {
	return &migratorv1.GetJobResponse{Job: j.job()}, nil
}

func (j runningJob) WatchJob(_ *migratorv1.WatchJobRequest, s grpc.ServerStreamingServer[migratorv1.WatchJobResponse]) error {
	if err := s.Send(&migratorv1.WatchJobResponse{Job: j.job()}); err != nil {
		return err
	}
	<-s.Context().Done()
	return s.Context().Err()
}

func serve(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestInterrupt sends SIGINT to commands that watch: each stops cleanly,
// says what goes on, and exits with its documented code.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	router := serve(t, func(s *grpc.Server) { kvv1.RegisterAdminServiceServer(s, &neverBalanced{}) })
	code, out := interrupt(t, "cluster", "rebalance", "status", "--watch", "--interval", "20ms", "--endpoints", router)
	if code != exitInterrupted || !strings.Contains(out, "stopped watching; the rebalance goes on") {
		t.Errorf("rebalance status --watch: exit %d; want %d and the rebalance goes on", code, exitInterrupted)
	}
	migrator := serve(t, func(s *grpc.Server) { migratorv1.RegisterMigratorServiceServer(s, runningJob{}) })
	code, out = interrupt(t, "jobs", "watch", "j1", "--migrator", migrator)
	if code != exitOK || !strings.Contains(out, "stopped watching; job j1 keeps running") {
		t.Errorf("jobs watch: exit %d; want 0 and the job keeps running", code)
	}
}
