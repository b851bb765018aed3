package main

import (
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkReads runs the throughput workload's 100% reads under testing.B,
// for profiling: go test -bench Reads -cpu 2 -cpuprofile cpu.out.
func BenchmarkReads(b *testing.B) {
	keys, stream := tpKeys()
	for _, im := range impls[string]() {
		b.Run(im.name, func(b *testing.B) {
			c := im.make(tpEntries, false)
			defer c.close()
			v := make([]byte, 64)
			for _, k := range keys {
				c.set(k, v)
			}
			c.settle()
			var worker atomic.Uint32
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(worker.Add(1)) * (tpStream / 4)
				for pb.Next() {
					i = (i + 1) & (tpStream - 1)
					c.get(keys[stream[i]])
				}
			})
		})
	}
}

// TestCachesWork runs every cache through a short scan-polluted Zipf replay
// and a short throughput run, so that a broken adapter fails here rather
// than printing a wrong table.
func TestCachesWork(t *testing.T) {
	keys := zipfTrace(50_000, 200)
	for _, im := range impls[uint64]() {
		hr := replay(im, 1000, keys)
		t.Logf("%s: %.2f%%", im.name, hr)
		if hr < 20 || hr > 80 {
			t.Errorf("%s: hit ratio %.2f%% on Zipf with scans, want 20-80%%", im.name, hr)
		}
	}
	skeys, stream := tpKeys()
	for _, im := range impls[string]() {
		c := im.make(tpEntries, false)
		if s := measure(c, skeys, stream, 2, 20*time.Millisecond, 4); s.wall <= 0 {
			t.Errorf("%s: no operations measured", im.name)
		}
		c.close()
	}
}
