package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// Verify defaults and sizes.
const (
	DefaultMaxMismatches = 1000
	verifyParallelism    = 4   // data files read at once
	verifyLookupBatch    = 500 // keys per BatchGet
	verifyScanSegments   = 4
)

// ItemHash is the per-item term of the order-independent table checksum:
// xxhash64 of the length-prefixed partition key, sort key and value and the
// expiry in Unix nanoseconds (0 for none). A table's checksum is the sum of
// its items' hashes modulo 2^64, so any order of reading gives the same
// checksum and one changed, missing or extra item changes it.
func ItemHash(pk, sk, value []byte, expire time.Time) uint64 {
	var d xxhash.Digest
	d.Reset()
	var buf [binary.MaxVarintLen64]byte
	for _, b := range [][]byte{pk, sk, value} {
		_, _ = d.Write(buf[:binary.PutUvarint(buf[:], uint64(len(b)))])
		_, _ = d.Write(b)
	}
	var exp [8]byte
	if !expire.IsZero() {
		binary.BigEndian.PutUint64(exp[:], uint64(expire.UnixNano()))
	}
	_, _ = d.Write(exp[:])
	return d.Sum64()
}

// KeyHash identifies a key in verify's set of source keys.
func KeyHash(pk, sk []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var buf [binary.MaxVarintLen64]byte
	_, _ = d.Write(buf[:binary.PutUvarint(buf[:], uint64(len(pk)))])
	_, _ = d.Write(pk)
	_, _ = d.Write(sk)
	return d.Sum64()
}

// sampled reports whether a key is in a verify's sample: its key hash
// falls in the first fraction of the hash space, so the sample is
// deterministic and the same keys are picked on every run.
func sampled(keyHash uint64, fraction float64) bool {
	if fraction <= 0 || fraction >= 1 {
		return true
	}
	return float64(keyHash) < fraction*math.MaxUint64
}

// verifyRun compares an export, or a live table read with a parallel
// Scan, with Veltrix.
//
// Every source item is mapped exactly as import maps it; the sampled ones
// are looked up with BatchGet and compared byte for byte (value and
// expiry). With check_extra the run also keeps the 8-byte key hash of every
// live source item (8 bytes per item: 2 GB for 250 M items) and scans the
// target table for keys outside that set. Counts are exact; the mismatch
// list stops at max_mismatches.
type verifyRun struct {
	env   *Env
	id    string
	spec  *migratorv1.VerifySpec
	m     *mapping.Mapping
	exp   *export.Export
	sink  *rejectSink
	lease clientv3.LeaseID

	maxMismatches int
	fraction      float64

	mu         sync.Mutex
	report     migratorv1.VerifyReport
	mismatches []*migratorv1.Mismatch
	keys       []uint64

	// tallies is what each data file held, by file index (under mu).
	tallies map[int]*fileTally
	// accept is the reject keys of spec.accept_rejects_job: a line this
	// verify cannot compare passes when the import rejected it too.
	accept map[string]bool
	// scanRejects and scanAccepted count a table scan's rejected items.
	scanRejects, scanAccepted atomic.Uint64

	sourceSum, targetSum atomic.Uint64
	compared, rejects    atomic.Uint64
	expired, filtered    atomic.Uint64
	bytesRead, filesDone atomic.Uint64
}

type lookup struct {
	key    client.Key
	absent bool // expected absent (deleted in an incremental export)
	value  []byte
	expire time.Time
}

// RunVerify runs a verify job if this migrator gets its claim, or waits
// while another migrator runs it. It returns when the job has ended or ctx
// is cancelled.
func (e *Env) RunVerify(ctx context.Context, job *migratorv1.Job, lease clientv3.LeaseID) error {
	e.defaults()
	id := job.GetId()
	for {
		ok, err := e.Store.Claim(ctx, id, VerifyClaim, e.ID, lease)
		if err != nil {
			return ignoreCanceled(err)
		}
		if ok {
			break
		}
		select {
		case <-time.After(e.PollInterval):
		case <-ctx.Done():
			return nil
		}
		j, err := e.Store.Get(ctx, id)
		if err != nil || Terminal(j.GetState()) {
			return ignoreCanceled(err)
		}
	}
	defer func() { _ = e.release(context.WithoutCancel(ctx), id, VerifyClaim, lease) }()
	r := &verifyRun{env: e, id: id, spec: job.GetVerifySpec(), lease: lease, sink: &rejectSink{env: e, id: id}}
	report, problems, err := r.run(ctx)
	if msg, ok := isJobError(err); ok {
		e.Logger.Error("verify failed", "job", id, "err", msg)
		_, err = e.Store.FinishAttempt(context.WithoutCancel(ctx), id, job.GetAttempts(), migratorv1.JobState_JOB_STATE_FAILED, msg, e.Now(), nil)
	} else if err == nil {
		if err = e.Store.PutMismatches(ctx, id, r.mismatches); err == nil {
			state := outcome(problems)
			_, err = e.Store.FinishAttempt(ctx, id, job.GetAttempts(), state, problemsText(problems), e.Now(), func(j *migratorv1.Job) {
				j.VerifyReport = report
				j.Problems = problems
				j.Progress = r.progress(j.GetProgress())
			})
			e.Logger.Info("verify done", "job", id, "passed", report.GetPassed(), "source_items", report.GetSourceItems(), "compared", report.GetCompared(),
				"missing", report.GetMissing(), "different", report.GetDifferent(), "extra", report.GetExtra(),
				"unreadable", report.GetUnreadable(), "rejects", report.GetRejects(), "accepted_rejects", report.GetAcceptedRejects())
		}
	}
	if errors.Is(err, ErrFinished) {
		return nil
	}
	return ignoreCanceled(err)
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrFinished) {
		return nil
	}
	return err
}

