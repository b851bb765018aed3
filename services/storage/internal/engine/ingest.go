package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ingestTempDir is the directory, inside Options.Dir, where Ingest builds
// its SSTs. Open empties it: what is left there is from a crash mid-build.
const ingestTempDir = "ingest-tmp"

// IngestResult reports what one Ingest did.
type IngestResult struct {
	// Applied counts the records that are now the stored ones.
	Applied int
	// Superseded counts the records not applied because an equal or newer
	// record was stored, or came in the same run.
	Superseded int
	// Invalid lists the records refused by validation, in index order.
	Invalid []InvalidRecord
}

// InvalidRecord is a record Ingest refused.
type InvalidRecord struct {
	Index  int    // position in the run
	Reason string // what is wrong with it
}

// ingestRun is an Ingest call's work for the committer: one candidate per
// key, sorted by key, and what was prepared outside the committer.
type ingestRun struct {
	recs  []Record
	cands []ingestCand
	res   IngestResult
	prep  *preparedIngest // nil: the committer does all of it
}

// preparedIngest is an ingestion's read-compare-write done outside the
// committer: its winners' changes, their SSTs when large enough, and the
// digest changes. The committer uses it only if no key of the run was made
// visible since its reads began (see deciding).
type preparedIngest struct {
	hashes   []uint64 // the candidates' key hashes, sorted
	stale    bool     // a key of the run was written meanwhile; under deciding.mu
	decision ingestDecision
	paths    []string // the item and purge-index SSTs, if written
}

// deciding is the set of ingestions being decided outside the committer.
// One joins before it reads the stored records, and the committer's
// afterCommit marks stale every member one of whose keys it made visible
// (or every member, after a partition drop): a write visible before a run
// joined is seen by its reads, and one made visible after is marked.
type deciding struct {
	n    atomic.Int32 // members; afterCommit skips the lock when 0
	mu   sync.Mutex
	runs map[*preparedIngest]struct{}
}

func (d *deciding) any() bool { return d.n.Load() > 0 }

func (d *deciding) join(p *preparedIngest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runs == nil {
		d.runs = make(map[*preparedIngest]struct{})
	}
	d.runs[p] = struct{}{}
	d.n.Add(1)
}

// leave removes p and reports whether it is still current: none of its keys
// was made visible since it joined.
func (d *deciding) leave(p *preparedIngest) (current bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.runs[p]; ok {
		delete(d.runs, p)
		d.n.Add(-1)
	}
	return !p.stale
}

// wrote marks stale the members holding any of hashes (sorted or not), or
// every member if a partition was dropped.
func (d *deciding) wrote(hashes []uint64, drop bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.runs {
		if p.stale {
			continue
		}
		if drop {
			p.stale = true
			continue
		}
		for _, h := range hashes {
			if _, found := slices.BinarySearch(p.hashes, h); found {
				p.stale = true
				break
			}
		}
	}
}

// maxIngestRedecides bounds how often a run one of whose keys was written
// while it was being decided is decided again outside the committer; after
// that the committer decides it.
const maxIngestRedecides = 2

// ingestDecision is the outcome of an ingestion's read-compare-write.
type ingestDecision struct {
	buf                 *sstBuffer // item and purge-index changes
	gs                  *groupState
	written             [][]byte
	applied, superseded int
	bytes               uint64
}

type ingestCand struct {
	ik  []byte // encoded item key
	idx int    // index in recs
}

