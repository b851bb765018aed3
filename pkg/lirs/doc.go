// Package lirs is a concurrent, cost-bounded cache that replaces entries by
// LIRS, the Low Inter-reference Recency Set policy of
//
//	Song Jiang and Xiaodong Zhang. LIRS: An Efficient Low Inter-reference
//	Recency Set Replacement Policy to Improve Buffer Cache Performance.
//	In Proc. ACM SIGMETRICS 2002, pages 31–42.
//
// # Why LIRS
//
// LRU evicts the block referenced longest ago, which fails whenever blocks
// are reused at distances just above the cache size: a loop one block larger
// than the cache misses every time, and one sequential scan flushes the whole
// cache. LIRS ranks blocks by their inter-reference recency (IRR), the number
// of other distinct blocks referenced between a block's last two references,
// and keeps the blocks with the lowest IRR, on the assumption that a block
// reused at a short distance will be again. A block seen once has an infinite
// IRR, so a scan cannot displace blocks that have proven their reuse.
//
// # The algorithm
//
// Blocks are LIR (low IRR) or HIR (high IRR). The LIR blocks are always
// resident and take all of the capacity but a small HIR share (HIRFraction,
// 1% as in the paper, and at least two entries); the HIR share holds resident
// HIR blocks. HIR blocks whose data was evicted can still have metadata:
// those are non-resident HIR blocks.
//
// Two structures order the blocks:
//
//   - Stack S holds LIR blocks, and resident and non-resident HIR blocks,
//     by recency, most recent on top. Its bottom is always a LIR block:
//     "stack pruning" removes HIR blocks from the bottom until a LIR block is
//     there. A HIR block in S has been referenced more recently than the
//     least recent LIR block, so if it is referenced again its new IRR is
//     lower than that LIR block's recency.
//   - Queue Q holds the resident HIR blocks in reference order. Eviction
//     takes the front of Q.
//
// A reference to block b:
//
//   - b is LIR: move b to the top of S; if it was at the bottom, prune S.
//   - b is a resident HIR block: move b to the top of S. If b was in S, it
//     becomes LIR, leaves Q, and the LIR block at the bottom of S becomes a
//     resident HIR block at the end of Q (then S is pruned). If b was not in
//     S, it stays HIR and moves to the end of Q.
//   - b is not resident (a miss): evict the front of Q; if that block is
//     still in S it stays there as non-resident. Then b goes on top of S;
//     if b was in S (a non-resident HIR block) it becomes LIR and the bottom
//     LIR block is demoted as above, otherwise it is a resident HIR block at
//     the end of Q. Until the LIR set is full, new blocks are LIR.
//
// This package follows the authors' simulator (lirs.c) in two details: a
// reference to the block already on top of S changes nothing, and the HIR
// share is at least two entries. With every hit reordering S (the order
// used by the package's differential test) it reproduces the simulator hit
// for hit; with the default, concurrent reordering described below, its hit
// ratios on the paper's traces stay within 0.25 point of the simulator's.
//
// # Costs and bounds
//
// Every entry has a cost (bytes, or 1 to count entries) and each shard holds
// at most its share of Options.Capacity. The HIR share is HIRFraction of the
// capacity but at least two average entries; eviction takes entries from
// the front of Q until the new one fits, demoting the bottom LIR entry when
// Q runs dry.
//
// The paper does not bound S. Non-resident entries are kept as (hash,
// position) pairs outside S, about 40 bytes each with no key or value kept
// alive, and bounded by Options.NonResidentFactor times the resident entries
// (with a floor, Options.MinNonResident, that keeps small caches as
// accurate as the paper's unbounded stack): past the bound the oldest is
// forgotten, so memory stays proportional to capacity even under a stream
// of distinct keys.
//
// # Concurrency
//
// The key space is split by hash into Options.Shards independent LIRS
// instances, each with its own lock. Get takes no lock to look up a key:
// each shard's index is an open-addressing table whose slots are atomic
// (hash, pointer) pairs to immutable entries, as Set replaces an entry rather
// than updating it.
//
// What would serialize reads is the paper's "move to the top of S" on every
// hit. Two published techniques remove it from the read path:
//
//   - H2's LIRS cache (CacheLongKeyLIRS, in the H2 database) moves a hot
//     entry only after enough other entries have moved to the top since it
//     did. Here the shard counts moves in epochs of 1/16 of its LIR entries,
//     and a hit on a LIR entry that moved at most 7 epochs ago leaves it in
//     place. Such an entry has about half the LIR set's worth of moves
//     above it at most, far from the bottom, where demotion happens. On a skewed workload the
//     hot entries are then read with no write at all but a striped hit
//     counter, and Get loads an epoch counter that changes rarely rather
//     than a clock that changes on every move.
//   - BP-Wrapper (Ding, Jiang and Zhang, ICDE 2009) batches the remaining
//     moves: Get queues the entry in a striped buffer of its shard, marking
//     it so that it is queued once, and the goroutine that fills a stripe, or
//     the next one to take the lock for any reason, applies the queued moves
//     in order. A single goroutine therefore sees its references applied in
//     the order it made them; a full stripe with a busy lock drops the move,
//     as if the window had filtered it.
//
// A hit on a resident HIR entry can change the LIR set, so it takes the
// lock, as do Set and Delete. On the paper's traces the two techniques
// together change hit ratios by at most 0.25 point.
package lirs
