package bench

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestZipfBounds(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 10, 1000, 100000} {
		z := NewZip(n, ZipfTheta)
		r := rand.New(rand.NewPCG(n, 1))
		for range 20000 {
			if v := z.Next(r); v >= n {
				t.Fatalf("n=%d: drew %d", n, v)
			}
		}
	}
}

// TestZipfShape checks the draws against the Zipfian probabilities: ranks
// 0 and 1 exactly (P(i) = 1/((i+1)^θ · zeta(n))), and the mass of the top
// ranks, which Gray's method approximates for ranks above 1.
func TestZipfShape(t *testing.T) {
	const n, draws = 1000, 200000
	z := NewZip(n, ZipfTheta)
	r := rand.New(rand.NewPCG(7, 7))
	counts := make([]int, n)
	for range draws {
		counts[z.Next(r)]++
	}
	for i := range 2 {
		want := draws / (math.Pow(float64(i+1), ZipfTheta) * z.zetan)
		if got := float64(counts[i]); math.Abs(got-want) > 0.05*want {
			t.Errorf("rank %d drawn %d times, want about %.0f", i, counts[i], want)
		}
	}
	for _, top := range []int{10, 100} {
		var want float64
		got := 0
		for i := range top {
			want += 1 / math.Pow(float64(i+1), ZipfTheta)
			got += counts[i]
		}
		want = want / z.zetan * draws
		if math.Abs(float64(got)-want) > 0.1*want {
			t.Errorf("top %d ranks drawn %d times, want about %.0f", top, got, want)
		}
	}
	if counts[0] <= counts[10] || counts[10] <= counts[500] {
		t.Errorf("not decreasing: rank 0: %d, rank 10: %d, rank 500: %d", counts[0], counts[10], counts[500])
	}
}

func TestScatterIsAPermutation(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 97, 1000, 4096} {
		s := newScatter(n)
		seen := make([]bool, n)
		for i := range n {
			k := s.of(i)
			if k >= n || seen[k] {
				t.Fatalf("n=%d: rank %d maps to %d (out of range or taken)", n, i, k)
			}
			seen[k] = true
		}
	}
}

func TestChoosers(t *testing.T) {
	const n = 1000
	r := rand.New(rand.NewPCG(3, 3))
	for _, tc := range []struct {
		name   string
		c      KeyChooser
		limit  uint64
		newest bool // most draws near limit
	}{
		{"uniform", NewChooser(Uniform, n, false), n, false},
		{"zipfian", NewChooser(Zipfian, n, false), n, false},
		{"latest", NewChooser(Zipfian, n, true), n + 500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recent := 0
			for range 10000 {
				k := tc.c.Next(r, tc.limit)
				if k >= tc.limit {
					t.Fatalf("key %d >= limit %d", k, tc.limit)
				}
				if k >= tc.limit-10 {
					recent++
				}
			}
			// The 10 top ranks of a Zipfian over 1000 hold about 39%.
			if tc.newest && recent < 3000 {
				t.Errorf("latest: only %d of 10000 draws among the 10 newest keys", recent)
			}
			if !tc.newest && recent > 1000 {
				t.Errorf("%d of 10000 draws among the last 10 keys", recent)
			}
		})
	}
}

func TestKeyNames(t *testing.T) {
	seen := map[string]bool{}
	for i := range uint64(10000) {
		k := Key(i)
		if len(k) != KeyLen {
			t.Fatalf("Key(%d) = %q: %d bytes, want %d", i, k, len(k), KeyLen)
		}
		if seen[string(k)] {
			t.Fatalf("Key(%d) = %q repeats", i, k)
		}
		seen[string(k)] = true
	}
	if string(Key(42)) != string(AppendKey(nil, 42)) {
		t.Error("Key and AppendKey disagree")
	}
}

func TestParseDistribution(t *testing.T) {
	for in, want := range map[string]Distribution{"zipfian": Zipfian, "UNIFORM": Uniform} {
		if got, err := ParseDistribution(in); err != nil || got != want {
			t.Errorf("ParseDistribution(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseDistribution("latest"); err == nil {
		t.Error("ParseDistribution(latest): no error")
	}
}