// Ingest is Apply for bulk import. It writes the records that win under the
// LWW rule, exactly as Apply would (same rule and ties, same purge index and
// digests), but as SSTs ingested into Pebble instead of through the WAL
// and memtable (a run with under 4 MiB of changes as one batch). Invalid records are reported by index and not applied; the
// others are. A record equal to or older than the stored one, or than
// another record of the run for its key, is superseded. The ingestion is
// atomic: after a crash all or none of the run's winners are there, with
// their digests. Unless Options.NoSync it is durable when Ingest returns.
// A run whose records add up to more than Options.MaxIngestBytes fails with
// ErrTooLarge and applies nothing. Ingest does not keep recs.
//
// A large run reads the stored records, decides and writes its SSTs in the
// caller's goroutine, so writes are not held up while it does; the
// committer then adds the digests and lands the SSTs, alone. A run one of
// whose keys was written meanwhile (see deciding) is decided again, and
// after maxIngestRedecides such attempts by the committer, as a small run
// is, which writes queued behind it wait for.
func (e *Engine) Ingest(recs []Record) (IngestResult, error) {
	size := 0
	for i := range recs {
		size += recs[i].size()
	}
	if size > e.opts.MaxIngestBytes {
		return IngestResult{}, fmt.Errorf("%w: ingest run of %d records and %d bytes, limit %d bytes (Options.MaxIngestBytes)",
			ErrTooLarge, len(recs), size, e.opts.MaxIngestBytes)
	}
	run := &ingestRun{recs: recs, cands: make([]ingestCand, 0, len(recs))}
	for i := range recs {
		if msg := checkRecord(&recs[i]); msg != "" {
			run.res.Invalid = append(run.res.Invalid, InvalidRecord{Index: i, Reason: msg})
			continue
		}
		run.cands = append(run.cands, ingestCand{ik: EncodeKey(recs[i].Key), idx: i})
	}
	run.collapse()
	if err := e.enter(); err != nil {
		return IngestResult{}, err
	}
	defer e.closeMu.RUnlock()
	if p := e.writeErr.Load(); p != nil {
		return IngestResult{}, fmt.Errorf("%w: %w", ErrWriteFailed, *p)
	}
	if len(run.cands) == 0 {
		return run.res, nil
	}
	superseded := run.res.Superseded // by the run's own records
	for attempt := 0; ; attempt++ {
		run.prep, run.res.Superseded = nil, superseded
		if size >= e.opts.ingestMinSSTBytes && attempt <= maxIngestRedecides {
			prep, err := e.prepareIngest(run)
			if err != nil {
				return IngestResult{}, err
			}
			run.prep = prep
			e.hook("prepared")
		}
		r := &request{kind: reqIngest, ingest: run, size: size, done: make(chan struct{})}
		e.reqs <- r
		<-r.done
		if r.err == errIngestStale {
			continue
		}
		if r.err != nil {
			return IngestResult{}, r.err
		}
		return run.res, nil
	}
}

// errIngestStale is the committer's answer to a run decided outside it
// one of whose keys was written meanwhile: decide it again.
var errIngestStale = errors.New("engine: ingest: a key of the run was written while it was decided")

// prepareIngest does an ingestion's read-compare-write outside the
// committer and writes its item and purge-index SSTs. The run joins
// Engine.deciding before the reads start, so a write is either seen by them
// or marks the run stale.
func (e *Engine) prepareIngest(run *ingestRun) (*preparedIngest, error) {
	p := &preparedIngest{hashes: make([]uint64, len(run.cands))}
	for i, c := range run.cands {
		p.hashes[i] = keyHash(c.ik)
	}
	slices.Sort(p.hashes)
	e.deciding.join(p)
	d, err := e.decideIngest(run, &groupState{digests: make(map[uint32]PartitionDigest), deltas: true})
	if err == nil && d.applied > 0 && d.buf.bytes >= e.opts.ingestMinSSTBytes {
		p.paths, err = e.writeSSTs(d.buf.sorted())
	}
	if err != nil {
		e.deciding.leave(p)
		return nil, err
	}
	p.decision = d
	return p, nil
}

// collapse sorts the candidates by key (unless they already are) and keeps
// one per key: the winner under the LWW rule, the earliest of equal ones,
// as Apply keeps the first of equal records in one call.
func (run *ingestRun) collapse() {
	byKey := func(a, b ingestCand) int { return bytes.Compare(a.ik, b.ik) }
	if !slices.IsSortedFunc(run.cands, byKey) {
		slices.SortStableFunc(run.cands, byKey)
	}
	out := run.cands[:0]
	for _, c := range run.cands {
		if n := len(out); n > 0 && bytes.Equal(out[n-1].ik, c.ik) {
			run.res.Superseded++
			a, b := recordState(&run.recs[c.idx], 0), recordState(&run.recs[out[n-1].idx], 0)
			if compareLWW(&a, &b) > 0 {
				out[n-1] = c
			}
			continue
		}
		out = append(out, c)
	}
	run.cands = out
}

