package hlc

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// manualClock is a physical clock the test moves by hand.
type manualClock struct{ ns atomic.Int64 }

func newManual(t time.Time) *manualClock {
	m := &manualClock{}
	m.ns.Store(t.UnixNano())
	return m
}

func (m *manualClock) Now() time.Time          { return time.Unix(0, m.ns.Load()) }
func (m *manualClock) Advance(d time.Duration) { m.ns.Add(int64(d)) }
func (m *manualClock) Set(t time.Time)         { m.ns.Store(t.UnixNano()) }

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 42_000, time.UTC)

func TestLayout(t *testing.T) {
	v := FromTime(t0, 7)
	if got, want := v, uint64(t0.UnixMicro())<<12|7; got != want {
		t.Fatalf("FromTime = %#x, want %#x", got, want)
	}
	if got := Micros(v); got != t0.UnixMicro() {
		t.Fatalf("Micros = %d, want %d", got, t0.UnixMicro())
	}
	if got := Logical(v); got != 7 {
		t.Fatalf("Logical = %d, want 7", got)
	}
	// The range must last until 2112, as documented.
	end := Time(math.MaxUint64)
	if end.Year() != 2112 {
		t.Fatalf("last representable time %s, want year 2112", end)
	}
}

func TestFromTimeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       time.Time
		logical uint16
		want    time.Time
	}{
		{"epoch", time.Unix(0, 0), 0, time.Unix(0, 0)},
		{"micro", t0, MaxLogical, t0},
		{"truncates nanos", t0.Add(999), 1, t0},
		{"other zone", t0.In(time.FixedZone("x", 3600)), 2, t0},
		{"before epoch clamps", time.Unix(-5, 0), 3, time.Unix(0, 0)},
		{"after range clamps", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 4, time.UnixMicro(MaxPhysical)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := FromTime(tc.t, tc.logical)
			if got := Time(v); !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("Time(FromTime(%s)) = %s, want %s in UTC", tc.t, got, tc.want)
			}
			if got := Logical(v); got != tc.logical {
				t.Errorf("Logical = %d, want %d", got, tc.logical)
			}
		})
	}
}

func TestFromTimeLogicalOverflowPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("FromTime with logical > MaxLogical did not panic")
		}
	}()
	FromTime(t0, MaxLogical+1)
}

func TestNowFollowsPhysical(t *testing.T) {
	m := newManual(t0)
	c := New(WithPhysicalClock(m.Now))
	if got, want := c.Now(), FromTime(t0, 0); got != want {
		t.Fatalf("first Now = %s, want %s", String(got), String(want))
	}
	if got, want := c.Now(), FromTime(t0, 1); got != want {
		t.Fatalf("second Now in the same microsecond = %s, want %s", String(got), String(want))
	}
	m.Advance(time.Millisecond)
	if got, want := c.Now(), FromTime(t0.Add(time.Millisecond), 0); got != want {
		t.Fatalf("Now after physical advance = %s, want %s", String(got), String(want))
	}
	// Physical time going backwards must not make versions go backwards.
	m.Set(t0.Add(-time.Second))
	if got, want := c.Now(), FromTime(t0.Add(time.Millisecond), 1); got != want {
		t.Fatalf("Now after physical regression = %s, want %s", String(got), String(want))
	}
}

func TestNowLogicalOverflow(t *testing.T) {
	m := newManual(t0)
	c := New(WithPhysicalClock(m.Now))
	var last uint64
	for i := 0; i <= MaxLogical; i++ {
		last = c.Now()
	}
	if want := FromTime(t0, MaxLogical); last != want {
		t.Fatalf("after %d calls Now = %s, want %s", MaxLogical+1, String(last), String(want))
	}
	// The next version borrows the next microsecond.
	next := c.Now()
	if want := FromTime(t0.Add(time.Microsecond), 0); next != want {
		t.Fatalf("on overflow Now = %s, want %s", String(next), String(want))
	}
	// When physical time reaches the borrowed microsecond the clock goes on
	// counting instead of repeating it.
	m.Advance(time.Microsecond)
	if got, want := c.Now(), FromTime(t0.Add(time.Microsecond), 1); got != want {
		t.Fatalf("Now = %s, want %s", String(got), String(want))
	}
}

func TestNowExhausted(t *testing.T) {
	c := New(WithMaxOffset(0))
	if err := c.Update(math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Now at the end of the range did not panic")
		}
	}()
	c.Now()
}

func TestNowMonotonicConcurrent(t *testing.T) {
	// A frozen physical clock makes every goroutine contend on the logical
	// part and its overflow.
	m := newManual(t0)
	c := New(WithPhysicalClock(m.Now))
	const goroutines, perG = 8, 20_000
	results := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs := make([]uint64, perG)
			for i := range vs {
				vs[i] = c.Now()
				if i%1000 == 0 {
					m.Advance(time.Microsecond)
				}
			}
			results[g] = vs
		}()
	}
	wg.Wait()
	seen := make(map[uint64]struct{}, goroutines*perG)
	for g, vs := range results {
		for i, v := range vs {
			if i > 0 && v <= vs[i-1] {
				t.Fatalf("goroutine %d: version %d = %s not after %s", g, i, String(v), String(vs[i-1]))
			}
			if _, dup := seen[v]; dup {
				t.Fatalf("version %s returned twice", String(v))
			}
			seen[v] = struct{}{}
		}
	}
	if got := c.Last(); got < FromTime(t0, 0)+goroutines*perG-1 {
		t.Fatalf("Last = %s, fewer than %d versions after start", String(got), goroutines*perG)
	}
}

