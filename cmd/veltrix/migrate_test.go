package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeMigration is a MigrationService holding one migration of table
// "orders" in SHADOW; it refuses as the router does and records the
// requests and the user metadata it got.
type fakeMigration struct {
	migrationv1.UnimplementedMigrationServiceServer
	mu       sync.Mutex
	m        *migrationv1.Migration
	advances []*migrationv1.AdvanceMigrationRequest
	starts   []*migrationv1.StartMigrationRequest
	users    []string
}

var fakeTime = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func newFakeMigration() *fakeMigration {
	return &fakeMigration{m: &migrationv1.Migration{
		Table: "orders", Phase: migrationv1.Phase_PHASE_SHADOW, PhaseTime: timestamppb.New(fakeTime),
		Upstream: &migrationv1.Upstream{Endpoint: "http://127.0.0.1:8000", Table: "orders-prod", Region: "eu-west-1"},
		History: []*migrationv1.PhaseChange{
			{To: migrationv1.Phase_PHASE_PROXY, Who: "alice@laptop", Time: timestamppb.New(fakeTime.Add(-time.Hour))},
			{From: migrationv1.Phase_PHASE_MIRROR, To: migrationv1.Phase_PHASE_SHADOW, Who: "bob@ops", Time: timestamppb.New(fakeTime),
				Forced: true, FailedCriteria: []string{"mirror_queue_empty"}, Reason: "queue drains"},
		},
	}}
}

func (f *fakeMigration) user(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.users = append(f.users, strings.Join(md.Get(userMetadata), ","))
	f.mu.Unlock()
}

func (f *fakeMigration) GetMigration(ctx context.Context, r *migrationv1.GetMigrationRequest) (*migrationv1.GetMigrationResponse, error) {
	f.user(ctx)
	if r.GetTable() != "orders" {
		return nil, status.Errorf(codes.NotFound, "migration: not found: table %s", r.GetTable())
	}
	return &migrationv1.GetMigrationResponse{
		Migration: f.m, TimeInPhase: durationpb.New(90 * time.Minute), Next: migrationv1.Phase_PHASE_CUTOVER, NextPercent: 5,
		Stats: &migrationv1.MigrationStats{Window: durationpb.New(time.Hour), Routers: 2, ReadsCompared: 1000, Mismatches: 1,
			VeltrixReadP99: durationpb.New(3 * time.Millisecond), DynamodbReadP99: durationpb.New(9 * time.Millisecond), CacheHitRatioPercent: 97.5},
		Criteria: []*migrationv1.Criterion{
			{Name: "mismatch_rate", Met: false, Value: "0.1 % (1 of 1000 reads)", Goal: "< 0.001 % over ≥ 1 comparison"},
			{Name: "cache_hit_ratio", Met: true, Value: "97.50 %", Goal: "> 90 %"},
		},
	}, nil
}

func (f *fakeMigration) AdvanceMigration(ctx context.Context, r *migrationv1.AdvanceMigrationRequest) (*migrationv1.AdvanceMigrationResponse, error) {
	f.user(ctx)
	f.mu.Lock()
	f.advances = append(f.advances, r)
	f.mu.Unlock()
	if !r.GetForce() {
		return nil, status.Error(codes.FailedPrecondition, "failed precondition: table orders stays in SHADOW: exit criteria not met: mismatch_rate is 0.1 %, goal < 0.001 %")
	}
	m := &migrationv1.Migration{Table: "orders", Phase: r.GetTo(), CutoverPercent: r.GetPercent(), PhaseTime: timestamppb.New(fakeTime),
		History: []*migrationv1.PhaseChange{{Forced: true, FailedCriteria: []string{"mismatch_rate"}}}}
	return &migrationv1.AdvanceMigrationResponse{Migration: m}, nil
}

func (f *fakeMigration) StartMigration(ctx context.Context, r *migrationv1.StartMigrationRequest) (*migrationv1.StartMigrationResponse, error) {
	f.user(ctx)
	f.mu.Lock()
	f.starts = append(f.starts, r)
	f.mu.Unlock()
	if r.GetUpstream().GetTable() != "orders-prod" {
		return nil, status.Errorf(codes.FailedPrecondition, "failed precondition: Veltrix table %s has key schema HASH id:N, upstream table %s has HASH id:S", r.GetTable(), r.GetUpstream().GetTable())
	}
	m := &migrationv1.Migration{Table: r.GetTable(), Upstream: r.GetUpstream(), Phase: migrationv1.Phase_PHASE_PROXY, PhaseTime: timestamppb.New(fakeTime)}
	return &migrationv1.StartMigrationResponse{Migration: m, CreatedTable: true}, nil
}

