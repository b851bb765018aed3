package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Hinted handoff, the storage side: StoreHints keeps records another
// replica missed in the engine's hint space (durable, bounded by
// HintMaxBytes). Every second, and when the topology changes, the node
// drops hints older than HintMaxAge and replays the others to each target
// that is registered, with Apply in batches, deleting a batch once the
// target acknowledged it. LWW makes a replay idempotent and safe in any
// order, so a hint replayed twice (a crash before its delete) is harmless.
// A target that fails is retried with exponential backoff (1s to 30s).
// What is replayed is this node's current record of each hinted key, not
// the hinted record: see current.
// Hints for a partition the target no longer holds (neither a replica nor
// the destination of its move) are dropped: its new replicas get the data
// from the ones that hold it.

const (
	hintReplayInterval = time.Second
	hintReplayBatch    = 500
	hintReplayTimeout  = 10 * time.Second
	hintBackoffMin     = time.Second
	hintBackoffMax     = 30 * time.Second
)

// Reasons hints are dropped (the dropped_total label).
var hintDropReasons = []string{"age", "full", "moved", "gone", "invalid"}

type hintBackoff struct {
	until time.Time
	delay time.Duration
}

type hinter struct {
	s   *Server
	log *slog.Logger

	stored, replayed prometheus.Counter
	dropped          *prometheus.CounterVec

	mu      sync.Mutex // one replay pass at a time
	backoff map[string]hintBackoff

	running bool
	stop    chan struct{}
	done    chan struct{}
}

func newHinter(s *Server) *hinter {
	h := &hinter{
		s: s, log: s.logger.With("component", "hints"), backoff: map[string]hintBackoff{},
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_hints_stored_total",
			Help: "Records stored here as hints for another node that missed them."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_hints_replayed_total",
			Help: "Hints replayed to their node and deleted here."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veltrix_storage_hints_dropped_total",
			Help: "Hints not delivered: refused with the budget full, older than --hint-max-age, for a partition the node no longer holds (moved), for a record this node no longer holds (gone: a purged delete or an expired item), or rejected by the node (invalid)."}, []string{"reason"}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, r := range hintDropReasons {
		h.dropped.WithLabelValues(r)
	}
	s.Registry.MustRegister(h.stored, h.replayed, h.dropped)
	return h
}

func (h *hinter) start() {
	h.running = true
	go h.run()
}

func (h *hinter) run() {
	defer close(h.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-h.stop
		cancel()
	}()
	t := time.NewTicker(hintReplayInterval)
	defer t.Stop()
	changes := h.s.watcher.Changes()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		case <-changes:
		}
		if err := h.replay(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("hint replay failed", "err", err)
		}
	}
}

func (h *hinter) close() {
	select {
	case <-h.stop:
		return
	default:
	}
	close(h.stop)
	if h.running {
		<-h.done
	}
}

// ReplayHints runs one hint replay pass now (tests, operators).
func (s *Server) ReplayHints(ctx context.Context) error { return s.hints.replay(ctx) }

// replay drops old hints and replays the rest to every target that is
// registered and not backing off.
func (h *hinter) replay(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	eng := h.s.eng
	dropped, err := eng.DropHintsBefore(h.s.now().Add(-h.s.cfg.HintMaxAge).UnixNano())
	if err != nil {
		return err
	}
	for target, n := range dropped {
		h.dropped.WithLabelValues("age").Add(float64(n))
		h.log.Warn("dropped hints older than --hint-max-age; anti-entropy repairs them", "target", target, "hints", n, "max_age", h.s.cfg.HintMaxAge)
	}
	snap := h.s.watcher.Snapshot()
	if snap == nil {
		return nil
	}
	now := time.Now()
	for target := range eng.HintTargets() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b := h.backoff[target]
		if now.Before(b.until) {
			continue
		}
		if _, ok := snap.Nodes[target]; !ok {
			continue // down: its hints wait (up to HintMaxAge)
		}
		if err := h.replayTarget(ctx, snap, target); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.delay = min(max(2*b.delay, hintBackoffMin), hintBackoffMax)
			b.until = time.Now().Add(b.delay)
			h.backoff[target] = b
			h.log.Info("hint replay to a node failed; backing off", "target", target, "retry_in", b.delay, "err", err)
			continue
		}
		delete(h.backoff, target)
	}
	for target := range h.backoff {
		if _, ok := snap.Nodes[target]; !ok {
			delete(h.backoff, target) // back off afresh when it returns
		}
	}
	return nil
}

