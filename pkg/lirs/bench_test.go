package lirs

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

const benchEntries = 1 << 16

func benchKeys() ([]string, []uint32) {
	keys := make([]string, benchEntries)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/%08d", i)
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(7, 7)), 1.01, 1, benchEntries-1)
	stream := make([]uint32, 1<<20)
	for i := range stream {
		stream[i] = uint32(z.Uint64())
	}
	return keys, stream
}

// BenchmarkCache measures Get and Set on a cache of 64Ki entries prefilled
// with every key, with keys from a Zipf(1.01) stream: the workload of the
// side-by-side benchmark in bench/lirs. moves/op counts moves to the top of
// S per operation.
func BenchmarkCache(b *testing.B) {
	keys, stream := benchKeys()
	for _, bc := range []struct {
		name       string
		writeEvery int
		reorder    int
	}{
		{"reads", 0, 0},
		{"reads/exact", 0, -1},
		{"reads75-writes25", 4, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := New(Options[string, []byte]{Capacity: benchEntries, reorder: bc.reorder})
			if err != nil {
				b.Fatal(err)
			}
			v := make([]byte, 64)
			for _, k := range keys {
				c.Set(k, v, 1)
			}
			var before uint64
			for i := range c.shards {
				before += c.shards[i].clock
			}
			var worker atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(worker.Add(1)) * 100_003
				for pb.Next() {
					i = (i + 1) & (len(stream) - 1)
					k := keys[stream[i]]
					if bc.writeEvery > 0 && i%bc.writeEvery == 0 {
						c.Set(k, v, 1)
					} else {
						c.Get(k)
					}
				}
			})
			b.StopTimer()
			var moves uint64
			for i := range c.shards {
				c.shards[i].mu.Lock()
				moves += c.shards[i].clock
				c.shards[i].mu.Unlock()
			}
			b.ReportMetric(float64(moves-before)/float64(b.N), "moves/op")
		})
	}
}
