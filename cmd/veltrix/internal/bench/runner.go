package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Driver is one peer under test. Its methods are called concurrently by
// the workers. They must not keep key or value slices after returning.
type Driver interface {
	// Get reads one key.
	Get(ctx context.Context, key []byte) (found bool, err error)
	// Put writes one key.
	Put(ctx context.Context, key, value []byte) error
	// BatchGet reads several keys in one call (or the peer's nearest
	// equivalent) and returns how many were found.
	BatchGet(ctx context.Context, keys [][]byte) (found int, err error)
	// PutBatch writes several keys at once; the load phase uses it.
	PutBatch(ctx context.Context, keys, values [][]byte) error
	// Close stops the peer and releases everything it holds.
	Close() error
}

// Pipeliner is a Driver that can send several single-key operations in one
// round trip (Redis pipelining). The runner then hands each worker Depth()
// operations at a time; each is timed from its own start (or due time) to
// the end of the round trip.
type Pipeliner interface {
	Depth() int
	Pipeline(ctx context.Context, ops []Op) error
}

// ExternalCPU is a Driver whose server runs in another process; the
// runner adds that process's CPU time to the bench process's own.
type ExternalCPU interface {
	ServerCPU() time.Duration
}

// cpuNow is the CPU time used so far by this process and d's server
// process, if it has one.
func cpuNow(d Driver) time.Duration {
	c := selfCPU()
	if e, ok := d.(ExternalCPU); ok {
		c += e.ServerCPU()
	}
	return c
}

// Op is one single-key operation of a pipeline.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte // OpUpdate and OpInsert
	Found bool   // set by Pipeline for reads
}

// RunOptions configure one measured run of a workload against a driver.
type RunOptions struct {
	Workload Workload
	// Keys is the number of keys loaded (key numbers [0, Keys)).
	Keys uint64
	// ValueSize is the size of written values in bytes.
	ValueSize int
	// Concurrency is the number of workers (client goroutines).
	Concurrency int
	// Duration is how long operations are issued.
	Duration time.Duration
	// Rate, when > 0, is the open-loop target in operations per second;
	// 0 runs closed loop.
	Rate float64
	// Distribution picks keys.
	Distribution Distribution
	// Seed makes the key and operation choices repeatable.
	Seed uint64
	// Inserted counts keys inserted beyond Keys by earlier D runs; it is
	// shared by the runs of one peer. Nil means none.
	Inserted *atomic.Uint64
	// IdleCPU is the bench process's CPU use (in cores) with every peer
	// idle; that much is taken off the run's CPU time, so a peer is not
	// charged for the idle peers' background work. Default 0.
	IdleCPU float64
	// Timeout bounds one operation. Default 10s.
	Timeout time.Duration
}

// Measurement is what one run measured.
type Measurement struct {
	// Ops is the operations completed (a BatchGet of 16 keys is one).
	Ops uint64
	// Keys is the keys read or written by them.
	Keys uint64
	// Errors is the failed operations (included in Ops and the latencies).
	Errors uint64
	// FirstError describes one of them.
	FirstError string
	// NotFound is reads that found nothing.
	NotFound uint64
	// Missed is open-loop operations that were due but not started before
	// the run's cutoff; their wait so far is recorded as their latency.
	Missed uint64
	// Elapsed is the time from the first operation to the last one's end.
	Elapsed time.Duration
	// CPU is the CPU time the bench process (clients and in-process
	// servers) and an out-of-process server used during the run.
	CPU time.Duration
	// TargetRate is RunOptions.Rate (0 in closed loop).
	TargetRate float64
	// Latency holds every operation's latency; ByKind splits it.
	Latency Histogram
	ByKind  map[OpKind]*Histogram
}

// OpsPerSec is the achieved throughput.
func (m *Measurement) OpsPerSec() float64 { return perSec(m.Ops-m.Missed, m.Elapsed) }

