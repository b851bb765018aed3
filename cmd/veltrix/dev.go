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
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	migratorsrv "github.com/veltrixdb/veltrix/services/migrator/server"
	routersrv "github.com/veltrixdb/veltrix/services/router/server"
	"google.golang.org/grpc"
)

func init() {
	register(command{name: "dev", build: devCmd})
}

// devOptions are veltrix dev's flags.
type devOptions struct {
	dataDir, listen, migAddr, dynamoAddr, logLevel string
	noSample, exitAfterReady                       bool
	// insecure runs every listener in plaintext (no dev PKI) and without
	// authentication.
	insecure bool
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
	flags.BoolVar(&o.insecure, "insecure", false, "run every listener in plaintext and without authentication (default: TLS and mutual TLS with a local CA in DATA-DIR/pki, --auth with the seal key DATA-DIR/auth.key and an API key in DATA-DIR/credentials)")
	return cmd
}

// sampleJobID makes the sample import idempotent across runs.
const sampleJobID = "dev-sample-import"

// devStack is the dev stack: a localcluster of 3 nodes, a router and a
// migrator.
type devStack struct {
	*localcluster.Cluster
	// pki is the dev PKI; nil with --insecure.
	pki *tlsx.DevPKI
}

// dialOptions are the options of the stack's own calls to its migrator:
// TLS with the admin certificate unless --insecure.
func (s *devStack) dialOptions(logger *slog.Logger) ([]grpc.DialOption, func(), error) {
	if s.pki == nil {
		return nil, func() {}, nil
	}
	src, err := tlsx.Load(s.pki.Admin, "", logger)
	if err != nil {
		return nil, nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(src.ClientCredentials())}, src.Close, nil
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

	// Secure by default: a local CA and a certificate per service (kept
	// between runs), TLS on every listener, mutual TLS between services,
	// and an "admin" client certificate for the user; authentication on
	// the routers and the migrator, with that certificate's principal a
	// cluster admin and the seal key of API keys in the data directory.
	var routerAuth routersrv.AuthConfig
	var migAuth migratorsrv.AuthConfig
	sealCreated := false
	if !o.insecure {
		pki, err := tlsx.WriteDevPKI(filepath.Join(abs, "pki"), nil)
		if err != nil {
			return fmt.Errorf("dev PKI: %w", err)
		}
		st.pki = &pki
		keyFile := filepath.Join(abs, devSealKeyName)
		if sealCreated, err = ensureSealKey(keyFile); err != nil {
			return err
		}
		admins := []string{tlsx.DevAdmin}
		routerAuth = routersrv.AuthConfig{Enabled: true, KeyFile: keyFile, Admins: admins}
		migAuth = migratorsrv.AuthConfig{Enabled: true, Admins: admins}
	}
	// The dev stack keeps its data between runs: its etcd syncs, and the
	// cluster name, node ids and router state directory stay as they were.
	st.Cluster, err = localcluster.Start(ctx, localcluster.Options{
		Dir: abs, Cluster: "default", Nodes: 3, RF: 3, Partitions: 256, Zones: []string{"z1", "z2", "z3"},
		CacheBytes: 64 << 20, EtcdSync: true, RouterAddr: o.listen, RouterStateDir: abs,
		Migrator: true, MigratorAddr: o.migAddr, DynamoDBAddr: o.dynamoAddr, Metrics: true, Logger: logger,
		TLS: st.pki, RouterAuth: routerAuth, MigratorAuth: migAuth,
	})
	if err != nil {
		return fmt.Errorf("start the stack: %w (is something else listening on %s, %s or %s? pass --listen-addr, --migrator-addr or --dynamodb-addr)",
			err, o.listen, o.migAddr, o.dynamoAddr)
	}
	router, migrator := st.Routers[0], st.Migrator

	scheme := "https"
	if st.pki == nil {
		scheme = "http"
	}
	fmt.Fprintf(w, "\n  etcd      %s\n", st.Etcd.Endpoint())
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "  storage   %s  %s  (metrics %s://%s/metrics)\n", n.ID(), n.Addr(), scheme, n.MetricsAddr())
	}
	fmt.Fprintf(w, "  router    %s  (metrics %s://%s/metrics)\n", router.Addr(), scheme, router.MetricsAddr())
	if a := router.DynamoDBAddr(); a != "" {
		fmt.Fprintf(w, "  dynamodb  %s://%s  (DynamoDB API)\n", scheme, a)
	}
	fmt.Fprintf(w, "  migrator  %s  (metrics %s://%s/metrics)\n", migrator.Addr(), scheme, migrator.MetricsAddr())
	if st.pki != nil {
		fmt.Fprintf(w, "  TLS       CA %s; client certificate %s (principal %q), key %s\n", st.pki.CA, st.pki.Admin.CertFile, tlsx.DevAdmin, st.pki.Admin.KeyFile)
	} else {
		fmt.Fprintln(w, "  TLS       off (--insecure): every listener is plaintext")
	}
	var creds *devCredentials
	if st.pki != nil {
		c, reused, err := ensureCredentials(ctx, abs, st, sealCreated, logger)
		if err != nil {
			return err
		}
		creds = &c
		how := "new"
		if reused {
			how = "kept from the last run"
		}
		fmt.Fprintf(w, "  auth      on: principal %q (client certificate) is a cluster admin; API key %s of principal %q (admin on \"*\", %s) in %s\n",
			tlsx.DevAdmin, c.ID, devPrincipal, how, filepath.Join(abs, devCredentialsName))
	} else {
		fmt.Fprintln(w, "  auth      off (--insecure): every call is anonymous and may do everything")
	}
	fmt.Fprintln(w)

	if !o.noSample {
		if err := importSample(ctx, w, abs, st, logger); err != nil {
			return err
		}
	}
	printTry(w, tryInfo{cli: selfCommand(), router: router.Addr(), migrator: migrator.Addr(), dynamodb: router.DynamoDBAddr(), pki: st.pki,
		creds: creds, credsFile: filepath.Join(abs, devCredentialsName)})
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
func importSample(ctx context.Context, w io.Writer, dir string, st *devStack, logger *slog.Logger) error {
	opts, closeTLS, err := st.dialOptions(logger)
	if err != nil {
		return err
	}
	defer closeTLS()
	cc, err := grpcx.Dial(st.Migrator.Addr(), opts...)
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
	// pki is the dev PKI, nil when the stack runs in plaintext.
	pki *tlsx.DevPKI
	// creds is the dev API key and credsFile its file; nil when
	// authentication is off.
	creds     *devCredentials
	credsFile string
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
	// grpcurl's and the CLI's security flags: the admin certificate for
	// grpcurl, the dev key for the CLI.
	gsec, flags := "-plaintext", ""
	if t.pki != nil {
		gsec = fmt.Sprintf("-cacert %s -cert %s -key %s", t.pki.CA, t.pki.Admin.CertFile, t.pki.Admin.KeyFile)
		flags = fmt.Sprintf(" --cacert %s --cert %s --key %s", t.pki.CA, t.pki.Admin.CertFile, t.pki.Admin.KeyFile)
		if t.creds != nil {
			flags = fmt.Sprintf(" --cacert %s --token %s", t.pki.CA, t.creds.Token)
		}
	}
	fmt.Fprintln(w, "Try it (bytes fields are base64 in grpcurl's JSON):")
	fmt.Fprintf(w, "  %s %s %s list\n", g, gsec, addr)
	fmt.Fprintf(w, "  %s %s -d '{\"key\":{\"table\":\"%s\",\"partition_key\":\"%s\",\"sort_key\":\"%s\"}}' %s veltrix.kv.v1.KVService/Get\n",
		g, gsec, sample.Table, b64(sample.ExampleUser), b64(sample.ExampleSession), addr)
	fmt.Fprintf(w, "  %s %s -d '{\"table\":\"%s\",\"partition_key\":\"%s\",\"limit\":5}' %s veltrix.kv.v1.KVService/Query\n",
		g, gsec, sample.Table, b64(sample.ExampleUser), addr)
	if t.pki != nil && t.creds != nil {
		fmt.Fprintf(w, "  (or with the API key instead of the certificate: %s -cacert %s -H 'authorization: Bearer %s' %s veltrix.kv.v1.AdminService/ListTables)\n",
			g, t.pki.CA, t.creds.Token, addr)
	}
	if t.pki != nil {
		// The CLI reads these from the environment too.
		if t.creds != nil {
			fmt.Fprintf(w, "  (or export VELTRIX_CACERT=%s VELTRIX_TOKEN=%s for the CLI; or authenticate with the admin certificate: --cert %s --key %s)\n",
				t.pki.CA, t.creds.Token, t.pki.Admin.CertFile, t.pki.Admin.KeyFile)
		} else {
			fmt.Fprintf(w, "  (or export VELTRIX_CACERT=%s VELTRIX_CERT=%s VELTRIX_KEY=%s for the CLI)\n", t.pki.CA, t.pki.Admin.CertFile, t.pki.Admin.KeyFile)
		}
	}
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
	fmt.Fprintf(w, "  %s jobs list%s\n", t.cli, jobFlags)
	if t.creds != nil {
		fmt.Fprintf(w, "  %s auth key create --principal NAME --grant TABLE=LEVEL%s   # more keys (read, write or admin; TABLE may be '*')\n", t.cli, flags)
	}
	fmt.Fprintln(w)
	if t.dynamodb != "" {
		ca := ""
		if t.pki != nil {
			ca = t.pki.CA
		}
		printDynamoDBTry(w, t.dynamodb, ca, t.creds, t.credsFile)
	}
}

