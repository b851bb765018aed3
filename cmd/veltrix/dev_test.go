package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/cmd/veltrix/internal/sample"
	"github.com/veltrixdb/veltrix/pkg/auth"
)

// TestMain lets the test binary play a second process holding a dev
// stack's lock (TestDevLockAcrossProcesses).
func TestMain(m *testing.M) {
	if dir := os.Getenv("VELTRIX_TEST_HOLD_LOCK"); dir != "" {
		unlock, err := lockDataDir(dir)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		defer unlock()
		fmt.Println("locked")
		// Hold the lock until the parent closes stdin or kills us.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return
	}
	os.Exit(m.Run())
}

// TestDevLockAcrossProcesses holds the data directory's lock in another
// process and checks that a second `veltrix dev` exits at once naming it,
// and that the lock is free again once that process is killed.
func TestDevLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), "VELTRIX_TEST_HOLD_LOCK="+dir)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	first, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(first) != "locked" {
		t.Fatalf("holder said %q, %v", first, err)
	}

	start := time.Now()
	code, stdout, stderr := runCLI(t, nil, "dev", "--data-dir", dir, "--no-sample", "--listen-addr", "127.0.0.1:0", "--migrator-addr", "127.0.0.1:0", "--dynamodb-addr", "127.0.0.1:0")
	want := fmt.Sprintf("another veltrix dev is using %s (pid %d)", dir, holder.Process.Pid)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("second dev: exit %d, stderr %q, stdout %q; want exit 1 and %q", code, stderr, stdout, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second dev took %s to give up", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
		t.Fatal("second dev touched etcd's data before checking the lock")
	}

	// SIGKILL: the kernel releases the lock.
	_ = holder.Process.Kill()
	_ = holder.Wait()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after the holder died: %v", err)
	}
	unlock()
}

func TestDevLockReleasedOnUnlock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, devLockName))
	if strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this pid %d", b, os.Getpid())
	}
	// A second open file description conflicts even in one process.
	if _, err := lockDataDir(dir); !errors.Is(err, errDataDirBusy) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Fatalf("second lock: %v, want errDataDirBusy naming pid %d", err, os.Getpid())
	}
	unlock()
	unlock2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

// TestPrintTryUsesRealAddresses checks the printed commands name the
// binary that runs and the addresses the stack listens on.
func TestPrintTryUsesRealAddresses(t *testing.T) {
	var b bytes.Buffer
	printTry(&b, tryInfo{cli: "bin/veltrix", router: "127.0.0.1:7411", migrator: "127.0.0.1:7611"})
	out := b.String()
	for _, want := range []string{
		"-plaintext 127.0.0.1:7411 list",
		"bin/veltrix status --endpoints 127.0.0.1:7411\n",
		"bin/veltrix kv query sessions ",
		"bin/veltrix jobs list --endpoints 127.0.0.1:7411 --migrator 127.0.0.1:7611\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printed commands lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dynamodb") {
		t.Errorf("DynamoDB commands printed with the endpoint off:\n%s", out)
	}
	b.Reset()
	printTry(&b, tryInfo{cli: "veltrix", router: defaultRouterAddr, migrator: defaultMigratorAddr, dynamodb: "127.0.0.1:8011"})
	if !strings.Contains(b.String(), "http://127.0.0.1:8011") {
		t.Errorf("the DynamoDB endpoint is not printed:\n%s", b.String())
	}
	b.Reset()
	printTry(&b, tryInfo{cli: "veltrix", router: defaultRouterAddr, migrator: defaultMigratorAddr})
	if strings.Contains(b.String(), "--endpoints") || strings.Contains(b.String(), "--migrator") {
		t.Errorf("default addresses need no flags:\n%s", b.String())
	}
}

func TestCommandFor(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		filepath.Join(wd, "bin", "veltrix"): filepath.Join("bin", "veltrix"),
		filepath.Join(wd, "veltrix"):        "." + string(filepath.Separator) + "veltrix",
		"/opt/elsewhere/veltrix":            "/opt/elsewhere/veltrix",
	}
	t.Setenv("PATH", t.TempDir())
	for exe, want := range cases {
		if got := commandFor(exe); got != want {
			t.Errorf("commandFor(%q) = %q, want %q", exe, got, want)
		}
	}
	// make run puts bin/ on make's PATH only: the printed command must
	// still be the path, which the user's shell can run.
	bin := t.TempDir()
	exe := filepath.Join(wd, "testdata-bin-veltrix")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(exe) })
	if err := os.Symlink(exe, filepath.Join(bin, "veltrix")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if got, want := commandFor(exe), "./testdata-bin-veltrix"; got != want {
		t.Errorf("commandFor with the binary also on PATH = %q, want %q", got, want)
	}
}

