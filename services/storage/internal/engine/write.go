package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// maxListedErrors bounds the invalid records one error names.
const maxListedErrors = 10

// maxHeaderLen is the largest stored-value header.
const maxHeaderLen = versionLen + 1 + 8 + 8

type reqKind uint8

const (
	reqApply reqKind = iota
	reqPurge
	reqDrop
	reqIngest
)

// request is one call handed to the committer goroutine.
type request struct {
	kind      reqKind
	recs      []Record     // reqApply
	keys      [][]byte     // reqApply: encoded item keys of recs
	pre       []prefetched // reqApply: state of keys read by the caller
	size      int
	purge     []purgeCandidate // reqPurge
	partition uint32           // reqDrop
	ingest    *ingestRun       // reqIngest

	// Results, valid once done is closed.
	outcomes []Outcome
	current  []uint64 // reqApply: version stored for each record's key
	purged   PurgeStats
	err      error
	done     chan struct{}
}

type purgeCandidate struct{ itemKey, indexKey []byte }

// prefetched is an item's state that Apply read in its own goroutine before
// queueing, so that concurrent Applies read Pebble in parallel rather than
// one after another in the committer. gen is the key's write generation
// loaded before the read: if it has moved when the committer stages the
// request, a write became visible since and the committer reads again.
type prefetched struct {
	sl   *slot // nil if the read failed
	hash uint64
	gen  uint64
}

// group is the requests committed in one Pebble batch.
type group struct {
	reqs    []*request
	batch   *pebble.Batch
	written [][]byte // item keys to invalidate in the cache
	drop    bool
}

// slot is an item's state as the committer sees it: in Pebble, or as left by
// an earlier write in the same group.
type slot struct {
	exists bool
	s      stored
	hash   uint64 // recordHash of s, if exists
}

// groupState is what the committer tracks while building one group.
type groupState struct {
	overlay map[string]*slot
	digests map[uint32]PartitionDigest // partitions touched
	// deltas: digests holds changes counted from zero, not the engine's
	// (an ingestion prepared outside the committer; see addBase).
	deltas bool
}

// Apply writes the records that win under the LWW rule and reports, per
// record, whether it was applied or superseded. It is all-or-nothing: if any
// record is invalid nothing is applied, and the winners are committed in one
// Pebble batch, so after a crash all or none of them are there. Records for
// the same key within one call are each compared with the winner so far.
// Unless Options.NoSync, the batch is synced to disk before Apply returns.
// After a failed commit or sync Apply returns ErrWriteFailed, now and until
// the engine is reopened. Apply does not keep recs.
func (e *Engine) Apply(recs []Record) ([]Outcome, error) {
	outcomes, _, err := e.ApplyCurrent(recs)
	return outcomes, err
}

// ApplyCurrent is Apply that also returns, for each record, the version
// stored for its key once the call returns: the record's own version when it
// was applied, the version of the record that superseded it otherwise (equal
// to its own for a repeated mutation). Callers use it to tell a writer which
// newer version made its write a no-op.
func (e *Engine) ApplyCurrent(recs []Record) ([]Outcome, []uint64, error) {
	keys, size, err := e.prepare(recs)
	if err != nil {
		return nil, nil, err
	}
	if err := e.enter(); err != nil {
		return nil, nil, err
	}
	defer e.closeMu.RUnlock()
	if len(recs) == 0 {
		return []Outcome{}, []uint64{}, nil
	}
	if p := e.writeErr.Load(); p != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrWriteFailed, *p)
	}
	r := &request{kind: reqApply, recs: recs, keys: keys, pre: e.prefetch(recs, keys), size: size, done: make(chan struct{})}
	e.reqs <- r
	<-r.done
	if r.err != nil {
		return nil, nil, r.err
	}
	return r.outcomes, r.current, nil
}

