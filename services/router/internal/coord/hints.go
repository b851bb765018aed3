package coord

import (
	"context"
	"sync"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// Hinted handoff, the router side: when a write's replicas have all
// answered, each record that a replica of its partition did not
// acknowledge (it failed, timed out or is not registered) is sent with
// StoreHints to a replica that did, which keeps it durably and replays it
// to the missing replica when that one is back. The router holds nothing:
// it is stateless. Hints never count towards a write's consistency level;
// they only shorten the time until anti-entropy would have repaired the
// replica. A record no replica acknowledged has no holder and gets no hint.

type hintBatch struct {
	holder *cluster.Node
	target string
}

// handoff sends the hints of a finished write; results are every replica's
// answer. Only a record's write targets get hints: a node the partition is
// moving away from after promotion gets nothing.
func (co *Coordinator) handoff(recs []*storagev1.Record, st []writeState, results []applyResult) {
	if !co.o.HintedHandoff {
		return
	}
	acked := make([][]*cluster.Node, len(recs))
	for _, r := range results {
		if r.err != nil || len(r.resp.GetOutcomes()) != len(r.idxs) {
			continue
		}
		for _, i := range r.idxs {
			acked[i] = append(acked[i], r.node)
		}
	}
	batches := map[hintBatch][]*storagev1.Record{}
	for i, rec := range recs {
		ids := st[i].rt.WriteIDs
		if len(acked[i]) >= len(ids) {
			continue
		}
		if len(acked[i]) == 0 {
			co.o.Metrics.Hints.WithLabelValues("no_holder").Add(float64(len(ids)))
			continue
		}
		for _, id := range ids {
			missed := true
			for _, n := range acked[i] {
				if n.ID == id {
					missed = false
					break
				}
			}
			if missed {
				b := hintBatch{holder: acked[i][0], target: id}
				batches[b] = append(batches[b], rec)
			}
		}
	}
	if len(batches) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), co.o.HintTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for b, batch := range batches {
		wg.Go(func() {
			_, err := b.holder.Client.StoreHints(ctx, &storagev1.StoreHintsRequest{TargetNode: b.target, Records: batch})
			if err != nil {
				co.o.Metrics.Hints.WithLabelValues("failed").Add(float64(len(batch)))
				co.o.Logger.Debug("hint not stored; anti-entropy will repair the replica", "holder", b.holder.ID, "target", b.target, "records", len(batch), "err", err)
				return
			}
			co.o.Metrics.Hints.WithLabelValues("stored").Add(float64(len(batch)))
		})
	}
	wg.Wait()
}
