package cdc_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
)

func TestTimestampEnd(t *testing.T) {
	for _, tc := range []struct {
		ts   cdc.Timestamp
		want int64
	}{
		{cdc.Timestamp{Micros: 1568013979_000000, Precision: cdc.Second}, 1568013979_999999},
		{cdc.Timestamp{Micros: 1614669851_662000, Precision: cdc.Millisecond}, 1614669851_662999},
		{cdc.Timestamp{Micros: 1721011165_891550, Precision: cdc.Microsecond}, 1721011165_891550},
		// A value finer than its claimed unit is taken at its unit.
		{cdc.Timestamp{Micros: 1_500_001, Precision: cdc.Second}, 1_999_999},
	} {
		if got := tc.ts.End(); got != tc.want {
			t.Errorf("%+v.End() = %d, want %d", tc.ts, got, tc.want)
		}
	}
}

func TestVersionRules(t *testing.T) {
	sec := func(s int64) cdc.Timestamp { return cdc.Timestamp{Micros: s * 1e6, Precision: cdc.Second} }
	ms := func(m int64) cdc.Timestamp { return cdc.Timestamp{Micros: m * 1e3, Precision: cdc.Millisecond} }
	v := func(us int64, l uint16) uint64 { return hlc.FromMicros(us, l) }

	// Streams: the end of the second, then one logical step per record.
	a := cdc.StreamsVersion(0, sec(100), 0)
	b := cdc.StreamsVersion(a, sec(100), 0)
	c := cdc.StreamsVersion(b, sec(101), 0)
	if a != v(100_999_999, 1) || b != a+1 || c != v(101_999_999, 1) {
		t.Errorf("streams: %s %s %s", hlc.String(a), hlc.String(b), hlc.String(c))
	}
	// A timestamp that goes backwards in a shard still gets a later version.
	if d := cdc.StreamsVersion(c, sec(50), 0); d != c+1 {
		t.Errorf("streams, time going back: %s after %s", hlc.String(d), hlc.String(c))
	}
	// More than 4095 records in a second carry into the next microsecond.
	x := v(100_999_999, hlc.MaxLogical)
	if y := cdc.StreamsVersion(x, sec(100), 0); y != v(101_000_000, 0) {
		t.Errorf("streams carry: %s", hlc.String(y))
	}
	// The snapshot of an export in the same second loses to the record.
	if snap := cdc.SnapshotVersion(time.UnixMicro(100_999_999)); snap >= a {
		t.Errorf("snapshot %s not before %s", hlc.String(snap), hlc.String(a))
	}

	// Kinesis: the timestamp, ranked within runs of one unit.
	k1 := cdc.KinesisVersion(0, ms(5), 0)
	k2 := cdc.KinesisVersion(k1, ms(5), 0)
	k3 := cdc.KinesisVersion(k2, ms(7), 0)
	k4 := cdc.KinesisVersion(k3, ms(5), 0) // late, out of order: ordered by its time
	if k1 != v(5999, 1) || k2 != v(5999, 2) || k3 != v(7999, 1) || k4 != k1 {
		t.Errorf("kinesis: %s %s %s %s", hlc.String(k1), hlc.String(k2), hlc.String(k3), hlc.String(k4))
	}
	if k := cdc.KinesisVersion(v(5999, hlc.MaxLogical), ms(5), 0); k != v(5999, hlc.MaxLogical) {
		t.Errorf("kinesis run overflow: %s", hlc.String(k))
	}
	// Skew moves versions later.
	if k := cdc.KinesisVersion(0, ms(5), 3*time.Millisecond); k != v(8999, 1) {
		t.Errorf("kinesis with skew: %s", hlc.String(k))
	}
}

// The convergence property: a random source history (puts, updates,
// deletes over items spread across splitting shards) yields an export at
// T0, whose items all get SnapshotVersion(T0), and stream records whose
// versions the consumer derives shard by shard. Applied to a
// last-writer-wins map in a shuffled order, with duplicates, the result
// is the source's final state — for DynamoDB Streams (second timestamps,
// in order), Kinesis with millisecond and with microsecond timestamps
// (records duplicated and reordered in the shard), streams read from
// before the export, and a stream clock behind the export's clock by
// less than SkewAllowance.