// prepare validates recs and encodes their keys in the caller's goroutine.
func (e *Engine) prepare(recs []Record) ([][]byte, int, error) {
	var msgs []string
	bad, size := 0, 0
	for i := range recs {
		r := &recs[i]
		if msg := checkRecord(r); msg != "" {
			if bad++; bad <= maxListedErrors {
				msgs = append(msgs, fmt.Sprintf("record %d: %s", i, msg))
			}
		}
		size += r.size()
	}
	if bad > maxListedErrors {
		msgs = append(msgs, fmt.Sprintf("and %d more invalid records", bad-maxListedErrors))
	}
	if bad > 0 {
		return nil, 0, fmt.Errorf("%w: %s", ErrInvalidArgument, strings.Join(msgs, "; "))
	}
	if size > e.opts.MaxBatchBytes {
		return nil, 0, fmt.Errorf("%w: %d records of %d bytes, limit %d bytes", ErrTooLarge, len(recs), size, e.opts.MaxBatchBytes)
	}
	keys := make([][]byte, len(recs))
	for i := range recs {
		keys[i] = EncodeKey(recs[i].Key)
	}
	return keys, size, nil
}

// prefetch reads the current state of keys for the committer, unless
// GOMAXPROCS-1 callers are prefetching already: more would keep the
// committer, the syncer and Pebble's WAL flusher waiting for a CPU. Then it
// returns nil and the committer reads.
func (e *Engine) prefetch(recs []Record, keys [][]byte) []prefetched {
	select {
	case e.prefetchers <- struct{}{}:
		defer func() { <-e.prefetchers }()
	default:
		return nil
	}
	pre := make([]prefetched, len(keys))
	for i, ik := range keys {
		h := keyHash(ik)
		pre[i] = prefetched{hash: h, gen: e.gens.of(h).Load()}
		// On an error the committer reads again and reports it.
		pre[i].sl, _ = e.readSlot(ik, recs[i].Version)
	}
	return pre
}

func checkRecord(r *Record) string {
	if msg := checkKey(r.Key); msg != "" {
		return msg
	}
	switch {
	case len(r.Value) > MaxValueLen:
		return fmt.Sprintf("value is %d bytes, limit %d", len(r.Value), MaxValueLen)
	case r.ExpireAt < 0:
		return fmt.Sprintf("expiry %d is negative", r.ExpireAt)
	case r.Tombstone && len(r.Value) > 0:
		return fmt.Sprintf("tombstone carries a %d-byte value", len(r.Value))
	case r.Tombstone && r.ExpireAt != 0:
		return "tombstone carries an expiry"
	}
	return ""
}

// DropPartition deletes every record of a partition, its purge index,
// digest and sync point, with range deletions, and empties the cache (the
// cache epoch moves, so no entry of the partition is served again). Writes
// to the partition queued after it apply to an empty partition. A node
// drops a partition it no longer holds; the sync point goes with the data,
// so a copy backfilled later is not purged by an old sync point.
func (e *Engine) DropPartition(partition uint32) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	// SetSyncPoint's read-compare-write must not straddle the drop.
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	if p := e.writeErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrWriteFailed, *p)
	}
	r := &request{kind: reqDrop, partition: partition, done: make(chan struct{})}
	e.reqs <- r
	<-r.done
	return r.err
}

// commitLoop is the committer goroutine: it takes queued requests in groups
// and commits each group as one Pebble batch.
func (e *Engine) commitLoop() {
	defer close(e.committerDone)
	defer close(e.syncq)
	var carry *request
	for {
		r := carry
		carry = nil
		if r == nil {
			var ok bool
			if r, ok = <-e.reqs; !ok {
				return
			}
		}
		if r.kind == reqIngest {
			// An ingestion runs alone: no group is built while it reads the
			// stored records and lands its SST.
			e.commitIngest(r)
			continue
		}
		reqs := []*request{r}
		size := r.size
		if r.kind != reqDrop {
		drain:
			for len(reqs) < e.opts.maxGroupRequests && size < e.opts.maxGroupBytes {
				select {
				case r2, ok := <-e.reqs:
					if !ok {
						break drain
					}
					if r2.kind == reqDrop || r2.kind == reqIngest {
						// A drop commits alone, so no write in its group
						// reads the partition it removes; an ingestion
						// runs alone.
						carry = r2
						break drain
					}
					reqs = append(reqs, r2)
					size += r2.size
				default:
					break drain
				}
			}
		}
		e.commitGroup(reqs)
	}
}

