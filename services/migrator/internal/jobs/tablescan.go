package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	"github.com/veltrixdb/veltrix/services/migrator/internal/scan"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/status"
)

// scanImportRun is the run of a table-scan import by the migrator holding
// its claim: scan.Source reads the live table's segments in parallel and
// checkpoints each in etcd (under the claim's guard) after its page is
// written; every item is mapped as an export's item is, with the scan's
// version (hlc.FromTime of the scan's first start).
type scanImportRun struct {
	env       *Env
	id        string
	attempt   uint32 // the job's attempt this run works on
	spec      *migratorv1.ImportSpec
	m         *mapping.Mapping
	guard     clientv3.Cmp
	batchSize int
	limiter   *rate.Limiter
	sink      *rejectSink
	counts    counters
	base      *migratorv1.Progress
	// version is the scan's version (from its pages), 0 before a page.
	version atomic.Uint64
}

func (e *Env) runTableScanImport(ctx context.Context, job *migratorv1.Job, lease clientv3.LeaseID) error {
	id := job.GetId()
	ok, err := e.waitClaim(ctx, id, ScanClaim, lease)
	if !ok || err != nil {
		return ignoreCanceled(err)
	}
	defer func() { _ = e.release(context.WithoutCancel(ctx), id, ScanClaim, lease) }()
	r := &scanImportRun{env: e, id: id, attempt: job.GetAttempts(), spec: job.GetImportSpec(), guard: e.Store.OwnsClaim(id, ScanClaim, lease),
		sink: &rejectSink{env: e, id: id}}
	return e.endClaimedRun(ctx, job, "import", r.run(ctx))
}

// scanOptions are the Scan options of a source.
func (e *Env) scanOptions(ts *migratorv1.TableScanSource, id string) scan.Options {
	return scan.Options{
		Segments:              int(ts.GetSegments()),
		ReadCapacityPerSecond: ts.GetReadCapacityPerSecond(),
		Logger:                e.Logger.With("job", id),
		MinBackoff:            e.StreamOptions.MinBackoff,
		MaxBackoff:            e.StreamOptions.MaxBackoff,
	}
}

// scanFailure maps a Scan error to the job's outcome.
func scanFailure(ctx context.Context, table string, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, checkpoint.ErrFenced):
		return fmt.Errorf("%w: %v", ErrClaimLost, err)
	case errors.Is(err, scan.ErrTableNotFound), errors.Is(err, scan.ErrSegmentsChanged), errors.Is(err, scan.ErrBadItem):
		return fail("table %s: %v", table, err)
	}
	if _, ok := isJobError(err); ok {
		return err
	}
	return fmt.Errorf("scanning table %s: %w", table, err)
}

func (r *scanImportRun) run(ctx context.Context) error {
	e := r.env
	ts := r.spec.GetTableScan()
	var err error
	if r.m, err = mapping.FromProto(r.spec.GetMapping(), "spec.mapping"); err != nil {
		return fail("%v", err)
	}
	r.batchSize = int(r.spec.GetBatchSize())
	if r.batchSize == 0 {
		r.batchSize = DefaultBatchSize
	}
	r.batchSize = min(r.batchSize, MaxBatchSize)
	if ips := r.spec.GetItemsPerSecond(); ips > 0 {
		r.limiter = newLimiter(ips, r.batchSize)
	}
	if err := ensureTable(ctx, e.Target, r.m); err != nil {
		return err
	}
	if r.base, err = e.markRunning(ctx, r.id, r.guard); err != nil {
		return err
	}
	r.sink.init(ctx)
	cli, err := e.dynamoDBClient(ctx, ts.GetAws())
	if err != nil {
		return fail("table %s: %v", ts.GetTableName(), err)
	}
	store := checkpoint.NewEtcd(e.Store.Client(), e.Store.SegmentsPrefix(r.id), checkpoint.WithGuard(r.guard))
	src, err := scan.New(cli, ts.GetTableName(), store, e.scanOptions(ts, r.id))
	if err != nil {
		return fail("%v", err)
	}
	e.Logger.Info("table-scan import running", "job", r.id, "table", ts.GetTableName(), "segments", ts.GetSegments())
	publish := func(ctx context.Context) {
		if _, err := e.publishProgress(ctx, r.id, r.guard, func(*migratorv1.Progress) *migratorv1.Progress {
			return r.counts.onto(r.base)
		}); err != nil && ctx.Err() == nil && !errors.Is(err, ErrFinished) {
			e.Logger.Warn("cannot write an import's progress", "job", r.id, "err", err)
		}
	}
	stop := e.everyPoll(ctx, publish)
	err = scanFailure(ctx, ts.GetTableName(), src.Run(ctx, r.apply))
	stop()
	if err != nil {
		publish(context.WithoutCancel(ctx))
		return err
	}
	p := r.counts.onto(r.base)
	var problems []*migratorv1.Problem
	if n := p.GetRejects(); n > 0 {
		problems = append(problems, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES,
			Source: "table " + ts.GetTableName(), Items: n,
			Detail: fmt.Sprintf("%d items rejected and not imported (see the job's rejects)", n)})
	}
	state := outcome(problems)
	// The items carry the scan's first start as their version: that is the
	// snapshot time a migration compares with its mirror time.
	var snapshot time.Time
	if v := r.version.Load(); v != 0 {
		snapshot = hlc.Time(v)
	}
	if err := e.finishImport(ctx, r.id, r.attempt, r.m.Table, snapshot, state, problemsText(problems), func(j *migratorv1.Job) {
		j.Progress = p
		j.Problems = problems
	}); err != nil {
		return err
	}
	e.Logger.Info("import ended", "job", r.id, "state", state, "items", p.GetItemsWritten(), "rejects", p.GetRejects(),
		"skipped_expired", p.GetSkippedExpired(), "filtered", p.GetFiltered())
	e.Observer.Progress(r.id, 1)
	return nil
}

