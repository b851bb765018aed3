package server_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/router/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// migrationCluster is an in-process cluster (embedded etcd, one storage
// node on Pebble, two routers) with dynalite as upstream DynamoDB.
type migrationCluster struct {
	c        *localcluster.Cluster
	upstream string
	up       *dynamodb.Client
	// mig[i] and admin[i] talk to router i.
	mig   []migrationv1.MigrationServiceClient
	admin []kvv1.AdminServiceClient
	store *migration.Store
}

func startMigrationCluster(t *testing.T) *migrationCluster {
	t.Helper()
	return startMigrationClusterOpts(t, "")
}

// startMigrationClusterOpts starts the cluster; dynamoAddr, when set,
// serves router 1's DynamoDB endpoint there (router 2 has none).
func startMigrationClusterOpts(t *testing.T, dynamoAddr string) *migrationCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster and dynalite; CI runs it without -short")
	}
	// The routers find upstream credentials through the AWS SDK's default
	// chain (dynalite accepts any signature).
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDMIGRATION")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	// No default region: requests name theirs (tests of the default set
	// AWS_REGION themselves).
	hermeticAWSRegion(t)
	endpoint := peers.StartDynalite(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: t.TempDir(), Cluster: "mig", Nodes: 1, Routers: 2, RF: 1, Partitions: 8,
		NoSync: true, CacheBytes: 1 << 20, ReadyTimeout: 30 * time.Second, Logger: logger, DynamoDBAddr: dynamoAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	mc := &migrationCluster{c: c, upstream: endpoint, store: migration.NewStore(c.EtcdCli, "mig")}
	for _, addr := range c.RouterAddrs() {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		mc.mig = append(mc.mig, migrationv1.NewMigrationServiceClient(cc))
		mc.admin = append(mc.admin, kvv1.NewAdminServiceClient(cc))
	}
	mc.up = dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDMIGRATION", "secret", "")})
	return mc
}

