package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain removes the built helper and checks for orphans, then for
// goroutines left running (goleak.VerifyTestMain composed with Main).
func TestMain(m *testing.M) {
	code := Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// etcdProcess returns a not yet started etcd helper process, stopped when
// the test ends.
func etcdProcess(t *testing.T, args ...string) *Process {
	t.Helper()
	if testing.Short() {
		t.Skip("framework: spawns processes; skipped with -short")
	}
	bin := Binaries{Root: RepoRoot(t)}.Path(t, EtcdHelper)
	dir := t.TempDir()
	if args == nil {
		args = []string{"--data-dir", filepath.Join(dir, "etcd"), "--unsafe-no-fsync"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{
		Name: "etcd", LogPath: filepath.Join(dir, "etcd.log"), bin: bin, args: args,
		ports:        []*portFlag{{flag: "client-port", grpc: true}, {flag: "peer-port"}},
		startTimeout: 30 * time.Second, stopTimeout: 10 * time.Second, ctx: ctx,
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		cancel()
		if p.Running() {
			t.Errorf("%s still running after cleanup", p.Name)
		}
	})
	return p
}

func TestRestartKeepsFreePortAndMovesOffTakenOne(t *testing.T) {
	p := etcdProcess(t)
	if err := p.start(false); err != nil {
		t.Fatal(err)
	}
	first := p.Addr()
	p.Kill(t)
	if p.exitedOnItsOwn() {
		t.Error("a killed process counts as exited on its own")
	}
	p.Restart(t)
	if p.Addr() != first {
		t.Errorf("restart moved from free %s to %s", first, p.Addr())
	}

	p.Kill(t)
	ln, err := net.Listen("tcp", first)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p.Restart(t)
	if p.Addr() == first {
		t.Errorf("restarted on %s, which is taken", first)
	}
	if !strings.Contains(p.Log(), "start #3") {
		t.Errorf("log lacks the third start's header:\n%s", p.Log())
	}
}

func TestPortTakenBeforeBindIsRetried(t *testing.T) {
	p := etcdProcess(t)
	var taken net.Listener
	testHookBeforeSpawn = func(p *Process) {
		if taken == nil {
			var err error
			if taken, err = net.Listen("tcp", p.addrLocked()); err != nil {
				t.Errorf("take port: %v", err)
			}
		}
	}
	defer func() { testHookBeforeSpawn = nil }()
	if err := p.start(false); err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if p.Addr() == taken.Addr().String() {
		t.Errorf("serving on %s, which the test holds", p.Addr())
	}
	if log := p.Log(); !strings.Contains(log, "address already in use") || !strings.Contains(log, "(attempt 2)") {
		t.Errorf("want a failed first attempt and a second one in the log:\n%s", log)
	}
}

func TestExitBeforeServingReportsLog(t *testing.T) {
	p := etcdProcess(t, "--unsafe-no-fsync") // no --data-dir: exits 2
	err := p.start(false)
	if err == nil {
		t.Fatal("start succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "exited") || !strings.Contains(msg, "--data-dir is required") {
		t.Errorf("error %q does not say it exited and quote the log", msg)
	}
}

func TestCrashIsNoticedAndOrphansAreKilled(t *testing.T) {
	p := etcdProcess(t)
	if err := p.start(false); err != nil {
		t.Fatal(err)
	}
	// Killed behind the framework's back: a crash.
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(killTimeout); err == nil {
		t.Error("a SIGKILLed process exited 0")
	}
	if !p.exitedOnItsOwn() {
		t.Error("a crash is not told apart from a requested stop")
	}

	p.Restart(t)
	pid := p.PID()
	orphans := killOrphans()
	if len(orphans) != 1 || !strings.Contains(orphans[0], "pid "+strconv.Itoa(pid)) {
		t.Errorf("killOrphans = %v; want the etcd process %d", orphans, pid)
	}
	if p.Running() {
		t.Error("orphan still running")
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("pid %d: kill -0 = %v; want ESRCH (no such process)", pid, err)
	}
}

func TestWipeDataDirAndStartFails(t *testing.T) {
	p := etcdProcess(t)
	if err := p.start(false); err != nil {
		t.Fatal(err)
	}
	dir := p.DataDir()
	if dir == "" || !strings.HasSuffix(dir, "etcd") {
		t.Fatalf("DataDir = %q", dir)
	}
	p.Stop(t)
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Fatalf("%s is empty after a run", dir)
	}
	p.WipeDataDir(t)
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("after the wipe %s holds %v (%v)", dir, entries, err)
	}
	p.Restart(t) // etcd starts afresh on the empty directory

	bad := etcdProcess(t, "--data-dir", t.TempDir(), "--no-such-flag")
	out := bad.StartFails(t)
	if !strings.Contains(out, "no-such-flag") {
		t.Errorf("StartFails returned %q, want the run's log", out)
	}
	if bad.exitedOnItsOwn() {
		t.Error("an exit StartFails expected counts as exited on its own")
	}
}
