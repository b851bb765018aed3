package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// TestDevSecureByDefault runs `veltrix dev` as it starts by default: with
// the dev PKI, TLS on every listener. The sample import goes through the
// migrator (INGEST: the migrator writes to the storage nodes over mutual
// TLS); the CLI with the dev CA and the admin certificate reaches the router
// and the migrator; a plaintext client is refused; the printed commands
// name the CA and the certificate.
func TestDevSecureByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a dev stack (CI runs it: make test has no -short)")
	}
	dir := t.TempDir()
	router, mig := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- dev(ctx, &out, devOptions{dataDir: dir, listen: router, migAddr: mig, dynamoAddr: "127.0.0.1:0", logLevel: "error"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	}()
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
	pki := filepath.Join(dir, "pki")
	ca, cert, key := filepath.Join(pki, "ca.pem"), filepath.Join(pki, "admin.pem"), filepath.Join(pki, "admin-key.pem")
	printed := out.String()
	for _, want := range []string{"-cacert " + ca + " -cert " + cert + " -key " + key, "--cacert " + ca + " --cert " + cert + " --key " + key, "https://"} {
		if !strings.Contains(printed, want) {
			t.Errorf("dev output lacks %q:\n%s", want, printed)
		}
	}

	secure := []string{"--endpoints", router, "--migrator", mig, "--cacert", ca, "--cert", cert, "--key", key, "--timeout", "5s"}
	if code, stdout, stderr := runCLI(t, nil, append([]string{"status"}, secure...)...); code != 0 {
		t.Fatalf("status over TLS: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, nil, append([]string{"jobs", "get", sampleJobID}, secure...)...); code != 0 || !strings.Contains(stdout, "SUCCEEDED") {
		t.Fatalf("jobs get over TLS: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// The same through the environment, with the CA alone (no client
	// certificate: the router verifies one only if given).
	env := map[string]string{"VELTRIX_CACERT": ca}
	if code, stdout, stderr := runCLI(t, env, "status", "--endpoints", router, "--timeout", "5s"); code != 0 {
		t.Fatalf("status with VELTRIX_CACERT: exit %d\n%s\n%s", code, stdout, stderr)
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
}

// TestDevInsecure: --insecure runs in plaintext and writes no PKI.
func TestDevInsecure(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a dev stack (CI runs it: make test has no -short)")
	}
	dir := t.TempDir()
	code, stdout, stderr := runCLI(t, nil, "dev", "--insecure", "--data-dir", dir, "--no-sample", "--exit-after-ready", "--log-level", "error",
		"--listen-addr", freeAddr(t), "--migrator-addr", freeAddr(t), "--dynamodb-addr", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("dev --insecure: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "-plaintext") || !strings.Contains(stdout, "TLS       off") {
		t.Errorf("dev --insecure output:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki")); err == nil {
		t.Error("dev --insecure wrote a PKI")
	}
}