// op is one source write.
type op struct {
	item  string
	del   bool
	value int
	us    int64 // true write time, microseconds
}

// rec is a stream record: a write, its shard and its reported timestamp.
type rec struct {
	op    op
	shard int
	ts    cdc.Timestamp
}

type convergenceMode struct {
	name      string
	precision cdc.Precision
	streams   bool // StreamsVersion; else KinesisVersion with duplicates and reordering
	// sameUnit lets one item be written twice in one timestamp unit
	// (DynamoDB Streams orders them by sequence number; Kinesis, whose
	// records may be duplicated or reordered, cannot, which is the rule's
	// documented limit, so the Kinesis modes keep an item's writes a unit
	// apart).
	sameUnit bool
	skew     time.Duration // stream clock behind the export's clock
}

func TestConvergenceProperty(t *testing.T) {
	modes := []convergenceMode{
		{name: "streams seconds", precision: cdc.Second, streams: true, sameUnit: true},
		{name: "streams seconds skewed", precision: cdc.Second, streams: true, sameUnit: true, skew: 1500 * time.Millisecond},
		{name: "kinesis milliseconds", precision: cdc.Millisecond},
		{name: "kinesis microseconds", precision: cdc.Microsecond},
		{name: "kinesis milliseconds skewed", precision: cdc.Millisecond, skew: 40 * time.Millisecond},
	}
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for seed := range seeds {
				if msg := convergenceRun(m, uint64(seed)); msg != "" {
					t.Fatalf("seed %d: %s", seed, msg)
				}
			}
		})
	}
}

// TestConvergenceSkewLimit shows the rule's limit: a stream clock behind
// the export's by more than the allowance loses a write made just after
// the export.
func TestConvergenceSkewLimit(t *testing.T) {
	t0 := int64(1_000_000_000_500)
	snap := cdc.SnapshotVersion(time.UnixMicro(t0))
	// Written 1ms after the export, reported 3ms early by a skewed clock.
	ts := cdc.Timestamp{Micros: (t0 + 1000 - 3000) / 1000 * 1000, Precision: cdc.Millisecond}
	if v := cdc.KinesisVersion(0, ts, 0); v > snap {
		t.Errorf("without allowance the late write %s should lose to the snapshot %s", hlc.String(v), hlc.String(snap))
	}
	if v := cdc.KinesisVersion(0, ts, 5*time.Millisecond); v <= snap {
		t.Errorf("with a 5ms allowance the late write %s should win over the snapshot %s", hlc.String(v), hlc.String(snap))
	}
}

type cell struct {
	version uint64
	del     bool
	value   int
}

func (c cell) winsOver(o cell) bool {
	if c.version != o.version {
		return c.version > o.version
	}
	if c.del != o.del {
		return c.del
	}
	return c.value > o.value
}