func (f *fakeMigration) RollbackMigration(ctx context.Context, r *migrationv1.RollbackMigrationRequest) (*migrationv1.RollbackMigrationResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "failed precondition: table orders is in phase SHADOW: rollback goes to SHADOW from CUTOVER or VELTRIX only")
}

func (f *fakeMigration) FinishMigration(ctx context.Context, r *migrationv1.FinishMigrationRequest) (*migrationv1.FinishMigrationResponse, error) {
	m := &migrationv1.Migration{Table: r.GetTable(), Phase: migrationv1.Phase_PHASE_DONE, PhaseTime: timestamppb.New(fakeTime)}
	resp := &migrationv1.FinishMigrationResponse{Migration: m}
	if r.GetForce() {
		resp.PendingSyncs = 3
	}
	return resp, nil
}

func (f *fakeMigration) ListMigrations(context.Context, *migrationv1.ListMigrationsRequest) (*migrationv1.ListMigrationsResponse, error) {
	return &migrationv1.ListMigrationsResponse{Migrations: []*migrationv1.Migration{f.m}}, nil
}

func (f *fakeMigration) ListMismatches(_ context.Context, r *migrationv1.ListMismatchesRequest) (*migrationv1.ListMismatchesResponse, error) {
	return &migrationv1.ListMismatchesResponse{Total: 7, Mismatches: []*migrationv1.Mismatch{{
		Key: `{"id":{"S":"a"}}`, DynamodbItem: `{"id":{"S":"a"},"n":{"N":"1"}}`, Operation: "GetItem", Router: "r1",
		Differences: []string{"n: N 1 vs absent"}, Time: timestamppb.New(fakeTime),
	}}[:min(1, int(r.GetLimit()))]}, nil
}

