package topology

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is an immutable view of the cluster's documents at one etcd
// revision. Never modify one: the watcher shares them between readers.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
	// Config is the cluster config; nil before bootstrap.
	Config *ClusterConfig
	// Nodes are the registered nodes by id.
	Nodes map[string]Node
	// Placement is the current placement; nil before the controller wrote
	// one.
	Placement *placement.Document
	// Tables are the tables by name.
	Tables map[string]Table
	// TablesByID are the same tables by id.
	TablesByID map[uint64]Table
	// Routers are the routers present, by id, with the epoch they route by.
	Routers map[string]Router
	// Progress are the move progress reports.
	Progress map[MoveKey]MoveProgress
}

// WatcherOptions configures Watch.
type WatcherOptions struct {
	// Logger reports decode errors and lost connections. Default
	// slog.Default().
	Logger *slog.Logger
	// PingInterval is how often the watcher checks that etcd answers, to
	// report staleness. Default 1s.
	PingInterval time.Duration
	// Fallback, when set, is the snapshot to start from if etcd does not
	// answer before Watch's context ends (a router restarted during an etcd
	// outage, with the snapshot it persisted). The watcher then starts
	// stale and loads the real state as soon as etcd answers.
	Fallback *Snapshot
}

// Watcher keeps a Snapshot of the cluster current from an etcd watch. When
// etcd is unreachable the last snapshot stays in use and Stale reports true.
type Watcher struct {
	store  *Store
	logger *slog.Logger
	ping   time.Duration

	snap  atomic.Pointer[Snapshot]
	stale atomic.Bool
	// unreachable is when etcd was last seen unreachable (UnixNano; 0:
	// never).
	unreachable atomic.Int64
	mu          sync.Mutex
	changes     []chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Watch loads the cluster's documents and keeps them current until Close.
func (s *Store) Watch(ctx context.Context, o WatcherOptions) (*Watcher, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PingInterval <= 0 {
		o.PingInterval = time.Second
	}
	w := &Watcher{store: s, logger: o.Logger, ping: o.PingInterval}
	snap, err := w.load(ctx)
	reload := false
	if err != nil {
		if o.Fallback == nil {
			return nil, err
		}
		w.logger.Warn("etcd unreachable; starting from the persisted topology snapshot",
			"revision", o.Fallback.Revision, "err", err)
		snap, reload = o.Fallback, true
		w.stale.Store(true)
		w.unreachable.Store(time.Now().UnixNano())
	}
	w.snap.Store(snap)
	bg, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go w.watchLoop(bg, snap.Revision, reload)
	go w.pingLoop(bg)
	return w, nil
}

// Snapshot returns the current snapshot.
func (w *Watcher) Snapshot() *Snapshot { return w.snap.Load() }

// Stale reports whether etcd stopped answering; the snapshot may be old.
func (w *Watcher) Stale() bool { return w.stale.Load() }

// LastUnreachable is when etcd was last known unreachable: now while Stale,
// the moment it answered again after an outage, zero if it never failed.
// Routers use it to tell registrations that vanished because their leases
// expired during an outage from nodes that went away.
func (w *Watcher) LastUnreachable() time.Time {
	if w.stale.Load() {
		return time.Now()
	}
	if ns := w.unreachable.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Changes returns a channel that receives (coalesced) after every change to
// the snapshot.
func (w *Watcher) Changes() <-chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.changes = append(w.changes, ch)
	w.mu.Unlock()
	return ch
}

// Close stops watching.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

func (w *Watcher) load(ctx context.Context) (*Snapshot, error) {
	resp, err := w.store.Client.Get(ctx, w.store.Keys.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("topology: load cluster state: %w", err)
	}
	snap := &Snapshot{
		Revision:   resp.Header.Revision,
		Nodes:      map[string]Node{},
		Tables:     map[string]Table{},
		TablesByID: map[uint64]Table{},
		Routers:    map[string]Router{},
		Progress:   map[MoveKey]MoveProgress{},
	}
	for _, kv := range resp.Kvs {
		w.apply(snap, kv, false)
	}
	return snap, nil
}

// relevant reports whether a key under the cluster prefix is part of the
// topology. Other subsystems keep their state under the same prefix (jobs'
// progress, migration figures and queues), and their frequent writes must
// not wake every watcher's listeners.
func (w *Watcher) relevant(key string) bool {
	k := w.store.Keys
	if key == k.Config() || key == k.Placement() {
		return true
	}
	for _, p := range []string{k.NodesPrefix(), k.RoutersPrefix(), k.MovesPrefix(), k.TablesPrefix()} {
		if _, ok := child(key, p); ok {
			return true
		}
	}
	return false
}

// apply folds one key change into snap (which the caller owns).
func (w *Watcher) apply(snap *Snapshot, kv *mvccpb.KeyValue, deleted bool) {
	k := w.store.Keys
	key := string(kv.Key)
	switch {
	case key == k.Config():
		if deleted {
			snap.Config = nil
			return
		}
		var c ClusterConfig
		if w.decode(kv, &c) {
			snap.Config = &c
		}
	case key == k.Placement():
		if deleted {
			snap.Placement = nil
			return
		}
		p, err := placement.Unmarshal(kv.Value)
		if err != nil {
			w.logger.Error("ignoring invalid placement", "err", err)
			return
		}
		snap.Placement = &p
	default:
		if id, ok := child(key, k.NodesPrefix()); ok {
			if deleted {
				delete(snap.Nodes, id)
				return
			}
			var n Node
			if w.decode(kv, &n) {
				snap.Nodes[id] = n
			}
			return
		}
		if id, ok := child(key, k.RoutersPrefix()); ok {
			if deleted {
				delete(snap.Routers, id)
				return
			}
			var r Router
			if w.decode(kv, &r) {
				snap.Routers[id] = r
			}
			return
		}
		if name, ok := child(key, k.MovesPrefix()); ok {
			mk, ok := parseMoveKey(name)
			if !ok {
				return
			}
			if deleted {
				delete(snap.Progress, mk)
				return
			}
			var mp MoveProgress
			if w.decode(kv, &mp) {
				snap.Progress[mk] = mp
			}
			return
		}
		if name, ok := child(key, k.TablesPrefix()); ok {
			if old, ok := snap.Tables[name]; ok {
				delete(snap.TablesByID, old.ID)
				delete(snap.Tables, name)
			}
			if deleted {
				return
			}
			t, err := decodeTable(kv)
			if err != nil {
				w.logger.Error("ignoring undecodable table", "err", err)
				return
			}
			snap.Tables[name] = t
			snap.TablesByID[t.ID] = t
		}
	}
}

func (w *Watcher) decode(kv *mvccpb.KeyValue, v any) bool {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		w.logger.Error("ignoring undecodable etcd value", "key", string(kv.Key), "err", err)
		return false
	}
	return true
}

