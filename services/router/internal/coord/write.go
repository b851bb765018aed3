package coord

import (
	"context"
	"fmt"
	"strings"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// Outcome is what a write that reached its consistency level did.
type Outcome struct {
	// Applied is true when at least one acknowledging replica stored the
	// record, or already stored this very version (a retry of a write that
	// took effect).
	Applied bool
	// Current is the record's own version when Applied, else the newest
	// version the acknowledging replicas reported: the one that superseded
	// it.
	Current uint64
}

type applyResult struct {
	node *cluster.Node
	idxs []int
	resp *storagev1.ApplyResponse
	err  error
}

// maxNamedFailures bounds how many failed records one write error describes.
const maxNamedFailures = 3

// setState counts one record's acknowledgements in one replica set.
type setState struct {
	need, acks, pending int
}

// writeState is what Write knows about one record.
type writeState struct {
	rt                *cluster.Route
	sets              [cluster.MaxSets]setState
	acks, pending     int      // over every write target
	applied           int      // acking replicas that stored it (or this version)
	newest            uint64   // newest version an acking replica reported
	failed            []string // "node: reason" of each failed replica
	satisfied, doomed bool
}

// short returns the first set that has not reached its level (-1: none).
func (s *writeState) short() int {
	for k := range s.rt.Sets {
		if s.sets[k].acks < s.sets[k].need {
			return k
		}
	}
	return -1
}

// Write applies recs (each Key.Partition set) at level: every registered
// write target of each record's partition gets it, and Write returns once
// each record has reached its level in every replica set of its route
// (Need(level, set size) acknowledgements from the set's members: one
// set, or the old and the new one while a replica moves), with each
// record's Outcome. Calls to the other replicas continue in the
// background; once all have answered, what a write target missed is
// stored as hints on one that acknowledged it (Options.HintedHandoff;
// hints never count towards the level). A record with a set that has
// fewer registered members than required makes Write fail before anything
// is sent.
//
// When a record cannot reach its level, Write waits for the replicas still
// in flight (up to Options.FailureWait) so that the error counts every
// replica that applied the record and names every replica that failed, with
// its reason: such a write is not rolled back and may still take effect.
//
// Every request carries the view's placement epoch. When a replica refuses
// it as stale (the partition's routing changed since) and the write fails,
// Write waits (at most 2s) for the router's view to reach the epoch the
// replica has and sends the whole write again once by the new routing:
// versions make the repeat idempotent, and a router never writes around a
// move by falling back on the old routing.
func (co *Coordinator) Write(ctx context.Context, recs []*storagev1.Record, level Level) ([]Outcome, error) {
	v, err := co.View()
	if err != nil {
		return nil, err
	}
	out, err := co.write(ctx, v, recs, level)
	if v2, ok := co.retryView(ctx, err); ok {
		return co.write(ctx, v2, recs, level)
	}
	return out, err
}

func (co *Coordinator) write(ctx context.Context, v *cluster.View, recs []*storagev1.Record, level Level) ([]Outcome, error) {
	n := len(recs)
	if n == 0 {
		return []Outcome{}, nil
	}
	st := make([]writeState, n)
	groups := map[*cluster.Node][]int{}
	for i, r := range recs {
		p := r.GetKey().GetPartition()
		rt := v.Route(p)
		if rt == nil {
			return nil, fmt.Errorf("%w: write of %s: partition out of range (%d partitions)", ErrInvalidArgument, keyString(r.GetKey()), v.Partitions)
		}
		s := &st[i]
		s.rt = rt
		for k, set := range rt.Sets {
			s.sets[k].need = Need(level, set.Size)
		}
		for j, node := range rt.WriteNodes {
			if node == nil {
				continue
			}
			groups[node] = append(groups[node], i)
			s.pending++
			for k := range rt.Sets {
				if rt.WriteSets[j]&(1<<k) != 0 {
					s.sets[k].pending++
				}
			}
		}
		for k, set := range rt.Sets {
			if ss := s.sets[k]; ss.pending < ss.need {
				return nil, fmt.Errorf("%w: write of %s at %s: only %d of %d replicas%s are registered, %d required; nothing was written: %s",
					ErrUnavailable, keyString(r.GetKey()), level, ss.pending, set.Size, setName(rt, k), ss.need,
					strings.Join(downReplicas(rt.WriteIDs, rt.WriteNodes), "; "))
			}
		}
	}

	results := make(chan applyResult, len(groups))
	cancel := func() {}
	if len(groups) == 1 {
		// One node takes every record (RF 1, or its other replicas are
		// unregistered): call it in this goroutine. No straggler can
		// outlive the write, so it needs no goroutine and no detached
		// context.
		cctx := ctx
		if _, ok := ctx.Deadline(); !ok {
			var c context.CancelFunc
			cctx, c = context.WithTimeout(ctx, co.o.Timeout)
			defer c()
		}
		for node, idxs := range groups {
			r := co.apply(cctx, v, node, idxs, recs)
			if r.err != nil && ctx.Err() != nil {
				// As when the caller stops waiting for a replica: the
				// node may still apply it (it only drops a call it has
				// not started).
				return nil, fmt.Errorf("write at %s: %w (%s); it may still take effect", level, ctx.Err(), progress(recs, st))
			}
			results <- r
		}
	} else {
		var rpcCtx context.Context
		rpcCtx, cancel = co.detached(ctx)
		for node, idxs := range groups {
			if a, ok := node.Client.(asyncApplier); ok {
				// Sent from this goroutine; the answer arrives on results.
				batch := batchOf(recs, idxs)
				start := time.Now()
				a.ApplyAsync(rpcCtx, &storagev1.ApplyRequest{Records: batch, PlacementEpoch: v.Epoch}, func(resp *storagev1.ApplyResponse, err error) {
					if err == nil {
						node.ObserveLatency(time.Since(start))
					}
					results <- applyResult{node: node, idxs: idxs, resp: resp, err: err}
				})
				continue
			}
			go func() { results <- co.apply(rpcCtx, v, node, idxs, recs) }()
		}
	}
	// The last result cancels the detached context; until then stragglers
	// keep their calls alive after Write returns. Then the records a replica
	// missed (failed, timed out, unregistered) go as hints to one that
	// acknowledged them (hinted handoff), off the caller's path.
	remaining := len(groups)
	var seen []applyResult
	finish := func(hint bool) {
		got := seen
		if remaining == 0 {
			// Every replica answered: nothing to wait for in the
			// background, and nothing to hand off unless one missed a
			// record.
			cancel()
			if hint && missedAny(st) {
				go co.handoff(recs, st, got)
			}
			return
		}
		go func() {
			for ; remaining > 0; remaining-- {
				r := <-results
				if r.err != nil {
					co.replicaErr(r.node, r.err)
				}
				got = append(got, r)
			}
			cancel()
			if hint {
				co.handoff(recs, st, got)
			}
		}()
	}

	satisfied := 0
	var stale uint64            // > 0: a replica refused the view's epoch as stale
	var doomed []int            // records that can no longer reach their level
	var linger <-chan time.Time // set once a record is doomed
	for remaining > 0 {
		var r applyResult
		select {
		case r = <-results:
			remaining--
		case <-linger:
			finish(true)
			return nil, markStale(co.writeFailure(recs, st, doomed, level, ""), stale)
		case <-ctx.Done():
			finish(true)
			if len(doomed) > 0 {
				return nil, co.writeFailure(recs, st, doomed, level, "stopped waiting for the other replicas: "+ctx.Err().Error())
			}
			return nil, fmt.Errorf("write at %s: %w (%s); it may still take effect", level, ctx.Err(), progress(recs, st))
		}
		if r.err == nil && len(r.resp.GetOutcomes()) != len(r.idxs) {
			r.err = fmt.Errorf("node answered %d outcomes for %d records", len(r.resp.GetOutcomes()), len(r.idxs))
		}
		seen = append(seen, r)
		if r.err != nil {
			if err := inputErr(r.err); err != nil {
				finish(false) // the input is bad: no replica will take it
				return nil, err
			}
			if e, ok := staleEpoch(r.err, v.Epoch); ok {
				stale = max(stale, e)
			}
			desc := co.replicaErr(r.node, r.err)
			for _, i := range r.idxs {
				s := &st[i]
				mask := s.rt.SetsOf(r.node)
				s.pending--
				s.failed = append(s.failed, desc)
				for k := range s.rt.Sets {
					if mask&(1<<k) == 0 {
						continue
					}
					ss := &s.sets[k]
					ss.pending--
					if ss.acks+ss.pending < ss.need && !s.doomed {
						s.doomed = true
						doomed = append(doomed, i)
						if linger == nil {
							t := time.NewTimer(co.o.FailureWait)
							defer t.Stop()
							linger = t.C
						}
					}
				}
			}
			continue
		}
		cur := r.resp.GetCurrentVersions()
		for j, i := range r.idxs {
			s := &st[i]
			mask := s.rt.SetsOf(r.node)
			s.pending--
			s.acks++
			for k := range s.rt.Sets {
				if mask&(1<<k) != 0 {
					s.sets[k].pending--
					s.sets[k].acks++
				}
			}
			own := recs[i].GetVersion()
			switch {
			case r.resp.GetOutcomes()[j] == storagev1.Outcome_OUTCOME_APPLIED:
				s.applied++
				s.newest = max(s.newest, own)
			case j < len(cur) && cur[j] == own:
				// Already stored: a retry of a write that took effect.
				s.applied++
				s.newest = max(s.newest, own)
			case j < len(cur):
				s.newest = max(s.newest, cur[j])
			}
			if !s.satisfied && s.short() < 0 {
				s.satisfied = true
				satisfied++
			}
		}
		if len(doomed) == 0 && satisfied == n {
			finish(true)
			return outcomes(recs, st), nil
		}
	}
	cancel()
	go co.handoff(recs, st, seen)
	if len(doomed) > 0 {
		return nil, markStale(co.writeFailure(recs, st, doomed, level, ""), stale)
	}
	// Every record either reached its level or is doomed.
	panic("coord: write finished without a verdict")
}

// apply sends node the records recs[idxs] and returns its answer.
func (co *Coordinator) apply(ctx context.Context, v *cluster.View, node *cluster.Node, idxs []int, recs []*storagev1.Record) applyResult {
	batch := batchOf(recs, idxs)
	start := time.Now()
	resp, err := node.Client.Apply(ctx, &storagev1.ApplyRequest{Records: batch, PlacementEpoch: v.Epoch})
	if err == nil {
		node.ObserveLatency(time.Since(start))
	}
	return applyResult{node: node, idxs: idxs, resp: resp, err: err}
}

func batchOf(recs []*storagev1.Record, idxs []int) []*storagev1.Record {
	batch := make([]*storagev1.Record, len(idxs))
	for j, i := range idxs {
		batch[j] = recs[i]
	}
	return batch
}

// asyncApplier is a node client that sends an Apply without blocking
// (storagemux.Client): done gets the answer, must not block, and is called
// exactly once.
type asyncApplier interface {
	ApplyAsync(ctx context.Context, req *storagev1.ApplyRequest, done func(*storagev1.ApplyResponse, error))
}

// missedAny reports whether a write target of some record has not
// acknowledged it (failed, not answered or unregistered): hinted handoff
// has something to do.
func missedAny(st []writeState) bool {
	for i := range st {
		if st[i].acks < len(st[i].rt.WriteIDs) {
			return true
		}
	}
	return false
}

// setName names replica set k of a route in messages: nothing when the
// route has one set.
func setName(rt *cluster.Route, k int) string {
	if len(rt.Sets) < 2 {
		return ""
	}
	which := "new"
	if k == 0 {
		which = "old"
	}
	return fmt.Sprintf(" of the %s replica set [%s] (%s)", which, strings.Join(rt.Sets[k].Members, " "), rt.Move)
}

func outcomes(recs []*storagev1.Record, st []writeState) []Outcome {
	out := make([]Outcome, len(recs))
	for i := range st {
		if st[i].applied > 0 {
			out[i] = Outcome{Applied: true, Current: recs[i].GetVersion()}
		} else {
			// Current stays 0 only if the nodes predate current_versions.
			out[i] = Outcome{Current: st[i].newest}
		}
	}
	return out
}

// writeFailure describes the records that did not reach their level: in
// which replica set, how many replicas applied each (it may still take
// effect there) and every failed or unregistered replica with its reason.
func (co *Coordinator) writeFailure(recs []*storagev1.Record, st []writeState, doomed []int, level Level, note string) error {
	var parts []string
	for _, i := range doomed[:min(len(doomed), maxNamedFailures)] {
		s := &st[i]
		k := s.short()
		if k < 0 {
			k = 0
		}
		ss := s.sets[k]
		failed := append(append([]string(nil), s.failed...), downReplicas(s.rt.WriteIDs, s.rt.WriteNodes)...)
		msg := fmt.Sprintf("write of %s at %s reached %d of %d required replicas%s (applied on %d",
			keyString(recs[i].GetKey()), level, ss.acks, ss.need, setName(s.rt, k), s.applied)
		if s.acks > s.applied {
			msg += fmt.Sprintf(", superseded by a newer version on %d", s.acks-s.applied)
		}
		msg += "; it may still take effect and is not rolled back)"
		if s.pending > 0 {
			msg += fmt.Sprintf("; no answer yet from %d more", s.pending)
		}
		msg += "; failed replicas: " + strings.Join(failed, "; ")
		parts = append(parts, msg)
	}
	if len(doomed) > maxNamedFailures {
		parts = append(parts, fmt.Sprintf("and %d more records of this batch", len(doomed)-maxNamedFailures))
	}
	if note != "" {
		parts = append(parts, note)
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(parts, "; "))
}

// progress summarizes how far a write got, for a deadline error.
func progress(recs []*storagev1.Record, st []writeState) string {
	short := 0
	first := -1
	for i := range st {
		if st[i].short() >= 0 {
			short++
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return "every record reached its level"
	}
	s := &st[first]
	k := s.short()
	return fmt.Sprintf("%d of %d records short of their level; %s: %d of %d required replicas%s acknowledged, applied on %d",
		short, len(recs), keyString(recs[first].GetKey()), s.sets[k].acks, s.sets[k].need, setName(s.rt, k), s.applied)
}
