package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/e2e/cluster"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrator "github.com/veltrixdb/veltrix/services/migrator/server"
	router "github.com/veltrixdb/veltrix/services/router/server"
	storage "github.com/veltrixdb/veltrix/services/storage/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"gopkg.in/yaml.v3"
)

const deployDir = "../deploy"

// migratorMetrics are the migrator's per-job metrics and their labels:
// job_id, not job, which Prometheus' target label would rename to
// exported_job. They are vectors with no series until a job runs, so
// Gather cannot list them; the test asks the migrator's registry whether
// each name is registered instead (see registered).
var migratorMetrics = map[string][]string{
	"veltrix_migrator_items_written_total":         {"job_id"},
	"veltrix_migrator_rejects_total":               {"job_id"},
	"veltrix_migrator_job_progress_ratio":          {"job_id"},
	"veltrix_migrator_bytes_read_total":            {"job_id"},
	"veltrix_migrator_stream_lag_seconds":          {"job_id"},
	"veltrix_migrator_stream_consecutive_failures": {"job_id"},
	"veltrix_migrator_stream_failing_seconds":      {"job_id"},
}

// dynamodbMetrics are the router's DynamoDB endpoint metrics and their
// labels. The live cluster's router runs without --dynamodb-addr, so they
// are declared here; services/router/internal/dynamodb's TestMetrics checks
// the router exports exactly these names and labels.
var dynamodbMetrics = map[string][]string{
	"veltrix_dynamodb_requests_total":                  {"operation"},
	"veltrix_dynamodb_errors_total":                    {"operation", "type"},
	"veltrix_dynamodb_request_duration_seconds_bucket": {"operation", "le"},
	"veltrix_dynamodb_request_duration_seconds_sum":    {"operation"},
	"veltrix_dynamodb_request_duration_seconds_count":  {"operation"},
}

// migrationMetrics are the series of migration mode (pkg/migration's
// Watcher in each router), exported once a table migrates: the dashboard's
// "Migration mode" row shows them.
var migrationMetrics = map[string][]string{
	"veltrix_migration_reads_compared_total":         {"table"},
	"veltrix_migration_mismatches_total":             {"table"},
	"veltrix_migration_mirror_writes_total":          {"table", "result"},
	"veltrix_migration_veltrix_server_errors_total":  {"table"},
	"veltrix_migration_read_duration_seconds_bucket": {"table", "side", "le"},
	"veltrix_migration_read_duration_seconds_sum":    {"table", "side"},
	"veltrix_migration_read_duration_seconds_count":  {"table", "side"},
	"veltrix_migration_phase":                        {"table"},
	"veltrix_migration_cutover_percent":              {"table"},
}

// plannedMetrics are agreed but not exported yet. The dashboard may show
// them; remove an entry once the code exports it.
var plannedMetrics = map[string]bool{}

// dashboardMustShow are the series the dashboard promises (issue #8).
var dashboardMustShow = []string{
	"grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
	"veltrix_storage_cache_hits_total", "veltrix_storage_cache_misses_total",
	"veltrix_router_replica_errors_total", "veltrix_router_hedged_reads_total", "veltrix_router_read_repairs_total",
	"veltrix_storage_applies_total", "veltrix_storage_reads_total",
	"veltrix_storage_pebble_disk_usage_bytes", "veltrix_storage_pebble_read_amplification",
	"veltrix_router_topology_stale", "veltrix_storage_topology_stale",
	"veltrix_storage_hints_pending", "veltrix_router_hints_total", "veltrix_storage_hints_dropped_total",
	"veltrix_migrator_job_progress_ratio", "veltrix_migrator_items_written_total", "veltrix_migrator_rejects_total",
	"veltrix_migrator_stream_lag_seconds",
	"veltrix_migrator_stream_failing_seconds", "veltrix_migrator_stream_consecutive_failures",
	"veltrix_migrator_stream_jobs_failed_total",
	"veltrix_migration_read_duration_seconds_bucket", "veltrix_migration_mismatches_total", "veltrix_migration_reads_compared_total",
	"veltrix_migration_mirror_writes_total", "veltrix_migration_cutover_percent", "veltrix_migration_phase",
}

// targetLabels are the labels Prometheus adds to every scraped series
// (compose's prometheus.yml and the chart's ServiceMonitor).
var targetLabels = []string{"job", "instance", "pod", "zone"}

// deployComponent is what the deployment files must agree on about one
// Veltrix service.
type deployComponent struct {
	name        string
	env         map[string]bool // VELTRIX_* variables the binary reads
	listenPort  int
	metricsPort int
	// probed collects the health service names the deployment files ask
	// for, checked against the live servers at the end (a name a server
	// does not report fails its probe forever).
	probed map[string]string // name → where it is used
}

func (c *deployComponent) probe(name, where string) {
	if _, ok := c.probed[name]; !ok {
		c.probed[name] = where
	}
}

func deployComponents(t *testing.T) map[string]*deployComponent {
	t.Helper()
	fromFlags := func(name string, add func(*flag.FlagSet)) *deployComponent {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		var lf svcmain.LogFlags
		lf.AddFlags(fs)
		add(fs)
		c := &deployComponent{name: name, env: map[string]bool{}, probed: map[string]string{}}
		fs.VisitAll(func(f *flag.Flag) { c.env[flagenv.Name(f.Name)] = true })
		c.listenPort = mustPort(t, fs.Lookup("listen-addr").DefValue)
		c.metricsPort = mustPort(t, fs.Lookup("metrics-addr").DefValue)
		return c
	}
	var sc storage.Config
	var rc router.Config
	st := fromFlags("storage", sc.AddFlags)
	rt := fromFlags("router", rc.AddFlags)
	var mc migrator.Config
	mg := fromFlags("migrator", mc.AddFlags)
	return map[string]*deployComponent{"storage": st, "router": rt, "migrator": mg}
}

// TestDeploy checks the files under deploy/ against each other and against
// the code, with nothing installed but Go: the Dockerfile, the compose stack,
// the Prometheus and Grafana configuration, the dashboard, and the Helm chart.
//
// The dashboard's metric names come from a real in-process cluster (its
// Prometheus registries), so renaming a metric in the code breaks this test
// until the dashboard follows. The same cluster answers the gRPC health
// checks the compose healthchecks and the chart's probes ask for. Flag and
// port names come from the services' own Config.AddFlags.
//
// The chart is rendered only when a helm binary is available: set
// VELTRIX_HELM to its path (`cd tools && go tool -n helm` prints one) or put
// helm on PATH; otherwise that subtest is skipped.
func TestDeploy(t *testing.T) {
	comps := deployComponents(t)
	df := parseDockerfile(t, filepath.Join(deployDir, "docker", "Dockerfile"))
	c := loadCompose(t, filepath.Join(deployDir, "compose", "compose.yaml"), df)
	t.Run("Dockerfile", func(t *testing.T) { checkDockerfile(t, df, comps) })
	t.Run("Compose", func(t *testing.T) { checkCompose(t, c, df, comps) })
	t.Run("Prometheus", func(t *testing.T) { checkPrometheus(t, c, comps) })
	t.Run("Grafana", func(t *testing.T) { checkGrafanaProvisioning(t, c) })
	t.Run("HelmChart", func(t *testing.T) { checkHelmChart(t, comps) })
	t.Run("HelmTemplate", func(t *testing.T) { checkHelmTemplate(t, comps) })
	t.Run("Live", func(t *testing.T) {
		live := startLive(t)
		t.Run("Dashboard", func(t *testing.T) { checkDashboard(t, live) })
		t.Run("Alerts", func(t *testing.T) { checkAlerts(t, live) })
		t.Run("HealthNames", func(t *testing.T) { checkHealthNames(t, live, comps) })
	})
}

// ---------------------------------------------------------------------------
// Dockerfile

type dockerInstr struct{ cmd, args string }

type dockerStage struct {
	name, base string
	instrs     []dockerInstr
}

type dockerfile struct {
	path   string
	text   string
	stages map[string]*dockerStage
}

func parseDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{path: path, text: string(b), stages: map[string]*dockerStage{}}
	var cur *dockerStage
	var logical strings.Builder
	flush := func() {
		line := strings.TrimSpace(logical.String())
		logical.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		if cmd == "FROM" {
			f := strings.Fields(args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			cur = &dockerStage{base: strings.ToLower(f[0])}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur.name = strings.ToLower(f[2])
				if _, dup := df.stages[cur.name]; dup {
					t.Errorf("%s: stage %q defined twice", path, cur.name)
				}
				df.stages[cur.name] = cur
			}
			return
		}
		if cur != nil {
			cur.instrs = append(cur.instrs, dockerInstr{cmd, args})
		}
	}
	for _, line := range strings.Split(df.text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(trimmed)
		flush()
	}
	flush()
	return df
}

// chain returns the stage and its ancestors within the file, root first.
func (df *dockerfile) chain(name string) []*dockerStage {
	var out []*dockerStage
	for s := df.stages[name]; s != nil; s = df.stages[s.base] {
		out = append([]*dockerStage{s}, out...)
	}
	return out
}

