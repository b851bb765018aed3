// Package bench is the engine of `veltrix bench`: YCSB-style workloads and a
// bulk import run side by side against Veltrix and its peers (embedded etcd,
// Redis, raw Pebble) in one process on one machine, so that every claim is a
// ratio measured in the same run.
//
// # Workloads
//
// The core workloads follow YCSB (Cooper et al., "Benchmarking Cloud Serving
// Systems with YCSB", SoCC 2010): A is 50% reads and 50% updates, B 95/5, C
// read only, D reads the latest inserts (95% reads, 5% inserts). PUT is
// update only and BATCHGET reads batches of keys, to compare with pipelined
// Redis. Keys are chosen uniformly or from a Zipfian distribution (Gray et
// al., "Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994,
// the generator YCSB uses, with θ = 0.99); D draws from the Zipfian over
// recency instead, so the newest keys are the hottest.
//
// # Closed and open loop
//
// In closed loop each of the --concurrency workers issues its next
// operation when the previous one returns: it measures peak throughput, but
// a stalled server also stops the clock ("coordinated omission", Gil Tene),
// so its latencies are optimistic. In open loop (--rate) operation i is due
// at start + i/rate whatever happened before; workers take the next due
// operation, and latency is measured from when it was due, not from when a
// worker got to it, so a stall shows up in the latencies of every operation
// it delayed (the method of wrk2 and HdrHistogram). Only a worker's own
// timer lateness is taken off: Go timers can fire up to a millisecond late
// when the process idles, and that delay is the harness's, not the peer's.
//
// # Histograms
//
// Latencies go into log-linear histograms in the style of HdrHistogram: 128
// linear sub-buckets per power of two, so any recorded value is known to
// within 1/128 (< 0.8%), in fixed memory, and histograms from many workers
// merge by adding counts.
package bench
