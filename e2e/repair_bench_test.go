package e2e

// BenchmarkBinRepair measures what anti-entropy costs and how fast it
// heals, with the real binaries: a replica is SIGKILLed for a while under a
// closed-loop QUORUM put load and restarted, then
//
//   - repair_s: seconds from its restart (load stopped) until every
//     partition's digests are equal on all replicas;
//   - missed_keys: the puts acknowledged while it was down;
//   - tput_ratio and p99_ratio: the load's throughput and P99 latency while
//     the returned replica is being repaired, over the same before the
//     fault.
//
// Run: go test -run '^$' -bench BenchmarkBinRepair -benchtime 1x ./e2e/
// (VELTRIX_REPAIR_DOWN sets the outage, default 10s).

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/client"
)

// closedLoad puts distinct keys with workers goroutines for d and returns
// the puts per second and the P99 latency.
func closedLoad(cl *client.Client, table, prefix string, workers int, d time.Duration) (float64, time.Duration, int) {
	lat := closedLoadLatencies(cl, table, prefix, workers, d)
	return float64(len(lat)) / d.Seconds(), p99(lat), len(lat)
}

// closedLoadLatencies is closedLoad returning the latency of every
// acknowledged put.
func closedLoadLatencies(cl *client.Client, table, prefix string, workers int, d time.Duration) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				k := fmt.Sprintf("%s-%d-%07d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				_, err := cl.Put(ctx, table, []byte(k), nil, []byte("value-of-"+k))
				el := time.Since(t0)
				cancel()
				if err == nil {
					mu.Lock()
					lat = append(lat, el)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return lat
}

// p99 is the 99th percentile of lat (which it sorts); 0 if empty.
func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

func BenchmarkBinRepair(b *testing.B) {
	down := 10 * time.Second
	if s := os.Getenv("VELTRIX_REPAIR_DOWN"); s != "" {
		var err error
		if down, err = time.ParseDuration(s); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		c := framework.Start(b, framework.Options{Nodes: 3, RF: 3, StorageArgs: []string{"--anti-entropy-interval", "1s"}})
		cl := c.Client(b, faultClientOpts...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := cl.CreateTable(ctx, "repair"); err != nil {
			b.Fatal(err)
		}
		cancel()
		const workers, window = 8, 5 * time.Second
		closedLoad(cl, "repair", "warm", workers, 2*time.Second)
		steadyTput, steadyP99, _ := closedLoad(cl, "repair", "steady", workers, window)

		victim := c.Nodes[2]
		victim.Kill(b)
		_, _, missed := closedLoad(cl, "repair", "missed", workers, down)
		victim.Restart(b)
		repairTput, repairP99, _ := closedLoad(cl, "repair", "during", workers, window)
		start := time.Now()
		for {
			same, last := true, ""
			for i, n := range c.Nodes {
				dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
				d, err := nodeDigests(dctx, n.Addr())
				dcancel()
				if err != nil || (i > 0 && d != last) {
					same = false
				}
				last = d
			}
			if same {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatal("no convergence within 5 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		repairS := time.Since(start).Seconds() + window.Seconds()
		b.ReportMetric(float64(missed), "missed_keys")
		b.ReportMetric(repairS, "repair_s")
		b.ReportMetric(repairTput/steadyTput, "tput_ratio")
		b.ReportMetric(float64(repairP99)/float64(steadyP99), "p99_ratio")
		b.Logf("steady %.0f puts/s P99 %v; during repair %.0f puts/s P99 %v; %d puts missed over %v, converged %.1fs after the restart",
			steadyTput, steadyP99, repairTput, repairP99, missed, down, repairS)
	}
}