func (df *dockerfile) instrs(stage, cmd string) []string {
	var out []string
	for _, s := range df.chain(stage) {
		for _, in := range s.instrs {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
	}
	return out
}

// env is the ENV a stage's image starts with.
func (df *dockerfile) env(stage string) map[string]string {
	env := map[string]string{}
	for _, args := range df.instrs(stage, "ENV") {
		for _, kv := range strings.Fields(args) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	return env
}

// copied reports whether a COPY in the stage's chain writes dest.
func (df *dockerfile) copied(stage, dest string) bool {
	for _, args := range df.instrs(stage, "COPY") {
		f := strings.Fields(args)
		if f[len(f)-1] == dest {
			return true
		}
	}
	return false
}

func checkDockerfile(t *testing.T, df *dockerfile, comps map[string]*deployComponent) {
	if !strings.Contains(df.text, "CGO_ENABLED=0") {
		t.Errorf("%s: binaries must be static (CGO_ENABLED=0)", df.path)
	}
	for _, name := range sortedKeys(comps) {
		comp := comps[name]
		target := "veltrix-" + name
		t.Run(target, func(t *testing.T) {
			if df.stages[target] == nil {
				t.Fatalf("no stage %q", target)
			}
			users := df.instrs(target, "USER")
			if len(users) == 0 || !strings.HasPrefix(users[len(users)-1], "65532") {
				t.Errorf("runs as %v; want numeric user 65532", users)
			}
			env := df.env(target)
			for _, v := range []struct {
				name string
				port int
			}{{"VELTRIX_LISTEN_ADDR", comp.listenPort}, {"VELTRIX_METRICS_ADDR", comp.metricsPort}} {
				if want := fmt.Sprintf("0.0.0.0:%d", v.port); env[v.name] != want {
					t.Errorf("ENV %s=%q; want %q (all interfaces, the binary's default port)", v.name, env[v.name], want)
				}
			}
			for k := range env {
				if strings.HasPrefix(k, flagenv.Prefix) && !comp.env[k] {
					t.Errorf("ENV %s: the binary has no such flag", k)
				}
			}
			var exposed []int
			for _, args := range df.instrs(target, "EXPOSE") {
				for _, p := range strings.Fields(args) {
					exposed = append(exposed, mustPort(t, ":"+strings.TrimSuffix(p, "/tcp")))
				}
			}
			for _, p := range []int{comp.listenPort, comp.metricsPort} {
				if !slices.Contains(exposed, p) {
					t.Errorf("EXPOSE %v lacks %d", exposed, p)
				}
			}
			bin := "/usr/local/bin/" + target
			if !df.copied(target, bin) {
				t.Errorf("no COPY to %s", bin)
			}
			if ep := df.instrs(target, "ENTRYPOINT"); len(ep) == 0 || !strings.Contains(ep[len(ep)-1], `"`+bin+`"`) {
				t.Errorf("ENTRYPOINT %v; want %s", ep, bin)
			}
			// The build stage compiles ./services/<name>/cmd/veltrix-<name>.
			pkg := "./services/" + name + "/cmd/" + target
			if !strings.Contains(df.text, pkg) {
				t.Errorf("no stage builds %s", pkg)
			} else if _, err := os.Stat(filepath.Join("..", pkg)); err != nil {
				if name == "migrator" {
					t.Logf("%s does not exist yet: the migrator image cannot be built until it does", pkg)
				} else {
					t.Errorf("%s: %v", pkg, err)
				}
			}
			hc := df.instrs(target, "HEALTHCHECK")
			if len(hc) == 0 {
				t.Fatal("no HEALTHCHECK")
			}
			_, cmdJSON, ok := strings.Cut(hc[len(hc)-1], "CMD ")
			var argv []string
			if !ok || json.Unmarshal([]byte(cmdJSON), &argv) != nil {
				t.Fatalf("HEALTHCHECK %q: want exec form CMD [...] (distroless has no shell)", hc[len(hc)-1])
			}
			checkProbeArgv(t, "Dockerfile HEALTHCHECK", argv, comp, comp.listenPort)
			if !df.copied(target, argv[0]) {
				t.Errorf("HEALTHCHECK runs %s, which no COPY puts in the image", argv[0])
			}
			if name == "storage" {
				if vols := df.instrs(target, "VOLUME"); len(vols) == 0 || !strings.Contains(vols[0], `"`+env["VELTRIX_DATA_DIR"]+`"`) {
					t.Errorf("VOLUME %v; want the data dir %q", vols, env["VELTRIX_DATA_DIR"])
				}
			}
		})
	}
	if df.stages["veltrix"] == nil {
		t.Errorf("no stage for the CLI (veltrix)")
	}
	// The per-Dockerfile ignore file must not hide what the build needs.
	ign, err := os.ReadFile(df.path + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ign), "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), "/")
		for _, need := range []string{"go.work", "go.work.sum", "proto", "pkg", "services", "cmd", "*.go", "**/*.go", "**/go.mod", "**/go.sum"} {
			if line == need {
				t.Errorf("%s.dockerignore excludes %q, which the build needs", df.path, line)
			}
		}
	}
}

// checkProbeArgv checks a grpc_health_probe command line: it asks the
// component's gRPC port and a health name the component reports.
func checkProbeArgv(t *testing.T, where string, argv []string, comp *deployComponent, port int) {
	t.Helper()
	if len(argv) == 0 || filepath.Base(argv[0]) != "grpc_health_probe" {
		t.Errorf("%s: %v; want grpc_health_probe", where, argv)
		return
	}
	var addr, service string
	for _, a := range argv[1:] {
		if v, ok := strings.CutPrefix(a, "-addr="); ok {
			addr = v
		}
		if v, ok := strings.CutPrefix(a, "-service="); ok {
			service = v
		}
	}
	if addr == "" {
		t.Errorf("%s: %v has no -addr", where, argv)
		return
	}
	if p := mustPort(t, addr); p != port {
		t.Errorf("%s: probes port %d; the gRPC server listens on %d", where, p, port)
	}
	comp.probe(service, where)
}

// ---------------------------------------------------------------------------
// Compose

type composeFile struct {
	dir      string
	Services map[string]*composeService `yaml:"services"`
	Volumes  map[string]any             `yaml:"volumes"`
}

type composeService struct {
	Image       string   `yaml:"image"`
	Build       any      `yaml:"build"`
	Hostname    string   `yaml:"hostname"`
	Profiles    []string `yaml:"profiles"`
	Command     []string `yaml:"command"`
	Ports       []any    `yaml:"ports"`
	Volumes     []any    `yaml:"volumes"`
	Environment any      `yaml:"environment"`
	DependsOn   any      `yaml:"depends_on"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`

	// Derived.
	name      string
	component string // storage, router, migrator, cli, or "" (not Veltrix)
	env       map[string]string
}

type composeBuild struct{ context, dockerfile, target string }

func (s *composeService) build() *composeBuild {
	switch b := s.Build.(type) {
	case string:
		return &composeBuild{context: b, dockerfile: "Dockerfile"}
	case map[string]any:
		cb := &composeBuild{dockerfile: "Dockerfile"}
		cb.context, _ = b["context"].(string)
		if d, ok := b["dockerfile"].(string); ok {
			cb.dockerfile = d
		}
		cb.target, _ = b["target"].(string)
		return cb
	}
	return nil
}

type composeMount struct{ source, target string } // source "" for anonymous

func (s *composeService) mounts(t *testing.T) []composeMount {
	var out []composeMount
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string:
			f := strings.Split(v, ":")
			if len(f) == 1 {
				out = append(out, composeMount{target: f[0]})
			} else {
				out = append(out, composeMount{source: f[0], target: f[1]})
			}
		case map[string]any:
			src, _ := v["source"].(string)
			dst, _ := v["target"].(string)
			out = append(out, composeMount{src, dst})
		default:
			t.Errorf("service %s: volume %v: unknown syntax", s.name, v)
		}
	}
	return out
}

// publishedPorts returns host port → container port.
func (s *composeService) publishedPorts(t *testing.T) map[string]int {
	out := map[string]int{}
	for _, p := range s.Ports {
		switch p := p.(type) {
		case string:
			spec, proto, _ := strings.Cut(p, "/")
			if proto == "" {
				proto = "tcp"
			}
			f := strings.Split(spec, ":")
			if len(f) < 2 {
				continue // container port only: nothing published
			}
			c, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Errorf("service %s: port %q: %v", s.name, p, err)
				continue
			}
			out[f[len(f)-2]+"/"+proto] = c
		case map[string]any:
			out[fmt.Sprint(p["published"])+"/tcp"] = toInt(p["target"])
		}
	}
	return out
}

func (s *composeService) dependsOn() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, n := range d {
			out[fmt.Sprint(n)] = "service_started"
		}
	case map[string]any:
		for n, v := range d {
			cond := "service_started"
			if m, ok := v.(map[string]any); ok {
				if c, ok := m["condition"].(string); ok {
					cond = c
				}
			}
			out[n] = cond
		}
	}
	return out
}

var composeVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// loadCompose reads compose.yaml as `docker compose config` would with no
// variables set: ${X:-default} becomes default, ${X} empty.
func loadCompose(t *testing.T, path string, df *dockerfile) *composeFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := composeVarRE.ReplaceAllString(string(b), "$2")
	c := &composeFile{dir: filepath.Dir(path)}
	if err := yaml.Unmarshal([]byte(text), c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for name, s := range c.Services {
		s.name = name
		s.env = map[string]string{}
		if b := s.build(); b != nil && b.target != "" {
			if b.target == "veltrix" {
				s.component = "cli"
			} else if comp, ok := strings.CutPrefix(b.target, "veltrix-"); ok {
				s.component = comp
				maps := df.env(b.target)
				for k, v := range maps {
					s.env[k] = v
				}
			}
		}
		switch e := s.Environment.(type) {
		case map[string]any:
			for k, v := range e {
				if v == nil {
					s.env[k] = "" // passed through from the shell
				} else {
					s.env[k] = fmt.Sprint(v)
				}
			}
		case []any:
			for _, kv := range e {
				k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
				s.env[k] = v
			}
		}
	}
	return c
}

func checkCompose(t *testing.T, c *composeFile, df *dockerfile, comps map[string]*deployComponent) {
	if len(c.Services) == 0 {
		t.Fatal("no services")
	}
	hostPorts := map[string]string{}
	usedVolumes := map[string]bool{}
	byComponent := map[string][]*composeService{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		byComponent[s.component] = append(byComponent[s.component], s)
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s: neither image nor build", name)
		}
		if b := s.build(); b != nil {
			ctx := filepath.Join(c.dir, b.context)
			if _, err := os.Stat(filepath.Join(ctx, "go.work")); err != nil {
				t.Errorf("service %s: build context %s is not the repository root: %v", name, b.context, err)
			}
			if p := filepath.Join(ctx, b.dockerfile); filepath.Clean(p) != filepath.Clean(df.path) {
				t.Errorf("service %s: dockerfile %s; want deploy/docker/Dockerfile", name, p)
			}
			if b.target != "" && df.stages[b.target] == nil {
				t.Errorf("service %s: build target %q is not a stage of the Dockerfile", name, b.target)
			}
		}
		comp := comps[s.component]
		for hp, cp := range s.publishedPorts(t) {
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("host port %s published by %s and %s", hp, other, name)
			}
			hostPorts[hp] = name
			extra := -1 // the router's DynamoDB API, when it is on
			if a := s.env["VELTRIX_DYNAMODB_ADDR"]; a != "" {
				extra = mustPort(t, a)
			}
			if comp != nil && cp != comp.listenPort && cp != comp.metricsPort && cp != extra {
				t.Errorf("service %s publishes container port %d; it listens on %d and %d", name, cp, comp.listenPort, comp.metricsPort)
			}
		}
		for _, m := range s.mounts(t) {
			switch {
			case m.source == "":
			case strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/"):
				if _, err := os.Stat(filepath.Join(c.dir, m.source)); err != nil {
					t.Errorf("service %s: bind mount source: %v", name, err)
				}
			default:
				usedVolumes[m.source] = true
				if _, ok := c.Volumes[m.source]; !ok {
					t.Errorf("service %s: volume %q is not declared under volumes:", name, m.source)
				}
			}
		}
		for dep, cond := range s.dependsOn() {
			d := c.Services[dep]
			if d == nil {
				t.Errorf("service %s depends on unknown service %s", name, dep)
				continue
			}
			if cond == "service_healthy" && (d.Healthcheck == nil || d.Healthcheck.Disable) {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		if s.Healthcheck != nil && len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s: empty healthcheck test", name)
		}
		if s.component == "cli" {
			checkEndpoints(t, c, s, comps)
			continue // the CLI's flags are its own; it is not a server
		}
		if comp == nil {
			continue
		}
		// The arguments (the images' ENTRYPOINT is the binary): every
		// --flag is the binary's, and a file it names is on a mount.
		for _, arg := range s.Command {
			n, v, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !strings.HasPrefix(arg, "--") || !comp.env[flagenv.Name(n)] {
				t.Errorf("service %s: argument %s is not a flag of veltrix-%s", name, arg, comp.name)
			}
			if strings.HasPrefix(v, "/") && !slices.ContainsFunc(s.mounts(t), func(m composeMount) bool { return strings.HasPrefix(v, m.target+"/") }) {
				t.Errorf("service %s: %s names a file on no mount", name, arg)
			}
		}
		for k, v := range s.env {
			if strings.HasPrefix(k, flagenv.Prefix) && !comp.env[k] {
				t.Errorf("service %s: %s is not a flag of veltrix-%s", name, k, comp.name)
			}
			if (k == "VELTRIX_LISTEN_ADDR" || k == "VELTRIX_METRICS_ADDR") && !strings.HasPrefix(v, "0.0.0.0:") {
				t.Errorf("service %s: %s=%s; in a container it must listen on 0.0.0.0", name, k, v)
			}
		}
		if s.Healthcheck == nil {
			t.Errorf("service %s: no healthcheck", name)
		} else if len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("service %s: healthcheck %v; distroless images need the exec form [CMD, ...]", name, s.Healthcheck.Test)
		} else {
			argv := s.Healthcheck.Test[1:]
			checkProbeArgv(t, "compose service "+name, argv, comp, mustPort(t, s.env["VELTRIX_LISTEN_ADDR"]))
			if b := s.build(); b != nil && !df.copied(b.target, argv[0]) {
				t.Errorf("service %s: healthcheck runs %s, not in image %s", name, argv[0], b.target)
			}
		}
		checkEndpoints(t, c, s, comps)
	}
	for v := range c.Volumes {
		if !usedVolumes[v] {
			t.Errorf("volume %q is declared but no service mounts it", v)
		}
	}
	checkComposeStorage(t, c, byComponent["storage"], byComponent["router"])
	for _, comp := range []string{"storage", "router", "migrator"} {
		if len(byComponent[comp]) == 0 {
			t.Errorf("no %s service", comp)
		}
	}
}

// checkEndpoints checks that the addresses a service dials are services of
// the stack on the right ports.
func checkEndpoints(t *testing.T, c *composeFile, s *composeService, comps map[string]*deployComponent) {
	t.Helper()
	dial := func(variable, wantComponent string, wantPort int) {
		v, ok := s.env[variable]
		if !ok {
			return
		}
		for _, ep := range strings.Split(v, ",") {
			host, port := splitEndpoint(t, ep)
			d := c.Services[host]
			if d == nil {
				t.Errorf("service %s: %s=%s: no service %q", s.name, variable, v, host)
				continue
			}
			if wantComponent != "" && d.component != wantComponent {
				t.Errorf("service %s: %s points at %s, not a %s", s.name, variable, host, wantComponent)
			}
			if wantPort != 0 && port != wantPort {
				t.Errorf("service %s: %s port %d; %s listens on %d", s.name, variable, port, host, wantPort)
			}
		}
	}
	dial("VELTRIX_ETCD_ENDPOINTS", "", 2379)
	dial("VELTRIX_ROUTER_ENDPOINTS", "router", comps["router"].listenPort)
	// The CLI's --endpoints and --migrator.
	dial("VELTRIX_ENDPOINTS", "router", comps["router"].listenPort)
	dial("VELTRIX_MIGRATOR", "migrator", comps["migrator"].listenPort)
}

func checkComposeStorage(t *testing.T, c *composeFile, nodes, routers []*composeService) {
	t.Helper()
	zones, ids, data := map[string]string{}, map[string]string{}, map[string]string{}
	for _, s := range nodes {
		zone := s.env["VELTRIX_ZONE"]
		if zone == "" {
			t.Errorf("storage service %s: no VELTRIX_ZONE", s.name)
		} else if other, dup := zones[zone]; dup {
			t.Errorf("storage services %s and %s share zone %s", other, s.name, zone)
		}
		zones[zone] = s.name
		if id := s.env["VELTRIX_NODE_ID"]; id != "" {
			if other, dup := ids[id]; dup {
				t.Errorf("storage services %s and %s share node id %s", other, s.name, id)
			}
			ids[id] = s.name
		}
		host, port := splitEndpoint(t, s.env["VELTRIX_ADVERTISE_ADDR"])
		if host != s.name && host != s.Hostname {
			t.Errorf("storage service %s advertises %s, which does not resolve to it", s.name, s.env["VELTRIX_ADVERTISE_ADDR"])
		}
		if port != mustPort(t, s.env["VELTRIX_LISTEN_ADDR"]) {
			t.Errorf("storage service %s advertises port %d but listens on %s", s.name, port, s.env["VELTRIX_LISTEN_ADDR"])
		}
		var vol string
		for _, m := range s.mounts(t) {
			if m.target == s.env["VELTRIX_DATA_DIR"] {
				vol = m.source
			}
		}
		if vol == "" {
			t.Errorf("storage service %s: nothing mounted on its data dir %s", s.name, s.env["VELTRIX_DATA_DIR"])
		} else if other, dup := data[vol]; dup {
			t.Errorf("storage services %s and %s share volume %s", other, s.name, vol)
		}
		data[vol] = s.name
	}
	for _, r := range routers {
		for _, v := range []string{"VELTRIX_REPLICATION_FACTOR", "VELTRIX_MIN_NODES"} {
			if n, err := strconv.Atoi(r.env[v]); err == nil && n > len(nodes) {
				t.Errorf("router %s: %s=%d but the stack has %d storage nodes", r.name, v, n, len(nodes))
			}
		}
		if rf, err := strconv.Atoi(r.env["VELTRIX_REPLICATION_FACTOR"]); err == nil && rf > len(zones) {
			t.Errorf("router %s: RF %d over %d zones: some partition keeps two replicas in one zone", r.name, rf, len(zones))
		}
	}
}

