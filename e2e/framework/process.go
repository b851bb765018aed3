package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Bounds of the waits on a process. Every wait in the framework has one.
const (
	// DefaultStartTimeout bounds the wait for a started process to answer
	// its health check with SERVING.
	DefaultStartTimeout = 60 * time.Second
	// DefaultStopTimeout bounds the graceful shutdown after SIGTERM before
	// SIGKILL. The services get --shutdown-timeout 5s, well inside it.
	DefaultStopTimeout = 20 * time.Second
	// killTimeout bounds the wait for a SIGKILLed process to be reaped.
	killTimeout = 10 * time.Second
	// bindAttempts is how many times a process whose port was taken between
	// choosing it and binding it is started again on fresh ports.
	bindAttempts = 5
	// logDumpBytes is how much of a process's log is printed on failure.
	logDumpBytes = 256 << 10
)

// Process is a spawned binary: one storage node, router, migrator or etcd.
// Its stdout and stderr go to its own log file. Methods are safe for
// concurrent use.
type Process struct {
	// Name identifies the process in messages: etcd, storage-1, router-2,
	// migrator.
	Name string
	// LogPath is the process's log file; restarts append to it.
	LogPath string

	bin          string
	args         []string
	ports        []*portFlag
	startTimeout time.Duration
	stopTimeout  time.Duration
	// ctx kills the process when cancelled (exec.CommandContext): the last
	// resort of the cleanup.
	ctx context.Context
	// dialTLS makes the client TLS of the framework's own dials (health,
	// readiness) to a secured process, from the files as they are now (a
	// test may have rotated them); nil: plaintext.
	dialTLS func() (*tls.Config, error)

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run has been reaped
	exitErr error         // the current run's exit, valid once done is closed
	starts  int
	// signalled is set when the test (or the framework) signals the
	// current run, so an exit nobody asked for can be told apart.
	signalled bool
	// exitExpected is set for a run started by StartFails: its exit is
	// what the test wanted.
	exitExpected bool
}

// portFlag is a flag carrying a loopback port.
type portFlag struct {
	flag     string
	hostPort bool // the value is 127.0.0.1:PORT, not just PORT
	grpc     bool // the address the health check dials
	port     int
}

func (f *portFlag) arg() string {
	if f.hostPort {
		return "--" + f.flag + "=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port))
	}
	return "--" + f.flag + "=" + strconv.Itoa(f.port)
}

// Addr is the process's gRPC address (127.0.0.1:PORT).
func (p *Process) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrLocked()
}

func (p *Process) addrLocked() string {
	for _, f := range p.ports {
		if f.grpc {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port))
		}
	}
	return ""
}

// Port returns the port of the flag (e.g. "metrics-addr"), 0 if none.
func (p *Process) Port(flag string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.ports {
		if f.flag == flag {
			return f.port
		}
	}
	return 0
}

// Args returns the command line of the current (or last) run.
func (p *Process) Args() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.argsLocked()
}

func (p *Process) argsLocked() []string {
	out := append([]string(nil), p.args...)
	for _, f := range p.ports {
		out = append(out, f.arg())
	}
	return out
}

// PID is the current run's process id, 0 if never started.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// start starts the process and waits until it serves. If it exits because
// a port was taken meanwhile, it starts it again on fresh ports. keepPorts
// reuses the ports of the last run where they are free.
func (p *Process) start(keepPorts bool) error {
	var lastErr error
	for attempt := 1; attempt <= bindAttempts; attempt++ {
		if err := p.choosePorts(keepPorts && attempt == 1); err != nil {
			return err
		}
		if testHookBeforeSpawn != nil {
			testHookBeforeSpawn(p)
		}
		logStart, err := p.spawn(attempt)
		if err != nil {
			return err
		}
		err = p.waitServing()
		if err == nil {
			return nil
		}
		lastErr = err
		if p.Running() {
			// Up but not serving: stop it before giving up.
			_ = p.signalAndWait(syscall.SIGKILL, killTimeout)
			return err
		}
		if !bytes.Contains(p.logSince(logStart), []byte("address already in use")) {
			return err
		}
	}
	return fmt.Errorf("%s: ports kept being taken: %w", p.Name, lastErr)
}

// testHookBeforeSpawn, when set by a test, runs after the ports are chosen
// and before the process is spawned.
var testHookBeforeSpawn func(*Process)

// choosePorts picks a free port for every port flag; with keep, a port of
// the last run that is still free is kept.
func (p *Process) choosePorts(keep bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.ports {
		if keep && f.port != 0 && portFree(f.port) {
			continue
		}
		port, err := FreePort()
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		f.port = port
	}
	return nil
}

