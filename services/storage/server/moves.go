package server

// Moving replicas, the storage side (see pkg/placement, "Moving replicas").
//
// Backfill: for every active move whose Add is this node and whose stage is
// streaming (or read_new without a finished backfill, which should not
// happen), the node streams the partition from its sources and applies the
// records with LWW, as anti-entropy's pulls do (applyStream): tombstones and
// expired items included, so deletes are copied too. The sources are the
// move's Remove when it is registered and not Add itself (the data a
// replica slot holds moves with it), otherwise every registered replica
// other than Add and Remove, merged; after repeated failures of a single
// source the backfill falls back to the union. Writes reach Add from the
// pending stage on, so streamed records and new writes meet under LWW.
// Progress (a resume position per source) is checkpointed to etcd about
// once a second (topology.MoveProgress); a node restarted on the same data
// directory resumes, one on a new directory starts over. At most
// --max-backfills run at once, and --stream-rate bounds the bytes they
// apply per second, together. A backfill stops when its move is abandoned,
// promoted or changed, and when the node closes.
//
// Cleanup: for every cleanup entry whose Remove is this node, once every
// registered router and node has reported the entry's epoch
// (Snapshot.Reached) and the node does not hold the partition, it drops the
// partition's data (engine.DropPartition) and reports Dropped. Dropping
// again is harmless.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"golang.org/x/time/rate"
)

const (
	// checkpointInterval is how often a backfill writes its progress.
	checkpointInterval = time.Second
	// streamIdleTimeout bounds the wait for the next chunk of a stream: a
	// source that stops sending costs one timeout, then a retry.
	streamIdleTimeout = 60 * time.Second
	// singleSourceFailures is how many failed attempts in a row on the
	// move's Remove make the backfill stream from the other replicas.
	singleSourceFailures = 3
	// backfillBackoffMin and backfillBackoffMax bound the wait between
	// attempts.
	backfillBackoffMin = 500 * time.Millisecond
	backfillBackoffMax = 30 * time.Second
	// etcdCallTimeout bounds one progress write.
	etcdCallTimeout = 3 * time.Second
	// moverTick is how often the mover looks at the moves without a
	// topology change (retries of cleanups that waited).
	moverTick = time.Second
)

// moveID names a move for the mover: a change of Add or Remove is another
// move; a change of stage is not.
type moveID struct {
	p           uint32
	add, remove string
}

func idOf(m placement.Move) moveID { return moveID{m.Partition, m.Add, m.Remove} }

// backfillRun is a running backfill.
type backfillRun struct {
	id       moveID
	cancel   context.CancelFunc
	stopping bool
}

type mover struct {
	s     *Server
	log   *slog.Logger
	store *topology.Store
	limit *rate.Limiter // shared by every backfill; nil: unlimited
	sem   chan struct{} // --max-backfills

	mu      sync.Mutex
	running map[uint32]*backfillRun
	// done holds the moves this process finished backfilling, so a
	// backfill is not started again before the watcher shows Done.
	done map[moveID]bool
	// dropped holds, per partition, the epoch of the cleanup this process
	// carried out.
	dropped map[uint32]uint64

	wg sync.WaitGroup
}

func newMover(s *Server, store *topology.Store) *mover {
	m := &mover{
		s: s, log: s.logger.With("component", "moves"), store: store,
		sem:     make(chan struct{}, s.cfg.MaxBackfills),
		running: map[uint32]*backfillRun{}, done: map[moveID]bool{}, dropped: map[uint32]uint64{},
	}
	if mbps := s.cfg.StreamRateMBps; mbps > 0 {
		bps := mbps * (1 << 20)
		// A burst of a tenth of a second keeps a slow limit smooth; pieces
		// larger than it are waited for in several steps (waitRate).
		m.limit = rate.NewLimiter(rate.Limit(bps), max(int(bps/10), 64<<10))
	}
	return m
}

