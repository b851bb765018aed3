package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
)

// TestHedgeDelay: a node's hedge delay is its smoothed latency plus four
// mean deviations, clamped; a node never called waits the minimum.
func TestHedgeDelay(t *testing.T) {
	lo, hi := time.Millisecond, 50*time.Millisecond
	n := &cluster.Node{ID: "n1"}
	if d := n.HedgeDelay(lo, hi); d != lo || n.Latency() != 0 {
		t.Fatalf("uncalled node: delay %v, latency %v", d, n.Latency())
	}
	n.ObserveLatency(4 * time.Millisecond) // mean 4ms, deviation 2ms
	if d := n.HedgeDelay(lo, hi); d != 12*time.Millisecond || n.Latency() != 4*time.Millisecond {
		t.Fatalf("after one 4ms call: delay %v, latency %v; want 12ms, 4ms", n.HedgeDelay(lo, hi), n.Latency())
	}
	for range 100 {
		n.ObserveLatency(4 * time.Millisecond)
	}
	if d := n.HedgeDelay(lo, hi); d < 4*time.Millisecond || d > 5*time.Millisecond {
		t.Fatalf("steady 4ms calls: delay %v, want about 4ms (deviation gone)", d)
	}
	n.ObserveLatency(time.Second)
	if d := n.HedgeDelay(lo, hi); d != hi {
		t.Fatalf("after a 1s call: delay %v, want the maximum %v", d, hi)
	}
	if l := n.Latency(); l < 100*time.Millisecond || l > 200*time.Millisecond {
		t.Fatalf("one slow call moved the mean to %v, want an eighth of the way", l)
	}
}

// TestSetsOf: a write target's acknowledgement counts towards the sets
// it is in; a node that is not a target (or a down one) counts for none.
func TestSetsOf(t *testing.T) {
	nodes := map[string]*cluster.Node{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}, "d": {ID: "d"}, "e": {ID: "e"}}
	doc := placement.Document{Epoch: 3, Partitions: 1, RF: 3, Replicas: [][]string{{"a", "b", "c"}},
		Moves: []placement.Move{{Partition: 0, Add: "d", Remove: "c", Stage: placement.StageStreaming, Since: 2}}}
	rt := cluster.NewStaticDocument(doc, nodes).View().Route(0)
	for id, want := range map[string]uint8{"a": 3, "b": 3, "c": 1, "d": 2, "e": 0} {
		if got := rt.SetsOf(nodes[id]); got != want {
			t.Errorf("SetsOf(%s) = %b, want %b", id, got, want)
		}
	}
	if got := rt.SetsOf(nil); got != 0 {
		t.Errorf("SetsOf(nil) = %b", got)
	}
	if v := cluster.NewStaticDocument(doc, nodes).View(); v.Route(1) != nil || v.Replicas(1) != nil || len(v.Replicas(0)) != 3 {
		t.Errorf("out of range partition routed")
	}
}

// TestWaitEpoch: WaitEpoch returns once a view of the epoch is published
// (the epoch listener hears it too) and gives up with its context.
func TestWaitEpoch(t *testing.T) {
	doc := func(epoch uint64) placement.Document {
		return placement.Document{Epoch: epoch, Partitions: 1, RF: 1, Replicas: [][]string{{"a"}}}
	}
	c := cluster.NewStaticDocument(doc(1), nil)
	heard := make(chan uint64, 4)
	c.OnEpoch(func(e uint64) { heard <- e })
	if e := <-heard; e != 1 {
		t.Fatalf("OnEpoch heard %d first, want the current 1", e)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.WaitEpoch(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEpoch(2) with no newer view: %v", err)
	}
	got := make(chan uint64)
	go func() {
		v, err := c.WaitEpoch(t.Context(), 3)
		if err != nil {
			got <- 0
			return
		}
		got <- v.Epoch
	}()
	c.Publish(doc(2), nil) // not enough
	c.Publish(doc(3), nil)
	if e := <-got; e != 3 {
		t.Fatalf("WaitEpoch(3) returned epoch %d", e)
	}
	if e := <-heard; e != 2 {
		t.Fatalf("OnEpoch heard %d, want 2", e)
	}
	if e := <-heard; e != 3 {
		t.Fatalf("OnEpoch heard %d, want 3", e)
	}
	c.Publish(doc(3), nil) // the same epoch again is not news
	select {
	case e := <-heard:
		t.Fatalf("OnEpoch heard %d again", e)
	default:
	}
}