// commitIngest is the committer's part of an Ingest. A prepared run whose
// keys nobody wrote since gets its digests and lands; any other run is
// decided here — read-compare-write of every candidate against the stored
// records — and its SSTs (items, purge-index changes, digests) ingested in
// one step. It runs with no group in flight, so nothing it reads changes
// before the SSTs land.
func (e *Engine) commitIngest(r *request) {
	defer close(r.done)
	run, prep := r.ingest, r.ingest.prep
	var paths []string // SSTs written and not ingested: removed on return
	defer func() { e.removeFiles(paths) }()
	current := false
	if prep != nil {
		paths = prep.paths
		current = e.deciding.leave(prep)
	}
	if p := e.writeErr.Load(); p != nil {
		r.err = fmt.Errorf("%w: %w", ErrWriteFailed, *p)
		return
	}
	var d ingestDecision
	switch {
	case current:
		d = prep.decision
		d.gs.addBase(e.digests)
	case prep != nil:
		// Decided again outside the committer (Ingest retries), so
		// writes are not held up by it; the last attempt is decided here.
		e.st.ingestRedone.Add(1)
		r.err = errIngestStale
		return
	default:
		var err error
		if d, err = e.decideIngest(run, &groupState{digests: make(map[uint32]PartitionDigest)}); err != nil {
			r.err = err
			return
		}
	}
	run.res.Applied = d.applied
	run.res.Superseded += d.superseded
	if d.applied > 0 {
		var err error
		if paths == nil && d.buf.bytes < e.opts.ingestMinSSTBytes {
			d.gs.emitDigests(d.buf)
			err = e.commitBuffer(d.buf)
		} else {
			// The digests go in an SST of their own when the items and
			// purge index are in SSTs already.
			digests := d.buf
			if paths != nil {
				digests = &sstBuffer{}
			}
			d.gs.emitDigests(digests)
			var more []string
			if more, err = e.writeSSTs(digests.sorted()); err == nil {
				paths = append(paths, more...)
				err = e.ingestSSTs(paths)
			}
		}
		if err != nil {
			r.err = err
			return
		}
		paths = nil // Pebble took them
		e.adoptDigests(d.gs)
		e.afterCommit(&group{written: d.written}, nil)
	}
	e.st.ingests.Add(1)
	e.st.ingested.Add(uint64(d.applied))
	e.st.ingestSuperseded.Add(uint64(run.res.Superseded))
	e.st.ingestedBytes.Add(d.bytes)
}

// removeFiles removes SSTs an ingestion wrote and did not land.
func (e *Engine) removeFiles(paths []string) {
	for _, p := range paths {
		if err := removeIfExists(e.opts.FS, p); err != nil {
			e.log.Warn("storage engine: remove an SST that was not ingested; it goes when the engine reopens", "path", p, "err", err)
		}
	}
}

// decideIngest runs an ingestion's read-compare-write: each candidate
// against the record stored under its key. gs collects the digest changes
// (from zero when gs.deltas, outside the committer).
func (e *Engine) decideIngest(run *ingestRun, gs *groupState) (ingestDecision, error) {
	// Room for every candidate's item and some purge-index changes: grown
	// from empty, the buffer of a 16 MiB run was copied over and over.
	d := ingestDecision{
		buf:     &sstBuffer{changes: make([]sstChange, 0, len(run.cands)+len(run.cands)/16+64)},
		gs:      gs,
		written: make([][]byte, 0, len(run.cands)),
	}
	now := e.nowNanos()
	err := e.lookupStored(run.cands, func(c ingestCand, old *slot) {
		rec := &run.recs[c.idx]
		ns := recordState(rec, now)
		if old.exists && compareLWW(&ns, &old.s) <= 0 {
			d.superseded++
			return
		}
		e.emitReplace(d.buf, gs, c.ik, old, &slot{exists: true, s: ns, hash: recordHash(c.ik, &ns)})
		d.written = append(d.written, c.ik)
		d.applied++
		d.bytes += uint64(len(rec.Value))
	})
	if err != nil {
		return ingestDecision{}, fmt.Errorf("engine: ingest: read stored records: %w", err)
	}
	return d, nil
}

