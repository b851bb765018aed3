package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/veltrixdb/veltrix/cmd/veltrix/internal/bench"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

// compareOwnFlags are bench's flags that --compare sets itself for each
// build's run, or that make no sense there; the others pass through.
var compareOwnFlags = map[string]bool{"compare": true, "rounds": true, "output": true, "cpuprofile": true, "memprofile": true, "v": true, "help": true}

// passThroughFlags is the flags given to this bench, as arguments for each
// build's bench.
func passThroughFlags(fs *pflag.FlagSet) []string {
	var args []string
	// VisitAll, not Visit: a flag set copied from the command's
	// (LocalNonPersistentFlags) keeps Changed but not the set of flags
	// Visit walks.
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed && !compareOwnFlags[f.Name] {
			v := f.Value.String()
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				v = strings.Join(sv.GetSlice(), ",") // String() is "[1,2]", which the flag does not parse
			}
			args = append(args, "--"+f.Name+"="+v)
		}
	})
	return args
}

// compareBuild is one build of a comparison.
type compareBuild struct {
	name, bin string
	// rounds is whether its bench has --rounds (older builds run one
	// round anyway).
	rounds  bool
	reports []*bench.Report
}

// runCompare builds bf.compare and the working tree and runs their benches
// alternately, one round each, bf.o.Rounds times.
func runCompare(ctx context.Context, w io.Writer, command string, bf *benchFlags, args []string) error {
	if bf.output != "table" && bf.output != "json" {
		return usageErr("--output %q: want table or json", bf.output)
	}
	if bf.cpuProfile != "" || bf.memProfile != "" {
		// Each build's bench runs in its own process: a profile of this
		// one would hold neither.
		return usageErr("--cpuprofile and --memprofile do not work with --compare: profile each build's bench on its own")
	}
	if bf.o.Rounds < 1 {
		return usageErr("--rounds %d: want at least 1", bf.o.Rounds)
	}
	progress := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench --compare: "+format+"\n", a...) }
	root, err := gitOutput(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("bench --compare: run inside the veltrix git checkout: %w", err)
	}
	commit, err := gitOutput(ctx, root, "rev-parse", "--verify", bf.compare+"^{commit}")
	if err != nil {
		return usageErr("--compare %q: not a revision of %s: %v", bf.compare, root, err)
	}
	tmp, err := os.MkdirTemp("", "veltrix-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	base := &compareBuild{name: bf.compare + " (" + commit[:min(len(commit), 12)] + ")", bin: filepath.Join(tmp, "veltrix-base")}
	src := filepath.Join(tmp, "src")
	progress("extracting %s into %s", bf.compare, src)
	if err := gitExtract(ctx, root, commit, src); err != nil {
		return err
	}
	progress("building %s", base.name)
	if err := goBuild(ctx, src, base.bin); err != nil {
		return fmt.Errorf("bench --compare: build %s: %w", bf.compare, err)
	}
	work := &compareBuild{name: "working tree", bin: filepath.Join(tmp, "veltrix-new")}
	progress("building the working tree %s", root)
	if err := goBuild(ctx, root, work.bin); err != nil {
		return fmt.Errorf("bench --compare: build the working tree: %w", err)
	}
	for _, b := range []*compareBuild{base, work} {
		help, _ := exec.CommandContext(ctx, b.bin, "bench", "--help").CombinedOutput()
		b.rounds = bytes.Contains(help, []byte("--rounds"))
	}

	for r := 1; r <= bf.o.Rounds; r++ {
		// ABBA: alternate which build goes first, so a trend in the
		// machine's load does not favour one.
		order := []*compareBuild{base, work}
		if r%2 == 0 {
			order[0], order[1] = work, base
		}
		for _, b := range order {
			progress("round %d of %d: %s", r, bf.o.Rounds, b.name)
			rep, err := runBenchBinary(ctx, root, b, args, bf.verbose)
			if err != nil {
				return err
			}
			b.reports = append(b.reports, rep)
		}
	}
	c := bench.Compare(base.name, work.name, base.reports, work.reports)
	c.Command = command
	if bf.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	return c.WriteTable(w)
}

// runBenchBinary runs one round of b's bench with args and reads its JSON
// report.
func runBenchBinary(ctx context.Context, dir string, b *compareBuild, args []string, verbose bool) (*bench.Report, error) {
	a := append([]string{"bench"}, args...)
	a = append(a, "--output=json")
	if b.rounds {
		a = append(a, "--rounds=1")
	}
	if verbose {
		a = append(a, "-v")
	}
	cmd := exec.CommandContext(ctx, b.bin, a...)
	cmd.Dir = dir
	cmd.Env = compareEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if verbose {
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bench --compare: %s %s: %w: %s", b.name, strings.Join(a, " "), err, lastLines(stderr.String(), 10))
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("bench --compare: %s printed no JSON report: %w", b.name, err)
	}
	return &rep, nil
}

// compareEnv is env without the variables that would make each build's
// bench compare again or print something other than one round of JSON.
func compareEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for f := range compareOwnFlags {
			if name == flagenv.Name(f) {
				drop = true
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// gitExtract writes the tree of commit into dir (git archive), without
// touching the checkout's worktrees.
func gitExtract(ctx context.Context, repo, commit, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", commit)
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	xerr := untar(out, dir)
	if xerr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return xerr
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read git archive: %w", err)
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dir)+string(filepath.Separator)) {
			continue // pax_global_header and the like
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(name, 0o755)
		case tar.TypeSymlink:
			err = errors.Join(os.MkdirAll(filepath.Dir(name), 0o755), os.Symlink(h.Linkname, name))
		case tar.TypeReg:
			err = writeFileFrom(name, tr, os.FileMode(h.Mode)&0o777)
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
}

func writeFileFrom(name string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}

// goBuild builds ./cmd/veltrix of the checkout at dir (with its go.work)
// into bin.
func goBuild(ctx context.Context, dir, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/veltrix")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build in %s: %w: %s", dir, err, lastLines(string(out), 20))
	}
	return nil
}
