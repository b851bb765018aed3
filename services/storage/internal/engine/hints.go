package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Hinted handoff: a node that acknowledged a write holds the records
// another replica missed (it was down or timed out) as hints in the 'h' key
// space, until the server replays them to that replica. Hints live apart
// from the items: they take no part in LWW, digests, reads or purges, and a
// hint's record is applied only on its target. The bytes held are bounded by
// Options.MaxHintBytes; the server drops hints older than its maximum age
// (anti-entropy repairs what they would have).
//
//	key:   'h' | len(target) u8 | target | sequence u64 BE
//	value: stored at i64 BE | len(item key) u16 BE | item key | stored value (see the package documentation)

// maxHintTarget is the longest target node id (topology allows 128).
const maxHintTarget = 255

// Hint is a record held for another node.
type Hint struct {
	// Target is the node the record is for.
	Target string
	// Seq orders the engine's hints; DeleteHints names hints by it.
	Seq uint64
	// StoredAt is when the hint was stored, in Unix nanoseconds.
	StoredAt int64
	// Record is the record the target missed. A tombstone carries the time
	// the hint was stored as its DeletedAt if it had none, so the target
	// purges it about when the others do.
	Record Record
	size   int64 // key and value bytes, for the budget
}

// HintStats counts the hints held for one target, or for all.
type HintStats struct {
	Pending uint64 // hints
	Bytes   int64  // their keys and values
}

type hintState struct {
	mu      sync.Mutex
	seq     uint64 // last sequence handed out
	bytes   int64  // stored and reserved by StoreHints in flight
	targets map[string]*HintStats
	// delMu admits one deleter at a time, so a hint deleted by two calls is
	// subtracted from the counts once.
	delMu sync.Mutex
}

func hintPrefix(target string) []byte {
	b := make([]byte, 0, 2+len(target)+8)
	b = append(b, spaceHint, byte(len(target)))
	return append(b, target...)
}

func hintKey(target string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(hintPrefix(target), seq)
}

// decodeHintKey returns the target and sequence of a hint key.
func decodeHintKey(k []byte) (target string, seq uint64, ok bool) {
	if len(k) < 2 || k[0] != spaceHint {
		return "", 0, false
	}
	n := int(k[1])
	if len(k) != 2+n+8 {
		return "", 0, false
	}
	return string(k[2 : 2+n]), binary.BigEndian.Uint64(k[2+n:]), true
}

func validHintTarget(target string) error {
	if target == "" || len(target) > maxHintTarget {
		return fmt.Errorf("%w: hint target node id %q: want 1 to %d bytes", ErrInvalidArgument, target, maxHintTarget)
	}
	return nil
}

// loadHints counts the hints in the store and finds the last sequence.
func (e *Engine) loadHints() error {
	e.hints.targets = map[string]*HintStats{}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{spaceHint}, UpperBound: []byte{spaceHint + 1}})
	if err != nil {
		return fmt.Errorf("engine: load hints: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		target, seq, ok := decodeHintKey(it.Key())
		if !ok {
			return errors.Join(fmt.Errorf("%w: hint key %x", ErrCorrupt, it.Key()), it.Close())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("engine: load hints: %w", err), it.Close())
		}
		st := e.hints.targets[target]
		if st == nil {
			st = &HintStats{}
			e.hints.targets[target] = st
		}
		size := int64(len(it.Key()) + len(v))
		st.Pending++
		st.Bytes += size
		e.hints.bytes += size
		e.hints.seq = max(e.hints.seq, seq)
	}
	return it.Close()
}