// replayTarget sends every hint held for target to it, batch by batch.
func (h *hinter) replayTarget(ctx context.Context, snap *topology.Snapshot, target string) error {
	c, err := h.s.peers.client(snap, target)
	if err != nil {
		return err
	}
	eng := h.s.eng
	for {
		hs, err := eng.Hints(target, hintReplayBatch, streamChunkBytes)
		if err != nil || len(hs) == 0 {
			return err
		}
		var keep, moved []engine.Hint
		for _, hint := range hs {
			if holds(snap, target, hint.Record.Key.Partition) {
				keep = append(keep, hint)
			} else {
				moved = append(moved, hint)
			}
		}
		if err := h.drop(moved, "moved"); err != nil {
			return err
		}
		recs, send, gone, err := h.current(keep)
		if err != nil {
			return err
		}
		if err := h.drop(gone, "gone"); err != nil {
			return err
		}
		if len(recs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, hintReplayTimeout)
			_, err = c.Apply(cctx, &storagev1.ApplyRequest{Records: recs})
			cancel()
			if status.Code(err) == codes.InvalidArgument {
				// The target will never take this batch; keeping it would
				// block every later hint.
				h.log.Warn("a node rejected replayed hints; dropping them", "target", target, "hints", len(send), "err", err)
				if err := h.drop(send, "invalid"); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("apply %d hints: %w", len(recs), err)
			}
		}
		n, err := eng.DeleteHints(send)
		h.replayed.Add(float64(n))
		if err != nil {
			return err
		}
	}
}

// current returns what to replay for hints: this node's current record of
// each hinted key (once per key), never the hinted record itself. This
// node acknowledged the hinted record, so what it holds now is that record
// or a newer one. If it holds nothing the record was deleted and the
// tombstone purged (or it expired): replaying the old value then could
// resurrect a delete on the target, so such hints are returned as gone.
func (h *hinter) current(hs []engine.Hint) (recs []*storagev1.Record, send, gone []engine.Hint, err error) {
	if len(hs) == 0 {
		return nil, nil, nil, nil
	}
	keys := make([]engine.Key, len(hs))
	for i, hint := range hs {
		keys[i] = hint.Record.Key
	}
	cur, found, err := h.s.eng.GetBatch(keys)
	if err != nil {
		return nil, nil, nil, err
	}
	seen := map[string]bool{}
	for i, hint := range hs {
		if !found[i] {
			gone = append(gone, hint)
			continue
		}
		send = append(send, hint)
		k := string(engine.EncodeKey(keys[i]))
		if !seen[k] {
			seen[k] = true
			recs = append(recs, recordToProto(cur[i]))
		}
	}
	return recs, send, gone, nil
}

func (h *hinter) drop(hs []engine.Hint, reason string) error {
	n, err := h.s.eng.DeleteHints(hs)
	h.dropped.WithLabelValues(reason).Add(float64(n))
	return err
}

// holds reports whether node must take writes of partition p in snap's
// placement, as a replica or as the destination of a move (true when there
// is no placement yet: the target decides).
func holds(snap *topology.Snapshot, node string, p uint32) bool {
	if snap.Placement == nil {
		return true
	}
	return snap.Placement.Holds(p, node)
}

func (svc *service) StoreHints(ctx context.Context, req *storagev1.StoreHintsRequest) (*storagev1.StoreHintsResponse, error) {
	target := req.GetTargetNode()
	switch {
	case target == "":
		return nil, invalid("target_node: empty")
	case target == svc.s.id:
		return nil, invalid("target_node: %s is this node", target)
	case len(req.GetRecords()) == 0:
		return nil, invalid("records: empty batch")
	}
	recs := make([]engine.Record, len(req.GetRecords()))
	for i, r := range req.GetRecords() {
		if err := checkRecord(r, fmt.Sprintf("records[%d]", i)); err != nil {
			return nil, toStatus(err)
		}
		recs[i] = recordFromProto(r)
	}
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	err := svc.s.eng.StoreHints(target, recs)
	if errors.Is(err, engine.ErrHintsFull) {
		svc.s.hints.dropped.WithLabelValues("full").Add(float64(len(recs)))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	svc.s.hints.stored.Add(float64(len(recs)))
	return &storagev1.StoreHintsResponse{}, nil
}
