package e2e

// BenchmarkBinRebalance measures what growing a cluster costs, with the
// real binaries: a 3-node cluster (RF 3) holding VELTRIX_REBALANCE_MB of
// data (default 32) gets a fourth node, with the default rebalancing flags,
// while a closed-loop QUORUM put load runs; then
//
//   - rebalance_s: seconds from the new node's start until the placement
//     reached its target with no move or cleanup left;
//   - stream_MBps: the bytes the backfills streamed over rebalance_s;
//   - tput_ratio and p99_ratio: the load's throughput and P99 latency
//     during the rebalance over the same measured before it and after it
//     (same run, same load; P99 over every put of each period).
//
// Run: go test -run '^$' -bench BenchmarkBinRebalance -benchtime 1x ./e2e/
// (VELTRIX_REBALANCE_STORAGE_ARGS adds storage flags, e.g. "--stream-rate 4").

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

func BenchmarkBinRebalance(b *testing.B) {
	mb := 32
	if s := os.Getenv("VELTRIX_REBALANCE_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		c := framework.Start(b, framework.Options{Nodes: 3, RF: 3, Partitions: 128, NoSync: true,
			StorageArgs: strings.Fields(os.Getenv("VELTRIX_REBALANCE_STORAGE_ARGS"))})
		cl := c.Client(b, faultClientOpts...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := cl.CreateTable(ctx, "rebalance"); err != nil {
			b.Fatal(err)
		}
		cancel()
		fill(b, cl, "rebalance", mb<<20/4096, 4096)
		const workers, window = 8, 5 * time.Second
		closedLoad(cl, "rebalance", "warm", workers, 2*time.Second)
		before := closedLoadLatencies(cl, "rebalance", "before", workers, window)

		start := time.Now()
		c.AddNode(b)
		ad := admin(b, c)
		var during []time.Duration
		var loadTime time.Duration
		for {
			during = append(during, closedLoadLatencies(cl, "rebalance", "during", workers, 2*time.Second)...)
			loadTime += 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := ad.RebalanceStatus(ctx, &kvv1.RebalanceStatusRequest{})
			cancel()
			if err == nil && st.GetBalanced() && len(st.GetMoves()) == 0 {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatal("not balanced within 10 minutes")
			}
		}
		took := time.Since(start)
		d := placementDoc(b, c)
		var bytes, moved uint64
		if d.Rebalance != nil {
			bytes, moved = d.Rebalance.Bytes, d.Rebalance.Moved
		}
		// Steady state is measured before and after the rebalance, and the
		// two averaged: the cluster after has one node more.
		after := closedLoadLatencies(cl, "rebalance", "after", workers, window)
		steadyTput := float64(len(before)+len(after)) / (2 * window.Seconds())
		steadyP99 := p99(append(before, after...))
		duringTput := float64(len(during)) / loadTime.Seconds()
		duringP99 := p99(during)
		var stale float64
		for _, n := range c.Nodes {
			stale += metricValue(b, n, "veltrix_storage_stale_epoch_rejections_total")
		}
		b.ReportMetric(stale, "stale_epoch_rejections")
		b.ReportMetric(took.Seconds(), "rebalance_s")
		b.ReportMetric(float64(bytes)/took.Seconds()/(1<<20), "stream_MBps")
		b.ReportMetric(duringTput/steadyTput, "tput_ratio")
		b.ReportMetric(float64(duringP99)/float64(steadyP99), "p99_ratio")
		b.Logf("%d MiB in the cluster; the new node got %.1f MiB in %v (%d moves); steady (before and after) %.0f puts/s P99 %v; during %.0f puts/s P99 %v",
			mb, float64(bytes)/(1<<20), took.Round(time.Millisecond), moved, steadyTput, steadyP99, duringTput, duringP99)
	}
}
