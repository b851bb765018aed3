package main

import (
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	tpEntries = 1 << 16 // cache capacity and key space
	tpStream  = 1 << 20 // pregenerated key indexes
)

// tpKeys returns the key strings and a Zipf(1.01) stream of indexes into
// them.
func tpKeys() ([]string, []uint32) {
	keys := make([]string, tpEntries)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/%08d", i)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	z := rand.NewZipf(rng, 1.01, 1, tpEntries-1)
	stream := make([]uint32, tpStream)
	for i := range stream {
		stream[i] = uint32(z.Uint64())
	}
	return keys, stream
}

// sample is one throughput run: operations per wall-clock second, and per
// second of CPU time the process used (which other load on the machine
// disturbs less).
type sample struct{ wall, cpu float64 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs procs goroutines over the stream for d. Every writeEvery-th
// operation is a Set (0: none).
func measure(c cache[string], keys []string, stream []uint32, procs int, d time.Duration, writeEvery int) sample {
	var (
		stop  atomic.Bool
		total atomic.Int64
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	value := make([]byte, 64)
	for p := range procs {
		wg.Go(func() {
			i := p * (tpStream / procs)
			n := int64(0)
			<-start
			for !stop.Load() {
				for range 256 {
					i = (i + 1) & (tpStream - 1)
					k := keys[stream[i]]
					if writeEvery > 0 && i%writeEvery == 0 {
						c.set(k, value)
					} else {
						c.get(k)
					}
				}
				n += 256
			}
			total.Add(n)
		})
	}
	t0, c0 := time.Now(), cpuTime()
	close(start)
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	n := float64(total.Load())
	return sample{wall: n / time.Since(t0).Seconds(), cpu: n / (cpuTime() - c0).Seconds()}
}

func throughputs(w io.Writer, procs int, d time.Duration, runs int, only string) {
	keys, stream := tpKeys()
	workloads := []struct {
		name       string
		writeEvery int
	}{
		{"100% reads", 0},
		{"75% reads, 25% writes", 4},
	}
	caches := impls[string]()
	if only != "" {
		caches = slices.DeleteFunc(caches, func(im impl[string]) bool { return !strings.Contains(only, im.name) })
	}
	// Rounds go through every cache in turn, so that a burst of load from
	// elsewhere on the machine does not land on one cache's runs only.
	samples := make([][][]sample, len(caches))
	for ci := range caches {
		samples[ci] = make([][]sample, len(workloads))
	}
	for range runs {
		for wi, wl := range workloads {
			for ci, im := range caches {
				c := im.make(tpEntries, false)
				value := make([]byte, 64)
				for _, k := range keys {
					c.set(k, value)
				}
				c.settle()
				samples[ci][wi] = append(samples[ci][wi], measure(c, keys, stream, procs, d, wl.writeEvery))
				c.close()
			}
		}
	}
	// Medians of each measure.
	res := make([][]sample, len(caches))
	for ci := range caches {
		res[ci] = make([]sample, len(workloads))
		for wi := range workloads {
			s := samples[ci][wi]
			slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.wall, b.wall) })
			res[ci][wi].wall = s[len(s)/2].wall
			slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.cpu, b.cpu) })
			res[ci][wi].cpu = s[len(s)/2].cpu
		}
	}
	mustWrite(w, "## Throughput (million operations per second)\n\n")
	mustWrite(w, "%d goroutines at GOMAXPROCS=%d; capacity %d entries, prefilled with the %d string keys, which a Zipf(1.01) stream picks; median of %d runs of %v, the caches taking turns. Wall: operations per second. CPU: operations per second of CPU time used by the process, less disturbed by other load on the machine.\n\n", procs, procs, tpEntries, tpEntries, runs, d)
	mustWrite(w, "| cache |")
	for _, wl := range workloads {
		mustWrite(w, " %s, wall | %s, CPU |", wl.name, wl.name)
	}
	mustWrite(w, "\n|---|")
	for range workloads {
		mustWrite(w, "---:|---:|")
	}
	mustWrite(w, "\n")
	for ci, im := range caches {
		mustWrite(w, "| %s |", im.name)
		for wi := range workloads {
			mustWrite(w, " %.1f | %.1f |", res[ci][wi].wall/1e6, res[ci][wi].cpu/1e6)
		}
		mustWrite(w, "\n")
	}
	otter := slices.IndexFunc(caches, func(im impl[string]) bool { return im.name == "otter v2" })
	if otter < 0 || caches[0].name != "lirs" {
		return
	}
	verdict := func(a, b float64) string {
		if a >= b {
			return "met"
		}
		return "not met"
	}
	mustWrite(w, "\nTarget, lirs read throughput ≥ otter's: %s by wall clock (%.1f vs %.1f M ops/s), %s by CPU time (%.1f vs %.1f).\n",
		verdict(res[0][0].wall, res[otter][0].wall), res[0][0].wall/1e6, res[otter][0].wall/1e6,
		verdict(res[0][0].cpu, res[otter][0].cpu), res[0][0].cpu/1e6, res[otter][0].cpu/1e6)
}