func (r *verifyRun) run(ctx context.Context) (*migratorv1.VerifyReport, []*migratorv1.Problem, error) {
	e := r.env
	var err error
	ts := r.spec.GetTableScan()
	if r.spec.GetExport() == nil && ts == nil {
		return nil, nil, fail("verify source: want an export or a table_scan")
	}
	if r.m, err = mapping.FromProto(r.spec.GetMapping(), "spec.mapping"); err != nil {
		return nil, nil, fail("%v", err)
	}
	r.maxMismatches = int(r.spec.GetMaxMismatches())
	if r.maxMismatches == 0 {
		r.maxMismatches = DefaultMaxMismatches
	}
	r.fraction = r.spec.GetSampleFraction()
	if ts == nil {
		if r.exp, err = openExport(ctx, r.spec.GetExport()); err != nil {
			return nil, nil, err
		}
	}
	tb, err := e.Target.DescribeTable(ctx, r.m.Table)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fail("cannot read target table %q: %v", r.m.Table, err)
	}
	if err := checkTable(tb, r.m); err != nil {
		return nil, nil, err
	}
	r.sink.init(ctx)
	if err := r.loadAccepted(ctx); err != nil {
		return nil, nil, err
	}
	if _, err := e.Store.Update(ctx, r.id, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s", ErrFinished, r.id)
		}
		j.State = migratorv1.JobState_JOB_STATE_RUNNING
		if j.StartTime == nil {
			j.StartTime = timestamp(e.Now())
		}
		j.Progress = &migratorv1.Progress{}
		if r.exp != nil {
			j.Progress.ItemsTotal, j.Progress.FilesTotal = uint64(r.exp.ItemCount()), uint32(len(r.exp.Files))
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}

	// Publish progress while running.
	pctx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(e.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				j, err := e.Store.Update(pctx, r.id, func(j *migratorv1.Job) error {
					if Terminal(j.GetState()) {
						return ErrFinished
					}
					j.Progress = r.progress(j.GetProgress())
					return nil
				})
				if err == nil {
					e.Rates.Apply(j, e.Now())
					e.Observer.Progress(r.id, Ratio(j))
				}
			case <-pctx.Done():
				return
			}
		}
	}()
	defer func() {
		stopProgress()
		<-progressDone
	}()

	if ts != nil {
		if err := r.verifyScan(ctx, ts); err != nil {
			return nil, nil, err
		}
	} else if err := r.verifyExport(ctx); err != nil {
		return nil, nil, err
	}
	if r.spec.GetCheckExtra() {
		if err := r.scanExtra(ctx); err != nil {
			return nil, nil, err
		}
	}
	rep := &r.report
	rep.Compared = r.compared.Load()
	rep.SourceChecksum = r.sourceSum.Load()
	rep.TargetChecksum = r.targetSum.Load()
	out := &migratorv1.VerifyReport{
		SourceItems: rep.SourceItems, TargetItems: rep.TargetItems, Compared: rep.Compared,
		Missing: rep.Missing, Extra: rep.Extra, Different: rep.Different,
		SourceChecksum: rep.SourceChecksum, TargetChecksum: rep.TargetChecksum,
		AcceptRejectsJob: r.spec.GetAcceptRejectsJob(),
	}
	problems := r.problems(out)
	out.Passed = outcome(problems) == migratorv1.JobState_JOB_STATE_SUCCEEDED
	return out, problems, nil
}