// run reconciles the node's backfills and cleanups with the placement on
// every topology change (and every moverTick) until ctx ends, then stops
// every backfill and waits for them.
func (m *mover) run(ctx context.Context) {
	defer m.s.bg.Done()
	changes := m.s.watcher.Changes()
	defer m.s.watcher.StopChanges(changes)
	t := time.NewTicker(moverTick)
	defer t.Stop()
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, b := range m.running {
				b.cancel()
			}
			m.mu.Unlock()
			m.wg.Wait()
			return
		case <-changes:
		case <-t.C:
		}
	}
}

func (m *mover) reconcile(ctx context.Context) {
	snap := m.s.watcher.Snapshot()
	doc := snap.Placement
	if doc == nil {
		return
	}
	self, inc := m.s.id, m.s.stamp.Incarnation
	want := map[uint32]placement.Move{}
	active := map[moveID]bool{}
	for _, mv := range doc.Moves {
		if !mv.Active() {
			continue
		}
		active[idOf(mv)] = true
		if mv.Add != self || (mv.Stage != placement.StageStreaming && mv.Stage != placement.StageReadNew) {
			continue
		}
		if mv.Stage == placement.StageReadNew {
			// The controller moves on only after Done; keep going if it
			// did not (it should not happen).
			if mp, ok := snap.Progress[topology.MoveKey{Partition: mv.Partition, Node: self}]; ok && mp.Done && mp.Incarnation == inc && mp.Move == mv.Created {
				continue
			}
		}
		want[mv.Partition] = mv
	}
	m.mu.Lock()
	for id := range m.done {
		if !active[id] {
			delete(m.done, id)
		}
	}
	for p, b := range m.running {
		if mv, ok := want[p]; (!ok || idOf(mv) != b.id) && !b.stopping {
			m.log.Info("backfill stopped: its move ended or changed", "partition", p, "add", b.id.add, "remove", b.id.remove)
			b.stopping = true
			b.cancel()
		}
	}
	for p, mv := range want {
		if _, busy := m.running[p]; busy || m.done[idOf(mv)] || ctx.Err() != nil {
			continue
		}
		bctx, cancel := context.WithCancel(ctx)
		b := &backfillRun{id: idOf(mv), cancel: cancel}
		m.running[p] = b
		m.wg.Add(1)
		go m.backfill(bctx, b, mv)
	}
	m.mu.Unlock()
	if err := m.s.settleUnfilled(doc); err != nil {
		m.log.Error("record backfilled partitions", "err", err)
	}
	m.cleanup(ctx, snap)
}

// backfill runs one move's backfill until it is done or ctx ends.
func (m *mover) backfill(ctx context.Context, b *backfillRun, mv placement.Move) {
	defer m.wg.Done()
	defer func() {
		b.cancel()
		m.mu.Lock()
		if m.running[mv.Partition] == b {
			delete(m.running, mv.Partition)
		}
		m.mu.Unlock()
	}()
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-m.sem }()
	m.s.moveMetrics.backfills.Inc()
	defer m.s.moveMetrics.backfills.Dec()
	prog := m.startProgress(mv)
	err := m.backfillLoop(ctx, mv, &prog)
	if err != nil {
		return // ctx ended: the move changed or the node is closing
	}
	m.mu.Lock()
	m.done[idOf(mv)] = true
	m.mu.Unlock()
	if mv.Replace() {
		if err := m.s.markFilled(mv.Partition); err != nil {
			m.log.Error("backfill done but not recorded; reads of the partition stay refused until it is", "partition", mv.Partition, "err", err)
		}
	}
}

