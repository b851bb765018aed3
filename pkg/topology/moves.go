package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoPlacement is returned by UpdatePlacement before a first placement.
var ErrNoPlacement = errors.New("topology: no placement yet")

// UpdatePlacement applies fn to a copy of the stored placement and writes
// the result with the next epoch, as a compare-and-swap on the document;
// when another writer (the controller, an admin call on another router)
// got there first it reads the new document and applies fn again, a few
// times. fn may return an error to change nothing; it is returned as is.
// A fn that leaves the document unchanged writes nothing and returns the
// stored document.
func (s *Store) UpdatePlacement(ctx context.Context, fn func(d *placement.Document) error) (placement.Document, error) {
	key := s.Keys.Placement()
	for range 10 {
		resp, err := s.Client.Get(ctx, key)
		if err != nil {
			return placement.Document{}, fmt.Errorf("topology: read placement: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return placement.Document{}, ErrNoPlacement
		}
		cur, err := placement.Unmarshal(resp.Kvs[0].Value)
		if err != nil {
			return placement.Document{}, err
		}
		next := cur.Clone()
		next.Epoch = cur.Epoch + 1
		if err := fn(&next); err != nil {
			return cur, err
		}
		b, err := next.Marshal()
		if err != nil {
			return cur, err
		}
		next.Epoch = cur.Epoch
		same, _ := next.Marshal()
		if string(same) == string(resp.Kvs[0].Value) {
			return cur, nil
		}
		txn, err := s.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return placement.Document{}, fmt.Errorf("topology: write placement: %w", err)
		}
		if txn.Succeeded {
			next.Epoch = cur.Epoch + 1
			return next, nil
		}
	}
	return placement.Document{}, fmt.Errorf("%w: the placement kept changing concurrently", ErrEpochConflict)
}

// MoveProgress is what the destination of a move reports about its backfill,
// and what a node reports about dropping a partition. It is stored without a
// lease (a restarted destination resumes from it) and deleted by the
// controller when the move ends.
type MoveProgress struct {
	// Partition and Node name the move (Node is its Add, or for a cleanup
	// its Remove).
	Partition uint32 `json:"partition"`
	Node      string `json:"node"`
	// Incarnation is the data directory the progress belongs to: a node
	// back on an empty directory starts over.
	Incarnation string `json:"incarnation"`
	// Move is the Created epoch of the move reported on
	// (placement.Move.Created): a report left from an earlier move of the
	// same partition to the same node does not count for a new one.
	Move uint64 `json:"move,omitempty"`
	// Sources are the nodes streamed from, each with its resume position.
	Sources map[string]SourceProgress `json:"sources,omitempty"`
	// Records and Bytes count what was streamed and applied.
	Records uint64 `json:"records"`
	Bytes   uint64 `json:"bytes"`
	// Done is set when every source was streamed to the end.
	Done bool `json:"done,omitempty"`
	// Dropped is set when a cleanup dropped the partition's data.
	Dropped bool `json:"dropped,omitempty"`
	// StartTime and UpdateTime bound the work so far.
	StartTime  time.Time `json:"start_time"`
	UpdateTime time.Time `json:"update_time"`
	// Error is the last error, if the backfill is retrying.
	Error string `json:"error,omitempty"`
}

// SourceProgress is how far one source was streamed.
type SourceProgress struct {
	// Resume is the StreamPartition position after the last applied record.
	Resume []byte `json:"resume,omitempty"`
	Done   bool   `json:"done,omitempty"`
}

// MoveKey names a move's progress: partition and node.
type MoveKey struct {
	Partition uint32
	Node      string
}

// MovesPrefix is the prefix of the move progress reports.
func (k Keys) MovesPrefix() string { return k.prefix + "moves/" }

// MoveProgress is the key of the progress of node's move of partition p.
func (k Keys) MoveProgress(p uint32, node string) string {
	return k.MovesPrefix() + strconv.FormatUint(uint64(p), 10) + "." + node
}

func parseMoveKey(name string) (MoveKey, bool) {
	ps, node, ok := strings.Cut(name, ".")
	if !ok || node == "" {
		return MoveKey{}, false
	}
	p, err := strconv.ParseUint(ps, 10, 32)
	if err != nil {
		return MoveKey{}, false
	}
	return MoveKey{uint32(p), node}, true
}

// PutMoveProgress stores a progress report.
func (s *Store) PutMoveProgress(ctx context.Context, mp MoveProgress) error {
	b, err := json.Marshal(mp)
	if err != nil {
		return err
	}
	if _, err := s.Client.Put(ctx, s.Keys.MoveProgress(mp.Partition, mp.Node), string(b)); err != nil {
		return fmt.Errorf("topology: put move progress of partition %d on %s: %w", mp.Partition, mp.Node, err)
	}
	return nil
}

