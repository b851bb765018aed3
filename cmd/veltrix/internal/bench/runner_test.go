package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDriver serves every call after a fixed service time; the first call
// made after stallAt is held for stall instead.
type fakeDriver struct {
	service  time.Duration
	stall    time.Duration
	stallAt  time.Time
	stalled  atomic.Bool
	fail     bool
	gets     atomic.Int64
	puts     atomic.Int64
	batches  atomic.Int64
	mu       sync.Mutex
	keys     map[string]bool
	maxFlows atomic.Int64
	flows    atomic.Int64
}

func (f *fakeDriver) serve() error {
	n := f.flows.Add(1)
	defer f.flows.Add(-1)
	for {
		m := f.maxFlows.Load()
		if n <= m || f.maxFlows.CompareAndSwap(m, n) {
			break
		}
	}
	d := f.service
	if f.stall > 0 && !f.stallAt.IsZero() && time.Now().After(f.stallAt) && f.stalled.CompareAndSwap(false, true) {
		d = f.stall
	}
	time.Sleep(d)
	if f.fail {
		return errors.New("fake failure")
	}
	return nil
}

func (f *fakeDriver) Get(ctx context.Context, key []byte) (bool, error) {
	f.gets.Add(1)
	return true, f.serve()
}

func (f *fakeDriver) Put(ctx context.Context, key, value []byte) error {
	f.puts.Add(1)
	return f.serve()
}

func (f *fakeDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	f.batches.Add(1)
	return len(keys), f.serve()
}

func (f *fakeDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]bool{}
	}
	for i, k := range keys {
		if len(values[i]) != 100 {
			return errors.New("wrong value size")
		}
		f.keys[string(k)] = true
	}
	return nil
}

func (f *fakeDriver) Close() error { return nil }

func TestScheduleTiming(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		rate float64
		d    time.Duration
		want int64
	}{
		{1000, time.Second, 1000},
		{3, 1500 * time.Millisecond, 5}, // due at 0, 0.33, 0.67, 1.0, 1.33 s
		{0.5, time.Second, 1},
		{100, 10 * time.Millisecond, 1},
		{1e6, 2 * time.Second, 2000000},
	}
	for _, tt := range tests {
		s := schedule{start: start, rate: tt.rate}
		if got := s.count(tt.d); got != tt.want {
			t.Errorf("rate %g over %s: count %d, want %d", tt.rate, tt.d, got, tt.want)
		}
		if !s.at(0).Equal(start) {
			t.Errorf("rate %g: first operation due at %v, want the start", tt.rate, s.at(0))
		}
	}
	s := schedule{start: start, rate: 250}
	if got := s.at(250).Sub(start); got != time.Second {
		t.Errorf("operation 250 at 250/s due after %v, want 1s", got)
	}
	if got := s.at(1).Sub(start); got != 4*time.Millisecond {
		t.Errorf("interval %v, want 4ms", got)
	}
	for i := int64(1); i < 1000; i++ {
		if !s.at(i).After(s.at(i - 1)) {
			t.Fatalf("due times not increasing at %d", i)
		}
	}
}

func runOpts(w Workload, conc int, d time.Duration, rate float64) RunOptions {
	return RunOptions{Workload: w, Keys: 1000, ValueSize: 100, Concurrency: conc, Duration: d, Rate: rate, Distribution: Zipfian, Seed: 1}
}

