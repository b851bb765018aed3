package scan

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBudget: the bucket starts with one second of capacity, a page that
// overdraws it makes the next call wait until the debt is paid, and a wait
// ends with its context.
func TestBudget(t *testing.T) {
	const perSecond = 100.0
	b := newBudget(perSecond)
	ctx := context.Background()
	began := time.Now()
	if err := b.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 50*time.Millisecond {
		t.Fatalf("first call waited %s on a full bucket", d)
	}
	b.spend(119.5) // 100 in the bucket: 19.5 units (195ms) of debt
	began = time.Now()
	if err := b.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 150*time.Millisecond || d > time.Second {
		t.Fatalf("call after an overdraft of 19.5 units at %g/s waited %s, want about 195ms", perSecond, d)
	}
	b.spend(500) // more than the burst: taken out all the same
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.wait(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait in debt with a short context: %v", err)
	}
}
