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

// writeState is what Write knows about one record.
type writeState struct {
	need, acks, pending int
	applied             int      // acking replicas that stored it (or this version)
	newest              uint64   // newest version an acking replica reported
	failed              []string // "node: reason" of each failed replica
}

// Write applies recs (each Key.Partition set) at level: every live replica
// of each record's partition gets it, and Write returns once each record has
// been acknowledged by Need(level, RF) replicas, with each record's Outcome.
// Calls to the other replicas continue in the background; once all have
// answered, what a replica missed is stored as hints on one that
// acknowledged it (Options.HintedHandoff; hints never count towards the
// level). A record whose
// partition has fewer live replicas than required makes Write fail before
// anything is sent.
//
// When a record cannot reach its level, Write waits for the replicas still
// in flight (up to Options.FailureWait) so that the error counts every
// replica that applied the record and names every replica that failed, with
// its reason: such a write is not rolled back and may still take effect.
func (co *Coordinator) Write(ctx context.Context, recs []*storagev1.Record, level Level) ([]Outcome, error) {
	v, err := co.View()
	if err != nil {
		return nil, err
	}
	n := len(recs)
	if n == 0 {
		return []Outcome{}, nil
	}
	st := make([]writeState, n)
	groups := map[*cluster.Node][]int{}
	for i, r := range recs {
		p := r.GetKey().GetPartition()
		ids := v.ReplicaIDs(p)
		st[i].need = Need(level, len(ids))
		for _, node := range v.Replicas(p) {
			if node != nil {
				groups[node] = append(groups[node], i)
				st[i].pending++
			}
		}
		if st[i].pending < st[i].need {
			return nil, fmt.Errorf("%w: write of %s at %s: only %d of %d replicas are registered, %d required; nothing was written: %s",
				ErrUnavailable, keyString(r.GetKey()), level, st[i].pending, len(ids), st[i].need, strings.Join(downReplicas(v, p), "; "))
		}
	}

	rpcCtx, cancel := co.detached(ctx)
	results := make(chan applyResult, len(groups))
	for node, idxs := range groups {
		batch := make([]*storagev1.Record, len(idxs))
		for j, i := range idxs {
			batch[j] = recs[i]
		}
		go func() {
			start := time.Now()
			resp, err := node.Client.Apply(rpcCtx, &storagev1.ApplyRequest{Records: batch})
			if err == nil {
				node.ObserveLatency(time.Since(start))
			}
			results <- applyResult{node: node, idxs: idxs, resp: resp, err: err}
		}()
	}
	// The last result cancels the detached context; until then stragglers
	// keep their calls alive after Write returns. Then the records a replica
	// missed (failed, timed out, unregistered) go as hints to one that
	// acknowledged them (hinted handoff), off the caller's path.
	remaining := len(groups)
	var seen []applyResult
	finish := func(hint bool) {
		got := seen
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
				co.handoff(v, recs, got)
			}
		}()
	}

	satisfied := 0
	var doomed []int            // records that can no longer reach their level
	var linger <-chan time.Time // set once a record is doomed
	for remaining > 0 {
		var r applyResult
		select {
		case r = <-results:
			remaining--
		case <-linger:
			finish(true)
			return nil, co.writeFailure(recs, st, doomed, level, v, "")
		case <-ctx.Done():
			finish(true)
			if len(doomed) > 0 {
				return nil, co.writeFailure(recs, st, doomed, level, v, "stopped waiting for the other replicas: "+ctx.Err().Error())
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
			desc := co.replicaErr(r.node, r.err)
			for _, i := range r.idxs {
				s := &st[i]
				s.pending--
				s.failed = append(s.failed, desc)
				if s.acks+s.pending < s.need && s.acks+s.pending+1 >= s.need {
					doomed = append(doomed, i)
					if linger == nil {
						t := time.NewTimer(co.o.FailureWait)
						defer t.Stop()
						linger = t.C
					}
				}
			}
			continue
		}
		cur := r.resp.GetCurrentVersions()
		for j, i := range r.idxs {
			s := &st[i]
			s.pending--
			s.acks++
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
			if s.acks == s.need {
				satisfied++
			}
		}
		if len(doomed) == 0 && satisfied == n {
			finish(true)
			return outcomes(recs, st), nil
		}
	}
	cancel()
	go co.handoff(v, recs, seen)
	if len(doomed) > 0 {
		return nil, co.writeFailure(recs, st, doomed, level, v, "")
	}
	// Every record either reached its level or is doomed.
	panic("coord: write finished without a verdict")
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

// writeFailure describes the records that did not reach their level: how
// many replicas applied each (it may still take effect there) and every
// failed or unregistered replica with its reason.
func (co *Coordinator) writeFailure(recs []*storagev1.Record, st []writeState, doomed []int, level Level, v *cluster.View, note string) error {
	var parts []string
	for _, i := range doomed[:min(len(doomed), maxNamedFailures)] {
		s := &st[i]
		p := recs[i].GetKey().GetPartition()
		failed := append(append([]string(nil), s.failed...), downReplicas(v, p)...)
		msg := fmt.Sprintf("write of %s at %s reached %d of %d required replicas (applied on %d", keyString(recs[i].GetKey()), level, s.acks, s.need, s.applied)
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
		if st[i].acks < st[i].need {
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
	return fmt.Sprintf("%d of %d records short of their level; %s: %d of %d required replicas acknowledged, applied on %d",
		short, len(recs), keyString(recs[first].GetKey()), s.acks, s.need, s.applied)
}