// upstreamTable creates a table in dynalite: pk is NAME:TYPE, sk optional.
func (mc *migrationCluster) upstreamTable(t *testing.T, name, pk, sk string) {
	t.Helper()
	in := &dynamodb.CreateTableInput{TableName: aws.String(name), BillingMode: ddbtypes.BillingModePayPerRequest}
	for i, a := range []string{pk, sk} {
		if a == "" {
			continue
		}
		n, typ, _ := strings.Cut(a, ":")
		kt := ddbtypes.KeyTypeHash
		if i == 1 {
			kt = ddbtypes.KeyTypeRange
		}
		in.KeySchema = append(in.KeySchema, ddbtypes.KeySchemaElement{AttributeName: aws.String(n), KeyType: kt})
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{AttributeName: aws.String(n), AttributeType: ddbtypes.ScalarAttributeType(typ)})
	}
	if _, err := mc.up.CreateTable(t.Context(), in); err != nil {
		t.Fatalf("dynalite CreateTable %s: %v", name, err)
	}
	// dynalite makes it ACTIVE 50ms later.
	for i := 0; ; i++ {
		d, err := mc.up.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err == nil && d.Table.TableStatus == ddbtypes.TableStatusActive {
			return
		}
		if i == 200 {
			t.Fatalf("dynalite table %s not ACTIVE: %v, %v", name, d, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// as names the person behind a change.
func as(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, server.UserMetadata, user)
}

// wantCode fails unless err has code and its message holds every want.
func wantCode(t *testing.T, what string, err error, code codes.Code, want ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
	for _, w := range want {
		if !strings.Contains(status.Convert(err).Message(), w) {
			t.Errorf("%s: message %q lacks %q", what, status.Convert(err).Message(), w)
		}
	}
}

// unchanged fails if table's stored migration differs from before.
func (mc *migrationCluster) unchanged(t *testing.T, what string, before *migrationv1.Migration) {
	t.Helper()
	after, err := mc.store.Get(t.Context(), before.GetTable())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, after) {
		t.Errorf("%s changed the migration:\nbefore %v\nafter  %v", what, before, after)
	}
}

// moveTo puts a migration in phase p directly through the Store, as the
// service would after an import (the import records are M1a's).
func (mc *migrationCluster) moveTo(t *testing.T, table string, p migrationv1.Phase) *migrationv1.Migration {
	t.Helper()
	m, err := mc.store.Transition(t.Context(), table, func(m *migrationv1.Migration) error {
		migration.Apply(m, migration.Change{To: p, Who: "test setup"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrationStart: StartMigration creates the Veltrix table with
// upstream's key schema and starts in PROXY; bad input, a missing upstream
// table and a Veltrix table with another key schema are refused with
// nothing changed.
func TestMigrationStart(t *testing.T) {
	mc := startMigrationCluster(t)
	ctx := as(t.Context(), "alice@laptop")
	mc.upstreamTable(t, "orders", "customer:S", "order:N")
	mc.upstreamTable(t, "users", "id:S", "")

	resp, err := mc.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "orders", Reason: "go",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "orders", Region: "us-east-1"}})
	if err != nil {
		t.Fatal(err)
	}
	m := resp.GetMigration()
	if !resp.GetCreatedTable() || m.GetPhase() != migrationv1.Phase_PHASE_PROXY || len(m.GetHistory()) != 1 ||
		m.GetHistory()[0].GetWho() != "alice@laptop" || m.GetHistory()[0].GetReason() != "go" || m.GetHistory()[0].GetTo() != migrationv1.Phase_PHASE_PROXY {
		t.Fatalf("StartMigration: %v", resp)
	}
	d, err := mc.admin[1].DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	ks := d.GetTable().GetKeySchema()
	if ks.GetPartitionKey().GetName() != "customer" || ks.GetPartitionKey().GetType() != kvv1.AttributeType_ATTRIBUTE_TYPE_S ||
		ks.GetSortKey().GetName() != "order" || ks.GetSortKey().GetType() != kvv1.AttributeType_ATTRIBUTE_TYPE_N {
		t.Errorf("created table's key schema %v, want customer:S, order:N", ks)
	}
	_, err = mc.mig[1].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "orders",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "orders"}})
	wantCode(t, "start twice", err, codes.AlreadyExists, "already has a migration")
	mc.unchanged(t, "start twice", m)

	// A Veltrix table whose key schema differs from upstream's.
	if _, err := mc.admin[0].CreateTable(ctx, &kvv1.CreateTableRequest{Name: "users", KeySchema: &kvv1.KeySchema{
		PartitionKey: &kvv1.KeyAttribute{Name: "id", Type: kvv1.AttributeType_ATTRIBUTE_TYPE_N}}}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "users",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "users", Region: "us-east-1"}})
	wantCode(t, "start on a table with another key schema", err, codes.FailedPrecondition, "HASH id:N", "HASH id:S")

	for _, tc := range []struct {
		name string
		req  *migrationv1.StartMigrationRequest
		code codes.Code
		want []string
	}{
		{"bad table name", &migrationv1.StartMigrationRequest{Table: "x", Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "users"}}, codes.InvalidArgument, []string{"table"}},
		{"no upstream table", &migrationv1.StartMigrationRequest{Table: "fresh", Upstream: &migrationv1.Upstream{Endpoint: mc.upstream}}, codes.InvalidArgument, []string{"upstream.table: required"}},
		{"bad endpoint", &migrationv1.StartMigrationRequest{Table: "fresh", Upstream: &migrationv1.Upstream{Endpoint: "ftp://x", Table: "users"}}, codes.InvalidArgument, []string{`upstream.endpoint "ftp://x"`}},
		{"missing upstream table", &migrationv1.StartMigrationRequest{Table: "fresh", Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "nosuch", Region: "us-east-1"}}, codes.FailedPrecondition, []string{"upstream table nosuch not found"}},
		{"no region given or configured", &migrationv1.StartMigrationRequest{Table: "fresh", Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "users"}}, codes.InvalidArgument, []string{"upstream.region: none given", "pass --region"}},
	} {
		_, err := mc.mig[0].StartMigration(ctx, tc.req)
		wantCode(t, tc.name, err, tc.code, tc.want...)
	}
	list, err := mc.mig[1].ListMigrations(ctx, &migrationv1.ListMigrationsRequest{})
	if err != nil || len(list.GetMigrations()) != 1 || list.GetMigrations()[0].GetTable() != "orders" {
		t.Errorf("ListMigrations after the refusals: %v, %v; want orders only", list, err)
	}
	if _, err := mc.admin[0].DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: "fresh"}); status.Code(err) != codes.NotFound {
		t.Errorf("a refused start left table fresh behind: %v", err)
	}
	if d, err := mc.admin[0].DescribeTable(ctx, &kvv1.DescribeTableRequest{Name: "users"}); err != nil || d.GetTable().GetKeySchema().GetPartitionKey().GetType() != kvv1.AttributeType_ATTRIBUTE_TYPE_N {
		t.Errorf("users after the refused start: %v, %v", d, err)
	}
	_, err = mc.mig[0].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: "users"})
	wantCode(t, "GetMigration of a table without one", err, codes.NotFound)

	// Without a region, the router's AWS SDK default (AWS_REGION here) is
	// resolved once and stored: every router then signs for it.
	t.Setenv("AWS_REGION", "eu-west-3")
	mc.upstreamTable(t, "carts", "id:S", "")
	sr, err := mc.mig[1].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "carts",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "carts"}})
	if err != nil || sr.GetMigration().GetUpstream().GetRegion() != "eu-west-3" {
		t.Fatalf("start without a region, AWS_REGION=eu-west-3: %v, %v", sr, err)
	}
	if got, err := mc.store.Get(ctx, "carts"); err != nil || got.GetUpstream().GetRegion() != "eu-west-3" {
		t.Fatalf("stored migration: %v, %v; want region eu-west-3", got, err)
	}
}

