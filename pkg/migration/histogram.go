package migration

import (
	"math"
	"time"
)

// Latency histogram: fixed log-spaced buckets, the same on every router, so
// histograms merge by adding counts. Bucket 0 holds durations up to
// histMin; bucket i up to histMin·histGrowth^i; the last one everything
// above. A quantile read from it is a bucket's upper bound: at most 25 %
// above the true value.
const (
	histMin     = 10 * time.Microsecond
	histGrowth  = 1.25
	histBuckets = 80 // the last bound is about 450 s
)

var histLogGrowth = math.Log(histGrowth)

// Histogram counts durations in the fixed buckets.
type Histogram [histBuckets]uint64

func histBucket(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(histMin)) / histLogGrowth))
	return min(i, histBuckets-1)
}

// histUpper is bucket i's upper bound.
func histUpper(i int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i)))
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) { h[histBucket(d)]++ }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, n := range o {
		h[i] += n
	}
}

// Count is the number of durations counted.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0 < q ≤ 1); 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return histUpper(i)
		}
	}
	return histUpper(histBuckets - 1)
}

// sparse returns the non-empty buckets, for publishing.
func (h *Histogram) sparse() map[int]uint64 {
	out := map[int]uint64{}
	for i, c := range h {
		if c != 0 {
			out[i] = c
		}
	}
	return out
}

// addSparse adds published buckets to h, ignoring indexes out of range.
func (h *Histogram) addSparse(s map[int]uint64) {
	for i, c := range s {
		if i >= 0 && i < histBuckets {
			h[i] += c
		}
	}
}