// TestOpenLoopIsFreeOfCoordinatedOmission stalls one call for 300ms. In
// closed loop the stall is one slow sample; in open loop every operation
// that fell due during it waits, and its latency shows it.
func TestOpenLoopIsFreeOfCoordinatedOmission(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	c, _ := WorkloadByName("C")
	values := NewValueSource(100, 1)
	run := func(rate float64) *Measurement {
		f := &fakeDriver{service: time.Millisecond, stall: 300 * time.Millisecond, stallAt: time.Now().Add(100 * time.Millisecond)}
		m, err := RunWorkload(context.Background(), f, runOpts(c, 1, time.Second, rate), values)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	closed := run(0)
	open := run(100)
	t.Logf("closed: %d ops, p50 %v p90 %v max %v", closed.Ops, closed.Latency.Quantile(0.5), closed.Latency.Quantile(0.9), closed.Latency.Max())
	t.Logf("open:   %d ops, p50 %v p90 %v max %v", open.Ops, open.Latency.Quantile(0.5), open.Latency.Quantile(0.9), open.Latency.Max())
	if closed.Latency.Max() < 250*time.Millisecond {
		t.Errorf("closed loop missed the stall: max %v", closed.Latency.Max())
	}
	if p90 := closed.Latency.Quantile(0.9); p90 > 50*time.Millisecond {
		t.Errorf("closed loop p90 %v: the stall should be a single sample", p90)
	}
	// About 30 of the 100 operations were due during the stall.
	if p90 := open.Latency.Quantile(0.9); p90 < 100*time.Millisecond {
		t.Errorf("open loop p90 %v: the operations delayed by the stall are not counted from their due time", p90)
	}
	if open.Ops != 100 {
		t.Errorf("open loop at 100/s for 1s: %d operations, want 100", open.Ops)
	}
}

func TestOpenLoopAchievedRate(t *testing.T) {
	c, _ := WorkloadByName("C")
	f := &fakeDriver{}
	m, err := RunWorkload(context.Background(), f, runOpts(c, 4, 500*time.Millisecond, 400), NewValueSource(100, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.Ops != 200 || m.Missed != 0 {
		t.Errorf("ops %d missed %d, want 200 and 0", m.Ops, m.Missed)
	}
	if r := m.OpsPerSec(); r < 300 || r > 420 {
		t.Errorf("achieved %.0f ops/s, target 400", r)
	}
	if m.TargetRate != 400 {
		t.Errorf("TargetRate %g", m.TargetRate)
	}
}

// TestOpenLoopOverload: a peer that cannot keep up. Operations still due
// after the grace period count as missed, with their wait as latency, and
// the achieved rate shows the shortfall.
func TestOpenLoopOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	c, _ := WorkloadByName("C")
	f := &fakeDriver{service: 20 * time.Millisecond}
	m, err := RunWorkload(context.Background(), f, runOpts(c, 1, 200*time.Millisecond, 1000), NewValueSource(100, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.Ops != 200 {
		t.Errorf("ops %d, want every one of the 200 due operations accounted for", m.Ops)
	}
	if m.Missed == 0 || m.Missed >= 200 {
		t.Errorf("missed %d of 200", m.Missed)
	}
	if r := m.OpsPerSec(); r > 100 {
		t.Errorf("achieved %.0f ops/s; the peer serves at most 50/s", r)
	}
	if p := m.Latency.Quantile(0.5); p < 500*time.Millisecond {
		t.Errorf("median latency %v under overload", p)
	}
}

func TestWorkloadMix(t *testing.T) {
	values := NewValueSource(100, 1)
	for _, tc := range []struct {
		workload string
		putFrac  float64
	}{{"A", 0.5}, {"B", 0.05}, {"C", 0}, {"PUT", 1}, {"D", 0.05}} {
		t.Run(tc.workload, func(t *testing.T) {
			w, ok := WorkloadByName(tc.workload)
			if !ok {
				t.Fatal("no such workload")
			}
			f := &fakeDriver{}
			var inserted atomic.Uint64
			o := runOpts(w, 4, 200*time.Millisecond, 0)
			o.Inserted = &inserted
			m, err := RunWorkload(context.Background(), f, o, values)
			if err != nil {
				t.Fatal(err)
			}
			total := f.gets.Load() + f.puts.Load()
			if total == 0 || uint64(total) != m.Ops {
				t.Fatalf("%d calls, %d ops", total, m.Ops)
			}
			frac := float64(f.puts.Load()) / float64(total)
			if frac < tc.putFrac-0.03 || frac > tc.putFrac+0.03 {
				t.Errorf("writes are %.3f of %d ops, want %.2f", frac, total, tc.putFrac)
			}
			if tc.workload == "D" && inserted.Load() != uint64(f.puts.Load()) {
				t.Errorf("D inserted %d keys, made %d puts", inserted.Load(), f.puts.Load())
			}
		})
	}
}

type fakePipeliner struct {
	fakeDriver
	calls, ops atomic.Int64
}

func (f *fakePipeliner) Depth() int { return 4 }

func (f *fakePipeliner) Pipeline(ctx context.Context, ops []Op) error {
	f.calls.Add(1)
	f.ops.Add(int64(len(ops)))
	for i := range ops {
		ops[i].Found = true
	}
	return nil
}

func TestPipelinedAndBatch(t *testing.T) {
	values := NewValueSource(100, 1)
	a, _ := WorkloadByName("A")
	p := &fakePipeliner{}
	m, err := RunWorkload(context.Background(), p, runOpts(a, 2, 100*time.Millisecond, 0), values)
	if err != nil {
		t.Fatal(err)
	}
	if m.Ops != uint64(p.ops.Load()) || p.ops.Load() != 4*p.calls.Load() || p.gets.Load()+p.puts.Load() != 0 {
		t.Errorf("pipelined: %d ops recorded, %d sent in %d calls, %d single calls", m.Ops, p.ops.Load(), p.calls.Load(), p.gets.Load()+p.puts.Load())
	}
	// A batch workload uses BatchGet even on a pipeliner.
	bg, _ := WorkloadByName("BATCHGET")
	p = &fakePipeliner{}
	m, err = RunWorkload(context.Background(), p, runOpts(bg, 2, 100*time.Millisecond, 0), values)
	if err != nil {
		t.Fatal(err)
	}
	if m.Ops != uint64(p.batches.Load()) || m.Keys != BatchKeys*m.Ops || p.calls.Load() != 0 {
		t.Errorf("batch: %d ops, %d keys, %d BatchGets, %d pipelines", m.Ops, m.Keys, p.batches.Load(), p.calls.Load())
	}
	if m.KeysPerSec() < float64(BatchKeys)*m.OpsPerSec()*0.99 {
		t.Errorf("keys/s %.0f vs ops/s %.0f", m.KeysPerSec(), m.OpsPerSec())
	}
}

func TestErrorsAreCounted(t *testing.T) {
	c, _ := WorkloadByName("C")
	f := &fakeDriver{fail: true}
	m, err := RunWorkload(context.Background(), f, runOpts(c, 2, 50*time.Millisecond, 0), NewValueSource(100, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.Errors == 0 || m.Errors != m.Ops || m.FirstError != "fake failure" {
		t.Errorf("errors %d of %d ops, first %q", m.Errors, m.Ops, m.FirstError)
	}
}

func TestConcurrencyIsHonoured(t *testing.T) {
	c, _ := WorkloadByName("C")
	f := &fakeDriver{service: 2 * time.Millisecond}
	if _, err := RunWorkload(context.Background(), f, runOpts(c, 8, 100*time.Millisecond, 0), NewValueSource(100, 1)); err != nil {
		t.Fatal(err)
	}
	if got := f.maxFlows.Load(); got > 8 || got < 2 {
		t.Errorf("%d calls in flight at once, want up to 8", got)
	}
}

func TestLoad(t *testing.T) {
	f := &fakeDriver{}
	if _, err := Load(context.Background(), f, LoadOptions{Keys: 1001, Concurrency: 3, Batch: 100}, NewValueSource(100, 1)); err != nil {
		t.Fatal(err)
	}
	if len(f.keys) != 1001 {
		t.Fatalf("loaded %d keys, want 1001", len(f.keys))
	}
	for i := range uint64(1001) {
		if !f.keys[string(Key(i))] {
			t.Fatalf("key %d not loaded", i)
		}
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	c, _ := WorkloadByName("C")
	if _, err := RunWorkload(context.Background(), &fakeDriver{}, RunOptions{Workload: c, Keys: 10}, NewValueSource(10, 1)); err == nil {
		t.Error("concurrency 0 accepted")
	}
	if _, err := RunWorkload(context.Background(), &fakeDriver{}, RunOptions{Workload: c, Concurrency: 1}, NewValueSource(10, 1)); err == nil {
		t.Error("0 keys accepted")
	}
}

func TestValueSource(t *testing.T) {
	v := NewValueSource(1024, 1)
	r := newRand(1)
	a, b := v.Next(r), v.Next(r)
	if len(a) != 1024 || len(b) != 1024 || cap(a) != 1024 {
		t.Fatalf("value sizes %d %d (cap %d)", len(a), len(b), cap(a))
	}
	if string(a) == string(b) {
		t.Error("two values are equal")
	}
}
