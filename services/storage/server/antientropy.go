package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"golang.org/x/time/rate"
)

// Anti-entropy: every AntiEntropyInterval, for each partition this node
// leads and that no move is changing (the first of its replicas that is registered), compare the
// partition's digest with every other replica's. Where they differ, compare
// BucketDigests (hash buckets of the key space), pull the differing buckets'
// records from the peer and apply them (LWW keeps the newer), then push this
// node's records of the buckets that still differ to the peer. After a round
// in which every replica answered, every record any replica held when the
// round began is on all of them: the partition's sync point moves to that
// time on every replica, and tombstones older than it may be purged (see
// engine.Options.PurgeNeedsSync). A replica that is down or cut off stops
// the sync point, so it cannot come back with a value whose delete was
// purged.

// repairApplyBatch is the most records pushed in one Apply.
const repairApplyBatch = 500

// Deadlines of anti-entropy's calls to a peer: a peer that is cut off (its
// packets dropped) must cost one deadline, not stall the round until TCP
// gives up.
const (
	peerCallTimeout   = 2 * time.Second  // digests, sync points
	peerRepairTimeout = 60 * time.Second // one partition's exchange with one peer
)

// repairer runs anti-entropy rounds.
type repairer struct {
	s       *Server
	log     *slog.Logger
	buckets int
	limit   *rate.Limiter // bytes per second moved, both ways

	mu sync.Mutex
	// lastSync is when each partition this node leads was last found in
	// sync with all its replicas.
	lastSync map[uint32]time.Time
	// unreachable holds the peers whose digests this node could not read
	// in its last round: a node passes over them when it looks for a
	// partition's leader, so a replica that is cut off but still
	// registered does not stop the others' repair.
	unreachable map[string]bool

	rounds, compared, repaired, failures prometheus.Counter
	keys, bytes                          *prometheus.CounterVec
	outOfSync, oldestSync                prometheus.Gauge

	stop chan struct{}
	done chan struct{}
}

func newRepairer(s *Server) *repairer {
	cfg := s.cfg
	bps := cfg.AntiEntropyRateMBps * (1 << 20)
	r := &repairer{
		s: s, log: s.logger.With("component", "anti-entropy"), buckets: cfg.AntiEntropyBuckets,
		limit:    rate.NewLimiter(rate.Limit(bps), max(int(bps), 4<<20)),
		lastSync: map[uint32]time.Time{}, unreachable: map[string]bool{},
		rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_repair_rounds_total",
			Help: "Anti-entropy rounds run."}),
		compared: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_repair_partitions_compared_total",
			Help: "Partitions whose digests this node compared with their other replicas."}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_repair_partitions_repaired_total",
			Help: "Partitions whose replicas differed and were repaired."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_repair_failures_total",
			Help: "Partition repairs that did not complete (a replica down or unreachable)."}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veltrix_storage_repair_keys_total",
			Help: "Records anti-entropy applied: pulled from a peer here, or pushed to a peer."}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veltrix_storage_repair_bytes_total",
			Help: "Bytes of records anti-entropy moved."}, []string{"direction"}),
		outOfSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "veltrix_storage_repair_partitions_out_of_sync",
			Help: "Partitions this node leads that the last round could not confirm in sync with every replica."}),
		oldestSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "veltrix_storage_repair_oldest_sync_age_seconds",
			Help: "Seconds since the partition this node leads that was longest ago in sync with all its replicas was last in sync."}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, d := range []string{"pulled", "pushed"} { // export the series before the first repair
		r.keys.WithLabelValues(d)
		r.bytes.WithLabelValues(d)
	}
	s.Registry.MustRegister(r.rounds, r.compared, r.repaired, r.failures, r.keys, r.bytes, r.outOfSync, r.oldestSync)
	return r
}

func (r *repairer) run(interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stop
		cancel()
	}()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if err := r.round(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("anti-entropy round failed", "err", err)
			}
		}
	}
}

func (r *repairer) close() {
	close(r.stop)
	<-r.done
}

// RepairRound runs one anti-entropy round now (tests, operators).
func (s *Server) RepairRound(ctx context.Context) error {
	if s.repair == nil {
		return errors.New("storage: anti-entropy is off")
	}
	return s.repair.round(ctx)
}

// ledPartition is a partition this node leads and its other replicas.
type ledPartition struct {
	p     uint32
	peers []string
}

