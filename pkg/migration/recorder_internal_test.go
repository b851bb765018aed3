package migration

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestHistogramQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b, both Histogram
	var all []time.Duration
	for i := range 20000 {
		// Log-uniform between 50µs and 5s.
		d := time.Duration(50e3 * math.Pow(1e5, rng.Float64()))
		all = append(all, d)
		both.Observe(d)
		if i%2 == 0 {
			a.Observe(d)
		} else {
			b.Observe(d)
		}
	}
	a.Merge(&b)
	if a != both {
		t.Fatal("merged halves differ from the whole")
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := all[int(q*float64(len(all)))-1]
		got := a.Quantile(q)
		if got < exact || float64(got) > float64(exact)*histGrowth {
			t.Errorf("q%v = %v, exact %v: want within [exact, exact·%v]", q, got, exact, histGrowth)
		}
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Fatal("quantile of an empty histogram")
	}
	var edge Histogram
	edge.Observe(0)
	edge.Observe(time.Hour)
	if edge[0] != 1 || edge[histBuckets-1] != 1 {
		t.Fatalf("out-of-range durations not clamped: %v", edge)
	}
	var back Histogram
	back.addSparse(a.sparse())
	back.addSparse(map[int]uint64{-1: 5, histBuckets: 5})
	if back != a {
		t.Fatal("sparse round trip differs")
	}
}

func TestRecorderWindow(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC)
	r := newRecorder(func() time.Time { return now }, nil)
	phase := &migrationv1.Migration{Phase: migrationv1.Phase_PHASE_SHADOW, PhaseTime: timestamppb.New(now.Add(-2 * time.Hour))}
	r.setMigrations(map[string]*migrationv1.Migration{"t": phase})

	r.ShadowCompared("t", true)
	r.MirrorWrite("t", true)
	r.VeltrixServerError("t")
	now = now.Add(30 * time.Minute)
	r.ShadowCompared("t", false)
	r.MirrorWrite("t", false)
	r.ReadLatency("t", SideVeltrix, 3*time.Millisecond)
	r.ReadLatency("t", SideDynamoDB, 7*time.Millisecond)
	r.ReadLatency("t", Side(9), time.Second) // ignored

	f := r.figures()["t"]
	if f.Compared != 2 || f.Mismatches != 1 || f.Mirrored != 2 || f.MirrorFailed != 1 || f.Veltrix5xx != 1 ||
		len(f.VeltrixLatency) != 1 || len(f.DynamoDBLatency) != 1 {
		t.Fatalf("figures after 30 minutes = %+v", f)
	}
	// An hour after the first minute, its bucket has left the window.
	now = now.Add(30 * time.Minute)
	f = r.figures()["t"]
	if f.Compared != 1 || f.Mismatches != 0 || f.Mirrored != 1 || f.MirrorFailed != 0 || f.Veltrix5xx != 0 {
		t.Fatalf("figures after an hour = %+v", f)
	}
	// Recording into a ring slot reused from an hour ago starts it over.
	now = now.Add(30 * time.Minute)
	r.ShadowCompared("t", false)
	if f = r.figures()["t"]; f.Compared != 1 {
		t.Fatalf("figures after reusing a slot = %+v", f)
	}
	// A phase change starts the figures over.
	next := &migrationv1.Migration{Phase: migrationv1.Phase_PHASE_CUTOVER, CutoverPercent: 5, PhaseTime: timestamppb.New(now)}
	r.setMigrations(map[string]*migrationv1.Migration{"t": next})
	if f = r.figures()["t"]; f.Compared != 0 || !f.PhaseTime.Equal(now) {
		t.Fatalf("figures after a phase change = %+v", f)
	}
	// The same phase seen again keeps them.
	r.ShadowCompared("t", false)
	r.setMigrations(map[string]*migrationv1.Migration{"t": next})
	if f = r.figures()["t"]; f.Compared != 1 {
		t.Fatalf("figures after the same phase again = %+v", f)
	}
	// A migration that ends drops its figures.
	r.setMigrations(nil)
	if len(r.figures()) != 0 {
		t.Fatalf("figures of a table without migration: %v", r.figures())
	}
}