// StoreHints stores recs as hints for node target, synced to disk before
// it returns (unless Options.NoSync). It fails with ErrHintsFull, storing
// nothing, if they would take the hints held past Options.MaxHintBytes, and
// with ErrInvalidArgument if a record is malformed.
func (e *Engine) StoreHints(target string, recs []Record) error {
	if err := validHintTarget(target); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	now := e.nowNanos()
	vals := make([][]byte, len(recs))
	keyLen := int64(len(hintKey(target, 0)))
	var size int64
	for i := range recs {
		r := &recs[i]
		if msg := checkKey(r.Key); msg != "" {
			return fmt.Errorf("%w: records[%d]: %s", ErrInvalidArgument, i, msg)
		}
		switch {
		case r.Version == 0:
			return fmt.Errorf("%w: records[%d]: version is 0", ErrInvalidArgument, i)
		case len(r.Value) > MaxValueLen:
			return fmt.Errorf("%w: records[%d]: value is %d bytes, limit %d", ErrInvalidArgument, i, len(r.Value), MaxValueLen)
		case r.Tombstone && (len(r.Value) > 0 || r.ExpireAt != 0):
			return fmt.Errorf("%w: records[%d]: a tombstone carries no value or expiry", ErrInvalidArgument, i)
		case r.ExpireAt < 0:
			return fmt.Errorf("%w: records[%d]: negative expiry", ErrInvalidArgument, i)
		}
		st := recordState(r, now)
		ik := EncodeKey(r.Key)
		v := make([]byte, 0, 8+2+len(ik)+st.encodedLen())
		v = binary.BigEndian.AppendUint64(v, uint64(now))
		v = binary.BigEndian.AppendUint16(v, uint16(len(ik)))
		v = append(v, ik...)
		v = append(v, st.encode()...)
		vals[i] = v
		size += keyLen + int64(len(v))
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()

	h := &e.hints
	h.mu.Lock()
	if h.bytes+size > e.opts.MaxHintBytes {
		held := h.bytes
		h.mu.Unlock()
		return fmt.Errorf("%w: %d bytes of hints held, %d more for %s would pass the limit of %d", ErrHintsFull, held, size, target, e.opts.MaxHintBytes)
	}
	first := h.seq + 1
	h.seq += uint64(len(recs))
	h.bytes += size // reserved until the batch commits or fails
	h.mu.Unlock()

	b := e.db.NewBatch()
	for i, v := range vals {
		if err := b.Set(hintKey(target, first+uint64(i)), v, nil); err != nil {
			_ = b.Close()
			e.unreserveHints(size)
			return fmt.Errorf("engine: store hints for %s: %w", target, err)
		}
	}
	opt := pebble.Sync
	if e.opts.NoSync {
		opt = pebble.NoSync
	}
	if err := b.Commit(opt); err != nil {
		_ = b.Close()
		e.unreserveHints(size)
		return fmt.Errorf("engine: store hints for %s: %w", target, err)
	}
	if err := b.Close(); err != nil {
		e.log.Warn("close hint batch", "err", err)
	}
	h.mu.Lock()
	st := h.targets[target]
	if st == nil {
		st = &HintStats{}
		h.targets[target] = st
	}
	st.Pending += uint64(len(recs))
	st.Bytes += size
	h.mu.Unlock()
	return nil
}

func (e *Engine) unreserveHints(size int64) {
	e.hints.mu.Lock()
	e.hints.bytes -= size
	e.hints.mu.Unlock()
}

// Hints returns the oldest hints held for target: at most maxRecords, and
// no more than maxBytes of keys and values (at least one hint if any).
func (e *Engine) Hints(target string, maxRecords, maxBytes int) ([]Hint, error) {
	if err := validHintTarget(target); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	lo := hintPrefix(target)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: successor(lo)})
	if err != nil {
		return nil, fmt.Errorf("engine: read hints for %s: %w", target, err)
	}
	var out []Hint
	size := 0
	for ok := it.First(); ok && len(out) < maxRecords; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: read hints for %s: %w", target, err), it.Close())
		}
		if len(out) > 0 && size+len(it.Key())+len(v) > maxBytes {
			break
		}
		h, err := decodeHint(it.Key(), v)
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		out = append(out, h)
		size += int(h.size)
	}
	return out, it.Close()
}