// problems completes the report's counts from what each file held and
// names every reason the verdict fails: the manifest's counts, each file's
// shortfalls, the mismatches.
func (r *verifyRun) problems(out *migratorv1.VerifyReport) []*migratorv1.Problem {
	var problems []*migratorv1.Problem
	if r.exp != nil {
		problems = manifestProblems(r.exp)
		for _, f := range r.exp.Files {
			t := r.tallies[f.Index]
			if t == nil {
				continue // not reached: the run failed before it
			}
			problems = append(problems, fileProblems(f, *t, "compared")...)
			out.Unreadable += uint64(unreadInFile(f, *t))
			out.Rejects += uint64(t.LineRejects)
			out.AcceptedRejects += uint64(t.AcceptedRejects)
		}
	}
	if n, acc := r.scanRejects.Load(), r.scanAccepted.Load(); n > 0 {
		out.Rejects += n
		out.AcceptedRejects += acc
		src := "table " + r.spec.GetTableScan().GetTableName()
		if n > acc {
			problems = append(problems, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES, Source: src,
				Items: n - acc, Detail: fmt.Sprintf("%d items could not be mapped and were not compared (see the job's rejects)", n-acc)})
		}
		if acc > 0 {
			problems = append(problems, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES, Source: src,
				Items: acc, Accepted: true, Detail: fmt.Sprintf("%d items could not be mapped, accepted as rejected by the import too", acc)})
		}
	}
	// Every item the source holds counts, read or not.
	out.SourceItems += out.Unreadable + out.Rejects
	if n := out.Missing + out.Different + out.Extra; n > 0 {
		problems = append(problems, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_MISMATCHES, Source: r.m.Table,
			Items:  n,
			Detail: fmt.Sprintf("%d items missing, %d different, %d extra in Veltrix", out.Missing, out.Different, out.Extra)})
	}
	return problems
}

// loadAccepted reads the rejects of spec.accept_rejects_job, which must be
// an import job.
func (r *verifyRun) loadAccepted(ctx context.Context) error {
	id := r.spec.GetAcceptRejectsJob()
	if id == "" {
		return nil
	}
	j, err := r.env.Store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fail("accept_rejects_job %q: no such job", id)
	}
	if err != nil {
		return err
	}
	if j.GetKind() != migratorv1.JobKind_JOB_KIND_IMPORT {
		return fail("accept_rejects_job %q is a %s job, not an import", id, j.GetKind())
	}
	keys, err := r.env.Store.RejectKeys(ctx, id)
	if err != nil {
		return err
	}
	r.accept = make(map[string]bool, len(keys))
	for _, k := range keys {
		r.accept[k] = true
		if tag, ok := strings.CutPrefix(k, "scan/"); ok {
			// A scanned item's reject is keyed by segment and item hash;
			// another run may see the item in another segment.
			if _, h, ok := strings.Cut(tag, "/"); ok {
				r.accept["scan-item/"+h] = true
			}
		}
	}
	return nil
}

