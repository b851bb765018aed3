// Package hlc is the hybrid logical clock that versions every Veltrix mutation.
//
// A version is a uint64 laid out as
//
//	bits 63..12  physical part: microseconds since the Unix epoch (52 bits)
//	bits 11..0   logical part: a counter within one microsecond (12 bits)
//
// so versions compare as plain integers, and the last writer wins by integer
// comparison. The clock follows Kulkarni et al., "Logical Physical Clocks and
// Consistent Snapshots in Globally Distributed Databases" (OPODIS 2014): Now
// never returns the same or a smaller value twice, stays close to wall-clock
// time, and Update pulls in versions observed from other routers or from
// callers so that causally later writes get larger versions even when physical
// clocks disagree.
//
// The physical part is in microseconds, not milliseconds or nanoseconds,
// because that is the resolution of the migrator's sources: DynamoDB's
// WriteTimestampMicros and the approximate creation times of stream records
// become versions with FromTime, and their logical part orders records that
// share a microsecond. 52 bits of microseconds last until about the year 2112;
// 12 logical bits allow 4096 versions per microsecond before Now borrows the
// next microsecond.
package hlc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// LogicalBits is the width of the logical part of a version.
	LogicalBits = 12
	// MaxLogical is the largest logical part.
	MaxLogical = 1<<LogicalBits - 1
	// MaxPhysical is the largest physical part, in microseconds since the Unix
	// epoch (some time in 2112).
	MaxPhysical = 1<<(64-LogicalBits) - 1

	// DefaultMaxOffset is the clock's default maximum offset: Update rejects a
	// remote version whose physical part is further ahead of local physical
	// time than this.
	DefaultMaxOffset = 500 * time.Millisecond
)

// ErrMaxOffsetExceeded is returned by Update when a remote version is further
// ahead of local physical time than the clock's maximum offset. Use errors.Is.
var ErrMaxOffsetExceeded = errors.New("hlc: remote version exceeds maximum clock offset")

// Clock is a hybrid logical clock. It is safe for concurrent use; the zero
// value is not usable, call New.
type Clock struct {
	last      atomic.Uint64
	physical  func() time.Time
	maxOffset time.Duration
}

// Option configures a Clock.
type Option func(*Clock)

// WithPhysicalClock sets the source of physical time. Default: time.Now.
// Tests inject a manual clock here.
func WithPhysicalClock(now func() time.Time) Option {
	return func(c *Clock) { c.physical = now }
}

// WithMaxOffset sets the maximum offset Update tolerates between a remote
// version and local physical time. A value <= 0 disables the check.
// Default: DefaultMaxOffset (500ms).
func WithMaxOffset(d time.Duration) Option {
	return func(c *Clock) { c.maxOffset = d }
}

// New returns a clock whose first version is at or after the current physical
// time.
func New(opts ...Option) *Clock {
	c := &Clock{physical: time.Now, maxOffset: DefaultMaxOffset}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// MaxOffset returns the maximum offset enforced by Update; <= 0 means none.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// Now returns a new version, strictly greater than every version returned by
// Now or passed to a successful Update before it, on any goroutine.
//
// It is the physical time with logical part 0 when physical time has moved
// past the last version; otherwise the last version plus one, so that when the
// logical part is exhausted the physical part advances by one microsecond.
//
// Now panics if the clock reaches the largest version (year 2112).
func (c *Clock) Now() uint64 {
	pt := FromTime(c.physical(), 0)
	for {
		last := c.last.Load()
		next := pt
		if next <= last {
			if last == ^uint64(0) {
				panic("hlc: clock exhausted: version range ends in 2112")
			}
			next = last + 1
		}
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Update records a version observed elsewhere (another router, a replica, a
// version supplied by a caller) so that later calls to Now return larger
// versions.
//
// It returns an error wrapping ErrMaxOffsetExceeded, and leaves the clock
// unchanged, if the remote version's physical part is more than MaxOffset
// ahead of local physical time: a version that far in the future means a
// broken clock (here or there) or a bogus caller-supplied version, and
// accepting it would drag every later version of this clock into the future
// with it.
func (c *Clock) Update(remote uint64) error {
	if c.maxOffset > 0 {
		pt := c.physical()
		rt := Time(remote)
		if ahead := rt.Sub(pt); ahead > c.maxOffset {
			return fmt.Errorf("%w: remote version %s is %s ahead of local physical time %s (max offset %s)",
				ErrMaxOffsetExceeded, String(remote), ahead, pt.UTC().Format(timeLayout), c.maxOffset)
		}
	}
	for {
		last := c.last.Load()
		if remote <= last {
			return nil
		}
		if c.last.CompareAndSwap(last, remote) {
			return nil
		}
	}
}

// Last returns the largest version returned by Now or recorded by Update, or
// 0 if there is none. It does not advance the clock.
func (c *Clock) Last() uint64 { return c.last.Load() }

// FromTime returns the version with t's physical time, truncated to the
// microsecond, and the given logical part. Times before the Unix epoch map to
// physical part 0 and times after MaxPhysical to MaxPhysical: neither is a
// real write time.
//
// FromTime panics if logical > MaxLogical.
func FromTime(t time.Time, logical uint16) uint64 {
	return FromMicros(t.UnixMicro(), logical)
}

// FromMicros is FromTime for a time given in microseconds since the Unix
// epoch, as DynamoDB's WriteTimestampMicros is.
func FromMicros(us int64, logical uint16) uint64 {
	if logical > MaxLogical {
		panic(fmt.Sprintf("hlc: logical part %d exceeds %d", logical, MaxLogical))
	}
	switch {
	case us < 0:
		us = 0
	case us > MaxPhysical:
		us = MaxPhysical
	}
	return uint64(us)<<LogicalBits | uint64(logical)
}

// Micros returns the physical part of v in microseconds since the Unix epoch.
func Micros(v uint64) int64 { return int64(v >> LogicalBits) }

// Time returns the physical part of v as a time in UTC.
func Time(v uint64) time.Time { return time.UnixMicro(Micros(v)).UTC() }

// Logical returns the logical part of v.
func Logical(v uint64) uint16 { return uint16(v & MaxLogical) }

const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// String formats v as its physical time in RFC 3339 with microseconds, UTC,
// a comma and its logical part: "2024-05-01T12:00:00.000042Z,7".
func String(v uint64) string {
	return Time(v).Format(timeLayout) + "," + strconv.Itoa(int(Logical(v)))
}

// Parse parses a version written by String, or a version as a decimal
// integer.
func Parse(s string) (uint64, error) {
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		return v, nil
	}
	ts, ls, ok := strings.Cut(s, ",")
	if !ok {
		return 0, fmt.Errorf("hlc: parse version %q: want an integer or TIME,LOGICAL", s)
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return 0, fmt.Errorf("hlc: parse version %q: %w", s, err)
	}
	l, err := strconv.ParseUint(ls, 10, 16)
	if err != nil || l > MaxLogical {
		return 0, fmt.Errorf("hlc: parse version %q: logical part must be an integer in [0, %d]", s, MaxLogical)
	}
	us := t.UnixMicro()
	if us < 0 || us > MaxPhysical || t.Nanosecond()%1000 != 0 {
		return 0, fmt.Errorf("hlc: parse version %q: time must be whole microseconds between 1970 and %s",
			s, Time(^uint64(0)).Format(time.RFC3339))
	}
	return FromMicros(us, uint16(l)), nil
}
