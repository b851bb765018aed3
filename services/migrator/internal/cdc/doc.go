// Package cdc is the migrator's change data capture: consumers of DynamoDB
// Streams (StreamsConsumer) and of Kinesis Data Streams for DynamoDB
// (KinesisConsumer) that turn stream records into Changes — puts and
// deletes with the versions that make them converge with a snapshot import
// — and apply them through a caller's function, checkpointing each shard
// in a checkpoint.Store (etcd for jobs).
//
// # Reading
//
// A consumer lists the stream's shards (again every DiscoveryInterval, and
// whenever a shard ends) and reads each shard whose parents — ParentShardId
// and, after a Kinesis merge, AdjacentParentShardId — are read to their end
// (or are gone from the stream), up to MaxShards at once. Within a shard it
// pages GetRecords in order, calls apply with each page's changes, and
// saves the shard's checkpoint (last sequence number, version clock) only
// after apply returned nil: delivery is at least once, and a replay is
// harmless because a replayed record gets the version it had. A closed
// shard read to its end (NextShardIterator null) is checkpointed done.
//
// Empty pages are normal (DynamoDB Streams returns them while records wait
// further on): the consumer waits PollInterval and goes on with the new
// iterator. An expired iterator is replaced, AFTER_SEQUENCE_NUMBER of the
// last applied record. Every other failed call — throttling, a network
// or server error, and also a stream not found or access denied, which
// may be fixed while the job waits — is retried with backoff until the
// context ends; this is the only retry loop of stream calls (the SDK
// clients jobs build make one attempt per call) and Options.Observe sees
// each failure and each success, so a caller can report the source's
// health and decide when to give up. Records the stream no
// longer holds — TrimmedDataAccessException, or a shard with unapplied
// records that left the stream — stop Run with ErrTrimmed: changes were
// missed and the target must be re-seeded; a job must never skip them.
//
// Start positions (StartPosition) apply to a job's first run; later runs
// resume from the checkpoints. LATEST saves, before reading, a checkpoint
// for every shard of the stream at that moment, so a restart before the
// first record resumes AT_TIMESTAMP of the first start rather than at a
// new LATEST.
//
// # Versions
//
// The storage nodes keep, per item, the write with the highest version (at
// equal versions a delete beats a put, then the bytewise greater value
// wins), so import and CDC may run in any order and repeat. The migrator
// must give every write a version such that:
//
//  1. the record of a write made after the export's time T0 has a higher
//     version than the snapshot's copy of the item, SnapshotVersion(T0) =
//     hlc.FromTime(T0, 0);
//  2. the records of one item are ordered as the source applied the
//     writes;
//  3. a record read again (after a crash, an expired iterator, a restart)
//     gets the version it had the first time.
//
// The rule. A record's ApproximateCreationDateTime is a truncated time:
// whole seconds from DynamoDB Streams, milliseconds or (when configured)
// microseconds from Kinesis, told apart by the
// ApproximateCreationDateTimePrecision field or, without it, by magnitude.
// Its physical part is the last microsecond of that unit, End (12:00:07 →
// 12:00:07.999999), plus Options.SkewAllowance: the write happened at or
// before End, so a write after T0 gets a physical part at or after T0, and
// its logical part is at least 1, above the snapshot's 0 — rule 1 holds
// even when the export and the write fall in the same second.
//
// The logical part orders records within one unit, from the record before
// it in the same shard (prev; for a shard's first record the largest final
// version of its parents, kept in their checkpoints; 0 without parents):
//
//   - DynamoDB Streams (StreamsVersion) delivers each item's records
//     exactly once, in write order, and an item lives in one shard at a
//     time (then in one of its children). The version is max(End with
//     logical 1, prev+1): a per-shard clock that never goes back, so rule 2
//     holds for any number of writes per second (past 4095 in one
//     microsecond the clock borrows the next microsecond).
//   - Kinesis (KinesisVersion) may deliver a record twice and out of order,
//     so the version follows the timestamp, not the position: End with
//     logical 1, or prev+1 when the record before it in the shard has the
//     same unit — a run of records in one millisecond (or microsecond) is
//     ranked by sequence number, up to 4095. A duplicate gets its
//     timestamp's version again, or a rank within its unit.
//
// Both depend only on the shard's records from the checkpoint on and the
// clock saved with it, so replays derive the same versions (rule 3).
//
// Why it converges. Take one item and the stream read from a point before
// T0 (TRIM_HORIZON within the 24-hour retention, or a start before the
// export): the records seen are every write to the item from that point
// on, and by rule 2 the last of them, r, has the highest version among
// them. If r was written after T0 it beats the snapshot (rule 1): the
// item ends as r left it, as in the source. If r was written at or before
// T0, the snapshot holds r's result already, so whichever of the two wins,
// the item ends the same. Every earlier record loses to r, replays repeat
// versions, and an item with no record keeps the snapshot. Deletes are
// versioned tombstones, so a delete is ordered like a put. The property
// test (TestConvergenceProperty) checks this on random histories applied
// in shuffled, duplicated orders.
//
// Limits. The rule compares two clocks: the export's T0 and the stream's
// ApproximateCreationDateTime. If the stream's clock trails the export's
// by more than the unit's slack (truncation gives up to a whole unit in
// the right direction), a write made just after T0 can be stamped at or
// before it and lose to the snapshot: set SkewAllowance to the largest
// such lag. Its cost is small: writes up to SkewAllowance before T0 also
// beat the snapshot, which is harmless while the stream is read from
// before T0, but after cutover a CDC record could beat an application
// write made within SkewAllowance of it, so stop CDC before moving writes
// (the playbook's order). The stream must be read from before T0: a LATEST
// start after the export loses the writes in between, which the migrator
// cannot see. For Kinesis, two writes to one item within one unit are
// ordered only when they arrive consecutively and in order; combined with
// a duplicate or a reordering of one of them, the storage nodes' tie rule
// picks, possibly the older write — microsecond precision makes this need
// two writes in one microsecond. A run of more than 4095 Kinesis records
// in one unit shares the last logical value. A DynamoDB Streams clock
// pushed ahead by a timestamp from the future stays ahead (by one per
// record) until real time catches up; versions still order correctly.
//
// # Lag
//
// Stats.Lag is the age of the last applied record of the shard furthest
// behind; a shard whose last read found nothing more is caught up and
// counts as 0 (DynamoDB Streams can return empty pages while records wait,
// so this errs toward 0 there). A shard whose reads fail after it was
// caught up lags by the time since then. Until a GetRecords has succeeded
// the lag is unknown (Stats.LagKnown), not 0. Jobs report it as
// Progress.lag (unset while unknown) and the metric
// veltrix_migrator_stream_lag_seconds{job_id} (absent while unknown).
package cdc
