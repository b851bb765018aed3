package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
)

// Distribution is how keys are chosen.
type Distribution string

// The key distributions.
const (
	// Uniform picks every loaded key with the same probability.
	Uniform Distribution = "uniform"
	// Zipfian picks key ranks from a Zipfian distribution (θ = 0.99, as
	// YCSB) and scatters the ranks over the key space, so the hot keys are
	// not neighbours.
	Zipfian Distribution = "zipfian"
)

// ParseDistribution checks a --distribution value.
func ParseDistribution(s string) (Distribution, error) {
	switch d := Distribution(strings.ToLower(s)); d {
	case Uniform, Zipfian:
		return d, nil
	}
	return "", fmt.Errorf("distribution %q: want zipfian or uniform", s)
}

// ZipfTheta is YCSB's default Zipfian constant.
const ZipfTheta = 0.99

// Zip draws integers in [0, n) with P(i) proportional to 1/(i+1)^θ, by the
// method of Gray et al. (SIGMOD 1994) as YCSB's ZipfianGenerator: zeta(n) is
// summed once at construction (O(n)), each draw is O(1). Safe for
// concurrent use: all state is read-only after construction.
type Zip struct {
	n                   uint64
	theta, alpha, zetan float64
	eta, half           float64
}

// NewZip returns a Zipfian generator over [0, n), n >= 1.
func NewZip(n uint64, theta float64) *Zip {
	if n < 1 {
		n = 1
	}
	z := &Zip{n: n, theta: theta, alpha: 1 / (1 - theta)}
	var zetan float64
	for i := uint64(1); i <= n; i++ {
		zetan += 1 / math.Pow(float64(i), theta)
	}
	zeta2 := 1 + 1/math.Pow(2, theta)
	z.zetan = zetan
	z.half = 1 + math.Pow(0.5, theta)
	if n > 2 {
		z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetan)
	}
	return z
}

// N is the size of the range.
func (z *Zip) N() uint64 { return z.n }

// Next draws one value in [0, N()).
func (z *Zip) Next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetan
	switch {
	case uz < 1 || z.n == 1:
		return 0
	case uz < z.half || z.n == 2:
		return 1
	}
	v := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.n {
		v = z.n - 1
	}
	return v
}

// scatter maps a rank to a key number by a bijection of [0, n): a
// multiplication by a constant coprime with n. Hot ranks land far apart.
type scatter struct{ n, mul uint64 }

func newScatter(n uint64) scatter {
	mul := uint64(0x9E3779B97F4A7C15) % n
	for mul < 2 || gcd(mul, n) != 1 {
		mul++
		if mul >= n {
			mul = 1
			break
		}
	}
	return scatter{n: n, mul: mul}
}

func (s scatter) of(rank uint64) uint64 {
	hi, lo := bits.Mul64(rank, s.mul)
	return bits.Rem64(hi, lo, s.n)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// KeyChooser picks the key numbers of reads and updates.
type KeyChooser interface {
	// Next returns a key number below limit (the number of keys that
	// exist now; it grows in workload D).
	Next(r *rand.Rand, limit uint64) uint64
}

type uniformChooser struct{}

func (uniformChooser) Next(r *rand.Rand, limit uint64) uint64 { return r.Uint64N(limit) }

type zipfChooser struct {
	z *Zip
	s scatter
}

func (c zipfChooser) Next(r *rand.Rand, limit uint64) uint64 {
	k := c.s.of(c.z.Next(r))
	if k >= limit {
		k %= limit
	}
	return k
}

// latestChooser favours the newest keys: the Zipfian rank counts back from
// the last key.
type latestChooser struct{ z *Zip }

func (c latestChooser) Next(r *rand.Rand, limit uint64) uint64 {
	back := c.z.Next(r)
	if back >= limit {
		back %= limit
	}
	return limit - 1 - back
}

// NewChooser returns the chooser for a distribution over n loaded keys;
// latest selects YCSB D's read-latest distribution instead.
func NewChooser(d Distribution, n uint64, latest bool) KeyChooser {
	switch {
	case latest:
		return latestChooser{z: NewZip(n, ZipfTheta)}
	case d == Uniform:
		return uniformChooser{}
	}
	return zipfChooser{z: NewZip(n, ZipfTheta), s: newScatter(n)}
}

// KeyLen is the length of every generated key.
const KeyLen = 20

// AppendKey appends the name of key number i: "user" and 16 hex digits of
// a 64-bit mix of i (YCSB's hashed key names), so names are unordered and
// of one length.
func AppendKey(dst []byte, i uint64) []byte {
	const hex = "0123456789abcdef"
	h := mix64(i)
	dst = append(dst, "user"...)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h)
	for _, c := range b {
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	return dst
}

// Key returns the name of key number i.
func Key(i uint64) []byte { return AppendKey(make([]byte, 0, KeyLen), i) }

// mix64 is a bijective 64-bit mixer (splitmix64's finalizer), so distinct
// key numbers get distinct names.
func mix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}