func decodeHint(k, v []byte) (Hint, error) {
	target, seq, ok := decodeHintKey(k)
	if !ok || len(v) < 10 {
		return Hint{}, fmt.Errorf("%w: hint %x", ErrCorrupt, k)
	}
	n := int(binary.BigEndian.Uint16(v[8:10]))
	if len(v) < 10+n {
		return Hint{}, fmt.Errorf("%w: hint %x: truncated item key", ErrCorrupt, k)
	}
	ik, err := DecodeKey(bytes.Clone(v[10 : 10+n]))
	if err != nil {
		return Hint{}, fmt.Errorf("%w: hint %x: %w", ErrCorrupt, k, err)
	}
	st, err := decodeStored(v[10+n:])
	if err != nil {
		return Hint{}, fmt.Errorf("hint %x: %w", k, err)
	}
	return Hint{Target: target, Seq: seq, StoredAt: int64(binary.BigEndian.Uint64(v)), Record: st.record(ik), size: int64(len(k) + len(v))}, nil
}

// DeleteHints deletes hints (as returned by Hints) and returns how many it
// deleted; hints already gone are skipped. The delete is not synced: a
// hint that comes back after a crash is replayed again, which LWW makes
// harmless.
func (e *Engine) DeleteHints(hs []Hint) (int, error) {
	if len(hs) == 0 {
		return 0, nil
	}
	e.hints.delMu.Lock()
	defer e.hints.delMu.Unlock()
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	b := e.db.NewBatch()
	defer b.Close()
	var gone []Hint
	for _, h := range hs {
		k := hintKey(h.Target, h.Seq)
		_, closer, err := e.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("engine: delete hints: %w", err)
		}
		_ = closer.Close()
		if err := b.Delete(k, nil); err != nil {
			return 0, fmt.Errorf("engine: delete hints: %w", err)
		}
		gone = append(gone, h)
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("engine: delete hints: %w", err)
	}
	e.hints.mu.Lock()
	defer e.hints.mu.Unlock()
	for _, h := range gone {
		e.hints.bytes -= h.size
		if st := e.hints.targets[h.Target]; st != nil {
			st.Pending--
			st.Bytes -= h.size
			if st.Pending == 0 {
				delete(e.hints.targets, h.Target)
			}
		}
	}
	return len(gone), nil
}

// DropHintsBefore deletes the hints stored before cutoff (Unix nanoseconds)
// and returns how many per target.
func (e *Engine) DropHintsBefore(cutoff int64) (map[string]int, error) {
	var old []Hint
	for target := range e.HintTargets() {
		hs, err := e.oldHints(target, cutoff)
		if err != nil {
			return nil, err
		}
		old = append(old, hs...)
	}
	if _, err := e.DeleteHints(old); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, h := range old {
		out[h.Target]++
	}
	return out, nil
}

// oldHints returns the hints for target stored before cutoff. Sequences
// follow the clock, so it stops at the first younger hint. A hint too short
// to hold its time is old.
func (e *Engine) oldHints(target string, cutoff int64) ([]Hint, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	lo := hintPrefix(target)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: successor(lo)})
	if err != nil {
		return nil, fmt.Errorf("engine: read hints for %s: %w", target, err)
	}
	var out []Hint
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("engine: read hints for %s: %w", target, err), it.Close())
		}
		if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) >= cutoff {
			break
		}
		_, seq, _ := decodeHintKey(it.Key())
		out = append(out, Hint{Target: target, Seq: seq, size: int64(len(it.Key()) + len(v))})
	}
	return out, it.Close()
}

// HintTargets returns the nodes hints are held for, with their counts.
func (e *Engine) HintTargets() map[string]HintStats {
	e.hints.mu.Lock()
	defer e.hints.mu.Unlock()
	out := make(map[string]HintStats, len(e.hints.targets))
	for t, st := range e.hints.targets {
		out[t] = *st
	}
	return out
}

// HintTotals counts every hint held.
func (e *Engine) HintTotals() HintStats {
	e.hints.mu.Lock()
	defer e.hints.mu.Unlock()
	var s HintStats
	for _, st := range e.hints.targets {
		s.Pending += st.Pending
		s.Bytes += st.Bytes
	}
	return s
}
