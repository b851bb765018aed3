package coord

import (
	"context"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

type applyResult struct {
	node *cluster.Node
	idxs []int
	err  error
}

// Write applies recs (each Key.Partition set) at level: every live replica
// of each record's partition gets it, and Write returns once each record has
// been acknowledged by Need(level, RF) replicas. Calls to the other replicas
// continue in the background. A record whose partition has fewer live
// replicas than required makes Write fail before anything is sent.
func (co *Coordinator) Write(ctx context.Context, recs []*storagev1.Record, level Level) error {
	v, err := co.View()
	if err != nil {
		return err
	}
	n := len(recs)
	if n == 0 {
		return nil
	}
	need := make([]int, n)
	acks := make([]int, n)
	pending := make([]int, n)
	errs := make([][]string, n)
	groups := map[*cluster.Node][]int{}
	for i, r := range recs {
		p := r.GetKey().GetPartition()
		ids := v.ReplicaIDs(p)
		need[i] = Need(level, len(ids))
		for _, node := range v.Replicas(p) {
			if node != nil {
				groups[node] = append(groups[node], i)
				pending[i]++
			}
		}
		if pending[i] < need[i] {
			return unavailable("write of "+keyString(r.GetKey())+" at "+level.String(), pending[i], need[i], downReplicas(v, p))
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
			_, err := node.Client.Apply(rpcCtx, &storagev1.ApplyRequest{Records: batch})
			if err == nil {
				node.ObserveLatency(time.Since(start))
			}
			results <- applyResult{node: node, idxs: idxs, err: err}
		}()
	}
	// The last result cancels the detached context; until then stragglers
	// keep their calls alive after Write returns.
	remaining := len(groups)
	finish := func() {
		go func() {
			for ; remaining > 0; remaining-- {
				if r := <-results; r.err != nil {
					co.replicaErr(r.node, r.err)
				}
			}
			cancel()
		}()
	}

	satisfied := 0
	for remaining > 0 {
		var r applyResult
		select {
		case r = <-results:
			remaining--
		case <-ctx.Done():
			finish()
			return ctx.Err()
		}
		if r.err != nil {
			if err := inputErr(r.err); err != nil {
				finish()
				return err
			}
			desc := co.replicaErr(r.node, r.err)
			for _, i := range r.idxs {
				pending[i]--
				errs[i] = append(errs[i], desc)
				if acks[i]+pending[i] < need[i] {
					finish()
					p := recs[i].GetKey().GetPartition()
					return unavailable("write of "+keyString(recs[i].GetKey())+" at "+level.String(), acks[i], need[i], append(errs[i], downReplicas(v, p)...))
				}
			}
			continue
		}
		for _, i := range r.idxs {
			pending[i]--
			acks[i]++
			if acks[i] == need[i] {
				satisfied++
			}
		}
		if satisfied == n {
			finish()
			return nil
		}
	}
	cancel()
	// Every record either reached its quorum or failed above.
	panic("coord: write finished without a verdict")
}
