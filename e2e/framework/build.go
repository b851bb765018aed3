package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary names, as Binaries.Path and Binaries.Require take them.
const (
	Storage  = "veltrix-storage"
	Router   = "veltrix-router"
	Migrator = "veltrix-migrator"
	CLI      = "veltrix"
	// EtcdHelper is e2e/framework/cmd/etcd-embedded: a real etcd member in
	// its own process, so the tests need nothing installed but Go.
	EtcdHelper = "etcd-embedded"
)

// target says where a binary's main package lives: the module directory
// (relative to the repository root) and the package within it. Building from
// the module directory works both in workspace mode (go.work is found above
// it) and with GOWORK=off (the module's replace lines find its siblings).
type target struct {
	module, pkg string
}

var targets = map[string]target{
	Storage:    {"services/storage", "./cmd/veltrix-storage"},
	Router:     {"services/router", "./cmd/veltrix-router"},
	Migrator:   {"services/migrator", "./cmd/veltrix-migrator"},
	CLI:        {"cmd/veltrix", "."},
	EtcdHelper: {"e2e", "./framework/cmd/etcd-embedded"},
}

// buildTimeout bounds one go build (a cold build of a service on two cores
// takes about a minute).
const buildTimeout = 8 * time.Minute

// builds caches every binary built by this test process.
var builds struct {
	mu      sync.Mutex
	dir     string
	dirErr  error
	results map[string]*buildResult
}

type buildResult struct {
	once    sync.Once
	path    string
	skip    string // the package does not exist (yet)
	err     error
	elapsed time.Duration
}

// Binaries are the paths of the binaries built for this test process.
type Binaries struct {
	// Root is the repository root.
	Root string
	// Storage, Router and Etcd are always built.
	Storage, Router, Etcd string
}

// Build builds veltrix-storage, veltrix-router and the etcd helper, once per
// test process, into a temporary directory (removed by Main), and returns
// their paths. The migrator and the CLI are built on demand by Require or
// Path. A build failure fails the test with the compiler's output.
func Build(t testing.TB) Binaries {
	t.Helper()
	b := Binaries{Root: RepoRoot(t)}
	b.Storage = b.Path(t, Storage)
	b.Router = b.Path(t, Router)
	b.Etcd = b.Path(t, EtcdHelper)
	return b
}

// Path returns the path of binary name (one of the constants above),
// building it on first use. It skips the test if the binary's package does
// not exist yet, and fails it if the build fails.
func (b Binaries) Path(t testing.TB, name string) string {
	t.Helper()
	r := build(t, b.Root, name)
	if r.skip != "" {
		t.Skip(r.skip)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

// Require builds the named binaries (in order) and skips the test, naming
// the binary, if one's package does not exist yet. Ask for a binary before
// the binaries that link against it: the CLI links the migrator's server
// package, so Require(t, Migrator, CLI) skips on a missing migrator instead
// of failing to build the CLI.
func (b Binaries) Require(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		b.Path(t, n)
	}
}

func build(t testing.TB, root, name string) *buildResult {
	t.Helper()
	tg, ok := targets[name]
	if !ok {
		t.Fatalf("framework: unknown binary %q", name)
	}
	builds.mu.Lock()
	if builds.results == nil {
		builds.results = map[string]*buildResult{}
		builds.dir, builds.dirErr = os.MkdirTemp("", "veltrix-e2e-bin-")
	}
	r := builds.results[name]
	if r == nil {
		r = &buildResult{}
		builds.results[name] = r
	}
	dir, dirErr := builds.dir, builds.dirErr
	builds.mu.Unlock()
	if dirErr != nil {
		t.Fatalf("framework: temp dir for binaries: %v", dirErr)
	}
	built := false
	r.once.Do(func() {
		built = true
		pkgDir := filepath.Join(root, tg.module, filepath.FromSlash(tg.pkg))
		if _, err := os.Stat(filepath.Join(pkgDir, "main.go")); err != nil {
			r.skip = fmt.Sprintf("framework: %s is not built: its package %s does not exist yet (%v)", name, filepath.Join(tg.module, tg.pkg), err)
			return
		}
		r.path = filepath.Join(dir, name)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", r.path, tg.pkg)
		cmd.Dir = filepath.Join(root, tg.module)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			r.err = fmt.Errorf("framework: go build %s (in %s) failed: %v\n%s", tg.pkg, cmd.Dir, err, out.String())
			return
		}
		r.elapsed = time.Since(start)
	})
	if built && r.err == nil && r.skip == "" {
		t.Logf("framework: %s built in %s", name, r.elapsed.Round(time.Millisecond))
	}
	return r
}

// goTool finds the go command: on PATH, else the one that built this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

var root struct {
	once sync.Once
	dir  string
	err  error
}

// RepoRoot is the repository root: the directory of the go.work that `go
// env GOWORK` reports, or else the first directory above the working
// directory that holds go.work, or proto/ and services/ (GOWORK=off).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root.once.Do(func() { root.dir, root.err = findRoot() })
	if root.err != nil {
		t.Fatal(root.err)
	}
	return root.dir
}

func findRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool(), "env", "GOWORK").Output(); err == nil {
		if gw := strings.TrimSpace(string(out)); gw != "" && gw != "off" {
			return filepath.Dir(gw), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("framework: working directory: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isFile(filepath.Join(dir, "go.work")) || (isDir(filepath.Join(dir, "proto")) && isDir(filepath.Join(dir, "services"))) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("framework: no repository root (go.work, or proto/ and services/) above %s", wd)
		}
	}
}

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && !st.IsDir() }
func isDir(p string) bool  { st, err := os.Stat(p); return err == nil && st.IsDir() }

var grpcurl struct {
	once sync.Once
	path string
	err  error
}

// Grpcurl returns the pinned grpcurl: <repo>/bin/grpcurl as `make tools`
// builds it, or else one built from tools/go.mod into the binaries'
// temporary directory.
func Grpcurl(t testing.TB) string {
	t.Helper()
	r := RepoRoot(t)
	grpcurl.once.Do(func() {
		if p := filepath.Join(r, "bin", "grpcurl"); isFile(p) {
			grpcurl.path = p
			return
		}
		builds.mu.Lock()
		if builds.results == nil {
			builds.results = map[string]*buildResult{}
			builds.dir, builds.dirErr = os.MkdirTemp("", "veltrix-e2e-bin-")
		}
		dir, dirErr := builds.dir, builds.dirErr
		builds.mu.Unlock()
		if dirErr != nil {
			grpcurl.err = dirErr
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		p := filepath.Join(dir, "grpcurl")
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", p, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
		cmd.Dir = filepath.Join(r, "tools")
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			grpcurl.err = fmt.Errorf("framework: %s missing and building grpcurl from tools/go.mod failed: %v\n%s", filepath.Join(r, "bin", "grpcurl"), err, out)
			return
		}
		grpcurl.path = p
	})
	if grpcurl.err != nil {
		t.Fatal(grpcurl.err)
	}
	return grpcurl.path
}

// Main runs the tests of a package that uses the framework, then removes
// the binaries it built and checks that no process it started is still
// running (any that is gets killed and fails the run). Call it from
// TestMain: os.Exit(framework.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if orphans := killOrphans(); len(orphans) > 0 {
		fmt.Fprintf(os.Stderr, "framework: processes still running after the tests, killed: %s\n", strings.Join(orphans, ", "))
		if code == 0 {
			code = 1
		}
	}
	builds.mu.Lock()
	dir := builds.dir
	builds.mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	return code
}