// ---------------------------------------------------------------------------
// Prometheus and Grafana provisioning

func checkPrometheus(t *testing.T, c *composeFile, comps map[string]*deployComponent) {
	path := filepath.Join(deployDir, "prometheus", "prometheus.yml")
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, path, &cfg)
	jobs := map[string]bool{}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if jobs[sc.JobName] {
			t.Errorf("job %s defined twice", sc.JobName)
		}
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port := splitEndpoint(t, target)
				if host == "localhost" {
					continue
				}
				s := c.Services[host]
				if s == nil {
					t.Errorf("job %s: target %s is not a compose service", sc.JobName, target)
					continue
				}
				scraped[host] = true
				if comp := comps[s.component]; comp != nil {
					if want := mustPort(t, s.env["VELTRIX_METRICS_ADDR"]); port != want {
						t.Errorf("job %s: target %s; %s serves /metrics on %d", sc.JobName, target, host, want)
					}
					// The dashboard selects processes by job=~"veltrix-.+".
					if want := "veltrix-" + s.component; sc.JobName != want {
						t.Errorf("target %s is in job %s; want %s", target, sc.JobName, want)
					}
				}
			}
		}
	}
	for name, s := range c.Services {
		if comps[s.component] != nil && !scraped[name] {
			t.Errorf("compose service %s is not scraped", name)
		}
	}
	prom := c.Services["prometheus"]
	if prom == nil {
		t.Fatal("no prometheus service")
	}
	mounted := false
	for _, m := range prom.mounts(t) {
		if filepath.Clean(filepath.Join(c.dir, m.source)) == filepath.Clean(path) && slices.Contains(prom.Command, "--config.file="+m.target) {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("the prometheus service does not load %s (mount + --config.file)", path)
	}
}

func checkGrafanaProvisioning(t *testing.T, c *composeFile) {
	g := c.Services["grafana"]
	if g == nil {
		t.Fatal("no grafana service")
	}
	mountOf := func(dir string) string {
		for _, m := range g.mounts(t) {
			if filepath.Clean(filepath.Join(c.dir, m.source)) == filepath.Clean(dir) {
				return m.target
			}
		}
		t.Errorf("grafana service does not mount %s", dir)
		return ""
	}
	prov := filepath.Join(deployDir, "grafana", "provisioning")
	dash := filepath.Join(deployDir, "grafana", "dashboards")
	if mountOf(prov) != "/etc/grafana/provisioning" {
		t.Errorf("provisioning must be mounted on /etc/grafana/provisioning")
	}
	dashTarget := mountOf(dash)

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, UID, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) == 0 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources: %+v; want a prometheus datasource", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Services[u.Hostname()]; p == nil || !strings.Contains(p.Image, "prometheus") {
		t.Errorf("datasource URL %s: %s is not the prometheus service", u, u.Hostname())
	}

	var dp struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "veltrix.yaml"), &dp)
	if len(dp.Providers) == 0 || dp.Providers[0].Options.Path != dashTarget {
		t.Errorf("dashboard provider path %+v; want the mount target %s", dp.Providers, dashTarget)
	}
	if home, ok := g.env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; ok {
		rel, found := strings.CutPrefix(home, dashTarget+"/")
		if !found {
			t.Errorf("home dashboard %s is outside %s", home, dashTarget)
		} else if _, err := os.Stat(filepath.Join(dash, rel)); err != nil {
			t.Errorf("home dashboard: %v", err)
		}
	}
}

// ---------------------------------------------------------------------------
// The live cluster: metric names and health names.

type liveCluster struct {
	c        *cluster.Cluster
	migrator *migrator.Server
	// series maps every exported series name to its label names and the
	// values seen for each.
	series map[string]map[string]map[string]bool
}