func startFakeMigration(t *testing.T) (*fakeMigration, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeMigration()
	srv := grpc.NewServer()
	migrationv1.RegisterMigrationServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

// TestMigrateCommands runs veltrix migrate against a fake router: what each
// command prints, and exit 1 with the router's message when it refuses.
func TestMigrateCommands(t *testing.T) {
	f, addr := startFakeMigration(t)
	env := map[string]string{"VELTRIX_ENDPOINTS": addr, "USER": "carol"}
	for _, tc := range []struct {
		args []string
		code int
		out  []string
		err  []string
	}{
		{[]string{"migrate", "status", "orders"}, exitOK, []string{
			"table orders  ←  upstream table orders-prod at http://127.0.0.1:8000 (eu-west-1)",
			"phase:    SHADOW for 1h30m0s", "next:     cutover 5% (veltrix migrate advance orders)",
			"read P99 Veltrix 3ms, DynamoDB 9ms", "cache hit ratio 97.50 %",
			"✗    mismatch_rate    0.1 % (1 of 1000 reads)", "✓    cache_hit_ratio",
			"FORCED over mirror_queue_empty: queue drains", "alice@laptop"}, nil},
		{[]string{"migrate", "status", "nosuch"}, exitFailure, nil, []string{"migrate status: not found: migration: not found: table nosuch"}},
		{[]string{"migrate", "advance", "orders"}, exitFailure, nil, []string{"exit criteria not met: mismatch_rate is 0.1 %"}},
		{[]string{"migrate", "advance", "orders", "--force", "--reason", "window"}, exitOK, []string{"table orders: advanced (FORCED over mismatch_rate); phase CUTOVER 5%"}, nil},
		{[]string{"migrate", "advance", "orders", "--percent", "25", "--force", "--reason", "r"}, exitOK, []string{"phase CUTOVER 25%"}, nil},
		{[]string{"migrate", "advance", "orders", "--force"}, exitUsage, nil, []string{"--force needs --reason"}},
		{[]string{"migrate", "advance", "orders", "--percent", "150"}, exitUsage, nil, []string{"--percent 150: want 0 to 100"}},
		{[]string{"migrate", "advance", "orders", "--to", "done"}, exitUsage, nil, []string{"veltrix migrate finish"}},
		{[]string{"migrate", "start", "orders", "--upstream-endpoint", "http://127.0.0.1:8000", "--upstream-table", "orders-prod"}, exitOK,
			[]string{"table orders: migration started, table created with upstream's key schema; phase PROXY"}, nil},
		{[]string{"migrate", "start", "users", "--upstream-table", "users"}, exitFailure, nil, []string{"HASH id:N", "HASH id:S"}},
		{[]string{"migrate", "start", "users"}, exitUsage, nil, []string{"--upstream-table is required"}},
		{[]string{"migrate", "rollback", "orders"}, exitFailure, nil, []string{"from CUTOVER or VELTRIX only"}},
		{[]string{"migrate", "finish", "orders"}, exitOK, []string{"table orders: finished; phase DONE"}, nil},
		{[]string{"migrate", "finish", "orders", "--force", "--reason", "r"}, exitOK, []string{"table orders: finished; phase DONE",
			"3 queued re-syncs were pending: DONE does not re-sync, so they are dropped"}, nil},
		{[]string{"migrate", "list"}, exitOK, []string{"TABLE", "orders", "shadow", "orders-prod"}, nil},
		{[]string{"migrate", "mismatches", "orders"}, exitOK, []string{"7 mismatches recorded, 1 shown", "GetItem  key {\"id\":{\"S\":\"a\"}}",
			"differs: n: N 1 vs absent", "veltrix:  (absent)"}, nil},
	} {
		code, out, stderr := runCLI(t, env, tc.args...)
		if code != tc.code {
			t.Errorf("veltrix %s: exit %d, want %d; stdout %q stderr %q", strings.Join(tc.args, " "), code, tc.code, out, stderr)
			continue
		}
		for _, w := range tc.out {
			if !strings.Contains(out, w) {
				t.Errorf("veltrix %s: stdout lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
		for _, w := range tc.err {
			if !strings.Contains(stderr, w) {
				t.Errorf("veltrix %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), w, stderr)
			}
		}
	}
	// advance without --to/--percent names the next step the router gave,
	// so a retried call cannot move two steps.
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.advances[0]; a.GetTo() != migrationv1.Phase_PHASE_CUTOVER || a.GetPercent() != 5 {
		t.Errorf("advance sent to %s percent %d, want the next step CUTOVER 5", a.GetTo(), a.GetPercent())
	}
	if a := f.advances[2]; a.GetPercent() != 25 || a.GetReason() != "r" || !a.GetForce() {
		t.Errorf("advance --percent 25 sent %v", a)
	}
	if len(f.users) == 0 || !strings.HasPrefix(f.users[0], "carol@") {
		t.Errorf("x-veltrix-user sent: %q, want carol@<host>", f.users)
	}
}

// TestMigrateJSON: --output json prints the response message.
func TestMigrateJSON(t *testing.T) {
	_, addr := startFakeMigration(t)
	code, out, stderr := runCLI(t, nil, "migrate", "status", "orders", "--endpoints", addr, "-o", "json")
	var got struct {
		Migration struct {
			Table string `json:"table"`
			Phase string `json:"phase"`
		} `json:"migration"`
		Criteria []struct {
			Name string `json:"name"`
			Met  bool   `json:"met"`
		} `json:"criteria"`
		NextPercent int `json:"nextPercent"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if got.Migration.Table != "orders" || got.Migration.Phase != "PHASE_SHADOW" || len(got.Criteria) != 2 || got.Criteria[1].Name != "cache_hit_ratio" || !got.Criteria[1].Met || got.NextPercent != 5 {
		t.Errorf("json %+v from %s", got, out)
	}
}

// TestMigrateStartRegion: without --region, start sends the AWS SDK's
// default region where the CLI runs (AWS_REGION, AWS_DEFAULT_REGION, the
// shared config's profile), and none when none is configured (the router
// then resolves its own or refuses naming --region), never a made-up one.
func TestMigrateStartRegion(t *testing.T) {
	f, addr := startFakeMigration(t)
	env := map[string]string{"VELTRIX_ENDPOINTS": addr}
	dir := t.TempDir()
	withProfile := filepath.Join(dir, "config")
	if err := os.WriteFile(withProfile, []byte("[default]\nregion = ap-south-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(dir, "none")
	for _, tc := range []struct {
		name              string
		region, defRegion string
		configFile        string
		args              []string
		want              string
	}{
		{"--region", "eu-north-1", "", withProfile, []string{"--region", "us-east-1"}, "us-east-1"},
		{"AWS_REGION", "eu-north-1", "", withProfile, nil, "eu-north-1"},
		{"AWS_DEFAULT_REGION", "", "eu-central-1", withProfile, nil, "eu-central-1"},
		{"shared config", "", "", withProfile, nil, "ap-south-1"},
		{"none configured", "", "", none, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range map[string]string{"AWS_REGION": tc.region, "AWS_DEFAULT_REGION": tc.defRegion, "AWS_PROFILE": "",
				"AWS_CONFIG_FILE": tc.configFile, "AWS_SHARED_CREDENTIALS_FILE": none} {
				t.Setenv(k, v)
			}
			args := append([]string{"migrate", "start", "orders", "--upstream-table", "orders-prod"}, tc.args...)
			if code, out, stderr := runCLI(t, env, args...); code != exitOK {
				t.Fatalf("exit %d: %s %s", code, out, stderr)
			}
			f.mu.Lock()
			got := f.starts[len(f.starts)-1].GetUpstream().GetRegion()
			f.mu.Unlock()
			if got != tc.want {
				t.Fatalf("region sent %q, want %q", got, tc.want)
			}
		})
	}
}
