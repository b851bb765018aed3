package client_test

import (
	"errors"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbidden are the modules a user of the client must never get: the
// servers' libraries. A module is forbidden if its path is one of these or
// lies under one.
var forbidden = []string{
	"go.etcd.io",                    // etcd client and server
	"github.com/cockroachdb/pebble", // the storage engine
	"github.com/prometheus",         // the services' metrics
	"github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus",
	"github.com/veltrixdb/veltrix", // pkg, the services, the CLI; see allowed
}

// allowed are the Veltrix modules the client may depend on.
var allowed = []string{"github.com/veltrixdb/veltrix/pkg/client", "github.com/veltrixdb/veltrix/proto"}

func isForbidden(module string) bool {
	if slices.Contains(allowed, module) {
		return false
	}
	return slices.ContainsFunc(forbidden, func(f string) bool {
		return module == f || strings.HasPrefix(module, f+"/")
	})
}

// goList runs the go command on the client module alone (GOWORK=off: the
// workspace would merge in the other modules' requirements).
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the client's dependencies: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list"}, args...)...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestDependencies keeps the client module importable the way etcd's
// client/v3 is: no package it builds (tests included) and no module in its
// graph belongs to the servers.
func TestDependencies(t *testing.T) {
	t.Run("packages", func(t *testing.T) {
		// Each line: package, its module, the packages it imports.
		lines := goList(t, "-deps", "-test", "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}\t{{join .Imports \" \"}}", "./...")
		if len(lines) < 10 {
			t.Fatalf("go list -deps listed %d packages; want the client's whole graph", len(lines))
		}
		bad := map[string]bool{}
		imports := map[string][]string{}
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 3 {
				t.Fatalf("go list: unexpected line %q", l)
			}
			bad[f[0]] = f[1] != "" && isForbidden(f[1])
			imports[f[0]] = strings.Fields(f[2])
		}
		// Name where the graph crosses into forbidden code, not everything
		// behind the crossing.
		n := 0
		for _, p := range slices.Sorted(maps.Keys(imports)) {
			if bad[p] {
				n++
				continue
			}
			for _, imp := range imports[p] {
				if bad[imp] {
					t.Errorf("%s imports %s", p, imp)
				}
			}
		}
		if n > 0 {
			t.Errorf("the client depends on %d packages of forbidden modules (%s)", n, strings.Join(forbidden, ", "))
		}
	})
	t.Run("modules", func(t *testing.T) {
		// The module graph is what a user's go.sum and downloads get.
		for _, m := range goList(t, "-m", "-f", "{{.Path}}", "all") {
			if isForbidden(m) {
				t.Errorf("module %s is in the client's module graph (go mod why -m %s)", m, m)
			}
		}
	})
}
