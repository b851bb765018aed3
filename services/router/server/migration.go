package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// UserMetadata is the gRPC metadata key naming the person behind a
// migration change (the CLI sends user@host); without it the history
// records the caller's address.
const UserMetadata = "x-veltrix-user"

// Limits of MigrationService requests.
const (
	// maxSyncKeys is the most keys one SyncItems call takes.
	maxSyncKeys = 100
	// defaultMismatches is ListMismatches' limit when none is given.
	defaultMismatches = 100
	// maxReason bounds a reason recorded in the history.
	maxReason = 1024
)

// errUpstream marks a failure of upstream DynamoDB (DescribeTable); use
// errors.Is. It maps to Unavailable.
var errUpstream = errors.New("upstream DynamoDB")

// ItemSyncer re-syncs items of a migrating table from DynamoDB into
// Veltrix (docs/design.md, "Migration mode: convergence"). The DynamoDB
// endpoint's handler implements it; errs[i] is keys[i]'s outcome.
type ItemSyncer interface {
	SyncItems(ctx context.Context, table string, keys []string) []error
}

// migrationService serves veltrix.migration.v1.MigrationService: every
// change goes through Store.Transition (one compare-and-swap on the
// migration's etcd document), so it is atomic and recorded in the history;
// a refused request changes nothing.
type migrationService struct {
	migrationv1.UnimplementedMigrationServiceServer
	s     *Server
	store *migration.Store
}

func newMigrationService(s *Server) *migrationService {
	return &migrationService{s: s, store: migration.NewStore(s.etcd, s.cfg.Cluster)}
}

// migrationStatus converts the service's errors to gRPC status codes.
func migrationStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if c, ok := grpcx.ContextCode(err); ok {
		return status.Error(c, err.Error())
	}
	switch {
	case errors.Is(err, migration.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, migration.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, migration.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, migration.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errUpstream):
		return status.Error(codes.Unavailable, err.Error())
	}
	return toStatus(err)
}

// caller names who makes a change: the x-veltrix-user metadata, else the
// peer's address; with authentication on, the authenticated subject comes
// first ("alice (bob@host)"), since the metadata is only the caller's word.
func caller(ctx context.Context) string {
	name := who(ctx)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(UserMetadata); len(v) > 0 && strings.TrimSpace(v[0]) != "" {
			name = strings.TrimSpace(v[0])
		}
	}
	if sub, ok := auth.SubjectFrom(ctx); ok && sub.Via != auth.ViaNone && sub.Name != name {
		return sub.Name + " (" + name + ")"
	}
	return name
}

func checkReason(reason string, force bool) error {
	if len(reason) > maxReason {
		return invalidf("reason: %d bytes, at most %d", len(reason), maxReason)
	}
	if force && strings.TrimSpace(reason) == "" {
		return invalidf("reason: required with force (it is recorded in the history with the criteria overridden)")
	}
	return nil
}

// checkUpstream validates the upstream table's name and endpoint URL.
func checkUpstream(u *migrationv1.Upstream) error {
	if u.GetTable() == "" {
		return invalidf("upstream.table: required")
	}
	if err := checkTableName(u.GetTable(), "upstream.table"); err != nil {
		return err
	}
	if e := u.GetEndpoint(); e != "" {
		p, err := url.Parse(e)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return invalidf("upstream.endpoint %q: want an http:// or https:// URL", e)
		}
	}
	if r := u.GetRegion(); strings.ContainsAny(r, " /") {
		return invalidf("upstream.region %q: not a region name", r)
	}
	return nil
}

// etcd runs fn against etcd with the admin calls' bounds (Unavailable at
// once while etcd is known to be down).
func (m *migrationService) etcd(ctx context.Context, fn func(ctx context.Context) error) error {
	ectx, cancel, err := m.s.etcdContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return etcdError(ctx, fn(ectx))
}

func (m *migrationService) get(ctx context.Context, table string) (*migrationv1.Migration, error) {
	var mg *migrationv1.Migration
	err := m.etcd(ctx, func(ctx context.Context) (err error) {
		mg, err = m.store.Get(ctx, table)
		return err
	})
	return mg, err
}

func (m *migrationService) StartMigration(ctx context.Context, req *migrationv1.StartMigrationRequest) (*migrationv1.StartMigrationResponse, error) {
	resp, err := m.start(ctx, req)
	return resp, migrationStatus(err)
}

