package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/veltrixdb/veltrix/cmd/veltrix/internal/sample"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

func init() {
	register(command{name: "dev", build: devCmd})
}

// devOptions are veltrix dev's flags.
type devOptions struct {
	dataDir, listen, migAddr, dynamoAddr, logLevel string
	noSample, exitAfterReady                       bool
}

func devCmd(*conn) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "run a local stack: embedded etcd, 3 storage nodes, a router, a migrator; import a sample",
		Args:  nargs(0, 0),
		RunE:  func(cmd *cobra.Command, _ []string) error { return dev(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	flags := cmd.Flags()
	flags.StringVar(&o.dataDir, "data-dir", ".veltrix", "where the stack keeps its data (reused by the next run; one stack at a time: locked through DIR/veltrix-dev.lock)")
	flags.StringVar(&o.listen, "listen-addr", "127.0.0.1:7400", "router address")
	flags.StringVar(&o.migAddr, "migrator-addr", "127.0.0.1:7600", "migrator address")
	flags.StringVar(&o.dynamoAddr, "dynamodb-addr", "127.0.0.1:8000", `the router's DynamoDB-compatible endpoint ("" turns it off)`)
	flags.BoolVar(&o.noSample, "no-sample", false, "do not import the bundled sample export")
	flags.StringVar(&o.logLevel, "log-level", "warn", "log level of the services")
	flags.BoolVar(&o.exitAfterReady, "exit-after-ready", false, "stop once the stack is ready and the sample imported (for tests)")
	return cmd
}

// sampleJobID makes the sample import idempotent across runs.
const sampleJobID = "dev-sample-import"

// devStack is the dev stack: a localcluster of 3 nodes, a router and a
// migrator.
type devStack struct {
	*localcluster.Cluster
}

func (s *devStack) close(w io.Writer) {
	if s.Cluster != nil {
		_ = s.Close()
	}
	fmt.Fprintln(w, "stopped cleanly")
}

// dev runs the stack until ctx ends (Ctrl-C).
func dev(ctx context.Context, w io.Writer, o devOptions) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageErr("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	abs, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	unlock, err := lockDataDir(abs)
	if err != nil {
		return err
	}
	defer unlock()
	fmt.Fprintf(w, "Veltrix dev stack, data in %s\n", abs)
	st := &devStack{}
	defer st.close(w)

	// The dev stack keeps its data between runs: its etcd syncs, and the
	// cluster name, node ids and router state directory stay as they were.
	st.Cluster, err = localcluster.Start(ctx, localcluster.Options{
		Dir: abs, Cluster: "default", Nodes: 3, RF: 3, Partitions: 256, Zones: []string{"z1", "z2", "z3"},
		CacheBytes: 64 << 20, EtcdSync: true, RouterAddr: o.listen, RouterStateDir: abs,
		Migrator: true, MigratorAddr: o.migAddr, DynamoDBAddr: o.dynamoAddr, Metrics: true, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("start the stack: %w (is something else listening on %s, %s or %s? pass --listen-addr, --migrator-addr or --dynamodb-addr)",
			err, o.listen, o.migAddr, o.dynamoAddr)
	}
	router, migrator := st.Routers[0], st.Migrator

	fmt.Fprintf(w, "\n  etcd      %s\n", st.Etcd.Endpoint())
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "  storage   %s  %s  (metrics http://%s/metrics)\n", n.ID(), n.Addr(), n.MetricsAddr())
	}
	fmt.Fprintf(w, "  router    %s  (metrics http://%s/metrics)\n", router.Addr(), router.MetricsAddr())
	if a := router.DynamoDBAddr(); a != "" {
		fmt.Fprintf(w, "  dynamodb  http://%s  (DynamoDB API)\n", a)
	}
	fmt.Fprintf(w, "  migrator  %s  (metrics http://%s/metrics)\n\n", migrator.Addr(), migrator.MetricsAddr())

	if !o.noSample {
		if err := importSample(ctx, w, abs, st); err != nil {
			return err
		}
	}
	printTry(w, tryInfo{cli: selfCommand(), router: router.Addr(), migrator: migrator.Addr(), dynamodb: router.DynamoDBAddr()})
	if o.exitAfterReady {
		return nil
	}
	fmt.Fprintln(w, "ready; press Ctrl-C to stop")
	select {
	case <-ctx.Done():
		fmt.Fprintln(w, "\nshutting down…")
	case err := <-router.Err():
		return fmt.Errorf("router stopped: %w", err)
	}
	return nil
}

