package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits linear sub-buckets per
// power of two, so a bucket is at most 1/128 of the values it holds wide.
const subBits = 7

const (
	subCount = 1 << subBits
	// maxBucket covers values up to 2^(maxBucket+subBits+1)-1 ns (about 9
	// hours); larger values are clamped into the last bucket.
	maxBucket = 40 - subBits
	numSlots  = (maxBucket + 2) * subCount
)

// Histogram counts durations (in nanoseconds) in log-linear buckets. The
// zero value is empty and ready to use. It is not safe for concurrent use:
// give each worker its own and Merge them.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max int64
}

// slot returns the bucket index of v (v >= 0).
func slot(v int64) int {
	u := uint64(v)
	b := bits.Len64(u) - subBits - 1
	if b < 0 {
		b = 0
	}
	if b > maxBucket {
		return numSlots - 1
	}
	return b<<subBits + int(u>>uint(b))
}

// slotHigh is the largest value that falls into slot i.
func slotHigh(i int) int64 {
	b := i>>subBits - 1
	if b < 0 {
		b = 0
	}
	sub := int64(i - b<<subBits)
	return (sub+1)<<uint(b) - 1
}

// Record adds one duration; negative durations count as 0.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n occurrences of d.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, numSlots)
	}
	h.counts[slot(v)] += n
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n += n
	h.sum += float64(v) * float64(n)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numSlots)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the smallest recorded value (exact).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Mean is the mean of the recorded values (exact).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q in [0, 1]: the smallest bucket
// bound below or at which a fraction q of the values lie, as HdrHistogram
// reports it (the highest value equivalent to the true one, never below
// it by more than the bucket width, and never above Max). 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == numSlots-1 {
				return time.Duration(h.max) // the clamped overflow slot
			}
			return time.Duration(min(max(slotHigh(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