func (m *migrationService) start(ctx context.Context, req *migrationv1.StartMigrationRequest) (*migrationv1.StartMigrationResponse, error) {
	if err := checkTableName(req.GetTable(), "table"); err != nil {
		return nil, err
	}
	if err := checkUpstream(req.GetUpstream()); err != nil {
		return nil, err
	}
	if err := checkReason(req.GetReason(), false); err != nil {
		return nil, err
	}
	table := req.GetTable()
	if cur, err := m.get(ctx, table); err == nil {
		return nil, fmt.Errorf("%w: table %s already has a migration (phase %s since %s)", migration.ErrExists,
			table, phaseName(cur.GetPhase(), cur.GetCutoverPercent()), cur.GetPhaseTime().AsTime().UTC().Format(time.RFC3339))
	} else if !errors.Is(err, migration.ErrNotFound) {
		return nil, err
	}
	upstream, err := m.s.cfg.resolveUpstreamRegion(ctx, req.GetUpstream())
	if err != nil {
		return nil, err
	}
	up, err := m.upstreamTable(ctx, upstream)
	if err != nil {
		return nil, err
	}
	created := false
	t, exists := m.s.watcher.Snapshot().Tables[table]
	if !exists {
		t, err = m.s.CreateTable(ctx, topology.Table{Name: table, KeySchema: up.KeySchema,
			BillingMode: up.BillingMode, ReadCapacityUnits: up.ReadCapacityUnits, WriteCapacityUnits: up.WriteCapacityUnits})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, topology.ErrTableExists):
			// Created since the snapshot was read: compare with it.
			m.s.waitRouted(table, func(_ topology.Table, ok bool) bool { return ok })
			if t, exists = m.s.watcher.Snapshot().Tables[table]; !exists {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	if !created && !sameKeySchema(t.KeySchema, up.KeySchema) {
		return nil, fmt.Errorf("%w: Veltrix table %s has key schema %s, upstream table %s has %s; migrate into a new table or one with the same key schema",
			errPrecondition, table, keySchemaString(t.KeySchema), upstream.GetTable(), keySchemaString(up.KeySchema))
	}
	mg := &migrationv1.Migration{Table: table, Upstream: upstream}
	migration.Apply(mg, migration.Change{To: migrationv1.Phase_PHASE_PROXY, Who: caller(ctx), Reason: req.GetReason()})
	err = m.etcd(ctx, func(ctx context.Context) (err error) {
		mg, err = m.store.Create(ctx, mg)
		return err
	})
	if err != nil {
		if created && !errors.Is(err, migration.ErrExists) {
			// Nothing changes on an error: the table made for this
			// migration goes with it (unless a concurrent start won and
			// its migration now uses the table).
			if _, derr := m.s.DeleteTable(context.WithoutCancel(ctx), table); derr != nil {
				m.s.logger.Warn("migration: could not delete the table created for a migration that failed to start", "table", table, "err", derr)
			}
		}
		return nil, err
	}
	m.s.logger.Info("migration started", "table", table, "upstream", upstream.GetTable(),
		"endpoint", upstream.GetEndpoint(), "region", upstream.GetRegion(), "who", caller(ctx), "created_table", created)
	return &migrationv1.StartMigrationResponse{Migration: mg, CreatedTable: created}, nil
}

// upstreamTable describes the upstream table: its key schema and billing.
func (m *migrationService) upstreamTable(ctx context.Context, u *migrationv1.Upstream) (topology.Table, error) {
	cfg, err := m.s.cfg.UpstreamAWSConfig(ctx, u)
	if err != nil {
		return topology.Table{}, fmt.Errorf("%w: %v", errUpstream, err)
	}
	out, err := dynamodb.NewFromConfig(cfg).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(u.GetTable())})
	where := u.GetEndpoint()
	if where == "" {
		where = "AWS region " + cfg.Region
	}
	if err != nil {
		var nf *ddbtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return topology.Table{}, fmt.Errorf("%w: upstream table %s not found at %s", errPrecondition, u.GetTable(), where)
		}
		if ctx.Err() != nil {
			return topology.Table{}, ctx.Err()
		}
		return topology.Table{}, fmt.Errorf("%w: DescribeTable %s at %s: %v", errUpstream, u.GetTable(), where, err)
	}
	return upstreamSchema(out.Table)
}