// convergenceRun runs one random history; it returns "" or what went
// wrong.
func convergenceRun(m convergenceMode, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, uint64(m.precision)))
	unit := m.precision.Micros()

	// The history: writes at increasing true times, with bursts in one
	// unit; items live in shards that split.
	nItems := 3 + rng.IntN(20)
	nOps := 20 + rng.IntN(300)
	type shard struct{ parents []int }
	shards := []shard{{}}
	home := make([]int, nItems) // item -> shard
	open := []int{0}
	var ops []op
	var recs []rec
	lastWrite := make([]int64, nItems)
	now := int64(1_700_000_000_000_000) + rng.Int64N(1_000_000)
	for range nOps {
		switch rng.IntN(4) {
		case 0:
			now += rng.Int64N(3 * unit)
		case 1:
			now += rng.Int64N(50)
		default:
			now += 1 + rng.Int64N(unit/4+1)
		}
		it := rng.IntN(nItems)
		if !m.sameUnit && now/unit == lastWrite[it]/unit && lastWrite[it] != 0 {
			now = (now/unit + 1) * unit
		}
		if now <= lastWrite[it] {
			now = lastWrite[it] + 1
		}
		lastWrite[it] = now
		o := op{item: fmt.Sprint("k", it), del: rng.IntN(4) == 0, value: rng.IntN(1_000_000), us: now}
		ops = append(ops, o)
		// The stream's clock trails the export's by skew.
		reported := now - m.skew.Microseconds()
		recs = append(recs, rec{op: o, shard: home[it], ts: cdc.Timestamp{Micros: reported / unit * unit, Precision: m.precision}})
		if rng.IntN(40) == 0 && len(open) < 8 {
			// Split an open shard in two; its items move to the children.
			i := rng.IntN(len(open))
			p := open[i]
			a, b := len(shards), len(shards)+1
			shards = append(shards, shard{parents: []int{p}}, shard{parents: []int{p}})
			open = append(append(open[:i:i], open[i+1:]...), a, b)
			for j := range home {
				if home[j] == p {
					home[j] = []int{a, b}[rng.IntN(2)]
				}
			}
		}
	}

	// The export at T0 holds every write at or before T0.
	first, last := ops[0].us, ops[len(ops)-1].us
	t0 := first + rng.Int64N(last-first+1)
	snapshot := map[string]cell{}
	final := map[string]cell{}
	for _, o := range ops {
		c := cell{del: o.del, value: o.value}
		if o.us <= t0 {
			snapshot[o.item] = c
		}
		final[o.item] = c
	}
	// The stream is read from a point at or before T0 (TRIM_HORIZON when
	// it has been enabled longer than the export is old).
	horizon := first + rng.Int64N(t0-first+1)

	// Derive versions shard by shard in lineage order, as the consumer
	// does: a shard starts from its parents' final clocks.
	perShard := make([][]rec, len(shards))
	for _, r := range recs {
		if r.op.us >= horizon {
			perShard[r.shard] = append(perShard[r.shard], r)
		}
	}
	skewAllowance := m.skew
	if m.skew > 0 {
		skewAllowance = m.skew + time.Duration(unit)*time.Microsecond
	}
	clocks := make([]uint64, len(shards))
	type versioned struct {
		cell
		item string
	}
	var changes []versioned
	for s := range shards { // children always have larger indexes
		var clock uint64
		for _, p := range shards[s].parents {
			clock = max(clock, clocks[p])
		}
		delivered := perShard[s]
		if !m.streams {
			// Kinesis may deliver twice and out of order.
			delivered = append([]rec(nil), delivered...)
			for i := range delivered {
				if rng.IntN(8) == 0 {
					delivered = append(delivered, delivered[i])
				}
				if i > 0 && rng.IntN(6) == 0 {
					delivered[i], delivered[i-1] = delivered[i-1], delivered[i]
				}
			}
		}
		for _, r := range delivered {
			if m.streams {
				clock = cdc.StreamsVersion(clock, r.ts, skewAllowance)
			} else {
				clock = cdc.KinesisVersion(clock, r.ts, skewAllowance)
			}
			changes = append(changes, versioned{cell{version: clock, del: r.op.del, value: r.op.value}, r.op.item})
		}
		clocks[s] = clock
	}

	// Apply the snapshot and the changes in a shuffled order, with
	// duplicates.
	snapVersion := cdc.SnapshotVersion(time.UnixMicro(t0))
	var all []versioned
	for item, c := range snapshot {
		if !c.del {
			all = append(all, versioned{cell{version: snapVersion, value: c.value}, item})
		}
	}
	all = append(all, changes...)
	for i := range len(all) / 3 {
		all = append(all, all[rng.IntN(len(all))])
		_ = i
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	state := map[string]cell{}
	for _, c := range all {
		if old, ok := state[c.item]; !ok || c.winsOver(old) {
			state[c.item] = c.cell
		}
	}
	for item, want := range final {
		got, ok := state[item]
		switch {
		case want.del && ok && !got.del:
			return fmt.Sprintf("item %s: source deleted it, target has %d (t0=%d horizon=%d)", item, got.value, t0, horizon)
		case !want.del && (!ok || got.del || got.value != want.value):
			return fmt.Sprintf("item %s: source has %d, target has %+v (present %v; t0=%d horizon=%d)", item, want.value, got, ok, t0, horizon)
		}
	}
	return ""
}