// hermeticAWSRegion leaves the AWS SDK no default region: no region
// variables and no shared config.
func hermeticAWSRegion(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "no-aws-config")
	for k, v := range map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none} {
		t.Setenv(k, v)
	}
}

// TestMigrationAdvance walks a migration through its phases: refusals
// change nothing, forced steps are recorded with the failed criteria,
// rollback returns to SHADOW, finish ends in DONE, and the other router
// sees each change.
func TestMigrationAdvance(t *testing.T) {
	mc := startMigrationCluster(t)
	ctx := as(t.Context(), "bob@ops")
	mc.upstreamTable(t, "orders", "customer:S", "")
	if _, err := mc.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "orders",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "orders", Region: "us-east-1"}}); err != nil {
		t.Fatal(err)
	}
	adv := func(req *migrationv1.AdvanceMigrationRequest) (*migrationv1.Migration, error) {
		req.Table = "orders"
		resp, err := mc.mig[0].AdvanceMigration(ctx, req)
		return resp.GetMigration(), err
	}
	// PROXY has no criteria: on to MIRROR.
	m, err := adv(&migrationv1.AdvanceMigrationRequest{})
	if err != nil || m.GetPhase() != migrationv1.Phase_PHASE_MIRROR || m.GetMirrorTime() == nil {
		t.Fatalf("advance from PROXY: %v, %v", m, err)
	}
	seen := func(want *migrationv1.Migration) {
		t.Helper()
		// Bounded: a change must reach the other router within a second.
		deadline := time.Now().Add(time.Second)
		for {
			got, err := mc.mig[1].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: "orders"})
			if err == nil && got.GetMigration().GetRevision() >= want.GetRevision() {
				if got.GetMigration().GetPhase() != want.GetPhase() || got.GetMigration().GetCutoverPercent() != want.GetCutoverPercent() {
					t.Fatalf("router 2 sees %v, want %v", got.GetMigration(), want)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("router 2 did not see phase %s within a second: %v, %v", want.GetPhase(), got, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	seen(m)

	// Leaving MIRROR needs an import exported after mirroring began; force
	// does not override that.
	for _, req := range []*migrationv1.AdvanceMigrationRequest{{}, {Force: true, Reason: "hurry"}, {ImportJob: "imp-404"}} {
		_, err = adv(req)
		wantCode(t, "advance without an import", err, codes.FailedPrecondition, "no completed import", "after mirroring began at")
		mc.unchanged(t, "advance without an import", m)
	}
	for _, tc := range []struct {
		name string
		req  *migrationv1.AdvanceMigrationRequest
		code codes.Code
		want string
	}{
		{"percent 150", &migrationv1.AdvanceMigrationRequest{Percent: 150}, codes.InvalidArgument, "percent 150"},
		{"percent 30", &migrationv1.AdvanceMigrationRequest{Percent: 30}, codes.InvalidArgument, "percent 30"},
		{"skipping to cutover", &migrationv1.AdvanceMigrationRequest{Percent: 25}, codes.FailedPrecondition, "the next step is SHADOW, not CUTOVER 25%"},
		{"skipping to veltrix", &migrationv1.AdvanceMigrationRequest{To: migrationv1.Phase_PHASE_VELTRIX}, codes.FailedPrecondition, "the next step is SHADOW"},
		{"force without reason", &migrationv1.AdvanceMigrationRequest{Force: true}, codes.InvalidArgument, "reason: required with force"},
	} {
		_, err := adv(tc.req)
		wantCode(t, tc.name, err, tc.code, tc.want)
		mc.unchanged(t, tc.name, m)
	}

	// An import exported before mirroring began does not count; one
	// exported after it does, and the migration records it.
	mirror := m.GetMirrorTime().AsTime()
	if err := mc.store.RecordImport(ctx, "orders", "imp-old", mirror.Add(-time.Minute), time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = adv(&migrationv1.AdvanceMigrationRequest{})
	wantCode(t, "advance with an import exported before mirroring", err, codes.FailedPrecondition, "import job imp-old was exported at")
	mc.unchanged(t, "advance with an import exported before mirroring", m)
	if err := mc.store.RecordImport(ctx, "orders", "imp-new", mirror.Add(time.Second), time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = adv(&migrationv1.AdvanceMigrationRequest{ImportJob: "imp-old"})
	wantCode(t, "advance naming the old import", err, codes.FailedPrecondition, "import job imp-old was exported at")
	if m, err = adv(&migrationv1.AdvanceMigrationRequest{To: migrationv1.Phase_PHASE_SHADOW, Reason: "snapshot loaded"}); err != nil ||
		m.GetPhase() != migrationv1.Phase_PHASE_SHADOW || m.GetImportJob() != "imp-new" || m.GetHistory()[2].GetForced() {
		t.Fatalf("advance from MIRROR after the import: %v, %v", m, err)
	}

	// In SHADOW no shadow read was compared yet: refused without force.
	_, err = adv(&migrationv1.AdvanceMigrationRequest{})
	wantCode(t, "advance with failing criteria", err, codes.FailedPrecondition, "mismatch_rate is", "cache_hit_ratio is", "override with force")
	mc.unchanged(t, "advance with failing criteria", m)
	st, err := mc.mig[1].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: "orders"})
	if err != nil || st.GetNext() != migrationv1.Phase_PHASE_CUTOVER || st.GetNextPercent() != 5 || len(st.GetCriteria()) != 4 || st.GetCriteria()[0].GetMet() {
		t.Fatalf("GetMigration in SHADOW: %v, %v", st, err)
	}
	// A running stream job into the table adds the CDC lag criterion,
	// read from its job document in etcd.
	for _, tc := range []struct {
		lag  time.Duration
		met  bool
		want string
	}{{3 * time.Second, true, "3s (job cdc-1)"}, {12 * time.Second, false, "12s (job cdc-1)"}} {
		job := &migratorv1.Job{Id: "cdc-1", Kind: migratorv1.JobKind_JOB_KIND_STREAM, State: migratorv1.JobState_JOB_STATE_RUNNING,
			Spec:     &migratorv1.Job_StreamSpec{StreamSpec: &migratorv1.StreamSpec{Mapping: &migratorv1.Mapping{TargetTable: "orders"}}},
			Progress: &migratorv1.Progress{Lag: durationpb.New(tc.lag)}}
		b, err := protojson.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mc.c.EtcdCli.Put(ctx, topology.NewKeys("mig").Job("cdc-1"), string(b)); err != nil {
			t.Fatal(err)
		}
		st, err := mc.mig[0].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		c := st.GetCriteria()[len(st.GetCriteria())-1]
		if c.GetName() != "cdc_lag" || c.GetMet() != tc.met || c.GetValue() != tc.want || st.GetStats().GetCdcLag().AsDuration() != tc.lag {
			t.Errorf("CDC lag %s: criterion %v, stats lag %v", tc.lag, c, st.GetStats().GetCdcLag())
		}
	}
	if _, err := mc.c.EtcdCli.Delete(ctx, topology.NewKeys("mig").Job("cdc-1")); err != nil {
		t.Fatal(err)
	}
	for _, pct := range []uint32{5} {
		if m, err = adv(&migrationv1.AdvanceMigrationRequest{Percent: pct, Force: true, Reason: "load test window"}); err != nil {
			t.Fatalf("forced advance to %d%%: %v", pct, err)
		}
		last := m.GetHistory()[len(m.GetHistory())-1]
		if m.GetPhase() != migrationv1.Phase_PHASE_CUTOVER || m.GetCutoverPercent() != pct || !last.GetForced() || last.GetWho() != "bob@ops" ||
			last.GetReason() != "load test window" || !strings.Contains(strings.Join(last.GetFailedCriteria(), ","), "mismatch_rate") {
			t.Fatalf("forced advance to %d%%: %v", pct, m)
		}
	}
	seen(m)
	// Two routers asked for the same step at once: exactly one takes it.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = mc.mig[i].AdvanceMigration(ctx, &migrationv1.AdvanceMigrationRequest{Table: "orders", Percent: 25, Force: true, Reason: "race"})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			won++
		case codes.Aborted, codes.FailedPrecondition:
		default:
			t.Errorf("concurrent advance: %v", err)
		}
	}
	after, err := mc.store.Get(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || after.GetCutoverPercent() != 25 || len(after.GetHistory()) != len(m.GetHistory())+1 {
		t.Fatalf("concurrent advances: %d won (%v); history %d entries after %d", won, errs, len(after.GetHistory()), len(m.GetHistory()))
	}
	if m, err = adv(&migrationv1.AdvanceMigrationRequest{Percent: 50, Force: true, Reason: "load test window"}); err != nil || m.GetCutoverPercent() != 50 {
		t.Fatalf("forced advance to 50%%: %v, %v", m, err)
	}
	_, err = adv(&migrationv1.AdvanceMigrationRequest{Percent: 25, Force: true, Reason: "back"})
	wantCode(t, "advance backwards", err, codes.FailedPrecondition, "the next step is CUTOVER 100%, not CUTOVER 25%")

	// Rollback from CUTOVER 50 to SHADOW, seen by the other router.
	rb, err := mc.mig[0].RollbackMigration(ctx, &migrationv1.RollbackMigrationRequest{Table: "orders", Reason: "p99 regression"})
	if err != nil || rb.GetMigration().GetPhase() != migrationv1.Phase_PHASE_SHADOW || rb.GetMigration().GetCutoverPercent() != 0 {
		t.Fatalf("rollback from CUTOVER 50: %v, %v", rb, err)
	}
	seen(rb.GetMigration())
	_, err = mc.mig[1].RollbackMigration(ctx, &migrationv1.RollbackMigrationRequest{Table: "orders"})
	wantCode(t, "rollback from SHADOW", err, codes.FailedPrecondition, "from CUTOVER or VELTRIX only")
	mc.unchanged(t, "rollback from SHADOW", rb.GetMigration())

	// Finish only from VELTRIX, and with its criteria or force.
	_, err = mc.mig[0].FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: "orders"})
	wantCode(t, "finish from SHADOW", err, codes.FailedPrecondition, "VELTRIX to DONE only")
	m = mc.moveTo(t, "orders", migrationv1.Phase_PHASE_VELTRIX)
	_, err = adv(&migrationv1.AdvanceMigrationRequest{Force: true, Reason: "x"})
	wantCode(t, "advance from VELTRIX", err, codes.FailedPrecondition, "veltrix migrate finish")
	_, err = mc.mig[0].FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: "orders"})
	wantCode(t, "finish with failing criteria", err, codes.FailedPrecondition, "stays in VELTRIX")
	_, err = mc.mig[0].FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: "orders", Force: true})
	wantCode(t, "finish forced without reason", err, codes.InvalidArgument, "reason")
	// Re-syncs still queued: DONE would drop them, so finish names them
	// and refuses; forced, it reports how many were pending.
	for _, k := range []string{"a", "b"} {
		if err := mc.store.EnqueueSync(ctx, "orders", `{"customer":{"S":"`+k+`"}}`); err != nil {
			t.Fatal(err)
		}
	}
	_, err = mc.mig[0].FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: "orders"})
	wantCode(t, "finish with re-syncs queued", err, codes.FailedPrecondition, "mirror_queue_empty is 2 pending")
	mc.unchanged(t, "refused finishes", m)
	fin, err := mc.mig[1].FinishMigration(ctx, &migrationv1.FinishMigrationRequest{Table: "orders", Force: true, Reason: "cut the cord"})
	if err != nil || fin.GetMigration().GetPhase() != migrationv1.Phase_PHASE_DONE || fin.GetPendingSyncs() != 2 {
		t.Fatalf("finish: %v, %v; want DONE with 2 pending re-syncs reported", fin, err)
	}
	if last := fin.GetMigration().GetHistory()[len(fin.GetMigration().GetHistory())-1]; !slices.Contains(last.GetFailedCriteria(), "mirror_queue_empty") {
		t.Errorf("forced finish recorded failed criteria %v, want mirror_queue_empty among them", last.GetFailedCriteria())
	}
	seen(fin.GetMigration())
	_, err = mc.mig[0].RollbackMigration(ctx, &migrationv1.RollbackMigrationRequest{Table: "orders"})
	wantCode(t, "rollback from DONE", err, codes.FailedPrecondition)
	hist := fin.GetMigration().GetHistory()
	var steps []string
	for _, h := range hist {
		steps = append(steps, strings.TrimPrefix(h.GetTo().String(), "PHASE_"))
	}
	if got := strings.Join(steps, ","); got != "PROXY,MIRROR,SHADOW,CUTOVER,CUTOVER,CUTOVER,SHADOW,VELTRIX,DONE" {
		t.Errorf("history %s", got)
	}

	// SyncItems is refused outside MIRROR..VELTRIX.
	_, err = mc.mig[0].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: "orders", Keys: []string{`{"customer":{"S":"a"}}`}})
	wantCode(t, "SyncItems in DONE", err, codes.FailedPrecondition, "MIRROR to VELTRIX only")
}

