package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/status"
)

// Import defaults (ImportSpec fields left 0).
const (
	DefaultParallelism = 4
	DefaultBatchSize   = 100
	// MaxBatchSize is the router's BatchWrite limit.
	MaxBatchSize = 1000
	// fileAttempts is how often a data file whose reading fails (not its
	// content: the connection, the disk) is retried before the job fails.
	// A call the store already retried (export.ErrRetried: S3's GetObject
	// under the SDK's retryer) is not retried again: it fails the job.
	fileAttempts = 5
)

// importRun is one migrator's share of an import job.
type importRun struct {
	env       *Env
	id        string
	spec      *migratorv1.ImportSpec
	m         *mapping.Mapping
	exp       *export.Export
	lease     clientv3.LeaseID
	attempt   uint32 // the job's attempt this run works on
	version   uint64
	batchSize int
	parallel  int
	limiter   *rate.Limiter
	// bytesTotal estimates the export's uncompressed bytes (0: unknown).
	bytesTotal uint64
	batches    chan *batch
	sink       *rejectSink
}

// batch is a run of consecutive lines of one file and the writes they
// produced.
type batch struct {
	file     *fileRun
	seq      int
	lastLine int64
	last     bool // the file's final batch
	corrupt  bool // the file ended in a damaged gzip stream
	muts     []client.Mutation
	lines    []int64 // source line of each mutation
	expired  []bool  // mutation is a delete standing for an expired item
	delta    Checkpoint
	rejects  []StoredReject
}

// reject records a line (or its write) that was not imported.
func (b *batch) reject(index int, f string, line int64, tag, reason string, raw []byte) {
	b.delta.LineRejects++
	b.fileReject(index, f, line, tag, reason, raw)
}

// fileReject records a dead-letter entry that is not one line's: a damaged
// stream, a count that disagrees.
func (b *batch) fileReject(index int, f string, line int64, tag, reason string, raw []byte) {
	b.delta.Rejects++
	b.rejects = append(b.rejects, StoredReject{
		Key:    RejectKey(index, line, tag),
		Reject: &migratorv1.Reject{Source: f, Line: uint64(line), Reason: reason, Excerpt: excerpt(raw)},
	})
}