// DeleteMoveProgress deletes a progress report.
func (s *Store) DeleteMoveProgress(ctx context.Context, p uint32, node string) error {
	if _, err := s.Client.Delete(ctx, s.Keys.MoveProgress(p, node)); err != nil {
		return fmt.Errorf("topology: delete move progress of partition %d on %s: %w", p, node, err)
	}
	return nil
}

// Router is a router's presence: under its lease, with the placement epoch
// it routes by. The controller waits for every router and storage node to
// reach an epoch before it takes the next step of a move.
type Router struct {
	ID             string    `json:"id"`
	Address        string    `json:"address,omitempty"`
	PlacementEpoch uint64    `json:"placement_epoch"`
	StartTime      time.Time `json:"start_time"`
}

// RoutersPrefix is the prefix of the routers' presence keys.
func (k Keys) RoutersPrefix() string { return k.prefix + "routers/" }

// Router is the presence key of router id.
func (k Keys) Router(id string) string { return k.RoutersPrefix() + id }

// Reached reports whether every registered router and storage node reports
// a placement epoch of at least epoch, and if not, which lag (sorted).
// Processes cut off from etcd lose their registration and do not hold the
// barrier up; storage nodes fence their requests instead (ChangedAt).
func (s *Snapshot) Reached(epoch uint64) (bool, []string) {
	var lag []string
	for id, n := range s.Nodes {
		if n.PlacementEpoch < epoch {
			lag = append(lag, "node "+id)
		}
	}
	for id, r := range s.Routers {
		if r.PlacementEpoch < epoch {
			lag = append(lag, "router "+id)
		}
	}
	sort.Strings(lag)
	return len(lag) == 0, lag
}

// Epoch returns the snapshot's placement epoch (0 without a placement).
func (s *Snapshot) Epoch() uint64 {
	if s == nil || s.Placement == nil {
		return 0
	}
	return s.Placement.Epoch
}

// WaitEpoch waits until the snapshot's placement epoch is at least epoch,
// or ctx ends.
func (w *Watcher) WaitEpoch(ctx context.Context, epoch uint64) error {
	if w.Snapshot().Epoch() >= epoch {
		return nil
	}
	ch := w.Changes()
	defer w.StopChanges(ch)
	for w.Snapshot().Epoch() < epoch {
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: placement epoch %d not seen yet (have %d): %w", epoch, w.Snapshot().Epoch(), ctx.Err())
		case <-ch:
		}
	}
	return nil
}

// StopChanges unsubscribes a channel returned by Changes.
func (w *Watcher) StopChanges(ch <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changes = slices.DeleteFunc(w.changes, func(c chan struct{}) bool { return c == ch })
}

// Presence keeps a router's presence key under a lease and its epoch
// current until Close.
type Presence struct {
	store  *Store
	logger *slog.Logger
	mu     sync.Mutex
	r      Router
	lease  clientv3.LeaseID
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
}

// RegisterRouter keeps r's presence under a lease with the given TTL,
// registering again after the lease is lost, until Close. SetEpoch
// updates the epoch it reports.
func (s *Store) RegisterRouter(r Router, ttl time.Duration, logger *slog.Logger) *Presence {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Presence{store: s, logger: logger, r: r, cancel: cancel, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	go p.run(ctx, ttl)
	return p
}

// SetEpoch reports that the router now routes by epoch.
func (p *Presence) SetEpoch(epoch uint64) {
	p.mu.Lock()
	changed := epoch > p.r.PlacementEpoch
	if changed {
		p.r.PlacementEpoch = epoch
	}
	p.mu.Unlock()
	if changed {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

func (p *Presence) run(ctx context.Context, ttl time.Duration) {
	defer close(p.done)
	cli := p.store.Client
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		lease, err := cli.Grant(gctx, int64((ttl+time.Second-1)/time.Second))
		cancel()
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		ka, err := cli.KeepAlive(ctx, lease.ID)
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		p.mu.Lock()
		p.lease = lease.ID
		p.mu.Unlock()
		written := uint64(0)
		first := true
	live:
		for {
			p.mu.Lock()
			r := p.r
			p.mu.Unlock()
			if first || r.PlacementEpoch != written {
				b, _ := json.Marshal(r)
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := cli.Put(pctx, p.store.Keys.Router(r.ID), string(b), clientv3.WithLease(lease.ID))
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						p.logger.Warn("router presence: put", "err", err)
					}
					sleepCtx(ctx, 200*time.Millisecond)
					select {
					case p.kick <- struct{}{}:
					default:
					}
				} else {
					written, first = r.PlacementEpoch, false
				}
			}
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ka:
				if !ok {
					break live
				}
				for len(ka) > 0 {
					<-ka
				}
			case <-p.kick:
			}
		}
	}
}

// Close removes the presence.
func (p *Presence) Close(ctx context.Context) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	lease := p.lease
	p.mu.Unlock()
	if lease != 0 {
		_, _ = p.store.Client.Revoke(ctx, lease)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