// spawn starts one run and returns the log offset where its output begins.
func (p *Process) spawn(attempt int) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return 0, fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("%s: log file: %w", p.Name, err)
	}
	defer f.Close() // the child has its own descriptor
	args := p.argsLocked()
	p.starts++
	fmt.Fprintf(f, "=== framework: %s start #%d (attempt %d) at %s: %s %s\n",
		p.Name, p.starts, attempt, time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(args, " "))
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: log file: %w", p.Name, err)
	}
	cmd := exec.CommandContext(p.ctx, p.bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: start %s: %w", p.Name, p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.signalled, p.exitExpected = cmd, done, nil, false, false
	live.add(p, cmd)
	go func() {
		err := cmd.Wait()
		live.remove(cmd)
		p.mu.Lock()
		if p.cmd == cmd {
			p.exitErr = err
		}
		p.mu.Unlock()
		close(done)
	}()
	return off, nil
}

// waitServing polls the gRPC health check until it says SERVING, the
// process exits, or the start timeout passes.
func (p *Process) waitServing() error {
	p.mu.Lock()
	addr, done := p.addrLocked(), p.done
	p.mu.Unlock()
	cc, err := p.dial(addr)
	if err != nil {
		return fmt.Errorf("%s: dial %s: %w", p.Name, addr, err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(p.startTimeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("health status %s", resp.GetStatus())
		}
		last = err
		select {
		case <-done:
			return fmt.Errorf("%s exited (%v) before serving on %s; log tail:\n%s", p.Name, p.ExitErr(), addr, p.LogTail(4096))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not SERVING on %s after %s (last: %v); log tail:\n%s", p.Name, addr, p.startTimeout, last, p.LogTail(4096))
		}
	}
}

// exitedOnItsOwn reports a run that ended without being signalled: a crash.
func (p *Process) exitedOnItsOwn() bool {
	if p.Running() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done != nil && !p.signalled && !p.exitExpected
}

// dial dials the process's gRPC address with dialFast, over TLS when the
// process is secured.
func (p *Process) dial(addr string) (*grpc.ClientConn, error) {
	var conf *tls.Config
	if p.dialTLS != nil {
		var err error
		if conf, err = p.dialTLS(); err != nil {
			return nil, fmt.Errorf("%s: client TLS: %w", p.Name, err)
		}
	}
	return dialFast(addr, conf)
}

// dialFast dials a process that may not listen yet: gRPC's default
// reconnect backoff (1s, growing) would delay noticing it is up. A nil
// tlsConf dials in plaintext.
func dialFast(addr string, tlsConf *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
}

// ExitErr is the last run's exit error (nil for exit code 0 or while
// running).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Signal sends sig to the running process.
func (p *Process) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return fmt.Errorf("%s: never started", p.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return err
	}
	p.signalled = true
	return nil
}

// Wait waits up to timeout for the current run to exit and returns its
// exit error.
func (p *Process) Wait(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s: never started", p.Name)
	}
	select {
	case <-done:
		return p.ExitErr()
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d): still running after %s", p.Name, p.PID(), timeout)
	}
}

// errStillRunning marks a process that did not exit in time.
var errStillRunning = errors.New("still running")

// signalAndWait signals a running process and waits for it to exit. It
// returns errStillRunning on timeout; otherwise nil (the exit status is in
// ExitErr).
func (p *Process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %s: %w", p.Name, sig, err)
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) after %s: %w", p.Name, p.PID(), sig, errStillRunning)
	}
}

// Kill sends SIGKILL and waits until the process has exited: a crash, with
// no chance to flush or deregister.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if err := p.signalAndWait(syscall.SIGKILL, killTimeout); err != nil {
		t.Fatalf("kill %s: %v", p.Name, err)
	}
	t.Logf("framework: %s killed (SIGKILL)", p.Name)
}

// Stop sends SIGTERM and waits for the graceful shutdown; a process still
// running after the stop timeout is killed and the test fails, as does a
// non-zero exit status.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Errorf("stop %s: %v", p.Name, err)
	}
}

// stop is Stop without a test: SIGTERM, then SIGKILL after the timeout.
func (p *Process) stop() error {
	if !p.Running() {
		return nil
	}
	err := p.signalAndWait(syscall.SIGTERM, p.stopTimeout)
	if errors.Is(err, errStillRunning) {
		if kerr := p.signalAndWait(syscall.SIGKILL, killTimeout); kerr != nil {
			return fmt.Errorf("%w; then %w", err, kerr)
		}
		return fmt.Errorf("no graceful shutdown within %s after SIGTERM, killed: %w", p.stopTimeout, err)
	}
	if err != nil {
		return err
	}
	if e := p.ExitErr(); e != nil {
		return fmt.Errorf("exited with %v after SIGTERM (want 0); log tail:\n%s", e, p.LogTail(4096))
	}
	return nil
}

