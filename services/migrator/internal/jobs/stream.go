package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// consumer is a CDC consumer (cdc.StreamsConsumer, cdc.KinesisConsumer).
type consumer interface {
	Run(ctx context.Context, apply cdc.ApplyFunc) error
	Stats() cdc.Stats
}

// streamRun is the run of a stream (CDC) job by the migrator holding its
// claim.
//
// Each GetRecords page the consumer hands over is mapped (a put as an
// import maps an item, with the record's version; a delete on the mapped
// keys) and written with BatchWrite before apply returns, so the shard is
// checkpointed only after its records are in Veltrix. A put whose image
// the filter drops, or whose TTL has passed, is written as a delete with
// the record's version, so an older copy of the item does not stay live.
type streamRun struct {
	env       *Env
	id        string
	attempt   uint32 // the job's attempt this run works on
	spec      *migratorv1.StreamSpec
	m         *mapping.Mapping
	guard     clientv3.Cmp
	batchSize int
	sink      *rejectSink
	counts    counters
	consumer  consumer
	health    *health
	failAfter time.Duration
}

// sourceUnavailable is the cause a run's context is cancelled with when
// its reads or writes have failed for fail_after.
type sourceUnavailable struct {
	source string
	health *migratorv1.JobHealth
	after  time.Duration
}

func (e *sourceUnavailable) Error() string {
	return fmt.Sprintf("%s: no read or write succeeded for %s (%d failures in a row since %s); last error: %s",
		e.source, e.after, e.health.GetConsecutiveFailures(),
		e.health.GetFailingSince().AsTime().UTC().Format(time.RFC3339), e.health.GetLastError())
}

// RunStream runs a stream job if this migrator gets its claim, or waits
// while another migrator runs it. It returns when the job has ended, the
// claim is lost or ctx is cancelled; a returned error means the run
// should be tried again.
func (e *Env) RunStream(ctx context.Context, job *migratorv1.Job, lease clientv3.LeaseID) error {
	e.defaults()
	id := job.GetId()
	ok, err := e.waitClaim(ctx, id, StreamClaim, lease)
	if !ok || err != nil {
		return ignoreCanceled(err)
	}
	defer func() { _ = e.release(context.WithoutCancel(ctx), id, StreamClaim, lease) }()
	defer e.Observer.JobDone(id)
	r := &streamRun{env: e, id: id, attempt: job.GetAttempts(), spec: job.GetStreamSpec(), guard: e.Store.OwnsClaim(id, StreamClaim, lease),
		sink: &rejectSink{env: e, id: id}, failAfter: FailAfter(job.GetStreamSpec())}
	err = r.run(ctx)
	if _, ok := isJobError(err); ok {
		e.Observer.StreamFailed(id, "error")
	}
	return e.endClaimedRun(ctx, job, "stream", err)
}

// describe names the job's source in messages and problems.
func (r *streamRun) describe() string {
	if r.spec.GetKind() == migratorv1.StreamKind_STREAM_KIND_KINESIS {
		return "Kinesis stream " + r.spec.GetStream()
	}
	if !strings.HasPrefix(r.spec.GetStream(), "arn:") {
		return "DynamoDB stream of table " + r.spec.GetStream()
	}
	return "DynamoDB stream " + r.spec.GetStream()
}

// StartPosition converts a spec's start.
func StartPosition(spec *migratorv1.StreamSpec) cdc.StartPosition {
	p := cdc.StartPosition{ShardID: spec.GetShardId(), SequenceNumber: spec.GetSequenceNumber()}
	switch spec.GetStart() {
	case migratorv1.StartPosition_START_POSITION_LATEST:
		p.Type = cdc.Latest
	case migratorv1.StartPosition_START_POSITION_AT_SEQUENCE_NUMBER:
		p.Type = cdc.AtSequence
	case migratorv1.StartPosition_START_POSITION_AFTER_SEQUENCE_NUMBER:
		p.Type = cdc.AfterSequence
	default:
		p.Type = cdc.TrimHorizon
	}
	return p
}