// lookupStored calls fn with each candidate, in order, and the record stored
// under its key. old aliases the iterator's memory and is only valid during
// the call.
//
// Each key is looked up with SeekPrefixGE (the whole key is the prefix),
// which consults the SSTs' bloom filters: an imported key is mostly new,
// and a plain SeekGE would load (and, past the block cache, read and
// decompress) a data block of every SST whose range spans the key, in
// every level, only to find the next key. Runs of a random-order export
// span every partition, so nearly every SST does. Pebble skips the filters
// of L6 unless asked (most point reads there find their key), but that is
// where an import's earlier runs end up.
func (e *Engine) lookupStored(cands []ingestCand, fn func(c ingestCand, old *slot)) error {
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound:   cands[0].ik,
		UpperBound:   immediateSuccessor(cands[len(cands)-1].ik),
		UseL6Filters: true,
	})
	if err != nil {
		return err
	}
	var old slot
	for _, c := range cands {
		old = slot{}
		if it.SeekPrefixGE(c.ik) && bytes.Equal(it.Key(), c.ik) {
			v, err := it.ValueAndErr()
			if err != nil {
				return errors.Join(fmt.Errorf("%x: %w", c.ik, err), it.Close())
			}
			s, err := decodeStored(v)
			if err != nil {
				return errors.Join(fmt.Errorf("%x: %w", c.ik, err), it.Close())
			}
			old = slot{exists: true, s: s, hash: recordHash(c.ik, &s)}
		}
		fn(c, &old)
	}
	return it.Close()
}

// writeSSTs writes sorted changes into SSTs in the temporary directory, one
// per key space (items, digests, purge index), to be ingested together:
// Pebble ingests several files atomically, and an items file that spans
// only the run's keys can go to the lowest level its range is free in,
// where one spanning the digests and the purge index too would overlap
// every partition in between and land in L0. On error nothing is left.
func (e *Engine) writeSSTs(changes []sstChange) ([]string, error) {
	fs := e.opts.FS
	dir := fs.PathJoin(e.opts.Dir, ingestTempDir)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: ingest: create %s: %w", dir, err)
	}
	seq := e.ingestSeq.Add(1)
	var paths []string
	for len(changes) > 0 {
		space := changes[0].key[0]
		n := 1
		for n < len(changes) && changes[n].key[0] == space {
			n++
		}
		path := fs.PathJoin(dir, fmt.Sprintf("%06d-%c.sst", seq, space))
		paths = append(paths, path)
		if err := e.writeSST(path, changes[:n]); err != nil {
			for _, p := range paths {
				err = errors.Join(err, removeIfExists(fs, p))
			}
			return nil, fmt.Errorf("engine: ingest: write %s: %w", path, err)
		}
		changes = changes[n:]
	}
	return paths, nil
}

// ingestSSTs lands written SSTs in Pebble, atomically. A failed ingestion
// stops the write path (ErrWriteFailed), since Pebble's state is then
// unknown. The committer calls it.
func (e *Engine) ingestSSTs(paths []string) error {
	// The SSTs' digests build on every earlier write, so those must be on
	// disk before they are: a crash must not keep the SSTs and lose a write
	// their digests count (the WAL is synced in order, so one sync covers
	// all of them; with NoSync too). Pebble's Ingest does this itself
	// today when an SST overlaps the memtable (it flushes it, or rotates
	// and syncs the WAL), which an SST of digest keys always does; one
	// sync per run keeps it from depending on that.
	if err := e.db.LogData(nil, pebble.Sync); err != nil {
		e.setWriteErr(err)
		return fmt.Errorf("%w: sync before ingestion: %w", ErrWriteFailed, err)
	}
	e.hook("sst-written")
	if err := e.db.Ingest(context.Background(), paths); err != nil {
		e.setWriteErr(err)
		return fmt.Errorf("%w: ingest %v: %w", ErrWriteFailed, paths, err)
	}
	e.hook("ingested")
	return nil
}

// commitBuffer commits the changes of a run too small to be worth an SST
// (each ingested SST rotates the memtable and adds a file to L0) as one
// batch: the same changes, as atomic, synced unless NoSync.
func (e *Engine) commitBuffer(buf *sstBuffer) error {
	// Sized for the changes and their record headers: a batch grown from
	// empty copies itself at every doubling.
	b := e.db.NewBatchWithSize(buf.bytes + 16*len(buf.changes) + 64)
	defer b.Close()
	bs := batchSink{b}
	for i := range buf.changes {
		switch c := &buf.changes[i]; {
		case c.del:
			bs.delete(c.key)
		case c.item:
			bs.setItem(c.key, &c.s)
		default:
			bs.set(c.key, c.val)
		}
	}
	opts := pebble.Sync
	if e.opts.NoSync {
		opts = pebble.NoSync
	}
	if err := b.Commit(opts); err != nil {
		e.setWriteErr(err)
		return fmt.Errorf("%w: commit a small ingestion: %w", ErrWriteFailed, err)
	}
	return nil
}

