package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// waitClaim takes claim name of job id under lease, waiting while another
// migrator holds it. It returns false when the job ended or ctx is done
// first.
func (e *Env) waitClaim(ctx context.Context, id, name string, lease clientv3.LeaseID) (bool, error) {
	for {
		ok, err := e.Store.Claim(ctx, id, name, e.ID, lease)
		if err != nil || ok {
			return ok, err
		}
		select {
		case <-time.After(e.PollInterval):
		case <-ctx.Done():
			return false, nil
		}
		j, err := e.Store.Get(ctx, id)
		if err != nil || Terminal(j.GetState()) {
			return false, err
		}
	}
}

// markRunning moves a claimed job to RUNNING (setting its start time once)
// and returns its stored progress, which the run's counters add to.
func (e *Env) markRunning(ctx context.Context, id string, guard clientv3.Cmp) (*migratorv1.Progress, error) {
	j, err := e.Store.UpdateGuarded(ctx, id, []clientv3.Cmp{guard}, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, id)
		}
		j.State = migratorv1.JobState_JOB_STATE_RUNNING
		if j.StartTime == nil {
			j.StartTime = timestamp(e.Now())
		}
		if j.Progress == nil {
			j.Progress = &migratorv1.Progress{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return proto.Clone(j.GetProgress()).(*migratorv1.Progress), nil
}

// counters are what a stream or table-scan run did, added to the progress
// the job document held when the run started. They count writes that
// succeeded; records replayed after a restart (those after the last
// checkpoint) are counted again.
type counters struct {
	items, superseded, deletes, ttlDeletes, expired, filtered, rejects atomic.Uint64
}

// onto returns base plus the counters.
func (c *counters) onto(base *migratorv1.Progress) *migratorv1.Progress {
	p := proto.Clone(base).(*migratorv1.Progress)
	p.ItemsWritten += c.items.Load()
	p.ItemsSuperseded += c.superseded.Load()
	p.Deletes += c.deletes.Load()
	p.TtlDeletes += c.ttlDeletes.Load()
	p.SkippedExpired += c.expired.Load()
	p.Filtered += c.filtered.Load()
	p.Rejects += c.rejects.Load()
	return p
}

// delta is one batch's share of the counters, added once its writes
// succeeded.
type delta struct {
	items, superseded, deletes, ttlDeletes, expired, filtered, rejects uint64
}

func (c *counters) add(d delta) {
	c.items.Add(d.items)
	c.superseded.Add(d.superseded)
	c.deletes.Add(d.deletes)
	c.ttlDeletes.Add(d.ttlDeletes)
	c.expired.Add(d.expired)
	c.filtered.Add(d.filtered)
	c.rejects.Add(d.rejects)
}

// publishProgress writes the run's progress (fill sets it from the stored
// one) to the job document, guarded by the run's claim.
func (e *Env) publishProgress(ctx context.Context, id string, guard clientv3.Cmp, fill func(*migratorv1.Progress) *migratorv1.Progress) (*migratorv1.Job, error) {
	j, err := e.Store.UpdateGuarded(ctx, id, []clientv3.Cmp{guard}, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, id)
		}
		j.Progress = fill(j.GetProgress())
		return nil
	})
	if err == nil {
		e.Rates.Apply(j, e.Now())
	}
	return j, err
}

