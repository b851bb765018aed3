package server

import (
	"context"
	"testing"
	"time"
)

// TestInflightWrites: the reporter waits for writes checked against an
// older epoch, and only for those.
func TestInflightWrites(t *testing.T) {
	var w inflightWrites
	end1 := w.begin(1)
	end2 := w.begin(2)
	if !w.before(2) || w.before(1) {
		t.Fatalf("before(2)=%v before(1)=%v with writes at epochs 1 and 2", w.before(2), w.before(1))
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		end1()
	}()
	start := time.Now()
	if !w.drained(context.Background(), 2) || time.Since(start) < 40*time.Millisecond {
		t.Fatalf("drained(2) did not wait for the write at epoch 1")
	}
	if w.before(3) != true {
		t.Fatal("the write at epoch 2 is not counted")
	}
	end2()
	if w.before(3) || len(w.byEpoch) != 0 {
		t.Fatalf("writes left after they ended: %v", w.byEpoch)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	defer w.begin(1)()
	if w.drained(ctx, 2) {
		t.Fatal("drained with a write in flight and ctx cancelled")
	}
}
