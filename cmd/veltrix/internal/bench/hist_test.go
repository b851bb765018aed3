package bench

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestSlotRoundTrip(t *testing.T) {
	// Every value lies within its slot's bounds, the slot is at most 1/128
	// of its values wide, and slots are monotonic.
	prev := -1
	for _, v := range []int64{0, 1, 2, 127, 128, 255, 256, 257, 511, 512, 1000, 1023, 1024, 4095, 4096,
		1e4, 99999, 1e5, 1e6, 1234567, 1e9, 1e10, 1 << 39, 1<<40 - 1} {
		s := slot(v)
		if s < prev {
			t.Errorf("slot(%d) = %d < slot of a smaller value %d", v, s, prev)
		}
		prev = s
		hi := slotHigh(s)
		lo := int64(0)
		if s > 0 {
			lo = slotHigh(s-1) + 1
		}
		if v < lo || v > hi {
			t.Errorf("value %d in slot %d = [%d, %d]", v, s, lo, hi)
		}
		if width := hi - lo + 1; v >= 256 && float64(width) > float64(v)/subCount {
			t.Errorf("slot of %d is %d wide, more than 1/%d of the value", v, width, subCount)
		}
	}
	if got := slot(1 << 62); got != numSlots-1 {
		t.Errorf("huge value: slot %d, want the last (%d)", got, numSlots-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"single", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond},
		{"min", []time.Duration{3, 1, 2}, 0, 1},
		{"max", []time.Duration{3, 1, 2}, 1, 3},
		{"median of small exact values", []time.Duration{1, 2, 3, 4, 5}, 0.5, 3},
		{"p99 of 100", seq(100, time.Microsecond), 0.99, 99 * time.Microsecond},
		{"p50 of 100", seq(100, time.Microsecond), 0.50, 50 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			got := h.Quantile(tt.q)
			if !within(got, tt.want, 1.0/subCount) {
				t.Errorf("Quantile(%g) = %v, want %v (±1/%d)", tt.q, got, tt.want, subCount)
			}
			if got < tt.want {
				t.Errorf("Quantile(%g) = %v is below the true value %v (HDR reports the highest equivalent value)", tt.q, got, tt.want)
			}
		})
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * unit
	}
	return out
}

func within(got, want time.Duration, rel float64) bool {
	d := float64(got - want)
	if d < 0 {
		d = -d
	}
	return d <= float64(want)*rel+1
}

// TestHistogramRandom compares quantiles with exact ones on random data
// spanning six orders of magnitude.
func TestHistogramRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(r.IntN(6)+1) * 1e5)
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		idx := int(q*float64(len(vals))+0.999999) - 1
		want := vals[max(idx, 0)]
		if got := h.Quantile(q); !within(got, want, 1.0/subCount) || got < want {
			t.Errorf("Quantile(%g) = %v, exact %v", q, got, want)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
		t.Errorf("Min/Max = %v/%v, want %v/%v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
	}
	if h.Count() != uint64(len(vals)) {
		t.Errorf("Count = %d", h.Count())
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Histogram{})
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%g) = %v, want %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if m.Count() != all.Count() || m.Mean() != all.Mean() || m.Min() != all.Min() || m.Max() != all.Max() {
		t.Errorf("merged summary differs: %d %v %v %v vs %d %v %v %v", m.Count(), m.Mean(), m.Min(), m.Max(),
			all.Count(), all.Mean(), all.Min(), all.Max())
	}
}

func TestHistogramNegativeAndHuge(t *testing.T) {
	var h Histogram
	h.Record(-5)
	h.Record(100 * time.Hour)
	if h.Quantile(0) != 0 {
		t.Errorf("negative duration recorded as %v, want 0", h.Quantile(0))
	}
	if h.Quantile(1) != 100*time.Hour {
		t.Errorf("huge duration: Quantile(1) = %v, want it clamped to Max %v", h.Quantile(1), 100*time.Hour)
	}
}