// round runs one anti-entropy round over the partitions this node leads.
func (r *repairer) round(ctx context.Context) error {
	snap := r.s.watcher.Snapshot()
	if snap == nil || snap.Placement == nil {
		return nil
	}
	start := r.s.now()
	self := r.s.id
	r.mu.Lock()
	unreachable := r.unreachable
	r.mu.Unlock()
	var led []ledPartition
	for p, reps := range snap.Placement.Replicas {
		if !slices.Contains(reps, self) || leader(reps, snap, self, unreachable) != self {
			continue
		}
		if _, moving := snap.Placement.MoveOf(uint32(p)); moving {
			// The move's backfill copies the partition; a replica
			// backfilling in place must not serve as a source of truth,
			// and no sync point may move (and let tombstones go) while a
			// copy is incomplete.
			continue
		}
		var peers []string
		for _, n := range reps {
			if n != self {
				peers = append(peers, n)
			}
		}
		led = append(led, ledPartition{p: uint32(p), peers: peers})
	}
	r.rounds.Inc()
	if len(led) == 0 {
		r.outOfSync.Set(0)
		r.oldestSync.Set(0)
		return nil
	}

	// One PartitionDigests call per peer for every partition shared with it.
	byPeer := map[string][]uint32{}
	for _, lp := range led {
		for _, n := range lp.peers {
			byPeer[n] = append(byPeer[n], lp.p)
		}
	}
	// Ask every peer at once: one that is cut off costs one deadline.
	peerDigests := map[string]map[uint32]*storagev1.PartitionDigest{}
	nowUnreachable := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n, ps := range byPeer {
		wg.Go(func() {
			m, err := r.peerDigests(ctx, snap, n, ps)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.log.Debug("anti-entropy: peer digests", "peer", n, "err", err)
				nowUnreachable[n] = true
				return
			}
			peerDigests[n] = m
		})
	}
	wg.Wait()

	r.mu.Lock()
	// Peers this round did not ask keep their last state.
	for n := range r.unreachable {
		if _, asked := byPeer[n]; !asked {
			nowUnreachable[n] = true
		}
	}
	r.unreachable = nowUnreachable
	r.mu.Unlock()

	var synced []ledPartition
	failed := 0
	for _, lp := range led {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.compared.Inc()
		own, err := r.s.eng.Digest(lp.p)
		if err != nil {
			return err
		}
		complete, differ := true, false
		var reachable []string
		for _, n := range lp.peers {
			pd, ok := peerDigests[n][lp.p]
			if ok {
				reachable = append(reachable, n)
			}
			switch {
			case !ok:
				complete = false
			case pd.GetCount() != own.Count || pd.GetSum() != own.Sum:
				differ = true
			}
		}
		if differ {
			r.repaired.Inc()
			// Repair with the replicas that answered; one that did not
			// keeps the round incomplete (no sync point).
			if err := r.repairPartition(ctx, snap, ledPartition{p: lp.p, peers: reachable}); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.log.Info("anti-entropy: partition repair incomplete", "partition", lp.p, "err", err)
				complete = false
			}
		}
		if !complete {
			failed++
			r.failures.Inc()
			continue
		}
		synced = append(synced, lp)
	}
	r.setSyncPoints(ctx, snap, synced, start)

	r.mu.Lock()
	ledSet := map[uint32]bool{}
	for _, lp := range led {
		ledSet[lp.p] = true
	}
	for p := range r.lastSync {
		if !ledSet[p] {
			delete(r.lastSync, p)
		}
	}
	for _, lp := range synced {
		r.lastSync[lp.p] = start
	}
	oldest := time.Duration(0)
	for _, lp := range led {
		t, ok := r.lastSync[lp.p]
		age := r.s.now().Sub(r.s.startTime)
		if ok {
			age = r.s.now().Sub(t)
		}
		oldest = max(oldest, age)
	}
	r.mu.Unlock()
	r.outOfSync.Set(float64(failed))
	r.oldestSync.Set(oldest.Seconds())
	return nil
}

// peerDigests reads the digests of partitions ps from peer n.
func (r *repairer) peerDigests(ctx context.Context, snap *topology.Snapshot, n string, ps []uint32) (map[uint32]*storagev1.PartitionDigest, error) {
	c, err := r.client(snap, n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerCallTimeout)
	defer cancel()
	resp, err := c.PartitionDigests(ctx, &storagev1.PartitionDigestsRequest{Partitions: ps})
	if err != nil {
		return nil, err
	}
	m := make(map[uint32]*storagev1.PartitionDigest, len(resp.GetDigests()))
	for _, d := range resp.GetDigests() {
		m[d.GetPartition()] = d
	}
	return m, nil
}

