// Package engine is the storage node's local store: versioned items and
// tombstones in Pebble, with last-writer-wins (LWW) conflict resolution,
// expiry, ordered range reads, whole-partition streaming and an
// order-independent digest per partition. It has no gRPC or proto
// dependency; services/storage/server wraps it.
//
// # Key layout
//
// Every Pebble key starts with one byte naming its key space:
//
//	'd' | partition u32 BE | table id u64 BE | len(partition key) u16 BE | partition key | sort key   item
//	'g' | partition u32 BE                                                                  digest of a partition
//	'x' | partition u32 BE | base time u64 BE | item key                                    purge index
//	'm' | name                                                                              engine metadata (layout version, the server's identity stamp)
//	'y' | partition u32 BE                                                                  sync point of a partition (anti-entropy)
//	'h' | len(target) u8 | target node id | sequence u64 BE                                 hint: a record held for another node (hinted handoff)
//
// A partition, a table within it and a partition key are each one contiguous
// range of item keys: the fixed-width length in front of the partition key
// makes the encoding prefix-free, so no other partition key's items fall
// between two sort keys of one partition key. Sort keys order bytewise, which
// is what a Query (range, prefix, reverse) walks; partition keys order by
// length first, which only StreamPartition's order shows.
//
// # Value layout
//
//	version u64 BE | flags u8 | [expire at i64 BE] | [deleted at i64 BE] | value bytes
//
// Flag 0x01 marks a tombstone (which carries the local wall time it was
// written, "deleted at", and no value); flag 0x02 says an expiry time follows.
// Times are Unix nanoseconds.
//
// # Last writer wins
//
// Versions are opaque uint64s chosen by the caller (the router uses a hybrid
// logical clock). A record replaces the stored one only if it wins:
//
//  1. the higher version wins;
//  2. at equal versions a tombstone wins over a value;
//  3. at equal versions between two values, the bytewise greater value wins;
//  4. then the later expiry wins, with "never" latest.
//
// Records equal under all four rules are the same mutation and the second
// copy is reported as OutcomeSuperseded, as is any record that loses. The
// order is total over everything a record carries, so applying one set of
// mutations in any order, any number of times, leaves the same state on every
// replica. A tombstone's local "deleted at" time takes no part in the rule or
// in the digest: it differs between replicas.
//
// Apply is read-compare-write. A Pebble merge operator was measured against
// it (BenchmarkLWW): blind merges wrote up to ~20% faster when every write
// wins but 2.5x slower when most lose (read-compare-write then writes
// nothing), reads of merged keys were ~9x slower until compaction folds the
// operands, and a merge can neither report whether a record won nor keep the
// digest exact, because the record it replaces is not known when it is
// written. So read-compare-write it is.
//
// # Group commit
//
// One committer goroutine owns the write path. Apply validates and encodes in
// the caller's goroutine and, when fewer than GOMAXPROCS-1 other callers are
// doing so, reads the current state of its keys there too, so concurrent
// Applies read Pebble in parallel (more would keep the committer and
// Pebble's WAL flusher waiting for a CPU); then it queues the batch. The
// committer takes every queued batch (up to a size bound), runs
// read-compare-write for all of them against the writes earlier in the same
// group and the caller's reads (or Pebble, for keys the caller did not
// read), and commits one Pebble batch. A caller's read of a key is used only
// if the key's write generation (a counter per hash slot of keys, moved by
// the committer once a write is visible, and for every slot by a partition
// drop) has not moved since it was loaded before the read; otherwise the
// committer reads the key again. The committer applies each group without
// waiting for its WAL sync (Pebble's ApplyNoSyncWait) and builds the next
// one meanwhile; a syncer goroutine acknowledges each group, in order, once
// its sync is done, and none after a failed commit or sync. The queue to the
// syncer is as deep as the request queue, so the committer never stalls and
// every Apply reaches the WAL in time for the next sync, as a raw Pebble
// commit does. Each Apply call still succeeds or fails as a whole. Because
// every write, purge and partition drop passes through the committer,
// read-compare-write needs no per-key locks, the digests need no atomic
// merges, and the cache is invalidated in commit order.
// BenchmarkGroupCommit compares this with one Pebble batch per Apply, with
// committing and syncing each group before building the next, with striped
// per-key locks over Pebble's own commit pipeline, and with raw Pebble
// synced Sets (no read-compare-write, digest or purge index), at 1 to 64
// writers, and reports CPU time and (on a simulated disk) WAL syncs per op.
//
// With Options.NoSync false (the default) Apply returns after the WAL sync:
// an acknowledged write survives a crash. As in Pebble itself, a committed
// write becomes visible to readers (Get, and the reads of later Applies)
// shortly before its sync completes. Such a write is not acknowledged yet,
// and a crash can lose it, like any write whose Apply has not returned; no
// guarantee rests on reading only synced data (the router's W counts
// acknowledgements, and an in-flight write can be seen by one quorum read
// and not the next anyway). A later group that read it is acknowledged only
// after a later WAL position is synced, which covers it. If a WAL sync
// fails, the Apply waiting for it and every later one fail with
// ErrWriteFailed; Pebble panics on a WAL write after a failed sync, so a
// commit racing the failure crashes the process instead, which acknowledges
// nothing either.
//
// # Tombstones and expiry
//
// Deletes are versioned tombstones. They read as found with Tombstone set
// (replicas compare versions through them) but Scan skips them. A tombstone
// is purged TombstoneGrace (default 24h) after the local time it was
// written, not after its version: replicas must have exchanged it by then,
// or a delayed older write could come back.
//
// An item whose ExpireAt has passed reads as absent from Get and Scan. It
// keeps its place in LWW (an older write cannot replace it) and is purged
// TombstoneGrace after ExpireAt, for the same reason. StreamPartition and
// the digest include expired items and tombstones until they are purged. A
// background purger walks the purge index every PurgeInterval; Purge runs a
// pass on demand.
//
// # Digest
//
// Each partition has a PartitionDigest {Count, Sum}: the number of stored
// records (items, tombstones, expired items) and the wrapping sum of
// xxhash64(len(key) | key | version | flags | expiry | value) over them. Sum is
// order-independent, so two replicas holding the same records have equal
// digests whatever order they applied them in. The committer adjusts the
// digest in the same Pebble batch as each write, purge or drop, so it is
// exact after a crash and never recomputed by scanning.
//
// # Limits
//
//   - partition key: 1 to 2048 bytes (MaxPartitionKeyLen); empty is rejected
//   - sort key: 0 to 1024 bytes (MaxSortKeyLen)
//   - value: up to 64 MiB (MaxValueLen)
//   - one Apply: up to Options.MaxBatchBytes of keys and values (default 256 MiB)
//   - one Ingest: up to Options.MaxIngestBytes of keys and values (default 256 MiB)
//
// Validation errors wrap ErrInvalidArgument (ErrTooLarge for an oversized
// batch) and name the record's index in the batch; nothing in a batch is
// applied if any record is invalid. Ingest instead reports invalid records
// by index and applies the others.
//
// # Bulk import
//
// Ingest applies a large run of records with Apply's rules (the same LWW
// comparison, purge-index and digest changes, through the same emitReplace)
// but writes the winners, with the new digests, as SSTs (one per key space)
// that Pebble ingests atomically, instead of through the WAL and memtable;
// a run with less than 4 MiB of changes is committed as one batch. A large
// run is decided (stored records read, LWW, SSTs written) outside the
// committer, so writes are not held up meanwhile, and decided again if a
// write to one of its keys, or a partition drop, becomes visible in the
// meantime (Engine.deciding); after two such attempts, and for a small
// run, the committer decides it itself. The committer lands each run alone,
// after one WAL sync, so the state it was decided on cannot change before
// the SSTs land and no earlier write their digests count can be lost while
// they survive.
//
// # Cache
//
// Point reads go through Options.Cache when it is set. The committer
// invalidates each written key after the write is visible and before Apply
// returns; a reader fills the cache only if the key's write generation did
// not move while it read Pebble, so a value older than an acknowledged write
// is never served. DropPartition invalidates the whole cache.
package engine