// importSample writes the bundled export to the data dir and imports it,
// unless a previous run already did.
func importSample(ctx context.Context, w io.Writer, dir string, st *devStack) error {
	cc, err := grpcx.Dial(st.Migrator.Addr())
	if err != nil {
		return err
	}
	defer cc.Close()
	mc := migratorv1.NewMigratorServiceClient(cc)
	prev, err := mc.GetJob(ctx, &migratorv1.GetJobRequest{Id: sampleJobID})
	if err == nil && prev.Job.State == migratorv1.JobState_JOB_STATE_SUCCEEDED {
		fmt.Fprintf(w, "sample import already done (job %s, %d items); skipping\n\n", sampleJobID, prev.Job.GetProgress().GetItemsWritten())
		return nil
	}
	exportDir := filepath.Join(dir, "sample-export")
	if err := sample.Generate(exportDir); err != nil {
		return fmt.Errorf("generate the sample export: %w", err)
	}
	var job *migratorv1.Job
	switch {
	case err == nil && (prev.Job.State == migratorv1.JobState_JOB_STATE_FAILED || prev.Job.State == migratorv1.JobState_JOB_STATE_CANCELLED ||
		prev.Job.State == migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS):
		// An earlier run's sample import did not succeed: run it again
		// rather than report the old failure on every start.
		resp, err := mc.RetryJob(ctx, &migratorv1.RetryJobRequest{Id: sampleJobID})
		if err != nil {
			return explain(err, "retry sample import")
		}
		job = resp.Job
	default:
		resp, err := mc.StartImport(ctx, &migratorv1.StartImportRequest{JobId: sampleJobID, Spec: sample.ImportSpec(exportDir)})
		if err != nil {
			return explain(err, "start sample import")
		}
		job = resp.Job
	}
	fmt.Fprintf(w, "importing the sample DynamoDB export (%s) into table %q\n", exportDir, sample.Table)
	c := &conn{output: "table", timeout: 30 * time.Second}
	if err := follow(ctx, w, c, mc, job, false); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// grpcurlCommand is how to run grpcurl from the directory the stack was
// started in: the copy `make run` builds into bin/ (make puts bin/ on its
// own PATH, which the user's shell does not have), else grpcurl on PATH.
func grpcurlCommand() string {
	if _, err := os.Stat(filepath.Join("bin", "grpcurl")); err == nil {
		return "bin/grpcurl"
	}
	return "grpcurl"
}

// selfCommand is how to run this very binary from the directory the stack
// was started in: bin/veltrix under `make run`, "go run ./cmd/veltrix"
// under go run, "veltrix" when that is what PATH finds, else the absolute
// path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "veltrix"
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return commandFor(exe)
}

func commandFor(exe string) string {
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		// go run: the binary is a temporary copy.
		if _, err := os.Stat(filepath.Join("cmd", "veltrix", "main.go")); err == nil {
			return "go run ./cmd/veltrix"
		}
		return exe
	}
	// A binary below the working directory is named by its path first:
	// `make run` puts bin/ on make's PATH, not on the user's shell's.
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			if !strings.ContainsRune(rel, filepath.Separator) {
				rel = "." + string(filepath.Separator) + rel
			}
			return rel
		}
	}
	if onPath, err := exec.LookPath("veltrix"); err == nil {
		if a, err := os.Stat(onPath); err == nil {
			if b, err := os.Stat(exe); err == nil && os.SameFile(a, b) {
				return "veltrix"
			}
		}
	}
	return exe
}

// tryInfo is what the printed commands need: how to run the CLI and the
// addresses the stack really listens on.
type tryInfo struct {
	cli, router, migrator string
	// dynamodb is the DynamoDB endpoint's address, "" when off.
	dynamodb string
}

// Defaults of the CLI's --endpoints and --migrator flags.
const (
	defaultRouterAddr   = "127.0.0.1:7400"
	defaultMigratorAddr = "127.0.0.1:7600"
)

func printTry(w io.Writer, t tryInfo) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	g := grpcurlCommand()
	addr := t.router
	fmt.Fprintln(w, "Try it (bytes fields are base64 in grpcurl's JSON):")
	fmt.Fprintf(w, "  %s -plaintext %s list\n", g, addr)
	fmt.Fprintf(w, "  %s -plaintext -d '{\"key\":{\"table\":\"%s\",\"partition_key\":\"%s\",\"sort_key\":\"%s\"}}' %s veltrix.kv.v1.KVService/Get\n",
		g, sample.Table, b64(sample.ExampleUser), b64(sample.ExampleSession), addr)
	fmt.Fprintf(w, "  %s -plaintext -d '{\"table\":\"%s\",\"partition_key\":\"%s\",\"limit\":5}' %s veltrix.kv.v1.KVService/Query\n",
		g, sample.Table, b64(sample.ExampleUser), addr)
	flags := ""
	if t.router != defaultRouterAddr {
		flags += " --endpoints " + t.router
	}
	jobFlags := flags
	if t.migrator != defaultMigratorAddr {
		jobFlags += " --migrator " + t.migrator
	}
	fmt.Fprintln(w, "Or with the CLI:")
	fmt.Fprintf(w, "  %s status%s\n", t.cli, flags)
	fmt.Fprintf(w, "  %s kv query %s %s%s\n", t.cli, sample.Table, sample.ExampleUser, flags)
	fmt.Fprintf(w, "  %s jobs list%s\n\n", t.cli, jobFlags)
	if t.dynamodb != "" {
		printDynamoDBTry(w, t.dynamodb)
	}
}

// printDynamoDBTry shows the DynamoDB endpoint with the AWS CLI when it is
// installed (it needs credentials and a region set, any values; AWS CLI
// v1 reads the region from AWS_DEFAULT_REGION only).
func printDynamoDBTry(w io.Writer, addr string) {
	if _, err := exec.LookPath("aws"); err != nil {
		fmt.Fprintf(w, "DynamoDB API at http://%s: point an AWS SDK's endpoint at it (see the README, \"DynamoDB endpoint\").\n\n", addr)
		return
	}
	fmt.Fprintln(w, "Or through the DynamoDB API with the AWS CLI (any credentials and region):")
	fmt.Fprintln(w, "  export AWS_ACCESS_KEY_ID=veltrix AWS_SECRET_ACCESS_KEY=veltrix AWS_DEFAULT_REGION=us-east-1")
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url http://%s list-tables\n", addr)
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url http://%s query --table-name %s --key-condition-expression 'user_id = :u' --expression-attribute-values '{\":u\":{\"S\":\"%s\"}}'\n\n",
		addr, sample.Table, sample.ExampleUser)
}