func (w *Watcher) publish(snap *Snapshot) {
	w.snap.Store(snap)
	w.mu.Lock()
	for _, ch := range w.changes {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
}

func (w *Watcher) watchLoop(ctx context.Context, rev int64, reload bool) {
	defer w.wg.Done()
	for ctx.Err() == nil {
		if reload {
			// Started from a fallback snapshot: its revision may not even
			// exist in this etcd, so load everything first.
			if !w.reload(ctx, &rev) {
				return
			}
			reload = false
		}
		wctx := clientv3.WithRequireLeader(ctx)
		wch := w.store.Client.Watch(wctx, w.store.Keys.Prefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				w.logger.Warn("topology watch interrupted", "err", err)
				break
			}
			if !slices.ContainsFunc(resp.Events, func(ev *clientv3.Event) bool { return w.relevant(string(ev.Kv.Key)) }) {
				rev = resp.Header.Revision
				continue
			}
			cur := w.snap.Load()
			next := &Snapshot{
				Revision:   resp.Header.Revision,
				Config:     cur.Config,
				Nodes:      maps.Clone(cur.Nodes),
				Placement:  cur.Placement,
				Tables:     maps.Clone(cur.Tables),
				TablesByID: maps.Clone(cur.TablesByID),
				Routers:    maps.Clone(cur.Routers),
				Progress:   maps.Clone(cur.Progress),
			}
			for _, ev := range resp.Events {
				w.apply(next, ev.Kv, ev.Type == clientv3.EventTypeDelete)
			}
			rev = resp.Header.Revision
			w.publish(next)
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended (compaction, lost leader): reload everything and
		// watch again from the reloaded revision.
		reload = true
	}
}

// reload loads the whole state until it succeeds, publishes it and sets
// *rev; false when ctx ended first.
func (w *Watcher) reload(ctx context.Context, rev *int64) bool {
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snap, err := w.load(lctx)
		cancel()
		if err == nil {
			*rev = snap.Revision
			w.publish(snap)
			return true
		}
		w.logger.Warn("reload cluster state", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(w.ping):
		}
	}
	return false
}

func (w *Watcher) pingLoop(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(w.ping)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, w.ping)
		_, err := w.store.Client.Get(pctx, w.store.Keys.Config(), clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || w.stale.Load() {
			w.unreachable.Store(time.Now().UnixNano())
		}
		was := w.stale.Swap(err != nil)
		switch {
		case err != nil && !was:
			w.logger.Warn("etcd unreachable; serving from the last topology snapshot", "err", err)
		case err == nil && was:
			w.logger.Info("etcd reachable again")
		}
	}
}