// TestMigrationSyncItems: SyncItems on a router with the DynamoDB endpoint
// copies DynamoDB's item into Veltrix; a router without the endpoint, a
// table not mirroring and too many keys are refused.
func TestMigrationSyncItems(t *testing.T) {
	mc := startMigrationClusterOpts(t, "127.0.0.1:0")
	ctx := as(t.Context(), "sync@test")
	mc.upstreamTable(t, "carts", "id:S", "")
	item := map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "a"}, "n": &ddbtypes.AttributeValueMemberN{Value: "7"}}
	if _, err := mc.up.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("carts"), Item: item}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: "carts",
		Upstream: &migrationv1.Upstream{Endpoint: mc.upstream, Table: "carts", Region: "us-east-1"}}); err != nil {
		t.Fatal(err)
	}
	key := `{"id":{"S":"a"}}`
	_, err := mc.mig[0].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: "carts", Keys: []string{key}})
	wantCode(t, "SyncItems in PROXY", err, codes.FailedPrecondition, "MIRROR to VELTRIX only")
	if _, err := mc.mig[0].AdvanceMigration(ctx, &migrationv1.AdvanceMigrationRequest{Table: "carts"}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.mig[1].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: "carts", Keys: []string{key}})
	wantCode(t, "SyncItems on a router without the endpoint", err, codes.FailedPrecondition, "serves no DynamoDB endpoint")
	_, err = mc.mig[0].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: "carts", Keys: make([]string, 101)})
	wantCode(t, "SyncItems with 101 keys", err, codes.InvalidArgument, "at most 100")

	resp, err := mc.mig[0].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: "carts", Keys: []string{key, `{"nope":{"S":"a"}}`}})
	if err != nil || len(resp.GetErrors()) != 2 || resp.GetErrors()[0] != "" || resp.GetErrors()[1] == "" {
		t.Fatalf("SyncItems: %v, %v; want the first synced and the second refused", resp, err)
	}
	// Only Veltrix has the item now: DynamoDB's copy is deleted behind the
	// endpoint's back, and in VELTRIX reads come from Veltrix.
	if _, err := mc.up.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("carts"), Key: map[string]ddbtypes.AttributeValue{"id": item["id"]}}); err != nil {
		t.Fatal(err)
	}
	mc.moveTo(t, "carts", migrationv1.Phase_PHASE_VELTRIX)
	ep := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + mc.c.DynamoDBAddr()),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	for i := 0; ; i++ {
		out, err := ep.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("carts"), Key: map[string]ddbtypes.AttributeValue{"id": item["id"]}})
		if err == nil && out.Item != nil {
			if n, ok := out.Item["n"].(*ddbtypes.AttributeValueMemberN); !ok || n.Value != "7" {
				t.Fatalf("Veltrix's copy %v, want n 7", out.Item)
			}
			return
		}
		if i == 100 {
			t.Fatalf("the endpoint never served the synced item from Veltrix: %v, %v", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