// printDynamoDBTry shows the DynamoDB endpoint with the AWS CLI when it is
// installed (it needs credentials and a region set; AWS CLI v1 reads the
// region from AWS_DEFAULT_REGION only). With ca set the endpoint serves
// HTTPS and the AWS CLI trusts ca through AWS_CA_BUNDLE. With creds set it
// verifies SigV4 against the dev key (its id and secret, from credsFile);
// without, any credentials will do.
func printDynamoDBTry(w io.Writer, addr, ca string, creds *devCredentials, credsFile string) {
	url := "http://" + addr
	if ca != "" {
		url = "https://" + addr
	}
	keyID, secret, which := "veltrix", "veltrix", "any credentials and region"
	if creds != nil {
		keyID, secret, which = creds.ID, creds.Secret, "the dev key from "+credsFile+", any region"
	}
	if _, err := exec.LookPath("aws"); err != nil {
		fmt.Fprintf(w, "DynamoDB API at %s: point an AWS SDK's endpoint at it (see the README, \"DynamoDB endpoint\").\n", url)
		if ca != "" {
			fmt.Fprintf(w, "It serves HTTPS with a certificate of the dev CA %s (AWS_CA_BUNDLE=%s).\n", ca, ca)
		}
		if creds != nil {
			fmt.Fprintf(w, "It verifies SigV4: AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s (in %s).\n", keyID, secret, credsFile)
		} else {
			fmt.Fprintln(w, "It accepts any credentials and region (authentication is off).")
		}
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "Or through the DynamoDB API with the AWS CLI (%s):\n", which)
	fmt.Fprintf(w, "  export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=us-east-1", keyID, secret)
	if ca != "" {
		fmt.Fprintf(w, " AWS_CA_BUNDLE=%s", ca)
	}
	fmt.Fprintln(w)
	// The sample table is JSON-encoded (veltrix kv shows it as JSON), not
	// a DynamoDB table: the example makes one of its own.
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url %s create-table --table-name greetings --attribute-definitions AttributeName=id,AttributeType=S --key-schema AttributeName=id,KeyType=HASH --billing-mode PAY_PER_REQUEST\n", url)
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url %s put-item --table-name greetings --item '{\"id\":{\"S\":\"hello\"},\"text\":{\"S\":\"world\"}}'\n", url)
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url %s get-item --table-name greetings --key '{\"id\":{\"S\":\"hello\"}}'\n", url)
	fmt.Fprintf(w, "  aws dynamodb --endpoint-url %s list-tables\n\n", url)
}
