// Package peers starts the npm stand-ins for AWS services that Veltrix's
// migrator is tested against (see shared/PEERS.md):
//
//   - kinesalite, for Kinesis Data Streams (the Kinesis Data Streams for
//     DynamoDB consumer, shard splits and merges included);
//   - dynalite, for a live DynamoDB table (the parallel Scan source).
//
// Each Start function runs the peer's Node.js package from this folder's
// node_modules (installed by `npm ci` here, from the committed
// package-lock.json) on 127.0.0.1 and a free port, with its data in the
// test's temporary directory, waits until the port answers, and stops the
// process by its PID when the test ends: SIGTERM, then SIGKILL. On Linux a
// peer also dies with the test binary (PR_SET_PDEATHSIG). abort-guard.js is
// preloaded into both: they crash when a client abandons a request in
// flight, which tests that cancel calls do.
//
// When node or the packages are missing the test is skipped with a message
// saying how to install them, except in CI (the environment variable CI is
// "true" or "1"), where it fails: CI must not pass by skipping.
package peers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the waits on a peer.
const (
	// StartTimeout bounds the wait for a started peer to accept
	// connections. Node starts in well under a second; CI machines are slow.
	StartTimeout = 30 * time.Second
	// stopTimeout bounds the wait for a peer to exit after SIGTERM before
	// it is killed.
	stopTimeout = 5 * time.Second
	// bindAttempts is how many times a peer whose port was taken between
	// choosing and binding it is started again on a fresh port.
	bindAttempts = 3
	// logTailBytes is how much of a peer's output a failure prints.
	logTailBytes = 16 << 10
)

// DirEnv names an environment variable that overrides where the package
// looks for its node_modules (a folder holding package.json and
// node_modules). Default: the folder of this source file.
const DirEnv = "VELTRIX_PEERS_DIR"

// InstallCommand is what installs the peers; messages print it.
const InstallCommand = "npm ci --no-audit --no-fund --prefix e2e/peers"

// kinesaliteScript starts kinesalite on loopback only: its CLI binds every
// interface. Stream changes take 50ms instead of 500ms so tests that split
// shards stay fast.
const kinesaliteScript = `require('kinesalite')({path: process.argv[2], createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50}).listen(+process.argv[1], '127.0.0.1')`

// StartKinesalite starts kinesalite and returns its endpoint,
// http://127.0.0.1:PORT. Any region and static credentials work; streams
// become ACTIVE 50ms after CreateStream, SplitShard and MergeShards.
func StartKinesalite(t testing.TB) string {
	t.Helper()
	return start(t, "kinesalite", func(root, data string, port int) []string {
		return []string{"--require", filepath.Join(root, "abort-guard.js"), "-e", kinesaliteScript, strconv.Itoa(port), data}
	})
}

// StartDynalite starts dynalite and returns its endpoint,
// http://127.0.0.1:PORT. Tables become ACTIVE 50ms after CreateTable; any
// signature is accepted. It has no Streams, transactions or exports.
func StartDynalite(t testing.TB) string {
	t.Helper()
	return start(t, "dynalite", dynaliteArgs)
}

func dynaliteArgs(root, data string, port int) []string {
	return []string{"--require", filepath.Join(root, "abort-guard.js"),
		filepath.Join(root, "node_modules", "dynalite", "cli.js"),
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--path", data,
		"--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"}
}

// Dynalite is a dynalite process a fault test stops and starts again: its
// data is a LevelDB store in the test's temporary directory (--path), so a
// restart on the same port and directory serves every write it
// acknowledged before it was killed (LevelDB's log is written before the
// answer; a SIGKILL loses the process, not the kernel's page cache).
type Dynalite struct {
	node, root, data string
	port             int
	mu               sync.Mutex
	p                *process
}

// StartDynaliteProcess starts dynalite as StartDynalite does and returns
// its handle; it is stopped when the test ends.
func StartDynaliteProcess(t testing.TB) *Dynalite {
	t.Helper()
	p := startProcess(t, "dynalite", dynaliteArgs)
	d := &Dynalite{p: p, node: p.node, root: p.root, data: p.data, port: p.port}
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.p.stop(); err != nil {
			t.Errorf("peers: %v", err)
		}
	})
	return d
}

// Endpoint is dynalite's URL, the same across restarts.
func (d *Dynalite) Endpoint() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
}

// PID is the running process's id.
func (d *Dynalite) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.p.cmd.Process.Pid
}