// verifyExport compares every data file of the export.
func (r *verifyRun) verifyExport(ctx context.Context) error {
	files := make(chan export.File)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(files)
		for _, f := range r.exp.Files {
			select {
			case files <- f:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range verifyParallelism {
		g.Go(func() error {
			for f := range files {
				if err := r.verifyFile(gctx, f); err != nil {
					return err
				}
				r.filesDone.Add(1)
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *verifyRun) progress(p *migratorv1.Progress) *migratorv1.Progress {
	out := &migratorv1.Progress{
		ItemsTotal: p.GetItemsTotal(), FilesTotal: p.GetFilesTotal(),
		BytesRead: r.bytesRead.Load(), Rejects: r.rejects.Load(),
		SkippedExpired: r.expired.Load(), Filtered: r.filtered.Load(),
		FilesDone: uint32(r.filesDone.Load()), ItemsCompared: r.compared.Load(),
	}
	r.mu.Lock()
	out.Mismatches = r.report.Missing + r.report.Different + r.report.Extra
	r.mu.Unlock()
	return out
}

func (r *verifyRun) mismatch(kind migratorv1.MismatchKind, pk, sk []byte, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case migratorv1.MismatchKind_MISMATCH_KIND_MISSING:
		r.report.Missing++
	case migratorv1.MismatchKind_MISMATCH_KIND_EXTRA:
		r.report.Extra++
	case migratorv1.MismatchKind_MISMATCH_KIND_DIFFERENT:
		r.report.Different++
	}
	if len(r.mismatches) < r.maxMismatches {
		r.mismatches = append(r.mismatches, &migratorv1.Mismatch{Kind: kind, PartitionKey: bytes.Clone(pk), SortKey: bytes.Clone(sk),
			Detail: detail, Key: keyJSON(r.m.Keys, pk, sk)})
	}
}

// keyJSON is an item's key attributes as DynamoDB JSON, from its stored
// key bytes; "" when they do not decode under the schema (an extra item
// written by something else), which the stored bytes then show.
func keyJSON(ks ddb.KeySchema, pk, sk []byte) string {
	it, err := ks.ItemKey(pk, sk)
	if err != nil {
		return ""
	}
	b, err := ddb.MarshalDynamoDBJSON(it)
	if err != nil {
		return ""
	}
	return string(b)
}

func (r *verifyRun) verifyFile(ctx context.Context, f export.File) error {
	t := &fileTally{}
	r.mu.Lock()
	if r.tallies == nil {
		r.tallies = map[int]*fileTally{}
	}
	r.tallies[f.Index] = t
	r.mu.Unlock()
	reject := func(line int64, tag, reason string, raw []byte) error {
		r.rejects.Add(1)
		return r.sink.put(ctx, []StoredReject{{Key: RejectKey(f.Index, line, tag), Reject: &migratorv1.Reject{
			Source: f.Name, Line: uint64(line), Reason: reason, Excerpt: excerpt(raw)}}})
	}
	// lineReject is a line that holds an item this verify cannot compare.
	lineReject := func(line int64, reason string, raw []byte) error {
		t.LineRejects++
		if r.accept[RejectKey(f.Index, line, "")] {
			t.AcceptedRejects++
			reason += "; accepted: import " + r.spec.GetAcceptRejectsJob() + " rejected it too"
		}
		return reject(line, "", reason, raw)
	}
	etag, err := r.exp.CheckMD5(ctx, f)
	switch {
	case errors.Is(err, export.ErrChecksum):
		// Compare the file anyway: every item it holds counts.
		t.Unread = unreadChecksum
		if err := reject(0, "md5", "checksum mismatch: "+err.Error()+"; its items were compared anyway", nil); err != nil {
			return err
		}
	case errors.Is(err, export.ErrNotExist):
		t.Unread = unreadMissing
		return reject(0, "missing", "data file missing: "+err.Error()+"; its items cannot be compared", nil)
	case err != nil:
		return r.readFailed(ctx, f, err)
	}
	lines, err := r.exp.OpenLines(ctx, f, etag, 0)
	if err != nil {
		return r.readFailed(ctx, f, err)
	}
	defer lines.Close()
	var keys []uint64
	var batch []lookup
	now := r.env.Now()
	prev := int64(0)
	for {
		raw, err := lines.Next()
		r.bytesRead.Add(uint64(lines.Bytes() - prev))
		prev = lines.Bytes()
		n := int64(lines.Line())
		if err == io.EOF {
			break
		}
		if errors.Is(err, export.ErrCorrupt) {
			t.Unread = unreadCorrupt
			if err := reject(n+1, "gzip", "corrupt gzip: "+err.Error()+"; the rest of the file was not compared", nil); err != nil {
				return err
			}
			break
		}
		if errors.Is(err, export.ErrLineTooLong) {
			t.Records++
			if err := lineReject(n, "malformed line: "+err.Error(), raw); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return r.readFailed(ctx, f, err)
		}
		if isBlank(raw) {
			continue
		}
		t.Records++
		rec, err := ddb.DecodeExportLine(r.exp.Format, raw)
		if err != nil {
			if err := lineReject(n, "malformed line: "+err.Error(), raw); err != nil {
				return err
			}
			continue
		}
		res := r.m.Map(rec, r.exp.Incremental, 0, now)
		switch res.Kind {
		case mapping.SkipExpired:
			r.expired.Add(1)
			continue
		case mapping.SkipFiltered:
			r.filtered.Add(1)
			continue
		case mapping.Reject:
			if err := lineReject(n, res.Reason, raw); err != nil {
				return err
			}
			continue
		}
		kh := KeyHash(res.PK, res.SK)
		if res.Kind == mapping.Put {
			r.mu.Lock()
			r.report.SourceItems++
			r.mu.Unlock()
			r.sourceSum.Add(ItemHash(res.PK, res.SK, res.Value, res.Expire))
			if r.spec.GetCheckExtra() {
				keys = append(keys, kh)
			}
		} else if r.spec.GetCheckExtra() {
			continue // a deleted key left in Veltrix shows up in the scan as extra
		}
		if !sampled(kh, r.fraction) {
			continue
		}
		batch = append(batch, lookup{
			key:    client.Key{Table: r.m.Table, PartitionKey: res.PK, SortKey: res.SK},
			absent: res.Kind == mapping.Delete, value: res.Value, expire: res.Expire,
		})
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
}

// readFailed ends the verify on a data file that cannot be read, unless
// the run is being stopped anyway.
func (r *verifyRun) readFailed(ctx context.Context, f export.File, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fail("data file %s: %v", f.Name, err)
}

// compare looks a batch of source items up in Veltrix.
func (r *verifyRun) compare(ctx context.Context, batch []lookup) error {
	if len(batch) == 0 {
		return nil
	}
	keys := make([]client.Key, len(batch))
	for i, l := range batch {
		keys[i] = l.key
	}
	res, err := r.env.Target.BatchGet(ctx, keys)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("reading Veltrix table %q: %v", r.m.Table, err)
	}
	var found uint64
	for i, got := range res {
		want := batch[i]
		pk, sk := want.key.PartitionKey, want.key.SortKey
		r.compared.Add(1)
		if got.Found {
			found++
			if !r.spec.GetCheckExtra() { // else the scan sums the whole table
				r.targetSum.Add(ItemHash(pk, sk, got.Item.Value, got.Item.ExpireTime))
			}
		}
		switch {
		case want.absent && got.Found:
			r.mismatch(migratorv1.MismatchKind_MISMATCH_KIND_EXTRA, pk, sk, "deleted in the source (incremental export) but present in Veltrix")
		case want.absent:
		case !got.Found:
			r.mismatch(migratorv1.MismatchKind_MISMATCH_KIND_MISSING, pk, sk, "in the source, not in Veltrix")
		default:
			if d := r.diff(want, got.Item); d != "" {
				r.mismatch(migratorv1.MismatchKind_MISMATCH_KIND_DIFFERENT, pk, sk, d)
			}
		}
	}
	if !r.spec.GetCheckExtra() {
		r.mu.Lock()
		r.report.TargetItems += found
		r.mu.Unlock()
	}
	return nil
}

// diff describes how a Veltrix item differs from the source's, "" if not.
func (r *verifyRun) diff(want lookup, got client.Item) string {
	if !bytes.Equal(want.value, got.Value) {
		if r.m.Encoding == mapping.Canonical {
			if d := itemDiff(want.value, got.Value); d != "" {
				return d
			}
		}
		return fmt.Sprintf("value differs: source %d bytes, Veltrix %d bytes", len(want.value), len(got.Value))
	}
	if !want.expire.Equal(got.ExpireTime) {
		return fmt.Sprintf("expiry differs: source %s, Veltrix %s", fmtExpiry(want.expire), fmtExpiry(got.ExpireTime))
	}
	return ""
}

func fmtExpiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// itemDiff names the first attribute in which two canonical items differ.
func itemDiff(want, got []byte) string {
	a, err1 := ddb.DecodeItem(want)
	b, err2 := ddb.DecodeItem(got)
	if err1 != nil || err2 != nil {
		if err2 != nil {
			return "value in Veltrix is not a canonical item: " + err2.Error()
		}
		return ""
	}
	names := make([]string, 0, len(a)+len(b))
	for n := range a {
		names = append(names, n)
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		av, aok := a[n]
		bv, bok := b[n]
		switch {
		case !bok:
			return fmt.Sprintf("attribute %q missing in Veltrix", n)
		case !aok:
			return fmt.Sprintf("attribute %q only in Veltrix", n)
		case !ddb.Equal(av, bv):
			return fmt.Sprintf("attribute %q differs", n)
		}
	}
	return ""
}

// scanExtra scans the target table for keys the source lacks.
func (r *verifyRun) scanExtra(ctx context.Context) error {
	slices.Sort(r.keys)
	r.keys = slices.Compact(r.keys)
	g, gctx := errgroup.WithContext(ctx)
	var items atomic.Uint64
	for seg := range verifyScanSegments {
		g.Go(func() error {
			for it, err := range r.env.Target.Scan(gctx, r.m.Table, seg, verifyScanSegments) {
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					return fail("scanning Veltrix table %q: %v", r.m.Table, err)
				}
				items.Add(1)
				r.targetSum.Add(ItemHash(it.PartitionKey, it.SortKey, it.Value, it.ExpireTime))
				kh := KeyHash(it.PartitionKey, it.SortKey)
				if i := sort.Search(len(r.keys), func(i int) bool { return r.keys[i] >= kh }); i < len(r.keys) && r.keys[i] == kh {
					continue
				}
				r.mismatch(migratorv1.MismatchKind_MISMATCH_KIND_EXTRA, it.PartitionKey, it.SortKey, "in Veltrix, not in the source")
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.mu.Lock()
	r.report.TargetItems = items.Load()
	r.mu.Unlock()
	return nil
}