// startProgress returns the progress to continue from: the one in etcd if
// this data directory wrote it for this move, a new one otherwise.
func (m *mover) startProgress(mv placement.Move) topology.MoveProgress {
	p := mv.Partition
	snap := m.s.watcher.Snapshot()
	inc := m.s.stamp.Incarnation
	if mp, ok := snap.Progress[topology.MoveKey{Partition: p, Node: m.s.id}]; ok && mp.Incarnation == inc && !mp.Dropped && mp.Move == mv.Created {
		mp.Sources = maps.Clone(mp.Sources)
		if mp.Sources == nil {
			mp.Sources = map[string]topology.SourceProgress{}
		}
		m.log.Info("backfill resumes", "partition", p, "records", mp.Records, "bytes", mp.Bytes, "done", mp.Done)
		return mp
	}
	now := time.Now().UTC()
	m.log.Info("backfill starts", "partition", p)
	return topology.MoveProgress{Partition: p, Node: m.s.id, Incarnation: inc, Move: mv.Created,
		Sources: map[string]topology.SourceProgress{}, StartTime: now, UpdateTime: now}
}

// sources returns the nodes to stream partition mv.Partition from: the
// move's Remove alone when it is registered and union is false, otherwise
// every registered replica but Add and Remove. single reports the first
// case.
func sources(snap *topology.Snapshot, mv placement.Move, union bool) (srcs []string, single bool) {
	if !union && mv.Remove != "" && mv.Remove != mv.Add {
		if _, ok := snap.Nodes[mv.Remove]; ok {
			return []string{mv.Remove}, true
		}
	}
	for _, id := range snap.Placement.Replicas[mv.Partition] {
		if id == mv.Add || id == mv.Remove {
			continue
		}
		if _, ok := snap.Nodes[id]; ok {
			srcs = append(srcs, id)
		}
	}
	return srcs, false
}

// backfillLoop streams every source to its end, retrying with backoff,
// and reports Done. It returns nil when done, ctx's error when stopped.
func (m *mover) backfillLoop(ctx context.Context, mv placement.Move, prog *topology.MoveProgress) error {
	log := m.log.With("partition", mv.Partition)
	backoff := backfillBackoffMin
	failures, union := 0, false
	var lastPut time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		snap := m.s.watcher.Snapshot()
		srcs, single := sources(snap, mv, union)
		var err error
		if !prog.Done {
			if len(srcs) == 0 {
				err = fmt.Errorf("no registered replica of partition %d to stream from (replicas %v, move %s)",
					mv.Partition, snap.Placement.Replicas[mv.Partition], mv)
			}
			for _, src := range srcs {
				if prog.Sources[src].Done {
					continue
				}
				if err = m.streamFrom(ctx, snap, mv.Partition, src, prog, &lastPut); err != nil {
					err = fmt.Errorf("stream partition %d from %s: %w", mv.Partition, src, err)
					break
				}
				failures, backoff = 0, backfillBackoffMin
			}
		}
		if err == nil {
			prog.Done, prog.Error, prog.UpdateTime = true, "", time.Now().UTC()
			if err = m.put(ctx, *prog); err == nil {
				log.Info("backfill done", "records", prog.Records, "bytes", prog.Bytes,
					"sources", slices.Sorted(maps.Keys(prog.Sources)), "took", time.Since(prog.StartTime).Round(time.Millisecond))
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if single {
			if failures++; failures >= singleSourceFailures {
				union = true
				log.Warn("backfill: the move's source keeps failing; streaming from the other replicas instead", "source", mv.Remove, "err", err)
			}
		}
		prog.Error, prog.UpdateTime = err.Error(), time.Now().UTC()
		m.checkpoint(ctx, prog)
		log.Info("backfill attempt failed; retrying", "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, backfillBackoffMax)
	}
}

// streamFrom streams partition p from src, from its resume position to
// the end, applying the records here and checkpointing prog.
func (m *mover) streamFrom(ctx context.Context, snap *topology.Snapshot, p uint32, src string, prog *topology.MoveProgress, lastPut *time.Time) error {
	c, err := m.s.peers.client(snap, src)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(streamIdleTimeout, cancel)
	defer idle.Stop()
	sp := prog.Sources[src]
	st, err := c.StreamPartition(sctx, &storagev1.StreamPartitionRequest{
		Partition: p, After: sp.Resume, IncludeExpired: true, PlacementEpoch: snap.Epoch(),
	})
	if err != nil {
		return err
	}
	err = m.s.applyStream(sctx, st, m.limit,
		func() { idle.Stop() }, // waiting for the rate limit is not the source's fault
		func(chunk *storagev1.StreamPartitionResponse, _ []engine.Outcome, size int) error {
			idle.Reset(streamIdleTimeout)
			n := len(chunk.GetRecords())
			if len(chunk.GetResume()) > 0 {
				sp.Resume = chunk.GetResume()
			}
			prog.Sources[src] = sp
			prog.Records += uint64(n)
			prog.Bytes += uint64(size)
			m.s.moveMetrics.backfillRecords.Add(float64(n))
			m.s.moveMetrics.backfillBytes.Add(float64(size))
			if time.Since(*lastPut) >= checkpointInterval {
				prog.UpdateTime = time.Now().UTC()
				m.checkpoint(ctx, prog)
				*lastPut = time.Now()
			}
			return nil
		})
	if err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return fmt.Errorf("no data for %s: %w", streamIdleTimeout, err)
		}
		return err
	}
	sp.Done = true
	prog.Sources[src] = sp
	prog.UpdateTime = time.Now().UTC()
	m.checkpoint(ctx, prog)
	*lastPut = time.Now()
	return nil
}