// upstreamSchema is the Veltrix table matching a DynamoDB table
// description: the same key schema and billing mode.
func upstreamSchema(d *ddbtypes.TableDescription) (topology.Table, error) {
	types := map[string]string{}
	for _, a := range d.AttributeDefinitions {
		types[aws.ToString(a.AttributeName)] = string(a.AttributeType)
	}
	ks := &topology.KeySchema{}
	for _, e := range d.KeySchema {
		a := topology.KeyAttribute{Name: aws.ToString(e.AttributeName), Type: types[aws.ToString(e.AttributeName)]}
		if a.Type == "" {
			return topology.Table{}, fmt.Errorf("%w: upstream table %s: key attribute %s has no attribute definition", errUpstream, aws.ToString(d.TableName), a.Name)
		}
		switch e.KeyType {
		case ddbtypes.KeyTypeHash:
			ks.PartitionKey = a
		case ddbtypes.KeyTypeRange:
			ks.SortKey = &a
		}
	}
	if ks.PartitionKey.Name == "" {
		return topology.Table{}, fmt.Errorf("%w: upstream table %s: no HASH key in its key schema", errUpstream, aws.ToString(d.TableName))
	}
	t := topology.Table{Name: aws.ToString(d.TableName), KeySchema: ks}
	if b := d.BillingModeSummary; b != nil && b.BillingMode == ddbtypes.BillingModeProvisioned {
		t.BillingMode = string(ddbtypes.BillingModeProvisioned)
		if pt := d.ProvisionedThroughput; pt != nil {
			t.ReadCapacityUnits, t.WriteCapacityUnits = uint64(aws.ToInt64(pt.ReadCapacityUnits)), uint64(aws.ToInt64(pt.WriteCapacityUnits))
		}
	}
	return t, nil
}

func sameKeySchema(a, b *topology.KeySchema) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.PartitionKey != b.PartitionKey || (a.SortKey == nil) != (b.SortKey == nil) {
		return false
	}
	return a.SortKey == nil || *a.SortKey == *b.SortKey
}

// keySchemaString renders a key schema as "pk:S, sk:N" ("none" without one).
func keySchemaString(ks *topology.KeySchema) string {
	if ks == nil {
		return "none (a key-value table)"
	}
	s := fmt.Sprintf("HASH %s:%s", ks.PartitionKey.Name, ks.PartitionKey.Type)
	if ks.SortKey != nil {
		s += fmt.Sprintf(", RANGE %s:%s", ks.SortKey.Name, ks.SortKey.Type)
	}
	return s
}

// phaseName renders a phase for messages: "CUTOVER 25%", "MIRROR".
func phaseName(p migrationv1.Phase, percent uint32) string {
	n := strings.TrimPrefix(p.String(), "PHASE_")
	if p == migrationv1.Phase_PHASE_CUTOVER {
		n += fmt.Sprintf(" %d%%", percent)
	}
	return n
}

// nextStep is the step AdvanceMigration takes from (p, percent): PROXY →
// MIRROR → SHADOW → CUTOVER 5 → 25 → 50 → 100 → VELTRIX; from VELTRIX it
// is DONE (FinishMigration's), from DONE there is none (UNSPECIFIED).
func nextStep(p migrationv1.Phase, percent uint32) (migrationv1.Phase, uint32) {
	switch p {
	case migrationv1.Phase_PHASE_PROXY:
		return migrationv1.Phase_PHASE_MIRROR, 0
	case migrationv1.Phase_PHASE_MIRROR:
		return migrationv1.Phase_PHASE_SHADOW, 0
	case migrationv1.Phase_PHASE_SHADOW:
		return migrationv1.Phase_PHASE_CUTOVER, migration.CutoverSteps[0]
	case migrationv1.Phase_PHASE_CUTOVER:
		for _, s := range migration.CutoverSteps {
			if s > percent {
				return migrationv1.Phase_PHASE_CUTOVER, s
			}
		}
		return migrationv1.Phase_PHASE_VELTRIX, 0
	case migrationv1.Phase_PHASE_VELTRIX:
		return migrationv1.Phase_PHASE_DONE, 0
	}
	return migrationv1.Phase_PHASE_UNSPECIFIED, 0
}