func TestNowRealClockConcurrent(t *testing.T) {
	c := New()
	start := FromTime(time.Now(), 0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := uint64(0)
			for range 10_000 {
				v := c.Now()
				if v <= prev || v < start {
					t.Errorf("Now = %s after %s (start %s)", String(v), String(prev), String(start))
					return
				}
				prev = v
			}
		}()
	}
	wg.Wait()
}

func TestUpdate(t *testing.T) {
	m := newManual(t0)
	c := New(WithPhysicalClock(m.Now))
	local := c.Now()

	// An older remote version changes nothing.
	if err := c.Update(local - 1); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Now(), local+1; got != want {
		t.Fatalf("after older Update Now = %s, want %s", String(got), String(want))
	}

	// A remote version ahead within the max offset pushes the clock forward.
	remote := FromTime(t0.Add(400*time.Millisecond), 17)
	if err := c.Update(remote); err != nil {
		t.Fatalf("Update 400ms ahead: %v", err)
	}
	if got := c.Last(); got != remote {
		t.Fatalf("Last = %s, want %s", String(got), String(remote))
	}
	if got, want := c.Now(), remote+1; got != want {
		t.Fatalf("after Update Now = %s, want %s", String(got), String(want))
	}

	// Exactly the max offset ahead is accepted; one microsecond more is not,
	// and leaves the clock alone.
	edge := FromTime(t0.Add(DefaultMaxOffset), 0)
	if err := c.Update(edge); err != nil {
		t.Fatalf("Update exactly MaxOffset ahead: %v", err)
	}
	before := c.Last()
	far := FromTime(t0.Add(DefaultMaxOffset+time.Microsecond), 0)
	err := c.Update(far)
	if !errors.Is(err, ErrMaxOffsetExceeded) {
		t.Fatalf("Update beyond MaxOffset: err = %v, want ErrMaxOffsetExceeded", err)
	}
	if got := c.Last(); got != before {
		t.Fatalf("rejected Update moved the clock from %s to %s", String(before), String(got))
	}

	// Once physical time catches up the same version is accepted.
	m.Advance(time.Second)
	if err := c.Update(far); err != nil {
		t.Fatalf("Update after physical time caught up: %v", err)
	}
}

func TestUpdateMaxOffsetOptions(t *testing.T) {
	m := newManual(t0)
	far := FromTime(t0.Add(time.Hour), 0)
	if err := New(WithPhysicalClock(m.Now), WithMaxOffset(0)).Update(far); err != nil {
		t.Fatalf("with the check disabled: %v", err)
	}
	c := New(WithPhysicalClock(m.Now), WithMaxOffset(2*time.Hour))
	if c.MaxOffset() != 2*time.Hour {
		t.Fatalf("MaxOffset = %s", c.MaxOffset())
	}
	if err := c.Update(far); err != nil {
		t.Fatalf("within a 2h max offset: %v", err)
	}
	if got := New().MaxOffset(); got != DefaultMaxOffset {
		t.Fatalf("default MaxOffset = %s, want %s", got, DefaultMaxOffset)
	}
}

func TestUpdateConcurrentWithNow(t *testing.T) {
	m := newManual(t0)
	c := New(WithPhysicalClock(m.Now))
	var wg sync.WaitGroup
	wg.Add(2)
	var maxRemote atomic.Uint64
	go func() {
		defer wg.Done()
		for i := range 10_000 {
			r := FromTime(t0.Add(time.Duration(i)*time.Microsecond), 5)
			if err := c.Update(r); err != nil {
				t.Error(err)
				return
			}
			maxRemote.Store(r)
		}
	}()
	go func() {
		defer wg.Done()
		prev := uint64(0)
		for range 10_000 {
			seen := maxRemote.Load()
			v := c.Now()
			if v <= prev || v <= seen {
				t.Errorf("Now = %s, not after %s and remote %s", String(v), String(prev), String(seen))
				return
			}
			prev = v
		}
	}()
	wg.Wait()
}

func TestStringParse(t *testing.T) {
	v := FromTime(t0, 7)
	if got, want := String(v), "2024-05-01T12:00:00.000042Z,7"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	for _, s := range []string{String(v), "2024-05-01T14:00:00.000042+02:00,7", "7022857420800172039"} {
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != v {
			t.Fatalf("Parse(%q) = %s, want %s", s, String(got), String(v))
		}
	}
	for _, s := range []string{"", "x", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z,4096",
		"2024-05-01T12:00:00Z,-1", "2024-05-01T12:00:00.0000001Z,0", "1960-01-01T00:00:00Z,0",
		"2200-01-01T00:00:00Z,0"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("2024-05-01T12:00:00.000042Z,7")
	f.Add("7022857420800172039")
	f.Add("0001-01-01T00:00:00Z,0")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(String(v))
		if err != nil || back != v {
			t.Fatalf("Parse(String(%d)) = %d, %v", v, back, err)
		}
	})
}

func BenchmarkNow(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		c := New()
		for b.Loop() {
			c.Now()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := New()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
}