func (r *streamRun) run(parent context.Context) error {
	e := r.env
	var err error
	// The run's context ends with a *sourceUnavailable cause when the
	// health says nothing has succeeded for fail_after.
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if r.m, err = mapping.FromProto(r.spec.GetMapping(), "spec.mapping"); err != nil {
		return fail("%v", err)
	}
	r.batchSize = int(r.spec.GetBatchSize())
	if r.batchSize == 0 {
		r.batchSize = DefaultBatchSize
	}
	r.batchSize = min(r.batchSize, MaxBatchSize)
	base, err := e.markRunning(ctx, r.id, r.guard)
	if err != nil {
		return err
	}
	// Lag is unknown until this run has read: a lag from a previous run
	// would be stale, and 0 would claim the job is caught up.
	base.Lag = nil
	stored, err := e.Store.Get(ctx, r.id)
	if err != nil {
		return err
	}
	r.health = newHealth(e.Now, stored.GetHealth(), r.failAfter)
	if err := r.waitTarget(ctx, base); err != nil {
		return err
	}
	if err := ensureTable(ctx, e.Target, r.m); err != nil {
		return err
	}
	r.sink.init(ctx)
	if r.consumer, err = r.newConsumer(ctx); err != nil {
		return err
	}
	e.Logger.Info("stream running", "job", r.id, "kind", r.spec.GetKind(), "stream", r.spec.GetStream(),
		"start", StartPosition(r.spec).Type, "fail_after", r.failAfter)

	// publish writes progress and health to the job document (once per
	// poll interval: an unchanged document is not written), and fails the
	// run once nothing has succeeded for fail_after.
	publish := func(ctx context.Context) {
		st := r.consumer.Stats()
		h := r.health.snapshot()
		failing := r.health.failingFor()
		e.Observer.StreamLag(r.id, st.Lag, st.LagKnown)
		e.Observer.StreamHealth(r.id, h.GetConsecutiveFailures(), failing)
		err := r.publish(ctx, base, st, h)
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrFinished) {
			e.Logger.Warn("cannot write a stream job's progress", "job", r.id, "err", err)
		}
		if failing >= r.failAfter {
			cancel(&sourceUnavailable{source: r.describe(), health: h, after: r.failAfter})
		}
	}
	stop := e.everyPoll(ctx, publish)
	err = r.consumer.Run(ctx, r.apply)
	stop()
	var unavailable *sourceUnavailable
	if errors.As(context.Cause(ctx), &unavailable) {
		return r.failUnavailable(parent, base, unavailable)
	}
	ctx = parent
	if ctx.Err() == nil {
		publish(ctx)
	} else {
		// Keep what this run counted for the next one.
		publish(context.WithoutCancel(ctx))
	}
	switch {
	case err == nil:
		// Every shard was closed and applied: the stream was disabled or
		// deleted, and no record will come.
		p := r.counts.onto(base)
		var problems []*migratorv1.Problem
		if n := p.GetRejects(); n > 0 {
			problems = append(problems, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES,
				Source: r.spec.GetStream(), Items: n, Detail: fmt.Sprintf("%d records rejected and not applied (see the job's rejects)", n)})
		}
		state := outcome(problems)
		_, err := e.Store.FinishAttempt(ctx, r.id, r.attempt, state, problemsText(problems), e.Now(), func(j *migratorv1.Job) {
			j.Problems = problems
		})
		e.Logger.Info("stream ended: every shard is closed and applied", "job", r.id, "state", state)
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, checkpoint.ErrFenced):
		return fmt.Errorf("%w: %v", ErrClaimLost, err)
	case errors.Is(err, cdc.ErrTrimmed):
		return fail("%v; re-seed the table from a newer export and start a new stream job", err)
	case errors.Is(err, cdc.ErrViewType), errors.Is(err, cdc.ErrInvalidStart), errors.Is(err, cdc.ErrBadRecord):
		return fail("%v", err)
	}
	return err
}