// Restart starts a stopped or killed process again with the same flags and
// data directory, on the same ports where they are still free, and waits
// until it serves.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	if p.Running() {
		t.Fatalf("restart %s: still running (pid %d); Stop or Kill it first", p.Name, p.PID())
	}
	before := p.Addr()
	if err := p.start(true); err != nil {
		t.Fatalf("restart %s: %v", p.Name, err)
	}
	if after := p.Addr(); after != before {
		t.Logf("framework: %s restarted on %s (its old address %s was taken)", p.Name, after, before)
	} else {
		t.Logf("framework: %s restarted on %s (pid %d)", p.Name, after, p.PID())
	}
}

// StartFails starts a stopped or killed process again, with the same flags
// and data directory, when the test expects it to refuse to start: it must
// exit with a non-zero status without ever answering its health check with
// SERVING. It fails the test otherwise (and kills a process that serves),
// and returns what the run logged.
func (p *Process) StartFails(t testing.TB) string {
	t.Helper()
	if p.Running() {
		t.Fatalf("start %s: still running (pid %d); Stop or Kill it first", p.Name, p.PID())
	}
	if err := p.choosePorts(true); err != nil {
		t.Fatal(err)
	}
	off, err := p.spawn(1)
	if err != nil {
		t.Fatal(err)
	}
	err = p.waitServing()
	if err == nil || p.Running() {
		_ = p.signalAndWait(syscall.SIGKILL, killTimeout)
		t.Fatalf("%s started (%v), want it to refuse to start; log tail:\n%s", p.Name, err, p.LogTail(4096))
	}
	p.mu.Lock()
	p.exitExpected = true
	exit := p.exitErr
	p.mu.Unlock()
	out := string(p.logSince(off))
	if exit == nil {
		t.Fatalf("%s refused to start but exited with status 0; log:\n%s", p.Name, out)
	}
	t.Logf("framework: %s refused to start as expected (%v)", p.Name, exit)
	return out
}

// DataDir is the process's --data-dir, "" if it has none.
func (p *Process) DataDir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.args {
		switch {
		case (a == "--data-dir" || a == "-data-dir") && i+1 < len(p.args):
			return p.args[i+1]
		case strings.HasPrefix(a, "--data-dir="):
			return strings.TrimPrefix(a, "--data-dir=")
		}
	}
	return ""
}

// WipeDataDir empties the data directory of a stopped process, as a disk
// replaced after a failure would be: the next start finds an empty
// directory.
func (p *Process) WipeDataDir(t testing.TB) {
	t.Helper()
	if p.Running() {
		t.Fatalf("wipe %s: still running (pid %d); Stop or Kill it first", p.Name, p.PID())
	}
	dir := p.DataDir()
	if dir == "" {
		t.Fatalf("wipe %s: it has no --data-dir", p.Name)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("wipe %s: %v", p.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("wipe %s: %v", p.Name, err)
	}
	t.Logf("framework: %s data directory %s wiped", p.Name, dir)
}

// Log returns the whole log file.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// LogTail returns at most the last n bytes of the log, from a line start.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	if len(b) <= n {
		return string(b)
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return "…\n" + string(b)
}

func (p *Process) logSince(off int64) []byte {
	b, err := os.ReadFile(p.LogPath)
	if err != nil || off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

// childEnv is the test's environment without VELTRIX_* variables, so a
// developer's shell cannot point the spawned processes elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VELTRIX_") {
			env = append(env, kv)
		}
	}
	return env
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Someone else can take it before it is used: the framework starts a
// process again on fresh ports when it fails to bind.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// registry tracks every running process of the test binary, for Main's
// orphan check.
type registry struct {
	mu    sync.Mutex
	procs map[*exec.Cmd]*Process
}

var live = &registry{procs: map[*exec.Cmd]*Process{}}

func (l *registry) add(p *Process, cmd *exec.Cmd) {
	l.mu.Lock()
	l.procs[cmd] = p
	l.mu.Unlock()
}

func (l *registry) remove(cmd *exec.Cmd) {
	l.mu.Lock()
	delete(l.procs, cmd)
	l.mu.Unlock()
}

// killOrphans kills every process still running and names them.
func killOrphans() []string {
	live.mu.Lock()
	var procs []*Process
	for _, p := range live.procs {
		procs = append(procs, p)
	}
	live.mu.Unlock()
	var names []string
	for _, p := range procs {
		names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.PID()))
		_ = p.signalAndWait(syscall.SIGKILL, killTimeout)
	}
	return names
}