// TestMakeRunPassesArgs checks that `make run ARGS=...` hands the flags to
// veltrix dev.
func TestMakeRunPassesArgs(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("make not installed: CI runs through make, so it must be there")
		}
		t.Skip("make not installed (Debian package make); CI always has it")
	}
	cmd := exec.Command("make", "-n", "run", "ARGS=--data-dir /tmp/v2 --listen-addr 127.0.0.1:7401")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/veltrix dev --data-dir /tmp/v2 --listen-addr 127.0.0.1:7401\n") {
		t.Fatalf("make run does not pass ARGS to veltrix dev:\n%s", out)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a bytes.Buffer the dev goroutine writes while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startDev runs `veltrix dev` on dir until the test ends (or stop is
// called) and returns once it is ready.
func startDev(t *testing.T, o devOptions) (out *lockedBuffer, stop func()) {
	t.Helper()
	o.logLevel = "error"
	ctx, cancel := context.WithCancel(t.Context())
	out = &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- dev(ctx, out, o) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dev: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "ready; press Ctrl-C") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("dev stopped: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev not ready:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out, stop
}

// TestDevSecureByDefault runs `veltrix dev` as it starts by default: with
// the dev PKI, TLS on every listener, and authentication on. The sample
// import goes through the migrator with the admin certificate (INGEST: the
// migrator writes to the storage nodes over mutual TLS); the CLI with the
// dev CA and either the admin certificate or the dev key's token reaches
// the router and the migrator; a client without credentials is
// Unauthenticated and a plaintext one refused; the AWS SDK lists tables
// with the dev key over HTTPS; the printed commands name the CA, the
// certificate and the key. A second run keeps the key.
func TestDevSecureByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a dev stack (CI runs it: make test has no -short)")
	}
	dir := t.TempDir()
	router, mig := freeAddr(t), freeAddr(t)
	o := devOptions{dataDir: dir, listen: router, migAddr: mig, dynamoAddr: "127.0.0.1:0"}
	out, stop := startDev(t, o)

	pki := filepath.Join(dir, "pki")
	ca, cert, key := filepath.Join(pki, "ca.pem"), filepath.Join(pki, "admin.pem"), filepath.Join(pki, "admin-key.pem")
	credsFile := filepath.Join(dir, devCredentialsName)
	creds, err := readCredentials(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{credsFile, filepath.Join(dir, devSealKeyName)} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	printed := out.String()
	for _, want := range []string{
		"-cacert " + ca + " -cert " + cert + " -key " + key,
		"-cacert " + ca + " -H 'authorization: Bearer " + creds.Token + "'",
		"--cacert " + ca + " --token " + creds.Token,
		"VELTRIX_CACERT=" + ca + " VELTRIX_TOKEN=" + creds.Token,
		"AWS_ACCESS_KEY_ID=" + creds.ID, "AWS_SECRET_ACCESS_KEY=" + creds.Secret, "AWS_CA_BUNDLE=" + ca,
		"https://", "auth key create", `principal "dev" (admin on "*", new)`,
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("dev output lacks %q:\n%s", want, printed)
		}
	}

	runPrintedAWSCLI(t, printed)

	// The admin certificate is a cluster admin on the router and the
	// migrator.
	secure := []string{"--endpoints", router, "--migrator", mig, "--cacert", ca, "--cert", cert, "--key", key, "--timeout", "5s"}
	if code, stdout, stderr := runCLI(t, nil, append([]string{"status"}, secure...)...); code != 0 {
		t.Fatalf("status over TLS: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, nil, append([]string{"jobs", "get", sampleJobID}, secure...)...); code != 0 || !strings.Contains(stdout, "SUCCEEDED") {
		t.Fatalf("jobs get over TLS: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// TLS without a client certificate or a token: Unauthenticated.
	env := map[string]string{"VELTRIX_CACERT": ca}
	if code, stdout, stderr := runCLI(t, env, "status", "--endpoints", router, "--timeout", "5s"); code == 0 || !strings.Contains(stderr, "not authenticated") {
		t.Fatalf("status with the CA alone: exit %d, want not authenticated\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, env, "jobs", "list", "--migrator", mig, "--timeout", "5s"); code == 0 || !strings.Contains(stderr, "not authenticated") {
		t.Fatalf("jobs list with the CA alone: exit %d, want not authenticated\n%s\n%s", code, stdout, stderr)
	}
	// The dev key's token, through the environment.
	checkToken := func(token string) {
		t.Helper()
		env := map[string]string{"VELTRIX_CACERT": ca, "VELTRIX_TOKEN": token}
		if code, stdout, stderr := runCLI(t, env, "table", "list", "--endpoints", router, "--timeout", "5s"); code != 0 || !strings.Contains(stdout, sample.Table) {
			t.Fatalf("table list with the dev token: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if code, stdout, stderr := runCLI(t, env, "jobs", "list", "--migrator", mig, "--timeout", "5s"); code != 0 || !strings.Contains(stdout, sampleJobID) {
			t.Fatalf("jobs list with the dev token: exit %d\n%s\n%s", code, stdout, stderr)
		}
	}
	checkToken(creds.Token)
	// The DynamoDB endpoint verifies SigV4 against the dev key, given
	// directly or through the credentials file (an AWS shared
	// credentials file).
	dynamo := regexp.MustCompile(`https://(127\.0\.0\.1:\d+)  \(DynamoDB API\)`).FindStringSubmatch(printed)
	if dynamo == nil {
		t.Fatalf("no DynamoDB address printed:\n%s", printed)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ddbClient := func(cp aws.CredentialsProvider) *dynamodb.Client {
		return dynamodb.New(dynamodb.Options{
			Region: "us-east-1", BaseEndpoint: aws.String("https://" + dynamo[1]), Credentials: cp,
			HTTPClient:       &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
			RetryMaxAttempts: 1,
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The sample table is a JSON-encoded key-value table, which the
	// endpoint does not list: make one it does.
	const ddbTable = "dev_key_probe"
	static := ddbClient(credentials.NewStaticCredentialsProvider(creds.ID, creds.Secret, ""))
	if _, err := static.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(ddbTable),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("CreateTable with the dev key: %v", err)
	}
	listTables := func(db *dynamodb.Client) ([]string, error) {
		resp, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			return nil, err
		}
		return resp.TableNames, nil
	}
	if names, err := listTables(static); err != nil || !slices.Contains(names, ddbTable) {
		t.Fatalf("ListTables with the dev key: %v, %v", names, err)
	}
	// The environment's credentials would come first.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}
	shared, err := config.LoadDefaultConfig(ctx, config.WithSharedCredentialsFiles([]string{credsFile}),
		config.WithSharedConfigFiles([]string{}), config.WithSharedConfigProfile("default"))
	if err != nil {
		t.Fatal(err)
	}
	if names, err := listTables(ddbClient(shared.Credentials)); err != nil || !slices.Contains(names, ddbTable) {
		t.Fatalf("ListTables with AWS_SHARED_CREDENTIALS_FILE=%s: %v, %v", credsFile, names, err)
	}
	if _, err := listTables(ddbClient(credentials.NewStaticCredentialsProvider(creds.ID, creds.Secret+"x", ""))); err == nil {
		t.Fatal("the DynamoDB endpoint accepted a wrong secret")
	}

	if code, _, _ := runCLI(t, nil, "status", "--endpoints", router, "--timeout", "2s"); code == 0 {
		t.Fatal("a plaintext client reached the router")
	}
	if code, _, _ := runCLI(t, nil, "jobs", "list", "--migrator", mig, "--timeout", "2s"); code == 0 {
		t.Fatal("a plaintext client reached the migrator")
	}
	// A bad file is named.
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "status", "--endpoints", router, "--cacert", bad)
	if code == 0 || !strings.Contains(stderr, "--cacert "+bad) {
		t.Fatalf("bad --cacert: exit %d, %s", code, stderr)
	}

	// A second run on the same data directory keeps the key.
	before, err := os.ReadFile(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	out, _ = startDev(t, o)
	if !strings.Contains(out.String(), "kept from the last run") {
		t.Errorf("second run did not keep the key:\n%s", out.String())
	}
	after, err := os.ReadFile(credsFile)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("second run changed %s (%v):\n%s\nto\n%s", credsFile, err, before, after)
	}
	checkToken(creds.Token)
}

// TestDevInsecure: --insecure runs in plaintext without authentication
// and writes no PKI, seal key or credentials.
func TestDevInsecure(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a dev stack (CI runs it: make test has no -short)")
	}
	dir := t.TempDir()
	router := freeAddr(t)
	out, _ := startDev(t, devOptions{insecure: true, dataDir: dir, noSample: true, listen: router, migAddr: freeAddr(t), dynamoAddr: "127.0.0.1:0"})
	stdout := out.String()
	for _, want := range []string{"-plaintext", "TLS       off", "auth      off", "any credentials"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dev --insecure output lacks %q:\n%s", want, stdout)
		}
	}
	if code, stdout, stderr := runCLI(t, nil, "status", "--endpoints", router, "--timeout", "5s"); code != 0 {
		t.Fatalf("status in plaintext without credentials: exit %d\n%s\n%s", code, stdout, stderr)
	}
	runPrintedAWSCLI(t, stdout)
	for _, f := range []string{"pki", devSealKeyName, devCredentialsName} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("dev --insecure wrote %s", f)
		}
	}
}

// TestDevAuthFiles: the seal key is written once (0600) and never
// replaced, a bad one is an error naming the file; credentials round-trip.
func TestDevAuthFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, devSealKeyName)
	created, err := ensureSealKey(path)
	if err != nil || !created {
		t.Fatalf("first ensureSealKey: %v, %v", created, err)
	}
	first, _ := os.ReadFile(path)
	if _, err := auth.LoadSealKey(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("seal key mode %v, want 0600", fi.Mode().Perm())
	}
	if created, err := ensureSealKey(path); err != nil || created {
		t.Fatalf("second ensureSealKey: %v, %v", created, err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
		t.Fatal("the seal key changed")
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureSealKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad seal key: %v, want an error naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "short\n" {
		t.Fatal("a bad seal key was replaced")
	}

	cpath := filepath.Join(dir, devCredentialsName)
	if _, err := readCredentials(cpath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing credentials: %v", err)
	}
	c := devCredentials{ID: "VXABCDEFGHIJKLMNOPQR", Secret: "s3cr-et_", Token: "VXABCDEFGHIJKLMNOPQR.s3cr-et_"}
	if err := writeCredentials(cpath, c); err != nil {
		t.Fatal(err)
	}
	if got, err := readCredentials(cpath); err != nil || got != c {
		t.Fatalf("readCredentials = %+v, %v; want %+v", got, err, c)
	}
	if fi, _ := os.Stat(cpath); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	if err := os.WriteFile(cpath, []byte("[default]\naws_access_key_id = nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readCredentials(cpath); err == nil {
		t.Fatal("a malformed credentials file was accepted")
	}
}

// runPrintedAWSCLI runs the AWS CLI lines veltrix dev printed, with the
// environment its export line sets: the instructions we print must work.
// CI installs the AWS CLI (make python-deps); elsewhere the check is
// skipped when it is missing.
func runPrintedAWSCLI(t *testing.T, printed string) {
	t.Helper()
	if _, err := exec.LookPath("aws"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the AWS CLI is missing (make python-deps installs it): %v", err)
		}
		t.Log("skipping the printed AWS CLI commands: aws is not installed (make python-deps installs it)")
		return
	}
	var env []string
	var cmds []string
	for _, line := range strings.Split(printed, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "export AWS_"):
			env = strings.Fields(strings.TrimPrefix(line, "export "))
		case strings.HasPrefix(line, "aws dynamodb "):
			cmds = append(cmds, line)
		}
	}
	if len(env) == 0 || len(cmds) < 3 {
		t.Fatalf("dev printed no AWS CLI example (export line %v, %d commands):\n%s", env, len(cmds), printed)
	}
	var last string
	for _, c := range cmds {
		cmd := exec.Command("sh", "-c", c)
		cmd.Env = append(append(os.Environ(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER="), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("printed command %q: %v\n%s", c, err, out)
		}
		last += string(out)
	}
	if !strings.Contains(last, `"world"`) || !strings.Contains(last, "greetings") {
		t.Fatalf("the printed AWS CLI commands did not write and read the item back:\n%s", last)
	}
}