// CPUPerOp is the CPU time spent per completed operation, clients and
// servers together: unlike throughput, it hardly depends on what else the
// machine runs.
func (m *Measurement) CPUPerOp() time.Duration {
	if n := m.Ops - m.Missed; n > 0 {
		return m.CPU / time.Duration(n)
	}
	return 0
}

// KeysPerSec is the achieved key throughput.
func (m *Measurement) KeysPerSec() float64 { return perSec(m.Keys, m.Elapsed) }

func perSec(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// schedule gives the due time of open-loop operation i: start + i/rate.
type schedule struct {
	start time.Time
	rate  float64
}

func (s schedule) at(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// count is the number of operations due in [start, start+d).
func (s schedule) count(d time.Duration) int64 {
	n := int64(d.Seconds() * s.rate)
	for n > 0 && !s.at(n-1).Before(s.start.Add(d)) {
		n--
	}
	for s.at(n).Before(s.start.Add(d)) {
		n++
	}
	return n
}

// openLoopGrace is how long after the end of the schedule operations that
// are still due are started; later ones are counted as missed.
func openLoopGrace(d time.Duration) time.Duration { return max(d/2, time.Second) }

// worker is one client goroutine's state.
type worker struct {
	o       *RunOptions
	d       Driver
	p       Pipeliner
	depth   int
	r       *rand.Rand
	chooser KeyChooser
	values  *ValueSource
	m       Measurement
	keys    [][]byte
	ops     []Op
}

func (w *worker) record(kind OpKind, lat time.Duration, nkeys int) {
	w.m.Ops++
	w.m.Keys += uint64(nkeys)
	w.m.Latency.Record(lat)
	h := w.m.ByKind[kind]
	if h == nil {
		h = &Histogram{}
		w.m.ByKind[kind] = h
	}
	h.Record(lat)
}

func (w *worker) fail(err error) {
	if err == nil {
		return
	}
	w.m.Errors++
	if w.m.FirstError == "" {
		w.m.FirstError = err.Error()
	}
}

// limit is the number of keys that exist now.
func (w *worker) limit() uint64 {
	n := w.o.Keys
	if w.o.Inserted != nil {
		n += w.o.Inserted.Load()
	}
	return n
}

// prepare fills ops[j] for the next operation.
func (w *worker) prepare(j int, pending *atomic.Uint64) {
	op := &w.ops[j]
	op.Kind = w.o.Workload.pick(w.r.Float64())
	op.Found = false
	switch op.Kind {
	case OpBatch:
		lim := w.limit()
		for b := range w.keys {
			w.keys[b] = AppendKey(w.keys[b][:0], w.chooser.Next(w.r, lim))
		}
	case OpInsert:
		n := w.o.Keys + pending.Add(1) - 1
		op.Key = AppendKey(op.Key[:0], n)
		op.Value = w.values.Next(w.r)
	case OpUpdate:
		op.Key = AppendKey(op.Key[:0], w.chooser.Next(w.r, w.limit()))
		op.Value = w.values.Next(w.r)
	default:
		op.Key = AppendKey(op.Key[:0], w.chooser.Next(w.r, w.limit()))
	}
}

// exec runs ops[:n] and reports when they ended.
func (w *worker) exec(ctx context.Context, n int) time.Time {
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	if w.p != nil && w.o.Workload.Batch == 0 {
		err := w.p.Pipeline(ctx, w.ops[:n])
		end := time.Now()
		w.fail(err)
		for j := range n {
			if w.ops[j].Kind == OpRead && err == nil && !w.ops[j].Found {
				w.m.NotFound++
			}
		}
		return end
	}
	op := &w.ops[0]
	var err error
	switch op.Kind {
	case OpRead:
		op.Found, err = w.d.Get(ctx, op.Key)
		if err == nil && !op.Found {
			w.m.NotFound++
		}
	case OpUpdate, OpInsert:
		err = w.d.Put(ctx, op.Key, op.Value)
	case OpBatch:
		var found int
		found, err = w.d.BatchGet(ctx, w.keys)
		if err == nil {
			w.m.NotFound += uint64(len(w.keys) - found)
		}
	}
	w.fail(err)
	return time.Now()
}

func (w *worker) nkeys(k OpKind) int {
	if k == OpBatch {
		return len(w.keys)
	}
	return 1
}

// RunWorkload runs one workload against d and returns what it measured. Keys must
// have been loaded (Load).
func RunWorkload(ctx context.Context, d Driver, o RunOptions, values *ValueSource) (*Measurement, error) {
	if o.Concurrency < 1 {
		return nil, fmt.Errorf("bench: concurrency %d: want at least 1", o.Concurrency)
	}
	if o.Keys == 0 {
		return nil, errors.New("bench: no keys loaded")
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	var inserted atomic.Uint64 // keys whose insert started
	if o.Inserted != nil {
		inserted.Store(o.Inserted.Load())
	}
	chooser := NewChooser(o.Distribution, o.Keys, o.Workload.Latest)
	p, _ := d.(Pipeliner)
	depth := 1
	if p != nil && o.Workload.Batch == 0 {
		depth = max(p.Depth(), 1)
	} else {
		p = nil
	}
	workers := make([]*worker, o.Concurrency)
	for i := range workers {
		w := &worker{
			o: &o, d: d, p: p, depth: depth, chooser: chooser, values: values,
			r:   rand.New(rand.NewPCG(o.Seed, uint64(i)+1)),
			ops: make([]Op, depth),
		}
		w.m.ByKind = map[OpKind]*Histogram{}
		for j := range w.ops {
			w.ops[j].Key = make([]byte, 0, KeyLen)
		}
		if o.Workload.Batch > 0 {
			w.keys = make([][]byte, o.Workload.Batch)
			for j := range w.keys {
				w.keys[j] = make([]byte, 0, KeyLen)
			}
		}
		workers[i] = w
	}

	cpu0 := cpuNow(d)
	start := time.Now()
	end := start.Add(o.Duration)
	sched := schedule{start: start, rate: o.Rate}
	var total int64
	if o.Rate > 0 {
		total = sched.count(o.Duration)
	}
	cutoff := end.Add(openLoopGrace(o.Duration))
	var next atomic.Int64
	var wg sync.WaitGroup
	var ends = make([]time.Time, len(workers))
	for wi, w := range workers {
		wg.Go(func() {
			last := start
			defer func() { ends[wi] = last }()
			for ctx.Err() == nil {
				if o.Rate <= 0 {
					// Closed loop: the next operation starts when the
					// previous one returns.
					if !time.Now().Before(end) {
						return
					}
					for j := range depth {
						w.prepare(j, &inserted)
					}
					t0 := time.Now()
					last = w.exec(ctx, depth)
					w.ackInserts(depth, o.Inserted)
					for j := range depth {
						w.record(w.ops[j].Kind, last.Sub(t0), w.nkeys(w.ops[j].Kind))
					}
					continue
				}
				// Open loop: take the next depth operations of the
				// schedule; they start when the last of them is due.
				i := next.Add(int64(depth)) - int64(depth)
				if i >= total {
					return
				}
				n := int(min(int64(depth), total-i))
				due := sched.at(i + int64(n) - 1)
				now := time.Now()
				// overshoot is how late the worker's timer woke it. Go's
				// timers can fire up to a millisecond late when the
				// process idles (the netpoller sleeps in whole
				// milliseconds): that is the harness's delay, not the
				// peer's, so it is taken off. An operation that was
				// already due when the worker took it (a backlog: the
				// peer is slow) is timed from its due time.
				var overshoot time.Duration
				if wait := due.Sub(now); wait > 0 {
					sleep(ctx, wait)
					overshoot = max(time.Since(due), 0)
				} else if now.After(cutoff) {
					for j := range n {
						w.m.Missed++
						w.record(w.o.Workload.pick(w.r.Float64()), now.Sub(sched.at(i+int64(j))), 0)
					}
					continue
				}
				for j := range n {
					w.prepare(j, &inserted)
				}
				last = w.exec(ctx, n)
				w.ackInserts(n, o.Inserted)
				for j := range n {
					w.record(w.ops[j].Kind, last.Sub(sched.at(i+int64(j)))-overshoot, w.nkeys(w.ops[j].Kind))
				}
			}
		})
	}
	wg.Wait()
	cpu := cpuNow(d) - cpu0 - time.Duration(o.IdleCPU*float64(time.Since(start)))
	cpu = max(cpu, 0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &Measurement{TargetRate: o.Rate, ByKind: map[OpKind]*Histogram{}, CPU: cpu}
	finish := start
	for i, w := range workers {
		m.Ops += w.m.Ops
		m.Keys += w.m.Keys
		m.Errors += w.m.Errors
		m.NotFound += w.m.NotFound
		m.Missed += w.m.Missed
		if m.FirstError == "" {
			m.FirstError = w.m.FirstError
		}
		m.Latency.Merge(&w.m.Latency)
		for k, h := range w.m.ByKind {
			if m.ByKind[k] == nil {
				m.ByKind[k] = &Histogram{}
			}
			m.ByKind[k].Merge(h)
		}
		if ends[i].After(finish) {
			finish = ends[i]
		}
	}
	m.Elapsed = finish.Sub(start)
	if o.Rate > 0 {
		// Throughput is over the schedule's span when the peer kept up.
		m.Elapsed = max(m.Elapsed, o.Duration)
	}
	return m, nil
}

// ackInserts makes the keys inserted by the last operations readable by
// later operations.
func (w *worker) ackInserts(n int, shared *atomic.Uint64) {
	if shared == nil {
		return
	}
	for j := range n {
		if w.ops[j].Kind == OpInsert {
			shared.Add(1)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ValueSource hands out values of one size, slices of a random buffer, so
// writes carry incompressible bytes without allocating.
type ValueSource struct {
	size int
	buf  []byte
}

// NewValueSource returns a source of size-byte values.
func NewValueSource(size int, seed uint64) *ValueSource {
	r := rand.New(rand.NewPCG(seed, 0x76616c))
	buf := make([]byte, max(size, 1)+(1<<20))
	for i := 0; i+8 <= len(buf); i += 8 {
		v := r.Uint64()
		for b := range 8 {
			buf[i+b] = byte(v >> (8 * b))
		}
	}
	return &ValueSource{size: size, buf: buf}
}

// Size is the size of the values.
func (v *ValueSource) Size() int { return v.size }

// Next returns a value; callers must not modify it.
func (v *ValueSource) Next(r *rand.Rand) []byte {
	off := r.IntN(len(v.buf) - v.size + 1)
	return v.buf[off : off+v.size : off+v.size]
}

// LoadOptions configure Load.
type LoadOptions struct {
	Keys        uint64
	Concurrency int
	// Batch is the keys per PutBatch call. Default 256.
	Batch int
	Seed  uint64
}

// Load writes key numbers [0, Keys) with values from values through
// PutBatch, from Concurrency workers, and returns how long it took.
func Load(ctx context.Context, d Driver, o LoadOptions, values *ValueSource) (time.Duration, error) {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	o.Concurrency = max(o.Concurrency, 1)
	start := time.Now()
	var next atomic.Uint64
	errs := make(chan error, o.Concurrency)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range o.Concurrency {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(o.Seed, uint64(i)+1000))
			keys := make([][]byte, 0, o.Batch)
			vals := make([][]byte, 0, o.Batch)
			for ctx.Err() == nil {
				lo := next.Add(uint64(o.Batch)) - uint64(o.Batch)
				if lo >= o.Keys {
					return
				}
				hi := min(lo+uint64(o.Batch), o.Keys)
				keys, vals = keys[:0], vals[:0]
				for k := lo; k < hi; k++ {
					keys = append(keys, Key(k))
					vals = append(vals, values.Next(r))
				}
				if err := d.PutBatch(ctx, keys, vals); err != nil {
					errs <- fmt.Errorf("load keys [%d, %d): %w", lo, hi, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start), ctx.Err()
}