// waitTarget waits until Veltrix answers for the target table (it may
// not exist yet: ensureTable decides), recording each failure in the
// job's health like a failed write, and fails the job after fail_after.
func (r *streamRun) waitTarget(ctx context.Context, base *migratorv1.Progress) error {
	e := r.env
	var published time.Time
	for attempt := 1; ; attempt++ {
		_, err := e.Direct.DescribeTable(ctx, r.m.Table) // this loop is its retry
		switch status.Code(err) {
		case codes.OK, codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
			return nil // ensureTable creates the table or fails the job
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.health.observe(fmt.Errorf("check target table %s: %w", r.m.Table, err))
		if time.Since(published) >= e.PollInterval {
			if err := r.publish(ctx, base, cdc.Stats{}, r.health.snapshot()); err != nil && ctx.Err() == nil {
				return err
			}
			published = time.Now()
		}
		if failing := r.health.failingFor(); failing >= r.failAfter {
			if err := r.failUnavailable(ctx, base, &sourceUnavailable{source: "Veltrix table " + r.m.Table, health: r.health.snapshot(), after: r.failAfter}); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s", ErrFinished, r.id) // ended FAILED: nothing to run
		}
		e.Logger.Warn("cannot reach the target table; retrying", "job", r.id, "table", r.m.Table, "attempt", attempt, "err", err)
		select {
		case <-time.After(writeBackoff(attempt)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// publish writes the run's progress and health to the job document,
// guarded by the run's claim.
func (r *streamRun) publish(ctx context.Context, base *migratorv1.Progress, st cdc.Stats, h *migratorv1.JobHealth) error {
	j, err := r.env.Store.UpdateGuarded(ctx, r.id, []clientv3.Cmp{r.guard}, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, r.id)
		}
		p := r.counts.onto(base)
		if st.LagKnown {
			p.Lag = durationpb.New(st.Lag)
		}
		j.Progress = p
		j.Health = h
		return nil
	})
	if err == nil {
		r.env.Rates.Apply(j, r.env.Now())
	}
	return err
}

// failUnavailable ends the job FAILED with the last error and a
// SOURCE_UNAVAILABLE problem naming the stream, keeping its health.
func (r *streamRun) failUnavailable(ctx context.Context, base *migratorv1.Progress, u *sourceUnavailable) error {
	e := r.env
	ctx = context.WithoutCancel(ctx)
	msg := u.Error()
	e.Logger.Error("stream failed: its source or Veltrix has been unavailable for fail_after", "job", r.id, "fail_after", r.failAfter, "err", msg)
	e.Observer.StreamFailed(r.id, "source_unavailable")
	var st cdc.Stats
	if r.consumer != nil {
		st = r.consumer.Stats()
	}
	_, err := e.Store.UpdateGuarded(ctx, r.id, []clientv3.Cmp{r.guard}, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, r.id)
		}
		p := r.counts.onto(base)
		if st.LagKnown {
			p.Lag = durationpb.New(st.Lag)
		}
		j.Progress = p
		j.Health = u.health
		j.State = migratorv1.JobState_JOB_STATE_FAILED
		j.Error = msg
		j.EndTime = timestamp(e.Now())
		j.Problems = append(j.Problems, &migratorv1.Problem{
			Kind:   migratorv1.ProblemKind_PROBLEM_KIND_SOURCE_UNAVAILABLE,
			Source: u.source,
			Detail: fmt.Sprintf("no read or write succeeded for %s (fail_after); last error: %s", u.after, u.health.GetLastError()),
		})
		return nil
	})
	if errors.Is(err, ErrFinished) {
		return nil // cancelled meanwhile
	}
	return err
}

func (r *streamRun) newConsumer(ctx context.Context) (consumer, error) {
	e := r.env
	store := checkpoint.NewEtcd(e.Store.Client(), e.Store.ShardsPrefix(r.id), checkpoint.WithGuard(r.guard))
	opts := e.StreamOptions
	opts.Logger = e.Logger.With("job", r.id)
	opts.Reject = r.rejectRecord
	opts.Observe = r.health.observe
	start := StartPosition(r.spec)
	name := r.spec.GetStream()
	switch r.spec.GetKind() {
	case migratorv1.StreamKind_STREAM_KIND_KINESIS:
		cli, err := e.kinesisClient(ctx, r.spec.GetAws())
		if err != nil {
			return nil, fail("Kinesis stream %s: %v", name, err)
		}
		c, err := cdc.NewKinesisConsumer(cli, name, start, store, opts)
		if err != nil {
			return nil, fail("Kinesis stream %s: %v", name, err)
		}
		return c, nil
	case migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS:
		cli, err := e.streamsClient(ctx, r.spec.GetAws())
		if err != nil {
			return nil, fail("DynamoDB stream %s: %v", name, err)
		}
		// A table name is resolved to its latest stream by the consumer,
		// under its retries, so a table whose stream is not enabled yet
		// shows in the job's health.
		c, err := cdc.NewStreamsConsumer(cli, name, start, store, opts)
		if err != nil {
			return nil, fail("DynamoDB stream %s: %v", name, err)
		}
		return c, nil
	}
	return nil, fail("spec.kind: %s is not a stream kind", r.spec.GetKind())
}

