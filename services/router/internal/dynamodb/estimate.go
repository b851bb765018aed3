package dynamodb

import (
	"context"
	"sync"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// DescribeTable's ItemCount and TableSizeBytes are estimates, as DynamoDB's
// are (it refreshes them about every six hours): the items of a sample of
// the table's partitions, evenly spaced, scaled up to every partition.
// Partition keys hash uniformly, so the sample's share of items is close
// to its share of partitions once the table holds a few thousand items.
const (
	// estimatePartitions is how many partitions are read.
	estimatePartitions = 16
	// estimateBudget bounds the reading; partitions not read in time are
	// left out of the sample.
	estimateBudget = 500 * time.Millisecond
	// estimateTTL is how long an estimate is reused: SDK waiters poll
	// DescribeTable.
	estimateTTL = 30 * time.Second
)

type estimate struct {
	items, bytes int64
	at           time.Time
}

// estimates caches table estimates by table id.
type estimates struct {
	mu sync.Mutex
	m  map[uint64]estimate
}

// estimate returns t's estimated item count and size in bytes (0, 0 when
// no partition could be read in time).
func (h *Handler) estimate(ctx context.Context, t *table) (items, size int64) {
	h.est.mu.Lock()
	e, ok := h.est.m[t.ID]
	h.est.mu.Unlock()
	if ok && time.Since(e.at) < estimateTTL {
		return e.items, e.bytes
	}
	ctx, cancel := context.WithTimeout(ctx, estimateBudget)
	defer cancel()
	parts := t.view.Partitions
	n := min(uint32(estimatePartitions), parts)
	var read uint32
	for i := range n {
		p := uint32(uint64(i) * uint64(parts) / uint64(n))
		var pi, pb int64
		err := h.b.Coordinator().ScanPartition(ctx, t.view, p, t.ID, nil, coord.One, func(recs []*storagev1.Record, _ []byte) (bool, error) {
			for _, r := range recs {
				pi++
				pb += int64(len(r.GetValue()))
			}
			return true, nil
		})
		if err != nil {
			break // out of time or replicas: estimate from what was read
		}
		read++
		e.items += pi
		e.bytes += pb
	}
	if read == 0 {
		return 0, 0
	}
	e.items = e.items * int64(parts) / int64(read)
	e.bytes = e.bytes * int64(parts) / int64(read)
	e.at = time.Now()
	h.est.mu.Lock()
	if h.est.m == nil {
		h.est.m = map[uint64]estimate{}
	}
	h.est.m[t.ID] = e
	h.est.mu.Unlock()
	return e.items, e.bytes
}