// leader is the replica of reps that runs anti-entropy for the partition,
// as self sees it: the first that is registered and that self could reach
// in its last round (self always can). Two nodes may both think they lead
// while one is cut off; repairing twice is harmless (LWW), and a sync point
// needs every replica to have answered.
func leader(reps []string, snap *topology.Snapshot, self string, unreachable map[string]bool) string {
	for _, n := range reps {
		if _, ok := snap.Nodes[n]; ok && (n == self || !unreachable[n]) {
			return n
		}
	}
	return ""
}

// repairPartition makes this node and each peer hold the same records of
// p: it pulls the buckets that differ from each peer, then pushes the
// buckets that still differ to each peer. Both directions apply only what
// wins under LWW.
func (r *repairer) repairPartition(ctx context.Context, snap *topology.Snapshot, lp ledPartition) error {
	ctx, cancel := context.WithTimeout(ctx, peerRepairTimeout*time.Duration(max(1, len(lp.peers))))
	defer cancel()
	var errs []error
	// Each phase reads this node's bucket digests once (a pass over the
	// partition), not once per peer. Pulls change them, so the push phase
	// reads them again; a pull comparing against digests a previous pull
	// made stale only moves a bucket that already matches (harmless under
	// LWW), and anything it misses the push phase sends.
	phase := func(what string, move func(storagev1.StorageServiceClient, []uint32) error) {
		own, err := r.s.eng.BucketDigests(lp.p, r.buckets)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, n := range lp.peers {
			c, err := r.client(snap, n)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			diff, err := r.differingBuckets(ctx, c, lp.p, own)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
				continue
			}
			if len(diff) > 0 {
				if err := move(c, diff); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", what, n, err))
				}
			}
		}
	}
	phase("pull from", func(c storagev1.StorageServiceClient, diff []uint32) error { return r.pull(ctx, c, lp.p, diff) })
	phase("push to", func(c storagev1.StorageServiceClient, diff []uint32) error { return r.push(ctx, c, lp.p, diff) })
	return errors.Join(errs...)
}

// differingBuckets compares p's bucket digests here (own) and on a peer.
func (r *repairer) differingBuckets(ctx context.Context, c storagev1.StorageServiceClient, p uint32, own []engine.PartitionDigest) ([]uint32, error) {
	cctx, cancel := context.WithTimeout(ctx, peerCallTimeout)
	defer cancel()
	resp, err := c.BucketDigests(cctx, &storagev1.BucketDigestsRequest{Partition: p, Buckets: uint32(r.buckets)})
	if err != nil {
		return nil, err
	}
	if len(resp.GetDigests()) != len(own) {
		return nil, fmt.Errorf("peer returned %d bucket digests, want %d", len(resp.GetDigests()), len(own))
	}
	var diff []uint32
	for i, d := range resp.GetDigests() {
		if d.GetCount() != own[i].Count || d.GetSum() != own[i].Sum {
			diff = append(diff, uint32(i))
		}
	}
	return diff, nil
}

// pull streams the records of buckets from a peer and applies them here.
func (r *repairer) pull(ctx context.Context, c storagev1.StorageServiceClient, p uint32, buckets []uint32) error {
	st, err := c.StreamPartition(ctx, &storagev1.StreamPartitionRequest{Partition: p, IncludeExpired: true,
		Buckets: uint32(r.buckets), BucketIds: buckets})
	if err != nil {
		return err
	}
	return r.s.applyStream(ctx, st, r.limit, nil, func(_ *storagev1.StreamPartitionResponse, outs []engine.Outcome, size int) error {
		r.count("pulled", outs, size)
		return nil
	})
}

// applyStream applies every record a StreamPartition stream sends, chunk
// by chunk, as they are: the engine keeps, for each key, the record that
// wins under LWW, and tombstones keep the time they were first written
// (DeletedAt). Anti-entropy's pulls and backfills both copy records this
// way. Each chunk's bytes are taken from limit (nil: unlimited) before it
// is applied; received, if set, is called after each chunk arrives, and
// applied after it is applied.
func (s *Server) applyStream(ctx context.Context, st storagev1.StorageService_StreamPartitionClient, limit *rate.Limiter,
	received func(), applied func(chunk *storagev1.StreamPartitionResponse, outs []engine.Outcome, size int) error) error {
	for {
		chunk, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if received != nil {
			received()
		}
		recs := make([]engine.Record, len(chunk.GetRecords()))
		size := 0
		for i, pr := range chunk.GetRecords() {
			recs[i] = recordFromProto(pr)
			size += recordSize(recs[i])
		}
		if err := waitRate(ctx, limit, size); err != nil {
			return err
		}
		var outs []engine.Outcome
		if len(recs) > 0 {
			if outs, err = s.eng.Apply(recs); err != nil {
				return err
			}
		}
		if err := applied(chunk, outs, size); err != nil {
			return err
		}
	}
}