// everyPoll calls fn every PollInterval until the returned stop is called;
// stop waits for a running fn.
func (e *Env) everyPoll(ctx context.Context, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(e.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// writeRefusing writes muts in batches of batchSize, retrying failures
// for Env.WriteRetry. A batch the router refuses as invalid is written one
// mutation at a time, and refused(i) is told of each mutation it still
// refuses. It returns which puts were superseded: Veltrix already held the
// key at a newer version, so nothing changed. what names the writer in
// logs. It is the migrator's one write path (import, table scan, stream).
func (e *Env) writeRefusing(ctx context.Context, table, what string, muts []client.Mutation, batchSize int, refused func(i int, err error)) (superseded []int, err error) {
	return e.writeObserved(ctx, table, what, muts, batchSize, refused, writePolicy{retryFor: e.WriteRetry})
}

// writePolicy says how long a failing write is retried and who hears of
// each attempt.
type writePolicy struct {
	// retryFor is how long a failing batch is retried before the job
	// fails; 0 retries until ctx ends (a stream job's health decides).
	retryFor time.Duration
	// observe, when set, is told of every attempt: nil after a success,
	// the error after a failure that is retried.
	observe func(error)
}

// writeObserved is writeRefusing under policy p.
func (e *Env) writeObserved(ctx context.Context, table, what string, muts []client.Mutation, batchSize int, refused func(i int, err error), p writePolicy) ([]int, error) {
	var superseded []int
	note := func(base int, res []client.WriteResult) {
		for i, r := range res {
			if !r.Applied && !muts[base+i].Delete {
				superseded = append(superseded, base+i)
			}
		}
	}
	for lo := 0; lo < len(muts); lo += batchSize {
		hi := min(lo+batchSize, len(muts))
		res, err := e.sendRetry(ctx, table, what, muts[lo:hi], p)
		if status.Code(err) != codes.InvalidArgument {
			if err != nil {
				return superseded, err
			}
			note(lo, res)
			continue
		}
		for i := lo; i < hi; i++ {
			res, err := e.sendRetry(ctx, table, what, muts[i:i+1], p)
			switch {
			case status.Code(err) == codes.InvalidArgument:
				refused(i, err)
			case err != nil:
				return superseded, err
			default:
				note(i, res)
			}
		}
	}
	return superseded, nil
}

// sendRetry is one BatchWrite, retried for p.retryFor while Veltrix is
// unavailable (retryWrite).
func (e *Env) sendRetry(ctx context.Context, table, what string, muts []client.Mutation, p writePolicy) ([]client.WriteResult, error) {
	var res []client.WriteResult
	err := e.retryWrite(ctx, table, what, p, func() error {
		var err error
		res, err = e.Direct.BatchWriteResults(ctx, muts)
		return err
	})
	return res, err
}

// errStopRetry, returned by a retryWrite call, ends the retries at once.
var errStopRetry = errors.New("jobs: retry abandoned")

// retryWrite makes one write call (a BatchWrite, a SyncItems), retried for
// p.retryFor while Veltrix is unavailable (writeBackoff between attempts).
// It is the write path's one retry policy: the calls go through Env.Direct,
// which does not retry, so a failure is one call and the number of calls
// follows writeBackoff. InvalidArgument and errStopRetry are returned at
// once; NotFound fails the job.
func (e *Env) retryWrite(ctx context.Context, table, what string, p writePolicy, call func() error) error {
	deadline := time.Now().Add(p.retryFor)
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil {
			if p.observe != nil {
				p.observe(nil)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errStopRetry) {
			return err
		}
		switch status.Code(err) {
		case codes.InvalidArgument:
			return err
		case codes.NotFound:
			return fail("target table %q not found while writing (deleted during the job?): %v", table, err)
		}
		if p.retryFor > 0 && time.Now().After(deadline) {
			return fail("writes to Veltrix failed for %s: %v", p.retryFor, err)
		}
		if p.observe != nil {
			p.observe(fmt.Errorf("write to Veltrix table %s: %w", table, err))
		}
		e.Logger.Warn("write to Veltrix failed; retrying", "source", what, "attempt", attempt, "err", err)
		select {
		case <-time.After(writeBackoff(attempt)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeBackoff is the wait after failed attempt n (1-based) of a write, or
// of a stream's check of its target table: 200ms·n, at most 5s.
func writeBackoff(n int) time.Duration {
	return min(time.Duration(n)*200*time.Millisecond, 5*time.Second)
}

// endClaimedRun turns a claimed run's error into the job's outcome: a
// jobError fails the job; a lost claim, a cancellation or a job that ended
// meanwhile are nobody's fault; anything else is returned, and the
// manager runs the job again.
func (e *Env) endClaimedRun(ctx context.Context, job *migratorv1.Job, what string, err error) error {
	id := job.GetId()
	if msg, ok := isJobError(err); ok {
		e.Logger.Error(what+" failed", "job", id, "err", msg)
		if _, ferr := e.Store.FinishAttempt(context.WithoutCancel(ctx), id, job.GetAttempts(), migratorv1.JobState_JOB_STATE_FAILED, msg, e.Now(), nil); ferr != nil && !errors.Is(ferr, ErrFinished) {
			return ferr
		}
		return nil
	}
	if errors.Is(err, ErrClaimLost) {
		e.Logger.Warn("lost the claim of a job; another migrator takes it over", "job", id, "err", err)
		return nil
	}
	return ignoreCanceled(err)
}
