package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/metadata"

	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	router "github.com/veltrixdb/veltrix/services/router/server"
)

// MigrationPhasesWorkload names, in --workloads, the latency of each
// migration phase: GetItem and PutItem through the router's DynamoDB
// endpoint on a table migrating from dynalite, phase after phase, against
// the same calls sent straight to dynalite in the same rounds. It is not in
// the default list: it runs (Warmup + 4 × Duration × Rounds) per phase.
const MigrationPhasesWorkload = "MIGRATION-PHASES"

// MigrationPhasesRate is the open-loop rate of MIGRATION-PHASES when
// --rate is not set: moderate, so latency is not queueing.
const MigrationPhasesRate = 200

// migrationPhaseSettle is the wait after each phase change: every router
// follows the phase through an etcd watch (README: "within a second").
const migrationPhaseSettle = 1500 * time.Millisecond

// MigrationPhaseRow is one operation in one phase: its latency through the
// endpoint and straight to dynalite (medians of the rounds), and the added
// latency, endpoint minus direct within each round, as median, lowest and
// highest over the rounds.
type MigrationPhaseRow struct {
	Phase     string `json:"phase"`
	Operation string `json:"operation"`
	Endpoint  Lat    `json:"endpoint"`
	Direct    Lat    `json:"direct"`
	AddedP50  Micros `json:"added_p50_us"`
	AddedP99  Micros `json:"added_p99_us"`
	// AddedP50Min … AddedP99Max are the rounds' extremes.
	AddedP50Min Micros `json:"added_p50_us_min"`
	AddedP50Max Micros `json:"added_p50_us_max"`
	AddedP99Min Micros `json:"added_p99_us_min"`
	AddedP99Max Micros `json:"added_p99_us_max"`
	Ops         uint64 `json:"ops"`
	Errors      uint64 `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
	NotFound    uint64 `json:"not_found"`
}

// migrationStep is one phase change; measured steps are timed afterwards.
type migrationStep struct {
	label    string
	to       migrationv1.Phase
	percent  uint32
	finish   bool
	measured bool
}

// migrationSteps walks proxy → done; the cutover is measured at 50 %.
var migrationSteps = []migrationStep{
	{label: "mirror", to: migrationv1.Phase_PHASE_MIRROR, measured: true},
	{label: "shadow", to: migrationv1.Phase_PHASE_SHADOW, measured: true},
	{label: "cutover 5%", to: migrationv1.Phase_PHASE_CUTOVER, percent: 5},
	{label: "cutover 25%", to: migrationv1.Phase_PHASE_CUTOVER, percent: 25},
	{label: "cutover 50%", to: migrationv1.Phase_PHASE_CUTOVER, percent: 50, measured: true},
	{label: "cutover 100%", to: migrationv1.Phase_PHASE_CUTOVER, percent: 100},
	{label: "veltrix", to: migrationv1.Phase_PHASE_VELTRIX, measured: true},
	{label: "done", finish: true, measured: true},
}

// migrationPeer is the Veltrix peer whose cluster shape MIGRATION-PHASES
// uses: the first selected one, else veltrix-rf3.
func (o *Options) migrationPeer() Peer {
	for _, p := range o.orderedPeers() {
		if p.RF > 0 && p.base == "" {
			return p
		}
	}
	p, _ := PeerByName("veltrix-rf3")
	return p
}

// runMigrationPhases runs MIGRATION-PHASES on a fresh cluster and a fresh
// dynalite, after every other peer has stopped.
//
// dynalite's table bench_ddb is loaded directly; the Veltrix table of the
// same name migrates from it. Proxy is measured first; after the advance
// to mirror the keys are written again through the endpoint, so mirroring
// copies every item into Veltrix (this stands in for the import, which is
// recorded with Store.RecordImport as a completed import exported after
// mirroring began). Every later advance is forced (with a reason in the
// history): the exit criteria need live traffic and minutes of figures.
func (o *Options) runMigrationPhases(ctx context.Context, rep *Report, root string, values *ValueSource) (err error) {
	dir, err := mkdirTemp(root, "migration-phases")
	if err != nil {
		return err
	}
	direct, err := startDynalite(ctx, dir+"/dynalite", o.Concurrency)
	if errors.Is(err, ErrMissing) && !o.RequirePeers {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s skipped: %v", MigrationPhasesWorkload, err))
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench: %s: %w", MigrationPhasesWorkload, err)
	}
	defer func() { err = errors.Join(err, direct.Close()) }()
	upstream := aws.ToString(direct.cli.Options().BaseEndpoint)
	o.progress("%s: loading %d keys into dynalite", MigrationPhasesWorkload, o.Keys)
	lo := LoadOptions{Keys: o.Keys, Concurrency: min(o.Concurrency, 8), Seed: o.Seed}
	if _, err := Load(ctx, direct, lo, values); err != nil {
		return fmt.Errorf("bench: load dynalite: %w", err)
	}

	p := o.migrationPeer()
	co := o.clusterOptions(dir+"/veltrix", max(p.RF, 1), p.RF)
	co.DynamoDBAddr = "127.0.0.1:0"
	// dynalite accepts any signature.
	co.Upstream = router.UpstreamConfig{AccessKeyID: "bench", SecretAccessKey: "bench"}
	o.progress("%s: starting %s", MigrationPhasesWorkload, p.Name)
	vd, err := startVeltrix(ctx, co)
	if err != nil {
		return fmt.Errorf("bench: start %s: %w", p.Name, err)
	}
	defer func() { err = errors.Join(err, vd.Close()) }()
	mc := migrationv1.NewMigrationServiceClient(vd.c.Conn())
	mctx := metadata.AppendToOutgoingContext(ctx, router.UserMetadata, "veltrix bench")
	if _, err := mc.StartMigration(mctx, &migrationv1.StartMigrationRequest{Table: dynamoTable, Reason: "bench",
		Upstream: &migrationv1.Upstream{Endpoint: upstream, Table: dynamoTable, Region: "us-east-1"}}); err != nil {
		return fmt.Errorf("bench: start the migration of %s: %w", dynamoTable, err)
	}
	sleep(ctx, migrationPhaseSettle)
	ep, err := vd.dynamo(ctx, o.Concurrency)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ep.Close()) }()

	if err := o.measurePhase(ctx, rep, "proxy", ep, direct, values); err != nil {
		return err
	}
	store := migration.NewStore(vd.cluster.EtcdCli, "bench")
	for _, st := range migrationSteps {
		o.progress("%s: → %s", MigrationPhasesWorkload, st.label)
		if st.finish {
			_, err = mc.FinishMigration(mctx, &migrationv1.FinishMigrationRequest{Table: dynamoTable, Force: true, Reason: "bench: phase latency"})
		} else {
			_, err = mc.AdvanceMigration(mctx, &migrationv1.AdvanceMigrationRequest{Table: dynamoTable, To: st.to, Percent: st.percent,
				Force: st.to != migrationv1.Phase_PHASE_MIRROR, Reason: "bench: phase latency"})
		}
		if err != nil {
			return fmt.Errorf("bench: %s → %s: %w", dynamoTable, st.label, err)
		}
		sleep(ctx, migrationPhaseSettle)
		if st.to == migrationv1.Phase_PHASE_MIRROR {
			o.progress("%s: copying %d keys into Veltrix through the endpoint (mirrored writes)", MigrationPhasesWorkload, o.Keys)
			if _, err := Load(ctx, ep, lo, values); err != nil {
				return fmt.Errorf("bench: load through the endpoint in mirror: %w", err)
			}
			now := time.Now()
			if err := store.RecordImport(ctx, dynamoTable, "bench-mirrored-load", now, now); err != nil {
				return err
			}
		}
		if st.measured {
			if err := o.measurePhase(ctx, rep, st.label, ep, direct, values); err != nil {
				return err
			}
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %s's cluster and dynalite started afresh; %d keys loaded into dynalite, then copied into Veltrix by writing them through the endpoint in mirror (recorded as the import); advances after mirror forced; GetItem and PutItem open loop at %s ops/s with %d workers, endpoint and dynalite alternating within each round; added = endpoint − direct per round",
		MigrationPhasesWorkload, p.Name, o.Keys, fmtRate(o.migrationRate()), o.migrationConcurrency()))
	return nil
}

func (o *Options) migrationRate() float64 {
	if o.Rate > 0 {
		return o.Rate
	}
	return MigrationPhasesRate
}

func (o *Options) migrationConcurrency() int { return min(o.Concurrency, 16) }

// measurePhase runs GETITEM and PUTITEM Rounds times each, through the
// endpoint then straight to dynalite, and adds a row per operation.
func (o *Options) measurePhase(ctx context.Context, rep *Report, phase string, ep, direct *dynamoDriver, values *ValueSource) error {
	for _, name := range []string{"GETITEM", "PUTITEM"} {
		w, _ := dynamoDBWorkload(name)
		ro := RunOptions{
			Workload: w, Keys: o.Keys, ValueSize: o.ValueSize, Concurrency: o.migrationConcurrency(), Duration: o.Duration,
			Rate: o.migrationRate(), Distribution: o.Distribution,
		}
		if o.Warmup > 0 {
			wo := ro
			wo.Duration, wo.Seed = o.Warmup, o.Seed+1000
			for _, d := range []*dynamoDriver{ep, direct} {
				if _, err := RunWorkload(ctx, d, wo, values); err != nil {
					return err
				}
			}
		}
		var eps, dirs []Result
		var added50, added99 []float64
		for r := range o.Rounds {
			ro.Seed = o.Seed + uint64(r)*7919
			o.progress("%s: %s, %s, round %d of %d", MigrationPhasesWorkload, phase, name, r+1, o.Rounds)
			var res [2]Result
			for i, d := range []*dynamoDriver{ep, direct} {
				label := MigrationPhasesWorkload + " " + phase
				if o.BeforeWorkload != nil {
					o.BeforeWorkload(label, name)
				}
				m, err := RunWorkload(ctx, d, ro, values)
				if o.AfterWorkload != nil {
					o.AfterWorkload(label, name)
				}
				if err != nil {
					return err
				}
				res[i] = ResultOf(label, name, m)
			}
			eps, dirs = append(eps, res[0]), append(dirs, res[1])
			added50 = append(added50, float64(res[0].Latency.P50-res[1].Latency.P50))
			added99 = append(added99, float64(res[0].Latency.P99-res[1].Latency.P99))
		}
		e, d := Aggregate(eps), Aggregate(dirs)
		row := MigrationPhaseRow{
			Phase: phase, Operation: map[string]string{"GETITEM": "GetItem", "PUTITEM": "PutItem"}[name],
			Endpoint: e.Latency, Direct: d.Latency,
			AddedP50: Micros(Median(added50)), AddedP99: Micros(Median(added99)),
			AddedP50Min: Micros(slices.Min(added50)), AddedP50Max: Micros(slices.Max(added50)),
			AddedP99Min: Micros(slices.Min(added99)), AddedP99Max: Micros(slices.Max(added99)),
			Ops: e.Ops, Errors: e.Errors + d.Errors, FirstError: e.FirstError, NotFound: e.NotFound,
		}
		if row.FirstError == "" {
			row.FirstError = d.FirstError
		}
		rep.MigrationPhases = append(rep.MigrationPhases, row)
	}
	return nil
}