func startLive(t *testing.T) *liveCluster {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c := cluster.Start(t, cluster.Options{Nodes: 1, RF: 1, NoSync: true, Logger: logger})
	l := &liveCluster{c: c, series: map[string]map[string]map[string]bool{}}
	m, err := migrator.Start(context.Background(), migrator.Config{
		ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdEndpoints: []string{c.Etcd.Endpoint()},
		RouterEndpoints: []string{c.RouterAddr(0)}, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	l.migrator = m
	kv, admin := c.Clients(0)
	createTable(t, admin, "deploy")
	ctx := context.Background()
	for i := range 20 {
		k := key("deploy", strconv.Itoa(i), "")
		if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: k, Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(ctx, &kvv1.GetRequest{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	l.add(t, c.Nodes[0].Registry)
	provokeReplicaError(t, c, kv)
	l.add(t, c.Routers[0].Registry)
	l.add(t, m.Registry)
	for name, labels := range dynamodbMetrics {
		l.series[name] = map[string]map[string]bool{}
		for _, lb := range labels {
			l.series[name][lb] = nil
		}
	}
	for name, labels := range migrationMetrics {
		if _, ok := l.series[name]; ok {
			continue
		}
		l.series[name] = map[string]map[string]bool{}
		for _, lb := range labels {
			l.series[name][lb] = nil
		}
	}
	for name, labels := range migratorMetrics {
		if !registered(m.Registry, name) {
			if !plannedMetrics[name] {
				t.Errorf("the migrator does not register %s", name)
				continue
			}
			t.Logf("%s is planned, not exported yet", name)
		}
		l.series[name] = map[string]map[string]bool{}
		for _, lb := range labels {
			l.series[name][lb] = nil
		}
	}
	return l
}

// registered reports whether reg has a collector for the metric name, series
// or not: registering another metric of that name fails if so.
func registered(reg prometheus.Registerer, name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "deploy_test probe"})
	if err := reg.Register(probe); err != nil {
		return true
	}
	reg.Unregister(probe)
	return false
}

func (l *liveCluster) add(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		names := []string{name}
		extra := ""
		switch mf.GetType().String() {
		case "HISTOGRAM":
			names, extra = []string{name + "_bucket", name + "_sum", name + "_count"}, "le"
		case "SUMMARY":
			names, extra = []string{name, name + "_sum", name + "_count"}, "quantile"
		}
		for i, n := range names {
			labels := l.series[n]
			if labels == nil {
				labels = map[string]map[string]bool{}
				l.series[n] = labels
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if labels[lp.GetName()] == nil {
						labels[lp.GetName()] = map[string]bool{}
					}
					labels[lp.GetName()][lp.GetValue()] = true
				}
			}
			if extra != "" && i == 0 { // le on _bucket, quantile on the summary
				labels[extra] = nil
			}
		}
	}
}

// provokeReplicaError makes the router count a failed replica call, so that
// veltrix_router_replica_errors_total (a vector, absent until it has a
// series) is exported. The placement keeps a stopped node's partitions, so
// it stops the node, registers its id at an address nobody serves, writes
// until a call fails, then starts the node again.
func provokeReplicaError(t *testing.T, c *cluster.Cluster, kv kvv1.KVServiceClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	id := c.Nodes[0].ID()
	c.StopNode(0)
	ctx := context.Background()
	reg, err := topology.NewStore(c.EtcdCli, "test").Register(ctx, topology.Node{
		ID: id, Address: dead, State: topology.NodeUp, StartTime: time.Now().UTC(),
	}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !has(t, c.Routers[0].Registry, "veltrix_router_replica_errors_total"); i++ {
		if time.Now().After(deadline) {
			t.Fatal("veltrix_router_replica_errors_total never appeared")
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = kv.Put(pctx, &kvv1.PutRequest{Key: key("deploy", strconv.Itoa(i), ""), Value: []byte("x")})
		cancel()
		time.Sleep(10 * time.Millisecond)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c.StartNode(0)
}

func has(t *testing.T, reg prometheus.Gatherer, name string) bool {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

func checkHealthNames(t *testing.T, l *liveCluster, comps map[string]*deployComponent) {
	addrs := map[string]string{"storage": l.c.Nodes[0].Addr(), "router": l.c.Routers[0].Addr(), "migrator": l.migrator.Addr()}
	for _, name := range sortedKeys(comps) {
		comp := comps[name]
		for _, svc := range sortedKeys(comp.probed) {
			where := comp.probed[svc]
			addr := addrs[name]
			cc, err := grpcx.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			cancel()
			cc.Close()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("%s: health check %q against a running %s: %v %v", where, svc, name, resp.GetStatus(), err)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Dashboard

// checkAlerts checks that prometheus.yml loads its rule files, that compose
// mounts them beside it, and that every rule's expression names series the
// code exports, with their labels.
func checkAlerts(t *testing.T, l *liveCluster) {
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, filepath.Join(deployDir, "prometheus", "prometheus.yml"), &cfg)
	if len(cfg.RuleFiles) == 0 {
		t.Fatal("prometheus.yml loads no rule files")
	}
	compose, err := os.ReadFile(filepath.Join(deployDir, "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.RuleFiles {
		if !strings.Contains(string(compose), "../prometheus/"+f+":/etc/prometheus/"+f) {
			t.Errorf("compose does not mount %s beside prometheus.yml", f)
		}
		var rules struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		readYAML(t, filepath.Join(deployDir, "prometheus", f), &rules)
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if r.Alert == "" || r.Expr == "" {
					t.Errorf("%s: group %s: a rule without alert or expr", f, g.Name)
					continue
				}
				checkPromQL(t, "alert "+r.Alert, r.Expr, "", l)
			}
		}
		if n == 0 {
			t.Errorf("%s has no rules", f)
		}
	}
}

func checkDashboard(t *testing.T, l *liveCluster) {
	path := filepath.Join(deployDir, "grafana", "dashboards", "veltrix.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []map[string]any `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard needs a uid and a title")
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			t.Errorf("variable %s: query variables are not checked by this test; extend it", v.Name)
		}
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("dashboard needs a datasource variable named datasource")
	}

	var panels []map[string]any
	var walk func([]map[string]any)
	walk = func(ps []map[string]any) {
		for _, p := range ps {
			panels = append(panels, p)
			if sub, ok := p["panels"].([]any); ok {
				var inner []map[string]any
				for _, s := range sub {
					inner = append(inner, s.(map[string]any))
				}
				walk(inner)
			}
		}
	}
	walk(dash.Panels)
	ids := map[float64]bool{}
	used := map[string]bool{}
	for _, p := range panels {
		title, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel %q: id %v used twice", title, id)
		}
		ids[id] = true
		if gp, ok := p["gridPos"].(map[string]any); ok {
			if x, w := gp["x"].(float64), gp["w"].(float64); x+w > 24 || w <= 0 {
				t.Errorf("panel %q: gridPos x=%v w=%v outside the 24-column grid", title, x, w)
			}
		}
		if p["type"] == "row" {
			continue
		}
		if ds, _ := p["datasource"].(map[string]any); ds == nil || ds["uid"] != "${datasource}" {
			t.Errorf("panel %q: datasource %v; want uid ${datasource}", title, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no queries", title)
		}
		for _, tg := range targets {
			tm := tg.(map[string]any)
			expr, _ := tm["expr"].(string)
			legend, _ := tm["legendFormat"].(string)
			for _, m := range checkPromQL(t, fmt.Sprintf("panel %q", title), expr, legend, l) {
				used[m] = true
			}
		}
	}
	for _, m := range dashboardMustShow {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

var (
	promFunctions = setOf("abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
		"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time",
		"day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv",
		"double_exponential_smoothing", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
		"histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour",
		"idelta", "increase", "info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
		"mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
		"present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
		"sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
		"sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year", "start", "end",
		// aggregation operators
		"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
		"quantile", "limitk", "limit_ratio")
	promGrouping = setOf("by", "without", "on", "ignoring", "group_left", "group_right")
	promKeywords = setOf("bool", "and", "or", "unless", "offset", "atan2", "inf", "nan")
	promMatchRE  = regexp.MustCompile("^\\s*([a-zA-Z_][a-zA-Z0-9_]*)\\s*(=~|!~|!=|=)\\s*(\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`)\\s*(?:,|$)")
	legendRE     = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

type promSelector struct {
	metric   string
	matchers [][3]string // label, op, value
}

// parsePromQL finds the selectors, grouping labels and functions of a PromQL
// expression. It is a scanner, not a parser: enough to check names.
func parsePromQL(expr string) (sels []promSelector, groupLabels, funcs []string, err error) {
	s := expr
	i := 0
	skipSpace := func(j int) int {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n') {
			j++
		}
		return j
	}
	closing := func(open, close byte, j int) (int, error) { // j at open
		depth := 0
		for k := j; k < len(s); k++ {
			switch c := s[k]; {
			case c == '"' || c == '\'' || c == '`':
				end := strings.IndexByte(s[k+1:], c)
				if end < 0 {
					return 0, fmt.Errorf("unterminated string at %d", k)
				}
				k += end + 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return k, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c at %d", open, j)
	}
	last := -1 // index in sels of a selector that may take {...}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, nil, nil, fmt.Errorf("unterminated string")
			}
			i += end + 2
			last = -1
		case c == '[':
			j, e := closing('[', ']', i)
			if e != nil {
				return nil, nil, nil, e
			}
			i = j + 1
		case c == '{':
			j, e := closing('{', '}', i)
			if e != nil {
				return nil, nil, nil, e
			}
			body := s[i+1 : j]
			var ms [][3]string
			for strings.TrimSpace(body) != "" {
				m := promMatchRE.FindStringSubmatch(body)
				if m == nil {
					return nil, nil, nil, fmt.Errorf("bad label matchers {%s}", s[i+1:j])
				}
				v, _ := strconv.Unquote(m[3])
				if strings.HasPrefix(m[3], "'") {
					v = strings.Trim(m[3], "'")
				}
				ms = append(ms, [3]string{m[1], m[2], v})
				body = body[len(m[0]):]
			}
			if last < 0 {
				sels = append(sels, promSelector{})
				last = len(sels) - 1
			}
			sels[last].matchers = append(sels[last].matchers, ms...)
			for _, m := range ms {
				if m[0] == "__name__" && m[1] == "=" {
					sels[last].metric = m[2]
				}
			}
			last = -1
			i = j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
			last = -1
		case c == '$': // a Grafana variable outside a string
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return nil, nil, nil, fmt.Errorf("unterminated ${")
				}
				i += j + 1
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			last = -1
		case isIdent(c):
			j := i
			for j < len(s) && (isIdent(s[j]) || s[j] == ':') {
				j++
			}
			word := s[i:j]
			next := skipSpace(j)
			switch {
			case promGrouping[word]:
				if next < len(s) && s[next] == '(' {
					k, e := closing('(', ')', next)
					if e != nil {
						return nil, nil, nil, e
					}
					for _, lb := range strings.Split(s[next+1:k], ",") {
						if lb = strings.TrimSpace(lb); lb != "" {
							groupLabels = append(groupLabels, lb)
						}
					}
					j = k + 1
				}
				last = -1
			case next < len(s) && s[next] == '(' || promFunctions[word]: // sum by (x) (...)
				funcs = append(funcs, word)
				last = -1
			case promKeywords[word]:
				last = -1
			default:
				sels = append(sels, promSelector{metric: word})
				last = len(sels) - 1
			}
			i = j
		default:
			i++
			last = -1
		}
	}
	return sels, groupLabels, funcs, nil
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkPromQL checks one query against the live series and returns the
// metric names it uses.
func checkPromQL(t *testing.T, where, expr, legend string, l *liveCluster) []string {
	t.Helper()
	if strings.TrimSpace(expr) == "" {
		t.Errorf("%s: empty query", where)
		return nil
	}
	if strings.Count(expr, "(") != strings.Count(expr, ")") {
		t.Errorf("%s: unbalanced parentheses in %s", where, expr)
	}
	sels, groups, funcs, err := parsePromQL(expr)
	if err != nil {
		t.Errorf("%s: %s: %v", where, expr, err)
		return nil
	}
	for _, f := range funcs {
		if !promFunctions[f] {
			t.Errorf("%s: unknown PromQL function %s in %s", where, f, expr)
		}
	}
	allowed := setOf(targetLabels...)
	var metrics []string
	for _, sel := range sels {
		if sel.metric == "" {
			t.Errorf("%s: selector without a metric name in %s", where, expr)
			continue
		}
		metrics = append(metrics, sel.metric)
		labels, ok := l.series[sel.metric]
		if !ok {
			t.Errorf("%s: %s is not exported by any Veltrix service (query %s)", where, sel.metric, expr)
			continue
		}
		for lb := range labels {
			allowed[lb] = true
		}
		for _, m := range sel.matchers {
			if m[0] == "__name__" {
				continue
			}
			values, isLabel := labels[m[0]]
			if !isLabel && !slices.Contains(targetLabels, m[0]) {
				t.Errorf("%s: %s has no label %s", where, sel.metric, m[0])
				continue
			}
			// An = or =~ matcher on a label the code sets must match a value
			// the code exports (a renamed gRPC service or method breaks it).
			if len(values) == 0 || (m[1] != "=" && m[1] != "=~") {
				continue
			}
			re, err := regexp.Compile("^(?:" + m[2] + ")$")
			if m[1] == "=" {
				re = regexp.MustCompile("^" + regexp.QuoteMeta(m[2]) + "$")
			}
			if err != nil {
				t.Errorf("%s: matcher %s%s%q: %v", where, m[0], m[1], m[2], err)
				continue
			}
			matched := false
			for v := range values {
				matched = matched || re.MatchString(v)
			}
			if !matched {
				t.Errorf("%s: %s{%s%s%q} matches none of the exported values %v", where, sel.metric, m[0], m[1], m[2], sortedKeys(values))
			}
		}
	}
	for _, g := range groups {
		if !allowed[g] {
			t.Errorf("%s: groups by %s, a label none of %v has", where, g, metrics)
		}
	}
	for _, m := range legendRE.FindAllStringSubmatch(legend, -1) {
		if !allowed[m[1]] {
			t.Errorf("%s: legend uses {{%s}}, a label none of %v has", where, m[1], metrics)
		}
	}
	return metrics
}

// ---------------------------------------------------------------------------
// Helm chart, without helm

func checkHelmChart(t *testing.T, comps map[string]*deployComponent) {
	chart := filepath.Join(deployDir, "helm", "veltrix")
	var meta struct {
		APIVersion  string `yaml:"apiVersion"`
		Name        string `yaml:"name"`
		Version     string `yaml:"version"`
		AppVersion  string `yaml:"appVersion"`
		KubeVersion string `yaml:"kubeVersion"`
	}
	readYAML(t, filepath.Join(chart, "Chart.yaml"), &meta)
	if meta.APIVersion != "v2" || meta.Name != "veltrix" || !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(meta.Version) || meta.AppVersion == "" {
		t.Errorf("Chart.yaml: %+v", meta)
	}

	var doc yaml.Node
	readYAML(t, filepath.Join(chart, "values.yaml"), &doc)
	checkValuesDocumented(t, doc.Content[0], "", false)
	var values map[string]any
	if err := doc.Decode(&values); err != nil {
		t.Fatal(err)
	}
	get := func(path string) any {
		var v any = values
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return v
	}
	for _, name := range sortedKeys(comps) {
		comp := comps[name]
		if p := toInt(get(name + ".port")); p != comp.listenPort {
			t.Errorf("values %s.port=%d; the binary listens on %d by default", name, p, comp.listenPort)
		}
		if p := toInt(get(name + ".metricsPort")); p != comp.metricsPort {
			t.Errorf("values %s.metricsPort=%d; the binary serves metrics on %d by default", name, p, comp.metricsPort)
		}
	}
	if sc := get("storage.persistence.storageClassName"); sc != "local-storage" {
		t.Errorf("storage.persistence.storageClassName=%v; want local-storage", sc)
	}

	// Every VELTRIX_* variable a template sets is a flag of its component;
	// the shared ones (_helpers.tpl) are flags of all of them.
	envRE := regexp.MustCompile(`name:\s*(VELTRIX_[A-Z0-9_]+)`)
	files, err := filepath.Glob(filepath.Join(chart, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	tests, _ := filepath.Glob(filepath.Join(chart, "templates", "tests", "*"))
	for _, f := range append(files, tests...) {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		base := filepath.Base(f)
		var want []*deployComponent
		for name, comp := range comps {
			if strings.HasPrefix(base, name+"-") || base == "_helpers.tpl" {
				want = append(want, comp)
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range envRE.FindAllStringSubmatch(string(b), -1) {
			if len(want) == 0 {
				t.Errorf("%s sets %s but is not a component's template", base, m[1])
			}
			for _, comp := range want {
				if !comp.env[m[1]] {
					t.Errorf("%s: %s is not a flag of veltrix-%s", base, m[1], comp.name)
				}
			}
		}
	}
}

// checkValuesDocumented requires a comment on every leaf of values.yaml, on
// an ancestor, or on the sibling just above it (a group like hedgeMin and
// hedgeMax).
func checkValuesDocumented(t *testing.T, n *yaml.Node, path string, inherited bool) {
	t.Helper()
	if n.Kind != yaml.MappingNode {
		return
	}
	prevDocumented, prevLine := false, -10
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := strings.TrimPrefix(path+"."+k.Value, ".")
		own := k.HeadComment != "" || k.LineComment != "" || v.LineComment != ""
		documented := own || inherited || (prevDocumented && k.Line == prevLine+1)
		leaf := v.Kind != yaml.MappingNode || len(v.Content) == 0
		if leaf && !documented {
			t.Errorf("values.yaml: %s (line %d) has no comment", p, k.Line)
		}
		if !leaf {
			checkValuesDocumented(t, v, p, own || inherited)
		}
		prevDocumented, prevLine = documented && leaf, k.Line
	}
}

// ---------------------------------------------------------------------------
// Helm chart, rendered

func checkHelmTemplate(t *testing.T, comps map[string]*deployComponent) {
	helm := os.Getenv("VELTRIX_HELM")
	if helm == "" {
		var err error
		if helm, err = exec.LookPath("helm"); err != nil {
			t.Skip("no helm: set VELTRIX_HELM to a helm binary (e.g. $(cd tools && go tool -n helm)) to render the chart")
		}
	}
	chart := filepath.Join(deployDir, "helm", "veltrix")
	// Helm built from source (go tool) defaults to Kubernetes v1.20, below
	// the chart's kubeVersion: say which version to render for.
	const kube = "1.33.0"
	run := func(args ...string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.Command(helm, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.Bytes()
	}
	run("lint", "--strict", "--kube-version", kube, chart)
	cases := map[string][]string{
		"defaults": nil,
		"zones-external-etcd": {"--set", "storage.zones={us-east-1a,us-east-1b,us-east-1c}", "--set", "storage.replicasPerZone=2",
			"--set", "etcd.enabled=false", "--set", "etcd.endpoints={https://etcd-0.example:2379,https://etcd-1.example:2379}",
			"--set", "serviceMonitor.enabled=true", "--set", "storage.goMemLimit=3600MiB", "--set", "storage.antiAffinity=soft",
			"--set", "image.pullSecrets[0].name=regcred"},
		"single-node": {"--set", "migrator.enabled=false", "--set", "etcd.replicas=1", "--set", "router.replicas=1",
			"--set", "storage.replicas=1", "--set", "cluster.replicationFactor=1", "--set", "storage.zoneFromPodLabel=false",
			"--set", "storage.zone=dc1", "--set", "storage.antiAffinity=", "--set", "tests.enabled=false"},
		"insecure": {"--set", "tls.enabled=false", "--set", "auth.enabled=false"},
		"cert-manager": {"--set", "tls.certManager.enabled=true", "--set", "tls.certManager.caSecret=veltrix-ca",
			"--set", "tls.certManager.clientPrincipals={admin}", "--set", "tls.metrics=true", "--set", "serviceMonitor.enabled=true",
			"--set", "etcd.enabled=false", "--set", "etcd.endpoints={https://etcd-0.example:2379}",
			"--set", "tls.etcd.enabled=true", "--set", "tls.etcd.secret=etcd-client", "--set", "auth.keySecret=my-auth-key",
			"--set", "auth.createKeySecret=false", "--set", "auth.admins={admin,ops}", "--set", "storage.zones={a,b}"},
	}
	// Combinations the chart must refuse, with the value its message names.
	refused := map[string]struct {
		args []string
		want string
	}{
		"auth needs TLS":                  {[]string{"--set", "tls.enabled=false"}, "auth.enabled needs tls.enabled"},
		"cert-manager needs a CA Secret":  {[]string{"--set", "tls.certManager.enabled=true"}, "tls.certManager.caSecret"},
		"etcd TLS needs a Secret":         {[]string{"--set", "tls.etcd.enabled=true", "--set", "etcd.enabled=false", "--set", "etcd.endpoints={https://etcd:2379}"}, "tls.etcd.secret"},
		"etcd TLS needs an external etcd": {[]string{"--set", "tls.etcd.enabled=true", "--set", "tls.etcd.secret=etcd-client"}, "bundled etcd"},
	}
	for _, name := range sortedKeys(refused) {
		t.Run("refuses "+name, func(t *testing.T) {
			args := append([]string{"template", "vx", chart, "--namespace", "db", "--kube-version", kube}, refused[name].args...)
			out, err := exec.Command(helm, args...).CombinedOutput()
			if err == nil {
				t.Errorf("helm %s rendered; want it refused (%s)", strings.Join(args, " "), name)
			} else if !strings.Contains(string(out), refused[name].want) {
				t.Errorf("helm %s: %s; want a message naming %q", strings.Join(args, " "), out, refused[name].want)
			}
		})
	}
	for _, name := range sortedKeys(cases) {
		t.Run(name, func(t *testing.T) {
			out := run(append([]string{"template", "vx", chart, "--namespace", "db", "--kube-version", kube}, cases[name]...)...)
			objs := checkRendered(t, out, comps, name == "defaults")
			checkRenderedSecurity(t, objs, comps, name)
		})
	}
}

type k8sObject = map[string]any

func checkRendered(t *testing.T, out []byte, comps map[string]*deployComponent, defaults bool) []k8sObject {
	t.Helper()
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("rendered YAML: %v", err) // duplicate keys land here too
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	seen := map[string]bool{}
	services := map[string]k8sObject{}
	type workload struct {
		kind, name string
		labels     map[string]any
		ports      map[string]bool
	}
	var workloads []workload
	for _, o := range objs {
		kind, _ := o["kind"].(string)
		name, _ := dig(o, "metadata", "name").(string)
		if o["apiVersion"] == nil || kind == "" || name == "" {
			t.Errorf("object without apiVersion, kind or name: %v", o)
			continue
		}
		id := kind + "/" + name
		if seen[id] {
			t.Errorf("%s rendered twice", id)
		}
		seen[id] = true
		if kind == "Service" {
			services[name] = o
		}
	}
	for _, o := range objs {
		kind := o["kind"].(string)
		name := dig(o, "metadata", "name").(string)
		var pod map[string]any
		var podLabels map[string]any
		switch kind {
		case "Deployment", "StatefulSet":
			pod, _ = dig(o, "spec", "template", "spec").(map[string]any)
			podLabels, _ = dig(o, "spec", "template", "metadata", "labels").(map[string]any)
			sel, _ := dig(o, "spec", "selector", "matchLabels").(map[string]any)
			for k, v := range sel {
				if podLabels[k] != v {
					t.Errorf("%s/%s: selector %s=%v does not match the pod labels", kind, name, k, v)
				}
			}
		case "Pod":
			pod, _ = o["spec"].(map[string]any)
			podLabels, _ = dig(o, "metadata", "labels").(map[string]any)
		default:
			continue
		}
		id := kind + "/" + name
		if u := dig(pod, "securityContext", "runAsUser"); toInt(u) != 65532 || dig(pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext %v; want runAsNonRoot and runAsUser 65532", id, pod["securityContext"])
		}
		w := workload{kind, name, podLabels, map[string]bool{}}
		containers, _ := pod["containers"].([]any)
		for _, ci := range containers {
			ctr := ci.(map[string]any)
			cname, _ := ctr["name"].(string)
			ports := map[string]int{}
			for _, pi := range asList(ctr["ports"]) {
				p := pi.(map[string]any)
				ports[fmt.Sprint(p["name"])] = toInt(p["containerPort"])
				w.ports[fmt.Sprint(p["name"])] = true
			}
			if kind != "Pod" && (dig(ctr, "resources", "requests") == nil || dig(ctr, "resources", "limits") == nil) {
				t.Errorf("%s: container %s has no resource requests and limits", id, cname)
			}
			comp := comps[cname]
			if comp == nil || kind == "Pod" {
				continue
			}
			env := map[string]string{}
			for _, ei := range asList(ctr["env"]) {
				e := ei.(map[string]any)
				n := fmt.Sprint(e["name"])
				env[n] = fmt.Sprint(e["value"])
				if strings.HasPrefix(n, flagenv.Prefix) && !comp.env[n] {
					t.Errorf("%s: %s is not a flag of veltrix-%s", id, n, cname)
				}
			}
			if want := fmt.Sprintf("0.0.0.0:%d", ports["grpc"]); env["VELTRIX_LISTEN_ADDR"] != want {
				t.Errorf("%s: VELTRIX_LISTEN_ADDR=%s; want %s (the grpc containerPort)", id, env["VELTRIX_LISTEN_ADDR"], want)
			}
			if want := fmt.Sprintf("0.0.0.0:%d", ports["metrics"]); env["VELTRIX_METRICS_ADDR"] != want {
				t.Errorf("%s: VELTRIX_METRICS_ADDR=%s; want %s (the metrics containerPort)", id, env["VELTRIX_METRICS_ADDR"], want)
			}
			if defaults && (ports["grpc"] != comp.listenPort || ports["metrics"] != comp.metricsPort) {
				t.Errorf("%s: default ports %v; the binary's defaults are %d and %d", id, ports, comp.listenPort, comp.metricsPort)
			}
			for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
				pr, _ := ctr[probe].(map[string]any)
				if pr == nil {
					if probe != "startupProbe" {
						t.Errorf("%s: container %s has no %s", id, cname, probe)
					}
					continue
				}
				g, _ := pr["grpc"].(map[string]any)
				if argv := asList(dig(pr, "exec", "command")); g == nil && len(argv) > 0 {
					// Over TLS: grpc_health_probe in the container (the
					// kubelet's gRPC probe speaks no TLS).
					var cmd []string
					for _, a := range argv {
						cmd = append(cmd, fmt.Sprint(a))
					}
					checkProbeArgv(t, id+" "+probe, cmd, comp, ports["grpc"])
					continue
				}
				if g == nil {
					t.Errorf("%s: %s is neither a native gRPC probe nor grpc_health_probe", id, probe)
					continue
				}
				if toInt(g["port"]) != ports["grpc"] {
					t.Errorf("%s: %s probes port %v; gRPC is on %d", id, probe, g["port"], ports["grpc"])
				}
				svc, _ := g["service"].(string)
				comp.probe(svc, id+" "+probe)
			}
			if cname == "storage" {
				checkRenderedStorage(t, o, ctr, env, services)
			}
		}
		workloads = append(workloads, w)
	}
	for name, svc := range services {
		sel, _ := dig(svc, "spec", "selector").(map[string]any)
		var match *workload
		for i := range workloads {
			ok := len(sel) > 0
			for k, v := range sel {
				ok = ok && workloads[i].labels[k] == v
			}
			if ok {
				match = &workloads[i]
				break
			}
		}
		if match == nil {
			t.Errorf("Service/%s selects no pods", name)
			continue
		}
		for _, pi := range asList(dig(svc, "spec", "ports")) {
			tp := fmt.Sprint(pi.(map[string]any)["targetPort"])
			if _, err := strconv.Atoi(tp); err != nil && !match.ports[tp] {
				t.Errorf("Service/%s: targetPort %s is not a port of %s/%s", name, tp, match.kind, match.name)
			}
		}
	}
	return objs
}

func checkRenderedStorage(t *testing.T, sts k8sObject, ctr map[string]any, env map[string]string, services map[string]k8sObject) {
	t.Helper()
	id := "StatefulSet/" + dig(sts, "metadata", "name").(string)
	svcName, _ := dig(sts, "spec", "serviceName").(string)
	svc := services[svcName]
	if svc == nil || dig(svc, "spec", "clusterIP") != "None" {
		t.Errorf("%s: serviceName %s is not a rendered headless Service", id, svcName)
	}
	if adv := env["VELTRIX_ADVERTISE_ADDR"]; !strings.HasPrefix(adv, "$(POD_NAME)."+svcName+".") {
		t.Errorf("%s: advertises %s; want the pod's DNS name under %s", id, adv, svcName)
	}
	mounted := false
	for _, mi := range asList(ctr["volumeMounts"]) {
		m := mi.(map[string]any)
		mounted = mounted || m["mountPath"] == env["VELTRIX_DATA_DIR"]
	}
	if !mounted {
		t.Errorf("%s: nothing mounted on the data dir %s", id, env["VELTRIX_DATA_DIR"])
	}
	if vct := asList(dig(sts, "spec", "volumeClaimTemplates")); len(vct) != 1 {
		t.Errorf("%s: %d volumeClaimTemplates; want 1", id, len(vct))
	}
	if _, ok := env["VELTRIX_ZONE"]; !ok {
		t.Errorf("%s: no VELTRIX_ZONE", id)
	}
}

// ---------------------------------------------------------------------------
// Helpers

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// splitEndpoint splits host:port or scheme://host:port.
func splitEndpoint(t *testing.T, ep string) (string, int) {
	t.Helper()
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		ep = u.Host
	}
	host, _, err := net.SplitHostPort(ep)
	if err != nil {
		t.Errorf("endpoint %q: %v", ep, err)
		return "", 0
	}
	return host, mustPort(t, ep)
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any { l, _ := v.([]any); return l }

func toInt(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

func setOf(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------------------
// Helm chart, security (issue #19)

// checkRenderedSecurity checks TLS and auth in a rendered chart: every flag
// the chart passes is a flag of the binary; with tls.enabled every Veltrix
// container gets --tls-cert-file/--tls-key-file/--tls-ca-file in a Secret
// mounted read-only (whole, so the kubelet updates it in place), and its
// probes speak TLS; with auth.enabled routers and the migrator get --auth;
// cert-manager's Certificates name the roles in URI SANs and the DNS names
// they are dialled by, and write the Secrets the pods mount.
func checkRenderedSecurity(t *testing.T, objs []k8sObject, comps map[string]*deployComponent, name string) {
	t.Helper()
	tlsOn, authOn := name != "insecure", name != "insecure"
	mountedSecret := map[string]string{} // component → Secret mounted for TLS
	serviceNames := map[string][]string{}
	var certs, issuers []k8sObject
	secrets := map[string]k8sObject{}
	for _, o := range objs {
		kind := fmt.Sprint(o["kind"])
		oname := fmt.Sprint(dig(o, "metadata", "name"))
		switch kind {
		case "Certificate":
			certs = append(certs, o)
		case "Issuer":
			issuers = append(issuers, o)
		case "Secret":
			secrets[oname] = o
		case "Service":
			comp := fmt.Sprint(dig(o, "metadata", "labels", "app.kubernetes.io/component"))
			serviceNames[comp] = append(serviceNames[comp], oname)
		case "ServiceMonitor":
			if name == "cert-manager" {
				for _, ep := range asList(dig(o, "spec", "endpoints")) {
					if dig(ep, "scheme") != "https" {
						t.Errorf("ServiceMonitor/%s: scheme %v with tls.metrics; want https", oname, dig(ep, "scheme"))
					}
				}
			}
		}
	}
	for _, o := range objs {
		kind := fmt.Sprint(o["kind"])
		if kind != "Deployment" && kind != "StatefulSet" {
			continue
		}
		id := kind + "/" + fmt.Sprint(dig(o, "metadata", "name"))
		pod, _ := dig(o, "spec", "template", "spec").(map[string]any)
		volumes := map[string]map[string]any{}
		for _, v := range asList(pod["volumes"]) {
			vm := v.(map[string]any)
			volumes[fmt.Sprint(vm["name"])] = vm
		}
		for _, ci := range asList(pod["containers"]) {
			ctr := ci.(map[string]any)
			cname := fmt.Sprint(ctr["name"])
			comp := comps[cname]
			if comp == nil {
				continue
			}
			flags := map[string]string{}
			for _, a := range asList(ctr["args"]) {
				arg := fmt.Sprint(a)
				n, v, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
				flags[n] = v
				if !comp.env[flagenv.Name(n)] {
					t.Errorf("%s: argument %s: veltrix-%s has no flag --%s", id, arg, cname, n)
				}
			}
			// secretOf returns the Secret a file path is read from, failing
			// unless it is a read-only mount of a whole Secret.
			secretOf := func(flag, path string) string {
				t.Helper()
				for _, mi := range asList(ctr["volumeMounts"]) {
					m := mi.(map[string]any)
					mp := fmt.Sprint(m["mountPath"])
					if filepath.Dir(path) != filepath.Clean(mp) {
						continue
					}
					if m["readOnly"] != true {
						t.Errorf("%s: %s mount %s is not readOnly", id, flag, mp)
					}
					if m["subPath"] != nil {
						t.Errorf("%s: %s mount %s uses subPath: the kubelet would never update it", id, flag, mp)
					}
					sec, _ := dig(volumes[fmt.Sprint(m["name"])], "secret", "secretName").(string)
					if sec == "" {
						t.Errorf("%s: %s: volume %v is not a Secret", id, flag, m["name"])
					}
					return sec
				}
				t.Errorf("%s: --%s=%s: nothing is mounted at %s", id, flag, path, filepath.Dir(path))
				return ""
			}
			var tlsSecret string
			for _, f := range []string{"tls-cert-file", "tls-key-file", "tls-ca-file"} {
				path, ok := flags[f]
				if ok != tlsOn {
					t.Errorf("%s: --%s set=%v; want %v (tls.enabled)", id, f, ok, tlsOn)
				}
				if ok {
					sec := secretOf(f, path)
					if tlsSecret != "" && sec != tlsSecret {
						t.Errorf("%s: TLS files from Secrets %s and %s; want one Secret (cert-manager's layout)", id, tlsSecret, sec)
					}
					tlsSecret = sec
				}
			}
			if tlsOn {
				want := "vx-veltrix-" + cname + "-tls"
				if tlsSecret != want {
					t.Errorf("%s: TLS Secret %q; want %q (one per role)", id, tlsSecret, want)
				}
				if prev, ok := mountedSecret[cname]; ok && prev != tlsSecret {
					t.Errorf("%s: TLS Secret %s, another %s workload mounts %s", id, tlsSecret, cname, prev)
				}
				mountedSecret[cname] = tlsSecret
				for _, probe := range []string{"livenessProbe", "readinessProbe"} {
					argv := fmt.Sprint(dig(ctr, probe, "exec", "command"))
					for _, want := range []string{"-tls ", "-tls-ca-cert=", "-tls-client-cert=", "-tls-server-name="} {
						if !strings.Contains(argv, want) {
							t.Errorf("%s: %s %s lacks %s (the services serve TLS only)", id, probe, argv, want)
						}
					}
				}
			}
			_, auth := flags["auth"]
			if want := authOn && cname != "storage"; auth != want {
				t.Errorf("%s: --auth set=%v; want %v", id, auth, want)
			}
			if auth {
				if _, ok := flags["auth-admins"]; !ok {
					t.Errorf("%s: --auth without --auth-admins: nobody could bootstrap", id)
				}
			}
			keyFile, hasKey := flags["auth-key-file"]
			if want := auth && cname == "router"; hasKey != want {
				t.Errorf("%s: --auth-key-file set=%v; want %v", id, hasKey, want)
			}
			if hasKey {
				sec := secretOf("auth-key-file", keyFile)
				wantSec := "vx-veltrix-auth-key"
				if name == "cert-manager" {
					wantSec = "my-auth-key"
				}
				if sec != wantSec {
					t.Errorf("%s: --auth-key-file from Secret %q; want %q", id, sec, wantSec)
				}
				if s, ok := secrets[sec]; ok {
					b64 := fmt.Sprint(dig(s, "data", filepath.Base(keyFile)))
					if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(decodeB64(b64)) {
						t.Errorf("Secret/%s: %s is not 64 hex characters", sec, filepath.Base(keyFile))
					}
				} else if name != "cert-manager" {
					t.Errorf("Secret/%s of --auth-key-file is not rendered (auth.createKeySecret)", sec)
				}
			}
			if name == "cert-manager" {
				for _, f := range []string{"etcd-cacert", "etcd-cert", "etcd-key"} {
					if p, ok := flags[f]; !ok {
						t.Errorf("%s: no --%s with tls.etcd.enabled", id, f)
					} else if sec := secretOf(f, p); sec != "etcd-client" {
						t.Errorf("%s: --%s from Secret %q; want etcd-client", id, f, sec)
					}
				}
				if _, ok := flags["metrics-tls"]; !ok {
					t.Errorf("%s: no --metrics-tls with tls.metrics", id)
				}
			}
		}
	}
	if name != "cert-manager" {
		if len(certs)+len(issuers) > 0 {
			t.Errorf("%d Certificates and %d Issuers rendered without tls.certManager.enabled", len(certs), len(issuers))
		}
		return
	}
	if len(issuers) != 1 || dig(issuers[0], "spec", "ca", "secretName") != "veltrix-ca" {
		t.Errorf("Issuers %v; want one CA Issuer of Secret veltrix-ca", issuers)
	}
	byURI := map[string]k8sObject{}
	for _, c := range certs {
		for _, u := range asList(dig(c, "spec", "uris")) {
			byURI[fmt.Sprint(u)] = c
		}
		if len(issuers) == 1 && dig(c, "spec", "issuerRef", "name") != dig(issuers[0], "metadata", "name") {
			t.Errorf("Certificate/%v: issuerRef %v; want the chart's Issuer", dig(c, "metadata", "name"), dig(c, "spec", "issuerRef"))
		}
	}
	for _, role := range []string{"router", "storage", "migrator"} {
		c := byURI["veltrix://service/"+role]
		if c == nil {
			t.Errorf("no Certificate with URI SAN veltrix://service/%s", role)
			continue
		}
		cid := "Certificate/" + fmt.Sprint(dig(c, "metadata", "name"))
		if sec := dig(c, "spec", "secretName"); sec != mountedSecret[role] {
			t.Errorf("%s: secretName %v; the %s pods mount %q", cid, sec, role, mountedSecret[role])
		}
		var dns []string
		for _, d := range asList(dig(c, "spec", "dnsNames")) {
			dns = append(dns, fmt.Sprint(d))
		}
		for _, svc := range serviceNames[role] {
			for _, want := range []string{svc, svc + ".db.svc", svc + ".db.svc.cluster.local"} {
				if !slices.Contains(dns, want) {
					t.Errorf("%s: dnsNames %v lack %s (Service %s)", cid, dns, want, svc)
				}
			}
		}
		if role == "storage" && !slices.Contains(dns, "*.vx-veltrix-storage.db.svc.cluster.local") {
			t.Errorf("%s: dnsNames %v lack the pods' advertised names *.vx-veltrix-storage.db.svc.cluster.local", cid, dns)
		}
		if !slices.Contains(asList(dig(c, "spec", "ipAddresses")), any("127.0.0.1")) {
			t.Errorf("%s: ipAddresses %v lack 127.0.0.1 (the in-pod probes)", cid, dig(c, "spec", "ipAddresses"))
		}
		usages := fmt.Sprint(dig(c, "spec", "usages"))
		if !strings.Contains(usages, "server auth") || !strings.Contains(usages, "client auth") {
			t.Errorf("%s: usages %s; want server auth and client auth (services dial each other)", cid, usages)
		}
	}
	if byURI["veltrix://principal/admin"] == nil {
		t.Error("no client Certificate with URI SAN veltrix://principal/admin (tls.certManager.clientPrincipals)")
	}
}

func decodeB64(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}
