package cdc

import (
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
)

// Precision is the unit a source timestamp was truncated to.
type Precision uint8

// Precisions of ApproximateCreationDateTime: DynamoDB Streams reports whole
// seconds, Kinesis Data Streams for DynamoDB milliseconds or, when the
// destination is configured for it, microseconds.
const (
	Microsecond Precision = iota + 1
	Millisecond
	Second
)

// Micros returns the length of the unit in microseconds.
func (p Precision) Micros() int64 {
	switch p {
	case Millisecond:
		return 1_000
	case Second:
		return 1_000_000
	}
	return 1
}

func (p Precision) String() string {
	switch p {
	case Microsecond:
		return "µs"
	case Millisecond:
		return "ms"
	case Second:
		return "s"
	}
	return "unknown precision"
}

// Timestamp is a record's ApproximateCreationDateTime and its precision.
type Timestamp struct {
	// Micros is the time as reported, in microseconds since the Unix
	// epoch: a multiple of Precision's unit.
	Micros int64
	// Precision is the unit the source truncated the write time to.
	Precision Precision
}

// Time returns the timestamp as a time.
func (t Timestamp) Time() time.Time { return time.UnixMicro(t.Micros).UTC() }

// End returns the last microsecond of the timestamp's unit: the write the
// record describes happened at or before it (sources truncate, they do
// not round). Versions start from End, not from Micros, so a write made
// after an export's time never gets a version at or below the export's,
// even when both fall in the same second.
func (t Timestamp) End() int64 {
	u := t.Precision.Micros()
	us := t.Micros
	floor := us / u * u
	if us < 0 && floor != us {
		floor -= u
	}
	return floor + u - 1
}

// SnapshotVersion is the version of every item of a full export taken at
// exportTime (hlc.FromTime(exportTime, 0), the same as the import job's
// mapping.FullExportVersion). It is here so that the rule in the package
// documentation can be read, and tested, in one place.
func SnapshotVersion(exportTime time.Time) uint64 { return hlc.FromTime(exportTime, 0) }

// StreamsVersion derives the version of a DynamoDB Streams record from the
// version prev derived for the record before it in the same shard (or, for
// the first record of a shard, the largest final version of its parents;
// 0 when there are none) and the record's timestamp. skew moves every
// version later by a fixed amount (Options.SkewAllowance).
//
// DynamoDB Streams delivers each item's records exactly once and in write
// order, so versions within a shard only ever grow: the result is the
// larger of End(ts)+skew with logical part 1 and prev+1.
func StreamsVersion(prev uint64, ts Timestamp, skew time.Duration) uint64 {
	base := hlc.FromMicros(ts.End()+skew.Microseconds(), 1)
	if prev >= base {
		if prev == ^uint64(0) {
			return prev
		}
		return prev + 1
	}
	return base
}

// KinesisVersion derives the version of a Kinesis Data Streams for
// DynamoDB record from the version prev derived for the record before it
// in the same shard (or its parents' final version, or 0) and the record's
// timestamp.
//
// Kinesis may deliver a record twice and out of order, so the version
// follows the timestamp, not the position in the shard: End(ts)+skew with
// logical part 1, or prev+1 when the record before it has the same unit
// (a run of records within one millisecond or microsecond is ordered by
// sequence number). A run longer than 4095 records shares the last logical
// value; the storage nodes' tie rules then decide between them.
func KinesisVersion(prev uint64, ts Timestamp, skew time.Duration) uint64 {
	end := ts.End() + skew.Microseconds()
	if prev != 0 && hlc.Micros(prev) == end {
		if hlc.Logical(prev) < hlc.MaxLogical {
			return prev + 1
		}
		return prev
	}
	return hlc.FromMicros(end, 1)
}

// versionFunc is StreamsVersion or KinesisVersion.
type versionFunc func(prev uint64, ts Timestamp, skew time.Duration) uint64