// advanceTarget validates an AdvanceMigrationRequest's to/percent and
// returns what it asks for (UNSPECIFIED, 0: the next step).
func advanceTarget(req *migrationv1.AdvanceMigrationRequest) (migrationv1.Phase, uint32, error) {
	to, pct := req.GetTo(), req.GetPercent()
	if _, ok := migrationv1.Phase_name[int32(to)]; !ok {
		return 0, 0, invalidf("to: unknown phase %d", to)
	}
	if pct > 100 {
		return 0, 0, invalidf("percent %d: want 0 to 100 (a cutover step: 5, 25, 50 or 100)", pct)
	}
	if pct != 0 {
		step := false
		for _, s := range migration.CutoverSteps {
			step = step || s == pct
		}
		if !step {
			return 0, 0, invalidf("percent %d: not a cutover step (5, 25, 50 or 100)", pct)
		}
		if to != migrationv1.Phase_PHASE_UNSPECIFIED && to != migrationv1.Phase_PHASE_CUTOVER {
			return 0, 0, invalidf("percent %d: only with to PHASE_CUTOVER, not %s", pct, to)
		}
		to = migrationv1.Phase_PHASE_CUTOVER
	}
	if to == migrationv1.Phase_PHASE_DONE {
		return 0, 0, fmt.Errorf("%w: to PHASE_DONE: use FinishMigration (veltrix migrate finish)", errPrecondition)
	}
	return to, pct, nil
}

func (m *migrationService) AdvanceMigration(ctx context.Context, req *migrationv1.AdvanceMigrationRequest) (*migrationv1.AdvanceMigrationResponse, error) {
	mg, err := m.advance(ctx, req)
	return &migrationv1.AdvanceMigrationResponse{Migration: mg}, migrationStatus(err)
}

func (m *migrationService) advance(ctx context.Context, req *migrationv1.AdvanceMigrationRequest) (*migrationv1.Migration, error) {
	to, pct, err := advanceTarget(req)
	if err != nil {
		return nil, err
	}
	mg, _, err := m.change(ctx, req.GetTable(), req.GetReason(), req.GetForce(), req.GetImportJob(), func(cur *migrationv1.Migration) (migrationv1.Phase, uint32, error) {
		next, nextPct := nextStep(cur.GetPhase(), cur.GetCutoverPercent())
		here := phaseName(cur.GetPhase(), cur.GetCutoverPercent())
		switch {
		case next == migrationv1.Phase_PHASE_DONE:
			return 0, 0, fmt.Errorf("%w: table %s is in VELTRIX, the last phase AdvanceMigration reaches; finish the migration (veltrix migrate finish) to stop writing DynamoDB", errPrecondition, cur.GetTable())
		case next == migrationv1.Phase_PHASE_UNSPECIFIED:
			return 0, 0, fmt.Errorf("%w: table %s is in phase %s: nothing follows", errPrecondition, cur.GetTable(), here)
		case to != migrationv1.Phase_PHASE_UNSPECIFIED && (to != next || (pct != 0 && pct != nextPct)):
			return 0, 0, fmt.Errorf("%w: table %s is in phase %s: the next step is %s, not %s (phases advance one step at a time; back to SHADOW is RollbackMigration)",
				errPrecondition, cur.GetTable(), here, phaseName(next, nextPct), phaseName(to, pct))
		}
		return next, nextPct, nil
	})
	return mg, err
}

func (m *migrationService) RollbackMigration(ctx context.Context, req *migrationv1.RollbackMigrationRequest) (*migrationv1.RollbackMigrationResponse, error) {
	mg, _, err := m.change(ctx, req.GetTable(), req.GetReason(), false, "", func(cur *migrationv1.Migration) (migrationv1.Phase, uint32, error) {
		switch cur.GetPhase() {
		case migrationv1.Phase_PHASE_CUTOVER, migrationv1.Phase_PHASE_VELTRIX:
			return migrationv1.Phase_PHASE_SHADOW, 0, nil
		}
		return 0, 0, fmt.Errorf("%w: table %s is in phase %s: rollback goes to SHADOW from CUTOVER or VELTRIX only", errPrecondition,
			cur.GetTable(), phaseName(cur.GetPhase(), cur.GetCutoverPercent()))
	})
	return &migrationv1.RollbackMigrationResponse{Migration: mg}, migrationStatus(err)
}