// checkpoint writes prog, logging a failure: the next checkpoint (or the
// final report, which must succeed) writes it again.
func (m *mover) checkpoint(ctx context.Context, prog *topology.MoveProgress) {
	if err := m.put(ctx, *prog); err != nil && ctx.Err() == nil {
		m.log.Info("backfill: checkpoint not written", "partition", prog.Partition, "err", err)
	}
}

func (m *mover) put(ctx context.Context, mp topology.MoveProgress) error {
	pctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
	defer cancel()
	return m.store.PutMoveProgress(pctx, mp)
}

// cleanup drops the partitions whose cleanup entries name this node, once
// every process has seen the entry's epoch.
func (m *mover) cleanup(ctx context.Context, snap *topology.Snapshot) {
	if m.s.watcher.Stale() {
		return // Reached needs a current view of the registrations
	}
	doc, self := snap.Placement, m.s.id
	if _, registered := snap.Nodes[self]; !registered {
		return // this node's own epoch is not known to count in Reached
	}
	for _, mv := range doc.Moves {
		if mv.Stage != placement.StageCleanup || mv.Remove != self || ctx.Err() != nil {
			continue
		}
		p := mv.Partition
		if since, ok := m.dropped[p]; ok && since == mv.Since {
			continue
		}
		if doc.Holds(p, self) {
			m.log.Warn("cleanup entry for a partition this node still holds; keeping its data", "partition", p, "epoch", doc.Epoch)
			continue
		}
		if snap.Epoch() < mv.Since {
			continue
		}
		if ok, lag := snap.Reached(mv.Since); !ok {
			m.log.Debug("cleanup waits for every process to see its epoch", "partition", p, "since", mv.Since, "lagging", lag)
			continue
		}
		if err := m.s.eng.DropPartition(p); err != nil {
			if !errors.Is(err, engine.ErrClosed) {
				m.log.Error("cleanup: drop partition", "partition", p, "err", err)
			}
			continue
		}
		m.s.moveMetrics.drops.Inc()
		now := time.Now().UTC()
		err := m.put(ctx, topology.MoveProgress{Partition: p, Node: self, Incarnation: m.s.stamp.Incarnation,
			Dropped: true, StartTime: now, UpdateTime: now})
		if err != nil {
			m.log.Info("cleanup: partition dropped, report not written yet", "partition", p, "err", err)
			continue // dropped again, and reported, next time
		}
		m.dropped[p] = mv.Since
		m.log.Info("partition dropped: it moved to other nodes", "partition", p, "since", mv.Since)
	}
}