// itemReject is the reject of a scanned item, keyed by a hash of the item
// so a page read again after a restart stores it again under its key.
func itemReject(segment int, it ddb.Item, reason string) StoredReject {
	raw, _ := ddb.MarshalDynamoDBJSON(it)
	tag := fmt.Sprintf("%016x", xxhash.Sum64(ddb.EncodeItem(it)))
	return StoredReject{Key: ScanRejectKey(segment, tag), Reject: &migratorv1.Reject{
		Source: fmt.Sprintf("segment %d", segment), Reason: reason, Excerpt: excerpt(raw)}}
}

// apply writes one Scan page.
func (r *scanImportRun) apply(ctx context.Context, p scan.Page) error {
	r.version.Store(p.Version)
	now := r.env.Now()
	var d delta
	var rejects []StoredReject
	muts := make([]client.Mutation, 0, len(p.Items))
	from := make([]int, 0, len(p.Items))
	for i, it := range p.Items {
		res := r.m.MapItem(it, p.Version, now)
		switch res.Kind {
		case mapping.Put:
			muts = append(muts, client.Mutation{Key: client.Key{Table: r.m.Table, PartitionKey: res.PK, SortKey: res.SK},
				Value: res.Value, ExpireTime: res.Expire, Version: res.Version})
			from = append(from, i)
			d.items++
		case mapping.SkipExpired:
			d.expired++
		case mapping.SkipFiltered:
			d.filtered++
		default:
			d.rejects++
			rejects = append(rejects, itemReject(p.Segment, it, res.Reason))
		}
	}
	for lo := 0; lo < len(muts); lo += r.batchSize {
		hi := min(lo+r.batchSize, len(muts))
		if r.limiter != nil {
			if err := r.limiter.WaitN(ctx, hi-lo); err != nil {
				return err
			}
		}
		superseded, err := r.env.writeRefusing(ctx, r.m.Table, "import "+r.id, muts[lo:hi], r.batchSize, func(i int, err error) {
			d.items--
			d.rejects++
			rejects = append(rejects, itemReject(p.Segment, p.Items[from[lo+i]], "Veltrix refused the write: "+status.Convert(err).Message()))
		})
		if err != nil {
			return err
		}
		d.items -= uint64(len(superseded))
		d.superseded += uint64(len(superseded))
	}
	if err := r.sink.put(ctx, rejects); err != nil {
		return err
	}
	r.counts.add(d)
	r.env.Observer.ItemsWritten(r.id, int(d.items))
	if maxRejects := r.spec.GetMaxRejects(); maxRejects > 0 {
		if n := r.base.GetRejects() + r.counts.rejects.Load(); n > maxRejects {
			return fail("%d rejected items exceed max_rejects %d (see ListRejects)", n, maxRejects)
		}
	}
	return nil
}

// verifyScan reads the verify's source table with a parallel Scan (from
// the start: a verify keeps its state in memory) and compares every item.
func (r *verifyRun) verifyScan(ctx context.Context, ts *migratorv1.TableScanSource) error {
	e := r.env
	cli, err := e.dynamoDBClient(ctx, ts.GetAws())
	if err != nil {
		return fail("table %s: %v", ts.GetTableName(), err)
	}
	src, err := scan.New(cli, ts.GetTableName(), checkpoint.NewMemory(), e.scanOptions(ts, r.id))
	if err != nil {
		return fail("%v", err)
	}
	err = src.Run(ctx, func(ctx context.Context, p scan.Page) error {
		now := e.Now()
		var keys []uint64
		var batch []lookup
		for _, it := range p.Items {
			res := r.m.MapItem(it, 0, now)
			switch res.Kind {
			case mapping.SkipExpired:
				r.expired.Add(1)
				continue
			case mapping.SkipFiltered:
				r.filtered.Add(1)
				continue
			case mapping.Reject:
				r.rejects.Add(1)
				r.scanRejects.Add(1)
				rej := itemReject(p.Segment, it, res.Reason)
				if _, h, _ := strings.Cut(strings.TrimPrefix(rej.Key, "scan/"), "/"); r.accept["scan-item/"+h] {
					r.scanAccepted.Add(1)
					rej.Reject.Reason += "; accepted: import " + r.spec.GetAcceptRejectsJob() + " rejected it too"
				}
				if err := r.sink.put(ctx, []StoredReject{rej}); err != nil {
					return err
				}
				continue
			}
			kh := KeyHash(res.PK, res.SK)
			r.mu.Lock()
			r.report.SourceItems++
			r.mu.Unlock()
			r.sourceSum.Add(ItemHash(res.PK, res.SK, res.Value, res.Expire))
			if r.spec.GetCheckExtra() {
				keys = append(keys, kh)
			}
			if !sampled(kh, r.fraction) {
				continue
			}
			batch = append(batch, lookup{key: client.Key{Table: r.m.Table, PartitionKey: res.PK, SortKey: res.SK},
				value: res.Value, expire: res.Expire})
			if len(batch) >= verifyLookupBatch {
				if err := r.compare(ctx, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := r.compare(ctx, batch); err != nil {
			return err
		}
		if len(keys) > 0 {
			r.mu.Lock()
			r.keys = append(r.keys, keys...)
			r.mu.Unlock()
		}
		return nil
	})
	return scanFailure(ctx, ts.GetTableName(), err)
}
