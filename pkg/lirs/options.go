package lirs

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"strings"
)

// ErrInvalidOptions is wrapped by the error that Validate and New return for
// unusable options. Use errors.Is to test for it.
var ErrInvalidOptions = errors.New("lirs: invalid options")

const (
	// DefaultHIRFraction is the share of each shard's capacity kept for
	// resident HIR entries, the value used in the paper's experiments.
	DefaultHIRFraction = 0.01
	// DefaultNonResidentFactor bounds non-resident HIR entries to twice the
	// number of resident entries in each shard.
	DefaultNonResidentFactor = 2.0
	// DefaultMinNonResident is the default floor of that bound, for the
	// whole cache.
	DefaultMinNonResident = 4096
	// minShardCapacity is the smallest capacity (in cost units) that the
	// default shard count gives a shard: LIRS needs room for a LIR set and
	// at least two HIR entries before splitting it pays.
	minShardCapacity = 4096
	// maxDefaultShards caps the default shard count.
	maxDefaultShards = 64
	// maxShards caps the shard count a caller can ask for.
	maxShards = 1 << 16
	// minHIREntries is the smallest resident HIR set, in entries, as in the
	// reference simulator (LOWEST_HG_NUM).
	minHIREntries = 2
	// epochsPerLIR is how many move epochs it takes to push as many entries
	// on S as it has LIR entries.
	epochsPerLIR = 16
	// defaultWindow is how many epochs a LIR hit may leave its entry in
	// place; see Get. 7/16 of the LIR set keeps every trace of the paper
	// within 0.25 point of the reference simulator; 8/16 and more cost up
	// to 0.5 point.
	defaultWindow = 7
)

// Options configures a Cache. The zero value of every field but Capacity
// selects its documented default; call EnsureDefaults then Validate, or let
// New do both.
type Options[K comparable, V any] struct {
	// Capacity is the total cost of the resident entries the cache may hold.
	// Costs are whatever unit the caller passes to Set: bytes for a byte
	// bounded cache, 1 per entry for a count bounded one. Each shard holds
	// Capacity/Shards. Required: there is no default.
	Capacity int64

	// Shards is the number of independent LIRS instances the key space is
	// split into by hash. It must be a power of two. Shards: 1 runs the
	// paper's algorithm on a single stack, which is what the trace tests
	// replay; more shards let writers on different keys proceed in parallel
	// at the cost of each shard seeing only its part of the trace.
	//
	// Default: 4×GOMAXPROCS rounded up to a power of two, at most 64, and
	// halved until every shard holds at least 4096 cost units (so a small,
	// count bounded cache gets a single shard).
	Shards int

	// HIRFraction is the share of each shard's capacity reserved for
	// resident HIR entries (the paper's L_hirs). The reserve is never smaller
	// than two average sized entries. It must be in (0, 1).
	//
	// Default: 0.01 (1%, as in the paper).
	HIRFraction float64

	// NonResidentFactor and MinNonResident bound the non-resident HIR
	// entries (the history of evicted blocks still in the stack S, about 40
	// bytes each, keys not retained) of each shard to the larger of
	// NonResidentFactor × its resident entries and its share of
	// MinNonResident. Past the bound the oldest is forgotten, so memory stays
	// proportional to capacity even under a stream of distinct keys.
	//
	// The paper's stack is unbounded, and a cache that is small next to its
	// working set uses the most history: on the paper's traces at 100
	// blocks, S holds up to 19 times the cache size in non-resident blocks,
	// and a 2× bound alone costs up to 12 points of hit ratio (ps). The floor
	// keeps that history for small caches, where it costs little in
	// absolute terms.
	//
	// NonResidentFactor must be positive; math.Inf(1) removes the bound.
	// Default: 2.
	NonResidentFactor float64
	// MinNonResident: see NonResidentFactor. A negative value means no
	// floor. Default: 4096 (about 160 KiB), shared by the shards.
	MinNonResident int

	// Hash hashes keys. It must be deterministic for the life of the cache
	// and should spread keys over all 64 bits: the top bits choose the shard
	// and the low bits the slot.
	//
	// Default: hash/maphash with a random per-cache seed: maphash.String for
	// string keys, maphash.Comparable for any other comparable key.
	Hash func(K) uint64

	// OnEvict, if set, is called for each resident entry that the cache
	// evicts to make room, after the shard's lock is released and on the
	// goroutine that called Set. It is not called for Delete, Clear, or for
	// a value replaced by Set.
	//
	// Default: nil.
	OnEvict func(key K, value V, cost int64)

	// reorder overrides how LIR hits reorder S, for tests and measurements:
	// negative, every hit moves its entry under the lock (the paper's exact
	// order); positive, the window in epochs.
	reorder int
}

// EnsureDefaults fills zero fields with their defaults and returns o.
func (o *Options[K, V]) EnsureDefaults() *Options[K, V] {
	if o.Shards == 0 {
		o.Shards = defaultShards(o.Capacity, runtime.GOMAXPROCS(0))
	}
	if o.HIRFraction == 0 {
		o.HIRFraction = DefaultHIRFraction
	}
	if o.NonResidentFactor == 0 {
		o.NonResidentFactor = DefaultNonResidentFactor
	}
	if o.MinNonResident == 0 {
		o.MinNonResident = DefaultMinNonResident
	}
	return o
}

// defaultShards implements the Shards default.
func defaultShards(capacity int64, procs int) int {
	n := 1
	if procs > 0 {
		n = 1 << bits.Len(uint(4*procs-1))
	}
	n = min(n, maxDefaultShards)
	for n > 1 && capacity/int64(n) < minShardCapacity {
		n /= 2
	}
	return n
}

// Validate reports every problem with o in one error wrapping
// ErrInvalidOptions, or nil. Call EnsureDefaults first: Validate rejects the
// zero values that EnsureDefaults replaces.
func (o *Options[K, V]) Validate() error {
	var problems []string
	if o.Capacity <= 0 {
		problems = append(problems, fmt.Sprintf("Capacity must be positive, got %d", o.Capacity))
	}
	switch {
	case o.Shards <= 0 || o.Shards&(o.Shards-1) != 0:
		problems = append(problems, fmt.Sprintf("Shards must be a power of two, got %d", o.Shards))
	case o.Shards > maxShards:
		problems = append(problems, fmt.Sprintf("Shards must be at most %d, got %d", maxShards, o.Shards))
	case o.Capacity > 0 && o.Capacity < int64(o.Shards):
		problems = append(problems, fmt.Sprintf("Capacity (%d) must be at least Shards (%d)", o.Capacity, o.Shards))
	}
	if !(o.HIRFraction > 0 && o.HIRFraction < 1) {
		problems = append(problems, fmt.Sprintf("HIRFraction must be in (0, 1), got %v", o.HIRFraction))
	}
	if !(o.NonResidentFactor > 0) || math.IsNaN(o.NonResidentFactor) {
		problems = append(problems, fmt.Sprintf("NonResidentFactor must be positive, got %v", o.NonResidentFactor))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
}
