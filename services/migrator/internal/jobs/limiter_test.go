package jobs

import (
	"context"
	"testing"
	"time"
)

// TestLimiterHoldsTheRate: a job's items_per_second holds from the first
// item (a full bucket let `--rate 1500` run at 2,070 items/s). Only the
// lower bound on time is checked, so a slow machine cannot fail it.
func TestLimiterHoldsTheRate(t *testing.T) {
	const rate, batch, items = 2000.0, 100, 1000
	l := newLimiter(rate, batch)
	start := time.Now()
	for sent := 0; sent < items; sent += batch {
		if err := l.WaitN(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	got := items / time.Since(start).Seconds()
	if got > rate*1.05 {
		t.Fatalf("%d items at %.0f items/s, limit %.0f (+5%%)", items, got, rate)
	}
}