// RunImport works on an import job until it ends or ctx is cancelled. It
// returns nil in both cases; the job's outcome is in the store.
func (e *Env) RunImport(ctx context.Context, job *migratorv1.Job, lease clientv3.LeaseID) error {
	e.defaults()
	if job.GetImportSpec().GetTableScan() != nil {
		return e.runTableScanImport(ctx, job, lease)
	}
	r := &importRun{env: e, id: job.GetId(), spec: job.GetImportSpec(), lease: lease, attempt: job.GetAttempts()}
	err := r.run(ctx)
	if msg, ok := isJobError(err); ok {
		e.Logger.Error("import failed", "job", r.id, "err", msg)
		if _, ferr := e.Store.FinishAttempt(context.WithoutCancel(ctx), r.id, r.attempt, migratorv1.JobState_JOB_STATE_FAILED, msg, e.Now(), nil); ferr != nil && !errors.Is(ferr, ErrFinished) {
			return ferr
		}
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrFinished) || errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (r *importRun) run(ctx context.Context) error {
	e := r.env
	var err error
	if r.spec.GetExport() == nil {
		return fail("import source: want an export or a table_scan")
	}
	if r.m, err = mapping.FromProto(r.spec.GetMapping(), "spec.mapping"); err != nil {
		return fail("%v", err)
	}
	r.batchSize = int(r.spec.GetBatchSize())
	if r.batchSize == 0 {
		r.batchSize = DefaultBatchSize
	}
	r.batchSize = min(r.batchSize, MaxBatchSize)
	r.parallel = int(r.spec.GetParallelism())
	if r.parallel == 0 {
		r.parallel = DefaultParallelism
	}
	if ips := r.spec.GetItemsPerSecond(); ips > 0 {
		r.limiter = newLimiter(ips, r.batchSize)
	}
	if r.exp, err = openExport(ctx, r.spec.GetExport()); err != nil {
		return err
	}
	// The manifests carry no uncompressed size: estimate it for progress.
	if n, ok, err := r.exp.UncompressedSize(ctx, 16); ok {
		r.bytesTotal = uint64(n)
	} else if err != nil && ctx.Err() == nil {
		e.Logger.Warn("cannot estimate the export's size; progress shows bytes read only", "job", r.id, "err", err)
	}
	if !r.exp.Incremental {
		r.version = mapping.FullExportVersion(r.exp.ExportTime)
	}
	if err := ensureTable(ctx, e.Target, r.m); err != nil {
		return err
	}
	if err := r.start(ctx); err != nil {
		return err
	}
	r.sink = &rejectSink{env: e, id: r.id}
	r.sink.init(ctx)

	wctx, stopWriters := context.WithCancel(ctx)
	r.batches = make(chan *batch, 2*r.parallel)
	var writers sync.WaitGroup
	for range 2 * r.parallel {
		writers.Go(func() { r.writer(wctx) })
	}
	defer func() {
		stopWriters()
		writers.Wait()
	}()
	return r.schedule(ctx)
}

// start marks the job running and records its totals and manifest-level
// rejects (once; the keys are fixed, so a second migrator writing them
// again changes nothing).
func (r *importRun) start(ctx context.Context) error {
	e := r.env
	now := e.Now()
	j, err := e.Store.Update(ctx, r.id, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, r.id)
		}
		if j.GetState() == migratorv1.JobState_JOB_STATE_PENDING {
			j.State = migratorv1.JobState_JOB_STATE_RUNNING
			j.StartTime = timestamp(now)
		}
		if j.Progress == nil {
			j.Progress = &migratorv1.Progress{}
		}
		j.Progress.ItemsTotal = uint64(r.exp.ItemCount())
		if r.bytesTotal > 0 {
			j.Progress.BytesTotal = r.bytesTotal
		}
		j.Progress.FilesTotal = uint32(len(r.exp.Files))
		return nil
	})
	if err != nil {
		return err
	}
	_ = j
	e.Logger.Info("import running", "job", r.id, "source", r.exp.Store.String(), "files", len(r.exp.Files),
		"items", r.exp.ItemCount(), "format", r.exp.Format, "incremental", r.exp.Incremental, "checksums", r.exp.Checksums)
	if sum := r.exp.Summary.ItemCount; sum != r.exp.ItemCount() {
		rej := StoredReject{Key: ManifestRejectKey("itemcount"), Reject: &migratorv1.Reject{
			Source: export.SummaryName,
			Reason: fmt.Sprintf("item count mismatch: %s says %d items, the files of %s add up to %d", export.SummaryName, sum, export.FilesName, r.exp.ItemCount()),
		}}
		if err := e.Store.PutRejects(ctx, r.id, []StoredReject{rej}); err != nil {
			return err
		}
	}
	return nil
}

type fileResult struct {
	index int
	err   error
}