// push sends this node's records of buckets to a peer.
func (r *repairer) push(ctx context.Context, c storagev1.StorageServiceClient, p uint32, buckets []uint32) error {
	want := map[int]bool{}
	for _, b := range buckets {
		want[int(b)] = true
	}
	var batch []*storagev1.Record
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.wait(ctx, size); err != nil {
			return err
		}
		resp, err := c.Apply(ctx, &storagev1.ApplyRequest{Records: batch})
		if err != nil {
			return err
		}
		applied := 0
		for _, o := range resp.GetOutcomes() {
			if o == storagev1.Outcome_OUTCOME_APPLIED {
				applied++
			}
		}
		r.keys.WithLabelValues("pushed").Add(float64(applied))
		r.bytes.WithLabelValues("pushed").Add(float64(size))
		batch, size = nil, 0
		return nil
	}
	err := r.s.eng.StreamBuckets(p, r.buckets, want, nil, func(rec engine.Record) error {
		batch = append(batch, recordToProto(rec))
		size += recordSize(rec)
		if len(batch) >= repairApplyBatch || size >= streamChunkBytes {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

func (r *repairer) count(direction string, outs []engine.Outcome, size int) {
	applied := 0
	for _, o := range outs {
		if o == engine.OutcomeApplied {
			applied++
		}
	}
	r.keys.WithLabelValues(direction).Add(float64(applied))
	r.bytes.WithLabelValues(direction).Add(float64(size))
}

// wait takes size bytes from the rate limit.
func (r *repairer) wait(ctx context.Context, size int) error { return waitRate(ctx, r.limit, size) }

// waitRate takes size bytes from limit (nil or infinite: no wait), in
// pieces no larger than its burst.
func waitRate(ctx context.Context, limit *rate.Limiter, size int) error {
	if limit == nil || limit.Limit() == rate.Inf {
		return ctx.Err()
	}
	for size > 0 {
		n := min(size, limit.Burst())
		if err := limit.WaitN(ctx, n); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// setSyncPoints records start as the sync point of the synced partitions
// on every replica (this node included).
func (r *repairer) setSyncPoints(ctx context.Context, snap *topology.Snapshot, synced []ledPartition, start time.Time) {
	byNode := map[string][]*storagev1.SyncPoint{}
	for _, lp := range synced {
		sp := &storagev1.SyncPoint{Partition: lp.p, UnixNanos: start.UnixNano()}
		byNode[r.s.id] = append(byNode[r.s.id], sp)
		for _, n := range lp.peers {
			byNode[n] = append(byNode[n], sp)
		}
	}
	for n, pts := range byNode {
		if n == r.s.id {
			for _, sp := range pts {
				if err := r.s.eng.SetSyncPoint(sp.GetPartition(), sp.GetUnixNanos()); err != nil {
					r.log.Warn("anti-entropy: set sync point", "partition", sp.GetPartition(), "err", err)
				}
			}
			continue
		}
		c, err := r.client(snap, n)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, peerCallTimeout)
			_, err = c.SetSyncPoints(cctx, &storagev1.SetSyncPointsRequest{Points: pts})
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			r.log.Info("anti-entropy: set sync points on a peer", "peer", n, "err", err)
		}
	}
}

// client returns a StorageService client for node n.
func (r *repairer) client(snap *topology.Snapshot, n string) (storagev1.StorageServiceClient, error) {
	return r.s.peers.client(snap, n)
}

func recordFromProto(r *storagev1.Record) engine.Record {
	rec := engine.Record{Key: keyFromProto(r.GetKey()), Version: r.GetVersion(), Tombstone: r.GetTombstone(), ExpireAt: r.GetExpireUnixNanos(), Value: r.GetValue()}
	if r.GetTombstone() && r.GetDeletedUnixNanos() > 0 {
		rec.DeletedAt = r.GetDeletedUnixNanos()
	}
	return rec
}

func recordSize(r engine.Record) int {
	return len(r.Value) + len(r.Key.PartitionKey) + len(r.Key.SortKey) + 32
}