// Kill sends SIGKILL to the process by its PID and waits until it is
// reaped: its port refuses connections from then on.
func (d *Dynalite) Kill(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.p.cmd.Process.Kill(); err != nil { // SIGKILL to its PID
		t.Fatalf("peers: kill dynalite (pid %d): %v", d.p.cmd.Process.Pid, err)
	}
	select {
	case <-d.p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("peers: dynalite (pid %d) not reaped %s after SIGKILL", d.p.cmd.Process.Pid, stopTimeout)
	}
}

// Restart starts dynalite again on the same port and data directory and
// waits until it accepts connections. The port is retried while another
// process holds it, up to StartTimeout.
func (d *Dynalite) Restart(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	deadline := time.Now().Add(StartTimeout)
	for {
		p, err := launchAt(d.node, d.root, "dynalite", dynaliteArgs, d.data, d.port)
		if err == nil {
			d.p = p
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatalf("peers: restart dynalite on port %d: %v", d.port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Dir returns the folder holding package.json and node_modules.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(file)
}

// inCI reports whether the tests run in CI, where a missing peer is a
// failure rather than a skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// missing skips the test, or fails it in CI.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// start runs one peer and returns its endpoint. args gets the folder
// holding node_modules, a fresh data directory and a port, and returns
// node's arguments.
func start(t testing.TB, name string, args func(root, data string, port int) []string) string {
	t.Helper()
	return "http://" + startProcess(t, name, args).addr
}

// startProcess is start, returning the process.
func startProcess(t testing.TB, name string, args func(root, data string, port int) []string) *process {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "peers: %s needs Node.js, which is not on PATH (apt-get install -y nodejs npm; then %s)", name, InstallCommand)
	}
	root := Dir()
	pkg := filepath.Join(root, "node_modules", name, "package.json")
	if _, err := os.Stat(pkg); err != nil {
		missing(t, "peers: %s is not installed in %s (run %s)", name, filepath.Join(root, "node_modules"), InstallCommand)
	}
	var lastErr error
	for attempt := 0; attempt < bindAttempts; attempt++ {
		p, err := launch(t, node, root, name, args)
		if err == nil {
			t.Cleanup(func() {
				if err := p.stop(); err != nil {
					t.Errorf("peers: %v", err)
				}
				if t.Failed() {
					t.Logf("peers: %s output (last %d bytes):\n%s", name, logTailBytes, p.tail())
				}
			})
			return p
		}
		lastErr = err
		if !errors.Is(err, errExited) {
			break
		}
	}
	t.Fatalf("peers: start %s: %v", name, lastErr)
	return nil
}

// errExited reports a peer that exited before it accepted connections,
// most often because another process took its port first.
var errExited = errors.New("exited before accepting connections")

// process is a running peer.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has been reaped
	err  error         // its exit, valid once done is closed
	once sync.Once
	// How it was started, to start it again (Dynalite.Restart).
	node, root, data string
	port             int
}

func launch(t testing.TB, node, root, name string, args func(string, string, int) []string) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp(t.TempDir(), name+"-")
	if err != nil {
		return nil, err
	}
	return launchAt(node, root, name, args, data, port)
}

// launchAt runs a peer on port with its data in data and waits until it
// accepts connections.
func launchAt(node, root, name string, args func(string, string, int) []string, data string, port int) (*process, error) {
	cmd := exec.Command(node, args(root, data, port)...)
	// `node -e` resolves require() from its working directory, so it runs
	// where node_modules is; the data lives in the test's temporary folder.
	cmd.Dir = root
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", node, err)
	}
	p := &process{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, out: out, done: make(chan struct{}),
		node: node, root: root, data: data, port: port}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(StartTimeout)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s on %s %w (%v): %s", name, p.addr, errExited, p.err, p.tail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stopErr := p.stop()
			return nil, fmt.Errorf("%s on %s did not accept connections within %s (stop: %v): %s", name, p.addr, StartTimeout, stopErr, p.tail())
		}
	}
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after
// stopTimeout. It returns an error only if the process could not be reaped.
func (p *process) stop() error {
	var err error
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(stopTimeout):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			err = fmt.Errorf("%s (pid %d) was not reaped %s after SIGKILL", p.name, p.cmd.Process.Pid, stopTimeout)
		}
	})
	return err
}

func (p *process) tail() string {
	b := p.out.Bytes()
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the
// test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4*logTailBytes {
		// Keep memory bounded for chatty peers: drop the oldest half.
		rest := append([]byte(nil), s.b.Bytes()[s.b.Len()-2*logTailBytes:]...)
		s.b.Reset()
		s.b.Write(rest)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}