// schedule claims files and runs up to parallel of them at once until every
// file of the job is done, then finishes the job.
func (r *importRun) schedule(ctx context.Context) error {
	e := r.env
	active := map[int]context.CancelFunc{}
	results := make(chan fileResult)
	attempts := map[int]int{}
	tick := time.NewTicker(e.PollInterval)
	defer tick.Stop()
	defer func() {
		for _, cancel := range active {
			cancel()
		}
		for len(active) > 0 {
			res := <-results
			delete(active, res.index)
			_ = e.release(context.WithoutCancel(ctx), r.id, FileName(res.index), r.lease)
		}
	}()
	for {
		job, err := e.Store.Get(ctx, r.id)
		if err != nil {
			return err
		}
		if Terminal(job.GetState()) {
			return nil
		}
		cps, err := e.Store.Checkpoints(ctx, r.id)
		if err != nil {
			return err
		}
		allDone := true
		for _, f := range r.exp.Files {
			if !cps[FileName(f.Index)].Done {
				allDone = false
				break
			}
		}
		if allDone && len(active) == 0 {
			return r.finish(ctx, job)
		}
		if !allDone && len(active) < r.parallel {
			claims, err := e.Store.Claims(ctx, r.id)
			if err != nil {
				return err
			}
			for _, f := range r.exp.Files {
				if len(active) >= r.parallel {
					break
				}
				name := FileName(f.Index)
				if _, busy := active[f.Index]; busy || cps[name].Done || claims[name] != "" {
					continue
				}
				ok, err := e.Store.Claim(ctx, r.id, name, e.ID, r.lease)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				fctx, cancel := context.WithCancel(ctx)
				active[f.Index] = cancel
				go func(f export.File) {
					results <- fileResult{index: f.Index, err: r.processFile(fctx, f)}
				}(f)
			}
		}
		select {
		case res := <-results:
			active[res.index]()
			delete(active, res.index)
			if err := e.release(ctx, r.id, FileName(res.index), r.lease); err != nil {
				return err
			}
			if err := r.fileFailed(ctx, res, attempts); err != nil {
				return err
			}
		case <-tick.C:
			if err := r.observe(ctx, job); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fileFailed handles the outcome of one file: job errors end the job, a
// lost claim or cancellation is nobody's fault, and reading failures are
// retried a few times.
func (r *importRun) fileFailed(ctx context.Context, res fileResult, attempts map[int]int) error {
	err := res.err
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrClaimLost):
		r.env.Logger.Warn("lost the claim of a data file", "job", r.id, "file", r.exp.Files[res.index].Name)
		return nil
	}
	if _, ok := isJobError(err); ok {
		return err
	}
	name := r.exp.Files[res.index].Name
	if errors.Is(err, export.ErrRetried) {
		return fail("data file %s: %v", name, err)
	}
	attempts[res.index]++
	if attempts[res.index] >= fileAttempts {
		return fail("data file %s: %v (after %d attempts)", name, err, attempts[res.index])
	}
	r.env.Logger.Warn("data file failed; will retry", "job", r.id, "file", name, "attempt", attempts[res.index], "err", err)
	select {
	case <-time.After(time.Duration(attempts[res.index]) * 500 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// observe refreshes progress: metrics, the rate limit's share, max_rejects.
func (r *importRun) observe(ctx context.Context, job *migratorv1.Job) error {
	e := r.env
	agg, err := e.Store.Aggregate(ctx, job)
	if err != nil {
		return err
	}
	e.Rates.Apply(agg, e.Now())
	e.Observer.Progress(r.id, Ratio(agg))
	if err := r.checkRejects(agg); err != nil {
		return err
	}
	if r.limiter != nil {
		// Migrators sharing the job share its rate.
		share := r.spec.GetItemsPerSecond() / float64(max(1, len(agg.GetOwners())))
		if r.limiter.Limit() != rate.Limit(share) {
			r.limiter.SetLimit(rate.Limit(share))
		}
	}
	return nil
}

func (r *importRun) checkRejects(agg *migratorv1.Job) error {
	if maxRejects := r.spec.GetMaxRejects(); maxRejects > 0 && agg.GetProgress().GetRejects() > maxRejects {
		return fail("%d rejected lines exceed max_rejects %d (see ListRejects)", agg.GetProgress().GetRejects(), maxRejects)
	}
	return nil
}

func (r *importRun) finish(ctx context.Context, job *migratorv1.Job) error {
	e := r.env
	agg, err := e.Store.Aggregate(ctx, job)
	if err != nil {
		return err
	}
	if err := r.checkRejects(agg); err != nil {
		return err
	}
	cps, err := e.Store.Checkpoints(ctx, r.id)
	if err != nil {
		return err
	}
	problems := manifestProblems(r.exp)
	for _, f := range r.exp.Files {
		cp := cps[FileName(f.Index)]
		problems = append(problems, fileProblems(f, fileTally{Unread: cp.Unread, Records: cp.Records, LineRejects: cp.LineRejects}, "imported")...)
	}
	state := outcome(problems)
	err = e.finishImport(ctx, r.id, r.attempt, r.m.Table, r.exp.ExportTime, state, problemsText(problems), func(j *migratorv1.Job) {
		j.Problems = problems
	})
	if err == nil {
		p := agg.GetProgress()
		e.Logger.Info("import ended", "job", r.id, "state", state, "items", p.GetItemsWritten(), "deletes", p.GetDeletes(),
			"rejects", p.GetRejects(), "skipped_expired", p.GetSkippedExpired(), "filtered", p.GetFiltered(), "problems", len(problems))
		for _, p := range problems {
			e.Logger.Warn("import problem", "job", r.id, "problem", ProblemLine(p))
		}
		e.Observer.Progress(r.id, 1)
	}
	if errors.Is(err, ErrFinished) {
		return nil
	}
	return err
}

// putRejects stores rejects up to the job's cap; all are counted anyway.
func (r *importRun) putRejects(ctx context.Context, rs []StoredReject) error {
	return r.sink.put(ctx, rs)
}

// rejectSink stores a job's rejects, at most Env.MaxStoredRejects of them
// (counting those already stored when the run started).
type rejectSink struct {
	env    *Env
	id     string
	stored atomic.Int64
}

func (k *rejectSink) init(ctx context.Context) {
	if n, err := k.env.Store.CountRejects(ctx, k.id); err == nil {
		k.stored.Store(n)
	}
}

func (k *rejectSink) put(ctx context.Context, rs []StoredReject) error {
	if len(rs) == 0 {
		return nil
	}
	k.env.Observer.Rejects(k.id, len(rs))
	room := k.env.MaxStoredRejects - k.stored.Load()
	if room <= 0 {
		return nil
	}
	rs = rs[:min(int64(len(rs)), room)]
	k.stored.Add(int64(len(rs)))
	return k.env.Store.PutRejects(ctx, k.id, rs)
}

// fileRun is the state of one file being imported.
type fileRun struct {
	r      *importRun
	f      export.File
	name   string
	in     chan *batch
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// complete hands a finished batch to the file's committer.
func (fr *fileRun) complete(b *batch) {
	select {
	case fr.in <- b:
	case <-fr.ctx.Done():
	}
}

// processFile imports one claimed data file from its checkpoint on.
func (r *importRun) processFile(ctx context.Context, f export.File) error {
	e := r.env
	name := FileName(f.Index)
	cp, err := e.Store.Checkpoint(ctx, r.id, name)
	if err != nil || cp.Done {
		return err
	}
	cp.File = f.Name
	if !cp.MD5Verified {
		etag, err := r.exp.CheckMD5(ctx, f)
		var reason, tag string
		switch {
		case errors.Is(err, export.ErrChecksum):
			reason, tag = "checksum mismatch: "+err.Error()+"; the file's content cannot be trusted, so none of it was imported", "md5"
			cp.Unread = unreadChecksum
		case errors.Is(err, export.ErrNotExist):
			reason, tag = "data file missing: "+err.Error(), "missing"
			cp.Unread = unreadMissing
		case err != nil:
			return err
		}
		if reason != "" {
			cp.Rejects++
			cp.Done = true
			if err := r.putRejects(ctx, []StoredReject{{Key: RejectKey(f.Index, 0, tag), Reject: &migratorv1.Reject{Source: f.Name, Reason: reason}}}); err != nil {
				return err
			}
			return r.putCheckpoint(ctx, name, cp)
		}
		cp.MD5Verified, cp.ETag = true, etag
		if err := r.putCheckpoint(ctx, name, cp); err != nil {
			return err
		}
	}
	lines, err := r.exp.OpenLines(ctx, f, cp.ETag, 0)
	if errors.Is(err, export.ErrNotExist) {
		return fail("data file %s vanished after its checksum was verified: %v", f.Name, err)
	}
	if err != nil {
		return err
	}
	defer lines.Close()

	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fr := &fileRun{r: r, f: f, name: name, in: make(chan *batch, 4*r.parallel+4), ctx: fctx, cancel: cancel}
	committed := make(chan error, 1)
	go func() { committed <- fr.commit(fctx, cp) }()

	readErr := r.read(fctx, fr, lines, cp.Lines)
	if readErr != nil {
		cancel(readErr)
	}
	err = <-committed
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		return readErr
	}
	if err != nil {
		if cause := context.Cause(fctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
	return nil
}

// read decodes and maps the file's lines after skip into batches.
func (r *importRun) read(ctx context.Context, fr *fileRun, lines *export.Lines, skip int64) error {
	seq := 0
	prevBytes := int64(0)
	b := &batch{file: fr}
	send := func(last bool) error {
		b.seq, b.last = seq, last
		seq++
		if len(b.muts) == 0 {
			fr.complete(b)
		} else {
			select {
			case r.batches <- b:
			case <-ctx.Done():
			}
		}
		b = &batch{file: fr}
		return ctx.Err()
	}
	for {
		raw, err := lines.Next()
		n := int64(lines.Line())
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, export.ErrLineTooLong) {
			if !errors.Is(err, export.ErrCorrupt) {
				return err // reading failed: retry the file from its checkpoint
			}
			if n >= skip {
				b.delta.Bytes += lines.Bytes() - prevBytes
				b.lastLine = n + 1
				b.corrupt = true
				b.fileReject(fr.f.Index, fr.f.Name, n+1, "gzip", "corrupt gzip: "+err.Error()+"; the rest of the file cannot be read", nil)
			} else {
				b.corrupt = true
			}
			break
		}
		if n <= skip {
			prevBytes = lines.Bytes()
			continue
		}
		b.delta.Bytes += lines.Bytes() - prevBytes
		prevBytes = lines.Bytes()
		b.lastLine = n
		switch {
		case err != nil: // too long
			b.delta.Records++
			b.reject(fr.f.Index, fr.f.Name, n, "", "malformed line: "+err.Error(), raw)
		case isBlank(raw):
		default:
			b.delta.Records++
			r.mapLine(b, fr, n, raw)
		}
		if len(b.muts) >= r.batchSize || b.delta.Records >= int64(4*r.batchSize) {
			if err := send(false); err != nil {
				return err
			}
		}
	}
	return send(true)
}

// mapLine decodes and maps one data line into b.
func (r *importRun) mapLine(b *batch, fr *fileRun, n int64, raw []byte) {
	rec, err := ddb.DecodeExportLine(r.exp.Format, raw)
	if err != nil {
		b.reject(fr.f.Index, fr.f.Name, n, "", "malformed line: "+err.Error(), raw)
		return
	}
	res := r.m.Map(rec, r.exp.Incremental, r.version, r.env.Now())
	key := client.Key{Table: r.m.Table, PartitionKey: res.PK, SortKey: res.SK}
	switch res.Kind {
	case mapping.Put:
		b.muts = append(b.muts, client.Mutation{Key: key, Value: res.Value, ExpireTime: res.Expire, Version: res.Version})
		b.lines = append(b.lines, n)
		b.expired = append(b.expired, false)
		b.delta.Items++
	case mapping.Delete:
		b.muts = append(b.muts, client.Mutation{Key: key, Delete: true, Version: res.Version})
		b.lines = append(b.lines, n)
		b.expired = append(b.expired, res.Expired)
		if res.Expired {
			b.delta.SkippedExpired++
		} else {
			b.delta.Deletes++
		}
	case mapping.SkipExpired:
		b.delta.SkippedExpired++
	case mapping.SkipFiltered:
		b.delta.Filtered++
	case mapping.Reject:
		b.reject(fr.f.Index, fr.f.Name, n, "", res.Reason, raw)
	}
}

// commit applies finished batches in order, checkpointing after each run
// of them, until the file's last batch; then it checks the file's item
// count and marks it done.
func (fr *fileRun) commit(ctx context.Context, cp Checkpoint) error {
	r, e := fr.r, fr.r.env
	pending := map[int]*batch{}
	next := 0
	for {
		select {
		case b := <-fr.in:
			pending[b.seq] = b
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		// Take whatever else is ready, to checkpoint once for all of it.
	drain:
		for {
			select {
			case b := <-fr.in:
				pending[b.seq] = b
			default:
				break drain
			}
		}
		var rejects []StoredReject
		var written, final, corrupt bool
		var bytesRead int64
		var items int
		for b, ok := pending[next]; ok; b, ok = pending[next] {
			delete(pending, next)
			next++
			d := b.delta
			cp.Lines = max(cp.Lines, b.lastLine)
			cp.Records += d.Records
			cp.Items += d.Items
			cp.Superseded += d.Superseded
			cp.Deletes += d.Deletes
			cp.SkippedExpired += d.SkippedExpired
			cp.Filtered += d.Filtered
			cp.Rejects += d.Rejects
			cp.LineRejects += d.LineRejects
			cp.Bytes += d.Bytes
			bytesRead += d.Bytes
			items += int(d.Items + d.Deletes)
			rejects = append(rejects, b.rejects...)
			written = true
			final = final || b.last
			corrupt = corrupt || b.corrupt
		}
		if !written {
			continue
		}
		f := fr.f
		if corrupt {
			cp.Unread = unreadCorrupt
		}
		if final && !corrupt && f.HasItemCount && cp.Records != f.ItemCount {
			cp.Rejects++
			rejects = append(rejects, StoredReject{Key: RejectKey(f.Index, 0, "itemcount"), Reject: &migratorv1.Reject{
				Source: f.Name,
				Reason: fmt.Sprintf("item count mismatch: the file has %d items, %s says %d", cp.Records, export.FilesName, f.ItemCount),
			}})
		}
		cp.Done = final
		if err := r.putRejects(ctx, rejects); err != nil {
			return err
		}
		if err := r.putCheckpoint(ctx, fr.name, cp); err != nil {
			return err
		}
		e.Observer.ItemsWritten(r.id, items)
		e.Observer.BytesRead(r.id, bytesRead)
		if final {
			return nil
		}
	}
}

func (r *importRun) putCheckpoint(ctx context.Context, name string, cp Checkpoint) error {
	cp.Owner = r.env.ID
	cp.UpdateTime = r.env.Now().UTC()
	return r.env.Store.PutCheckpoint(ctx, r.id, name, r.lease, cp)
}

// writer sends batches to Veltrix.
func (r *importRun) writer(ctx context.Context) {
	for {
		var b *batch
		select {
		case b = <-r.batches:
		case <-ctx.Done():
			return
		}
		fctx := b.file.ctx
		if fctx.Err() != nil {
			continue // the file stopped; its checkpoint does not cover this batch
		}
		if err := r.write(fctx, b); err != nil {
			b.file.cancel(err)
			continue
		}
		b.file.complete(b)
	}
}

// write applies one batch through the migrator's write path
// (writeRefusing): mutations the router refuses become rejects, puts
// Veltrix already held at a newer version are counted as superseded.
func (r *importRun) write(ctx context.Context, b *batch) error {
	if r.limiter != nil {
		if err := r.limiter.WaitN(ctx, len(b.muts)); err != nil {
			return err
		}
	}
	superseded, err := r.env.writeRefusing(ctx, r.m.Table, "import "+r.id+" "+b.file.f.Name, b.muts, len(b.muts), func(i int, err error) {
		r.rejectWrite(b, i, err)
	})
	if err != nil {
		return err
	}
	b.delta.Superseded += int64(len(superseded))
	return nil
}

// rejectWrite turns mutation i of b, refused by the router, into a reject.
func (r *importRun) rejectWrite(b *batch, i int, err error) {
	switch {
	case b.expired[i]:
		b.delta.SkippedExpired--
	case b.muts[i].Delete:
		b.delta.Deletes--
	default:
		b.delta.Items--
	}
	b.reject(b.file.f.Index, b.file.f.Name, b.lines[i], fmt.Sprintf("write%d", i), "Veltrix refused the write: "+status.Convert(err).Message(), nil)
}