func (m *migrationService) FinishMigration(ctx context.Context, req *migrationv1.FinishMigrationRequest) (*migrationv1.FinishMigrationResponse, error) {
	mg, ev, err := m.change(ctx, req.GetTable(), req.GetReason(), req.GetForce(), "", func(cur *migrationv1.Migration) (migrationv1.Phase, uint32, error) {
		if cur.GetPhase() != migrationv1.Phase_PHASE_VELTRIX {
			return 0, 0, fmt.Errorf("%w: table %s is in phase %s: finish moves VELTRIX to DONE only", errPrecondition,
				cur.GetTable(), phaseName(cur.GetPhase(), cur.GetCutoverPercent()))
		}
		return migrationv1.Phase_PHASE_DONE, 0, nil
	})
	if err != nil {
		return nil, migrationStatus(err)
	}
	if n := ev.stats.GetMirrorPending(); n > 0 {
		m.s.logger.Warn("migration finished with re-syncs queued: they are dropped; verify and repair the table", "table", req.GetTable(), "pending_syncs", n)
	}
	return &migrationv1.FinishMigrationResponse{Migration: mg, PendingSyncs: ev.stats.GetMirrorPending()}, nil
}

// change makes one phase change of table's migration: plan picks the
// phase (and percentage) to move to from the current state, or refuses.
// Moving forward (not to SHADOW, which is rollback) is refused while an
// exit criterion of the current phase fails, unless force (with a reason:
// the change then records the failed criteria); leaving MIRROR needs a
// completed import (importJob, or the newest) exported after mirroring
// began, which force does not override. The change is written with one
// compare-and-swap on the state the criteria were judged on, which it
// returns with the new state.
func (m *migrationService) change(ctx context.Context, table, reason string, force bool, importJob string,
	plan func(cur *migrationv1.Migration) (migrationv1.Phase, uint32, error)) (*migrationv1.Migration, evidence, error) {
	if err := checkTableName(table, "table"); err != nil {
		return nil, evidence{}, err
	}
	if err := checkReason(reason, force); err != nil {
		return nil, evidence{}, err
	}
	cur, err := m.get(ctx, table)
	if err != nil {
		return nil, evidence{}, err
	}
	to, pct, err := plan(cur)
	if err != nil {
		return nil, evidence{}, err
	}
	c := migration.Change{To: to, Percent: pct, Who: caller(ctx), Reason: reason}
	leavingMirror := cur.GetPhase() == migrationv1.Phase_PHASE_MIRROR
	var ev evidence
	if to != migrationv1.Phase_PHASE_SHADOW || leavingMirror {
		if ev, err = m.evidence(ctx, cur, importJob); err != nil {
			return nil, evidence{}, err
		}
		if leavingMirror && ev.importJob == "" {
			// Not a criterion force overrides: without the snapshot, items
			// not written since mirroring began are missing from Veltrix.
			return nil, evidence{}, fmt.Errorf("%w: table %s: %s", errPrecondition, table, ev.importNote)
		}
		crit := criteria(cur, ev)
		if failed := failedCriteria(crit); len(failed) > 0 {
			if !force {
				return nil, evidence{}, fmt.Errorf("%w: table %s stays in %s: exit criteria not met: %s (override with force and a reason)",
					errPrecondition, table, phaseName(cur.GetPhase(), cur.GetCutoverPercent()), describeFailed(crit))
			}
			c.Forced, c.FailedCriteria = true, failed
		}
	}
	var out *migrationv1.Migration
	err = m.etcd(ctx, func(ctx context.Context) (err error) {
		out, err = m.store.Transition(ctx, table, func(mg *migrationv1.Migration) error {
			if mg.GetRevision() != cur.GetRevision() {
				return fmt.Errorf("%w: table %s changed (to %s) while this change was checked; look at it again and retry",
					migration.ErrConflict, table, phaseName(mg.GetPhase(), mg.GetCutoverPercent()))
			}
			migration.Apply(mg, c)
			if leavingMirror {
				mg.ImportJob = ev.importJob
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, evidence{}, err
	}
	m.s.logger.Info("migration phase changed", "table", table,
		"from", phaseName(cur.GetPhase(), cur.GetCutoverPercent()), "to", phaseName(to, pct),
		"who", c.Who, "reason", reason, "forced", c.Forced, "failed_criteria", c.FailedCriteria)
	return out, ev, nil
}

func (m *migrationService) GetMigration(ctx context.Context, req *migrationv1.GetMigrationRequest) (*migrationv1.GetMigrationResponse, error) {
	resp, err := m.status(ctx, req.GetTable())
	return resp, migrationStatus(err)
}

func (m *migrationService) status(ctx context.Context, table string) (*migrationv1.GetMigrationResponse, error) {
	if err := checkTableName(table, "table"); err != nil {
		return nil, err
	}
	cur, err := m.get(ctx, table)
	if err != nil {
		return nil, err
	}
	ev, err := m.evidence(ctx, cur, cur.GetImportJob())
	if err != nil {
		return nil, err
	}
	next, nextPct := nextStep(cur.GetPhase(), cur.GetCutoverPercent())
	return &migrationv1.GetMigrationResponse{
		Migration:   cur,
		TimeInPhase: durationpb.New(time.Since(cur.GetPhaseTime().AsTime()).Truncate(time.Second)),
		Stats:       ev.stats,
		Criteria:    criteria(cur, ev),
		Next:        next, NextPercent: nextPct,
	}, nil
}

func (m *migrationService) ListMigrations(ctx context.Context, _ *migrationv1.ListMigrationsRequest) (*migrationv1.ListMigrationsResponse, error) {
	var list []*migrationv1.Migration
	err := m.etcd(ctx, func(ctx context.Context) (err error) {
		list, err = m.store.List(ctx)
		return err
	})
	if err != nil {
		return nil, migrationStatus(err)
	}
	return &migrationv1.ListMigrationsResponse{Migrations: list}, nil
}

func (m *migrationService) ListMismatches(ctx context.Context, req *migrationv1.ListMismatchesRequest) (*migrationv1.ListMismatchesResponse, error) {
	if err := checkTableName(req.GetTable(), "table"); err != nil {
		return nil, migrationStatus(err)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = defaultMismatches
	}
	if _, err := m.get(ctx, req.GetTable()); err != nil {
		return nil, migrationStatus(err)
	}
	var (
		list  []*migrationv1.Mismatch
		total uint64
	)
	err := m.etcd(ctx, func(ctx context.Context) (err error) {
		list, total, err = m.store.Mismatches(ctx, req.GetTable(), limit)
		return err
	})
	if err != nil {
		return nil, migrationStatus(err)
	}
	return &migrationv1.ListMismatchesResponse{Mismatches: list, Total: total}, nil
}

func (m *migrationService) SyncItems(ctx context.Context, req *migrationv1.SyncItemsRequest) (*migrationv1.SyncItemsResponse, error) {
	resp, err := m.syncItems(ctx, req)
	return resp, migrationStatus(err)
}

func (m *migrationService) syncItems(ctx context.Context, req *migrationv1.SyncItemsRequest) (*migrationv1.SyncItemsResponse, error) {
	if err := checkTableName(req.GetTable(), "table"); err != nil {
		return nil, err
	}
	switch n := len(req.GetKeys()); {
	case n == 0:
		return nil, invalidf("keys: none given")
	case n > maxSyncKeys:
		return nil, invalidf("keys: %d, at most %d per call", n, maxSyncKeys)
	}
	cur, err := m.get(ctx, req.GetTable())
	if err != nil {
		return nil, err
	}
	if !migration.MirrorsWrites(cur) {
		return nil, fmt.Errorf("%w: table %s is in phase %s: items are re-synced in MIRROR to VELTRIX only", errPrecondition,
			req.GetTable(), phaseName(cur.GetPhase(), cur.GetCutoverPercent()))
	}
	if m.s.syncer == nil {
		return nil, fmt.Errorf("%w: router %s serves no DynamoDB endpoint (--dynamodb-addr), which re-syncs items; call a router that does", errPrecondition, m.s.cfg.ID)
	}
	errs := m.s.syncer.SyncItems(ctx, req.GetTable(), req.GetKeys())
	resp := &migrationv1.SyncItemsResponse{Errors: make([]string, len(req.GetKeys()))}
	for i, e := range errs {
		if e != nil && i < len(resp.Errors) {
			resp.Errors[i] = e.Error()
		}
	}
	return resp, nil
}