func (e *Engine) commitGroup(reqs []*request) {
	g := &group{reqs: reqs}
	if p := e.writeErr.Load(); p != nil {
		e.reply(g, *p)
		return
	}
	now := e.nowNanos()
	b := e.db.NewBatch()
	gs := &groupState{overlay: make(map[string]*slot), digests: make(map[uint32]PartitionDigest)}
	for _, r := range reqs {
		switch r.kind {
		case reqApply:
			r.err = e.stageApply(r, batchSink{b}, gs, g, now)
		case reqPurge:
			r.err = e.stagePurge(r, batchSink{b}, gs, g, now)
		case reqDrop:
			e.stageDrop(r, b, gs)
			g.drop = true
		}
	}
	gs.emitDigests(batchSink{b})
	e.adoptDigests(gs)
	if b.Empty() {
		_ = b.Close()
		e.reply(g, nil)
		return
	}
	g.batch = b
	if e.opts.NoSync || e.opts.noPipeline {
		opts := pebble.Sync
		if e.opts.NoSync {
			opts = pebble.NoSync
		}
		err := b.Commit(opts)
		e.afterCommit(g, err)
		e.reply(g, err)
		_ = b.Close()
		return
	}
	// Pipelined: the batch is visible when ApplyNoSyncWait returns, so the
	// next group can be built on it while the syncer waits for this WAL sync.
	// On a disk with fast fsyncs this overlap is worth ~50% with 16 to 64
	// writers (BenchmarkGroupCommit, disk=real).
	if err := e.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		e.afterCommit(g, err)
		e.reply(g, err)
		_ = b.Close()
		return
	}
	e.afterCommit(g, nil)
	e.syncq <- g
}

// syncLoop waits for each pipelined group's WAL sync, in commit order, then
// acknowledges its requests. Once a commit or sync has failed it
// acknowledges no later group: a later group may have been built on the
// failed one's writes (LWW compared with them, digests added to them).
func (e *Engine) syncLoop() {
	defer close(e.syncerDone)
	for g := range e.syncq {
		err := g.batch.SyncWait()
		if err != nil {
			e.setWriteErr(err)
		} else if p := e.writeErr.Load(); p != nil {
			err = *p
		}
		e.reply(g, err)
		_ = g.batch.Close()
	}
}

// afterCommit runs once a group's batch is visible (or failed): it updates
// the cache before any of the group's calls return, and logs the written
// keys for the ingestions being decided meanwhile (Engine.deciding).
func (e *Engine) afterCommit(g *group, err error) {
	if err != nil {
		e.setWriteErr(err)
	}
	if g.drop {
		e.invalidateAll()
	}
	if !e.deciding.any() {
		for _, ik := range g.written {
			e.invalidate(ik)
		}
		return
	}
	hashes := make([]uint64, len(g.written))
	for i, ik := range g.written {
		hashes[i] = e.invalidate(ik)
	}
	e.deciding.wrote(hashes, g.drop)
}

func (e *Engine) setWriteErr(err error) {
	if e.writeErr.CompareAndSwap(nil, &err) {
		e.log.Error("storage engine write path failed; no more writes until reopened", "dir", e.opts.Dir, "err", err)
	}
}

// reply completes every request of a group; err fails those still pending.
func (e *Engine) reply(g *group, err error) {
	e.st.groups.Add(1)
	e.st.groupRequests.Add(uint64(len(g.reqs)))
	for _, r := range g.reqs {
		if err != nil && r.err == nil {
			r.err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
		}
		if r.err != nil {
			r.outcomes, r.current, r.purged = nil, nil, PurgeStats{}
		} else if r.kind == reqApply {
			e.st.applies.Add(1)
			var applied, superseded, bytes uint64
			for i, o := range r.outcomes {
				if o == OutcomeApplied {
					applied++
					bytes += uint64(len(r.recs[i].Value))
				} else {
					superseded++
				}
			}
			e.st.applied.Add(applied)
			e.st.superseded.Add(superseded)
			e.st.bytesWritten.Add(bytes)
		}
		close(r.done)
	}
}