func (e *Engine) hook(step string) {
	if e.opts.ingestHook != nil {
		e.opts.ingestHook(step)
	}
}

// writeSST writes changes, sorted with one per key, into a new SST at path
// and syncs it.
func (e *Engine) writeSST(path string, changes []sstChange) error {
	f, err := e.opts.FS.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	// Uncompressed: nearly every ingested SST overlaps the runs before it
	// and is rewritten, compressed, by a compaction soon after, so
	// compressing it here costs CPU for nothing (and for incompressible
	// values, all of it: Pebble then stores the block as it was).
	opts := e.sstOpts
	opts.Compression = sstable.NoCompression
	w := sstable.NewWriter(&sstFile{f: f, bw: bufio.NewWriterSize(f, sstWriteBuffer)}, opts)
	var val []byte
	for _, c := range changes {
		switch {
		case c.del:
			err = w.Delete(c.key)
		case c.item:
			n := c.s.encodedLen()
			if cap(val) < n {
				val = make([]byte, n)
			}
			val = val[:n]
			c.s.putHeader(val)
			copy(val[c.s.headerLen():], c.s.value)
			err = w.Set(c.key, val)
		default:
			err = w.Set(c.key, c.val)
		}
		if err != nil {
			return errors.Join(err, w.Close())
		}
	}
	return w.Close() // flushes, syncs and closes the file
}

// sstWriteBuffer is how much of an SST Ingest buffers per write call.
// Pebble's own file writer buffers 4 KiB, so every data block of 1 KiB
// items is a write system call of its own.
const sstWriteBuffer = 1 << 20

// sstFile is the objstorage.Writable Ingest writes SSTs to: a file behind
// a large buffer, synced and closed by Finish.
type sstFile struct {
	f  vfs.File
	bw *bufio.Writer
}

func (w *sstFile) Write(p []byte) error {
	_, err := w.bw.Write(p)
	return err
}

func (w *sstFile) Finish() error {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	return errors.Join(err, w.f.Close())
}

func (w *sstFile) Abort() { _ = w.f.Close() }

var _ objstorage.Writable = (*sstFile)(nil)

func removeIfExists(fs vfs.FS, path string) error {
	if err := fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// removeIngestTemp removes SSTs left by an ingestion a crash interrupted
// before Pebble took them.
func (e *Engine) removeIngestTemp() error {
	dir := e.opts.FS.PathJoin(e.opts.Dir, ingestTempDir)
	if err := e.opts.FS.RemoveAll(dir); err != nil {
		return fmt.Errorf("engine: remove leftover ingestion files in %s: %w", dir, err)
	}
	return nil
}

// sstBuffer is the sink of an ingestion: it collects changes, in any order,
// for an SST, which needs them sorted with one per key.
type sstBuffer struct {
	changes []sstChange
	bytes   int // of the keys and values
}

type sstChange struct {
	key  []byte
	val  []byte // set
	s    stored // item
	item bool
	del  bool
}

func (b *sstBuffer) setItem(ik []byte, s *stored) {
	b.changes = append(b.changes, sstChange{key: ik, s: *s, item: true})
	b.bytes += len(ik) + s.encodedLen()
}

func (b *sstBuffer) set(k, v []byte) {
	b.changes = append(b.changes, sstChange{key: k, val: v})
	b.bytes += len(k) + len(v)
}

func (b *sstBuffer) delete(k []byte) {
	b.changes = append(b.changes, sstChange{key: k, del: true})
	b.bytes += len(k)
}

// sorted returns the changes in key order, the last one of each key only
// (as in a batch, a later change of a key replaces an earlier one).
func (b *sstBuffer) sorted() []sstChange {
	cs := b.changes
	slices.SortStableFunc(cs, func(a, b sstChange) int { return bytes.Compare(a.key, b.key) })
	out := cs[:0]
	for _, c := range cs {
		if n := len(out); n > 0 && bytes.Equal(out[n-1].key, c.key) {
			out[n-1] = c
			continue
		}
		out = append(out, c)
	}
	return out
}