// changeReject is the dead-letter entry of a change that was not applied.
func changeReject(c cdc.Change, reason string) StoredReject {
	return StoredReject{Key: StreamRejectKey(c.Shard, c.Seq), Reject: &migratorv1.Reject{
		Source: "shard " + c.Shard + " record " + c.Seq, Reason: reason}}
}

// rejectRecord takes a record the consumer cannot decode into the job's
// dead-letter report; the job goes on.
func (r *streamRun) rejectRecord(ctx context.Context, rj cdc.Reject) error {
	r.counts.rejects.Add(1)
	r.env.Logger.Warn("stream record rejected", "job", r.id, "shard", rj.Shard, "seq", rj.Seq, "reason", rj.Reason)
	return r.sink.put(ctx, []StoredReject{{Key: StreamRejectKey(rj.Shard, rj.Seq), Reject: &migratorv1.Reject{
		Source: "shard " + rj.Shard + " record " + rj.Seq, Reason: rj.Reason, Excerpt: excerpt(rj.Data)}}})
}

// apply writes one page of changes of one shard, or has the routers
// re-sync its items while the target table's migration mirrors writes.
func (r *streamRun) apply(ctx context.Context, changes []cdc.Change) error {
	if r.env.syncsThroughRouter(r.m.Table) {
		if err := r.syncChanges(ctx, changes); !errors.Is(err, errStopRetry) {
			return err
		}
		r.env.Logger.Info("the table's migration stopped mirroring writes; applying the stream's images", "job", r.id, "table", r.m.Table)
	}
	now := r.env.Now()
	muts := make([]client.Mutation, 0, len(changes))
	from := make([]int, 0, len(changes)) // the change of each mutation
	var d delta
	var rejects []StoredReject
	reject := func(c cdc.Change, reason string) {
		d.rejects++
		rejects = append(rejects, changeReject(c, reason))
	}
	del := func(i int, c cdc.Change) bool {
		pk, sk, err := r.m.Keys.Key(c.Keys)
		if err != nil {
			reject(c, "Keys: "+err.Error())
			return false
		}
		muts = append(muts, client.Mutation{Key: client.Key{Table: r.m.Table, PartitionKey: pk, SortKey: sk}, Delete: true, Version: c.Version})
		from = append(from, i)
		return true
	}
	for i, c := range changes {
		if c.Kind == cdc.Delete {
			if del(i, c) {
				d.deletes++
				if c.TTLDelete {
					d.ttlDeletes++
				}
			}
			continue
		}
		res := r.m.MapItem(c.NewImage, c.Version, now)
		switch res.Kind {
		case mapping.Put:
			muts = append(muts, client.Mutation{Key: client.Key{Table: r.m.Table, PartitionKey: res.PK, SortKey: res.SK},
				Value: res.Value, ExpireTime: res.Expire, Version: res.Version})
			from = append(from, i)
			d.items++
		case mapping.SkipExpired:
			if del(i, c) {
				d.expired++
			}
		case mapping.SkipFiltered:
			if del(i, c) {
				d.filtered++
			}
		case mapping.Reject:
			reject(c, res.Reason)
		}
	}
	// Writes are retried until they succeed or the run's health fails the
	// job after fail_after; each attempt counts in the health.
	superseded, err := r.env.writeObserved(ctx, r.m.Table, "stream job "+r.id, muts, r.batchSize, func(i int, err error) {
		c := changes[from[i]]
		switch m := muts[i]; {
		case !m.Delete:
			d.items--
		case c.Kind == cdc.Delete:
			d.deletes--
			if c.TTLDelete {
				d.ttlDeletes--
			}
		case r.m.Filter.Match(c.NewImage):
			d.expired--
		default:
			d.filtered--
		}
		reject(c, "Veltrix refused the write: "+status.Convert(err).Message())
	}, writePolicy{observe: r.health.observe})
	if err != nil {
		return err
	}
	d.items -= uint64(len(superseded))
	d.superseded += uint64(len(superseded))
	if err := r.sink.put(ctx, rejects); err != nil {
		return err
	}
	r.counts.add(d)
	r.env.Observer.ItemsWritten(r.id, int(d.items+d.deletes+d.expired+d.filtered))
	return nil
}