// lookup returns the current state of an item: from the calling request's
// own earlier writes, the group's, the caller's read if no write became
// visible since (pre may be nil), or Pebble.
func (e *Engine) lookup(gs *groupState, local map[string]*slot, ik []byte, version uint64, pre *prefetched) (*slot, error) {
	if sl, ok := local[string(ik)]; ok {
		return sl, nil
	}
	if sl, ok := gs.overlay[string(ik)]; ok {
		return sl, nil
	}
	if pre != nil {
		if pre.sl != nil && e.gens.of(pre.hash).Load() == pre.gen {
			return pre.sl, nil
		}
		e.st.rereads.Add(1)
	}
	return e.readSlot(ik, version)
}

// readSlot reads an item's state from Pebble. It keeps the stored value
// only if the stored version is version: LWW compares values only between
// equal versions, and copying every value it reads cost a write an
// allocation of the value's size.
func (e *Engine) readSlot(ik []byte, version uint64) (*slot, error) {
	v, closer, err := e.db.Get(ik)
	if errors.Is(err, pebble.ErrNotFound) {
		return &slot{}, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := decodeStored(v)
	if err != nil {
		return nil, errors.Join(err, closer.Close())
	}
	sl := &slot{exists: true, s: s, hash: recordHash(ik, &s)}
	if s.version == version {
		sl.s.value = bytes.Clone(s.value)
	} else {
		sl.s.value = nil
	}
	return sl, closer.Close()
}

func (gs *groupState) digest(e *Engine, partition uint32) PartitionDigest {
	if d, ok := gs.digests[partition]; ok || gs.deltas {
		return d
	}
	return e.digests[partition]
}

// addBase turns digest changes counted from zero (deltas) into digests, by
// adding the ones in base. The committer calls it with its own.
func (gs *groupState) addBase(base map[uint32]PartitionDigest) {
	for p, d := range gs.digests {
		b := base[p]
		gs.digests[p] = PartitionDigest{Count: b.Count + d.Count, Sum: b.Sum + d.Sum}
	}
	gs.deltas = false
}

// sink takes the key changes of a write, in any order: a Pebble batch for
// Apply and purges, a buffer that becomes an SST for Ingest. Later changes
// of a key replace earlier ones.
type sink interface {
	// setItem sets item key ik to s, encoded with its header.
	setItem(ik []byte, s *stored)
	set(k, v []byte)
	delete(k []byte)
}

// batchSink adds changes to a Pebble batch.
type batchSink struct{ b *pebble.Batch }

func (bs batchSink) setItem(ik []byte, s *stored) {
	hl := s.headerLen()
	op := bs.b.SetDeferred(len(ik), hl+len(s.value))
	copy(op.Key, ik)
	s.putHeader(op.Value[:hl])
	copy(op.Value[hl:], s.value)
	_ = op.Finish()
}

func (bs batchSink) set(k, v []byte) { _ = bs.b.Set(k, v, nil) }
func (bs batchSink) delete(k []byte) { _ = bs.b.Delete(k, nil) }

// replace records in the sink and the group state that the item ik goes
// from old to new.
func (e *Engine) replace(sk sink, gs *groupState, g *group, ik []byte, old, new *slot) {
	e.emitReplace(sk, gs, ik, old, new)
	gs.overlay[string(ik)] = new
	g.written = append(g.written, ik)
}

// emitReplace sends to sk the changes that take item ik from old to new
// (its value and purge-index entry) and adjusts its partition's digest in
// gs; emitDigests writes the digests.
func (e *Engine) emitReplace(sk sink, gs *groupState, ik []byte, old, new *slot) {
	// Remove the old purge-index entry before adding the new one: they are
	// equal when the purge base did not change.
	if old.exists {
		if base, ok := old.s.purgeBase(); ok {
			sk.delete(purgeKey(ik, base))
		}
	}
	if new.exists {
		sk.setItem(ik, &new.s)
		if base, ok := new.s.purgeBase(); ok {
			sk.set(purgeKey(ik, base), nil)
		}
	} else {
		sk.delete(ik)
	}
	p := binary.BigEndian.Uint32(ik[1:5])
	d := gs.digest(e, p)
	if old.exists {
		d.sub(old.hash)
	}
	if new.exists {
		d.add(new.hash)
	}
	gs.digests[p] = d
}

// emitDigests sends to sk the digests of the partitions gs changed.
func (gs *groupState) emitDigests(sk sink) {
	for p, d := range gs.digests {
		if d.Count == 0 && d.Sum == 0 {
			sk.delete(digestKey(p))
		} else {
			sk.set(digestKey(p), encodeDigest(d))
		}
	}
}

// adoptDigests makes the digests gs changed the engine's, once they are
// written.
func (e *Engine) adoptDigests(gs *groupState) {
	for p, d := range gs.digests {
		if d.Count == 0 && d.Sum == 0 {
			delete(e.digests, p)
		} else {
			e.digests[p] = d
		}
	}
}

// stageApply runs read-compare-write for one Apply and adds its winning
// records to the batch. It adds nothing if it fails.
func (e *Engine) stageApply(r *request, b sink, gs *groupState, g *group, now int64) error {
	type op struct {
		ik       []byte
		old, new *slot
	}
	ops := make([]op, 0, len(r.recs))
	var local map[string]*slot
	if len(r.recs) > 1 {
		local = make(map[string]*slot, len(r.recs))
	}
	outcomes := make([]Outcome, len(r.recs))
	current := make([]uint64, len(r.recs))
	for i := range r.recs {
		ik := r.keys[i]
		var pre *prefetched
		if r.pre != nil {
			pre = &r.pre[i]
		}
		cur, err := e.lookup(gs, local, ik, r.recs[i].Version, pre)
		if err != nil {
			return fmt.Errorf("engine: record %d: read %x: %w", i, ik, err)
		}
		ns := recordState(&r.recs[i], now)
		if cur.exists && compareLWW(&ns, &cur.s) <= 0 {
			outcomes[i] = OutcomeSuperseded
			current[i] = cur.s.version
			continue
		}
		nsl := &slot{exists: true, s: ns, hash: recordHash(ik, &ns)}
		ops = append(ops, op{ik, cur, nsl})
		if local != nil {
			local[string(ik)] = nsl
		}
		outcomes[i] = OutcomeApplied
		current[i] = ns.version
	}
	for _, o := range ops {
		e.replace(b, gs, g, o.ik, o.old, o.new)
	}
	r.outcomes, r.current = outcomes, current
	return nil
}

// stagePurge deletes the candidates that are still due for purging.
func (e *Engine) stagePurge(r *request, b sink, gs *groupState, g *group, now int64) error {
	type op struct {
		c   purgeCandidate
		old *slot
	}
	var ops []op
	var stale [][]byte
	cutoff := now - int64(e.opts.TombstoneGrace)
	for _, c := range r.purge {
		// A purge compares no values (only a stored version 0 keeps one).
		cur, err := e.lookup(gs, nil, c.itemKey, 0, nil)
		if err != nil {
			return fmt.Errorf("engine: purge: read %x: %w", c.itemKey, err)
		}
		base, ok := cur.s.purgeBase()
		switch {
		case !cur.exists || !ok || !bytes.Equal(purgeKey(c.itemKey, base), c.indexKey):
			// The record was replaced and its index entry should have gone
			// with it.
			stale = append(stale, c.indexKey)
		case base <= cutoff:
			ops = append(ops, op{c, cur})
		}
	}
	var st PurgeStats
	for _, o := range ops {
		if o.old.s.tombstone {
			st.Tombstones++
		} else {
			st.Expired++
		}
		e.replace(b, gs, g, o.c.itemKey, o.old, &slot{})
	}
	for _, k := range stale {
		b.delete(k)
	}
	r.purged = st
	return nil
}

func (e *Engine) stageDrop(r *request, b *pebble.Batch, gs *groupState) {
	lo, hi := partitionSpan(spaceItem, r.partition)
	_ = b.DeleteRange(lo, hi, nil)
	lo, hi = partitionSpan(spacePurge, r.partition)
	_ = b.DeleteRange(lo, hi, nil)
	_ = b.Delete(syncKey(r.partition), nil)
	gs.digests[r.partition] = PartitionDigest{}
}
