// Package cluster is the router's view of the storage nodes: an immutable
// routing table (partition → read set, write sets and write targets, as
// placement.Document.Routing defines them while replicas move) rebuilt
// from every topology snapshot, one reused gRPC connection per node (its
// Read, BatchRead and Apply calls multiplexed on one stream: storagemux),
// and per-node latency estimates for choosing and hedging replicas. Nothing here reads etcd on
// the request path.
//
// # Riding out an etcd outage
//
// A node's registration is a key under a lease. While etcd is unreachable
// no key changes, but leases keep ageing: when etcd returns, leases whose
// keepalives stopped during the outage expire and the watch delivers their
// deletes, usually before the nodes (which were serving all along) manage
// to register again. Taken literally those deletes would turn healthy
// replicas into "not registered" ones and fail QUORUM requests for seconds.
//
// So a node that disappears from the topology while the watcher is stale,
// or within Grace after etcd was last seen unreachable, is retained: it
// stays in the routing table with its last known address until it
// registers again (the normal case, seconds later) or the grace passes. A
// retained node that really died costs what any dead replica costs — a
// failed call, then the other replicas — so erring toward keeping it is
// safe; dropping a live one is not. Outside that window a vanished
// registration means the node is gone, as before.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/storagemux"
	"google.golang.org/grpc"
)

// Node is a storage node the router talks to.
type Node struct {
	ID   string
	Addr string
	// Client calls the node: Read, BatchRead and Apply over one Exchange
	// stream (storagemux), the rest by unary RPCs.
	Client storagev1.StorageServiceClient
	conn   *grpc.ClientConn
	mux    *storagemux.Client
	lat    latency
}

// close closes the node's stream and connection.
func (n *Node) close() {
	if n.mux != nil {
		n.mux.Close()
	}
	_ = n.conn.Close()
}

// ObserveLatency records the duration of a successful call to the node.
func (n *Node) ObserveLatency(d time.Duration) { n.lat.observe(d) }

// Latency is the node's smoothed call latency (0 before any call).
func (n *Node) Latency() time.Duration { return time.Duration(n.lat.mean.Load()) }

// HedgeDelay is how long to wait for the node before asking another
// replica: its smoothed latency plus four mean deviations (roughly a high
// percentile), clamped to [lo, hi].
func (n *Node) HedgeDelay(lo, hi time.Duration) time.Duration {
	d := time.Duration(n.lat.mean.Load() + 4*n.lat.dev.Load())
	return min(max(d, lo), hi)
}

// latency is an exponentially weighted moving average of call latency and of
// its mean absolute deviation (as TCP's RTO estimator, RFC 6298).
// Concurrent updates may lose a sample; that is fine for an estimate.
type latency struct {
	mean, dev atomic.Int64
}

func (l *latency) observe(d time.Duration) {
	x := int64(d)
	m := l.mean.Load()
	if m == 0 {
		l.mean.Store(x)
		l.dev.Store(x / 2)
		return
	}
	diff := x - m
	l.mean.Store(m + diff/8)
	l.dev.Store(l.dev.Load() + (int64(math.Abs(float64(diff)))-l.dev.Load())/4)
}

// View is an immutable routing table built from one topology snapshot.
type View struct {
	// Snapshot is the topology it was built from.
	Snapshot *topology.Snapshot
	// Partitions is P; 0 before the cluster is bootstrapped.
	Partitions uint32
	// Epoch is the placement epoch; 0 before the first placement. Every
	// storage request made by this view carries it.
	Epoch uint64
	// replicas[p] lists the replica nodes of partition p in placement
	// order; a nil entry is a replica whose node is not registered (down).
	replicas [][]*Node
	// routes[p] is partition p's route (see Route).
	routes []Route
	// nodesGen is the Cluster's nodesGen the routes were resolved at.
	nodesGen uint64
}

// MaxSets is the most replica sets a write must reach its level in: the
// old and the new one while a move is in flight.
const MaxSets = 2

// Route is how one partition is read and written in a view, with the node
// connections resolved: placement.Route precomputed at rebuild, so the
// request path allocates nothing to route. A nil node is one that is not
// registered (down). Shared: do not modify.
type Route struct {
	// ReadIDs are the read set's members; ReadNodes[i] is ReadIDs[i]'s node.
	ReadIDs   []string
	ReadNodes []*Node
	// ReadSize is the read set's size: a read needs Need(level, ReadSize)
	// answers from its members.
	ReadSize int
	// Sets are where a write must reach its level: Need(level, Sets[k].Size)
	// acknowledgements from members of Sets[k], for every k.
	Sets []placement.ReplicaSet
	// WriteIDs lists every node a write is sent to; WriteNodes[i] is its
	// node and WriteSets[i] the bitmask (bit k: Sets[k]) of the sets its
	// acknowledgement counts towards.
	WriteIDs   []string
	WriteNodes []*Node
	WriteSets  []uint8
	// Move is the partition's active move when Moving.
	Move   placement.Move
	Moving bool
}

// SetsOf returns the bitmask of the sets node's acknowledgement counts
// towards (0: node is not a write target).
func (r *Route) SetsOf(n *Node) uint8 {
	for i, w := range r.WriteNodes {
		if w == n && n != nil {
			return r.WriteSets[i]
		}
	}
	return 0
}

// Ready reports whether the view can route: config and placement exist.
func (v *View) Ready() bool { return v.Partitions > 0 && v.replicas != nil }

// Route returns partition p's route, or nil if p is out of range.
func (v *View) Route(p uint32) *Route {
	if int(p) >= len(v.routes) {
		return nil
	}
	return &v.routes[p]
}

// Replicas returns the replica nodes of partition p in placement order, nil
// entries for nodes that are down. The slice is shared: do not modify it.
func (v *View) Replicas(p uint32) []*Node {
	if int(p) >= len(v.replicas) {
		return nil
	}
	return v.replicas[p]
}

// ReplicaIDs returns the node ids of partition p's replica set.
func (v *View) ReplicaIDs(p uint32) []string {
	if v.Snapshot.Placement == nil || int(p) >= len(v.Snapshot.Placement.Replicas) {
		return nil
	}
	return v.Snapshot.Placement.Replicas[p]
}

// buildRoutes resolves every partition's placement.Route against node.
// Document.Routing scans every move to find a partition's; with an index
// of the active moves each partition's route is computed from a document
// holding just its own move.
func buildRoutes(doc *placement.Document, node func(id string) *Node) (replicas [][]*Node, routes []Route) {
	moving := make(map[uint32]placement.Move)
	for _, m := range doc.Moves {
		if m.Active() {
			moving[m.Partition] = m
		}
	}
	nodes := func(ids []string) []*Node {
		out := make([]*Node, len(ids))
		for i, id := range ids {
			out[i] = node(id)
		}
		return out
	}
	replicas = make([][]*Node, len(doc.Replicas))
	routes = make([]Route, len(doc.Replicas))
	for p, ids := range doc.Replicas {
		replicas[p] = nodes(ids)
		m, ok := moving[uint32(p)]
		if !ok {
			set := placement.ReplicaSet{Members: ids, Size: len(ids)}
			mask := make([]uint8, len(ids))
			for i := range mask {
				mask[i] = 1
			}
			routes[p] = Route{
				ReadIDs: ids, ReadNodes: replicas[p], ReadSize: len(ids),
				Sets: []placement.ReplicaSet{set}, WriteIDs: ids, WriteNodes: replicas[p], WriteSets: mask,
			}
			continue
		}
		one := placement.Document{Partitions: doc.Partitions, RF: doc.RF, Replicas: doc.Replicas, Moves: []placement.Move{m}}
		rt := one.Routing(uint32(p))
		if len(rt.Sets) > MaxSets {
			panic(fmt.Sprintf("cluster: partition %d routes to %d replica sets, at most %d", p, len(rt.Sets), MaxSets))
		}
		mask := make([]uint8, len(rt.Write))
		for i, id := range rt.Write {
			for k, set := range rt.Sets {
				if slices.Contains(set.Members, id) {
					mask[i] |= 1 << k
				}
			}
		}
		routes[p] = Route{
			ReadIDs: rt.Read.Members, ReadNodes: nodes(rt.Read.Members), ReadSize: rt.Read.Size,
			Sets: rt.Sets, WriteIDs: rt.Write, WriteNodes: nodes(rt.Write), WriteSets: mask,
			Move: m, Moving: true,
		}
	}
	return replicas, routes
}

// DefaultGrace is how long after an etcd outage a vanished registration is
// still counted as a replica.
const DefaultGrace = 30 * time.Second

// Cluster keeps the current View and the node connections.
type Cluster struct {
	watcher *topology.Watcher
	logger  *slog.Logger
	grace   time.Duration
	// dialOpts are the router's options for dialing storage nodes (TLS).
	dialOpts []grpc.DialOption

	mu    sync.Mutex
	nodes map[string]*Node
	// known is each node's last registration seen, including retained
	// nodes (see the package doc).
	known map[string]topology.Node
	// retained are the nodes kept though their registration vanished.
	retained map[string]bool
	view     atomic.Pointer[View]
	// nodesGen counts the changes to nodes (connections added or closed).
	nodesGen uint64
	// changed is closed (and replaced) whenever a view is published.
	changed chan struct{}
	onEpoch func(uint64)

	stop chan struct{}
	done chan struct{}
}

// New builds the view from the watcher's snapshot and follows its changes
// until Close. grace is how long after an etcd outage a vanished
// registration is still counted (0: DefaultGrace). dialOpts go to every
// dial of a storage node (the router's TLS credentials).
func New(w *topology.Watcher, logger *slog.Logger, grace time.Duration, dialOpts ...grpc.DialOption) *Cluster {
	if grace <= 0 {
		grace = DefaultGrace
	}
	c := &Cluster{
		watcher: w, logger: logger, grace: grace, dialOpts: dialOpts,
		nodes: map[string]*Node{}, known: map[string]topology.Node{}, retained: map[string]bool{},
		changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	changes := w.Changes()
	c.rebuild(w.Snapshot())
	go func() {
		defer close(c.done)
		// Retained nodes are dropped when their grace passes, which no
		// topology change announces.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-changes:
				c.rebuild(w.Snapshot())
			case <-tick.C:
				c.mu.Lock()
				n := len(c.retained)
				c.mu.Unlock()
				if n > 0 {
					c.rebuild(w.Snapshot())
				}
			}
		}
	}()
	return c
}

// Retained returns the last registrations of the nodes counted as replicas
// though their registration vanished during or just after an etcd outage,
// in id order.
func (c *Cluster) Retained() []topology.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]topology.Node, 0, len(c.retained))
	for id := range c.retained {
		out = append(out, c.known[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// inGrace reports whether a registration vanishing now may be an artefact
// of an etcd outage.
func (c *Cluster) inGrace(now time.Time) bool {
	if c.watcher == nil {
		return false
	}
	last := c.watcher.LastUnreachable()
	return !last.IsZero() && now.Sub(last) < c.grace
}

// members returns the nodes to route to: the snapshot's registrations plus
// the retained ones. The caller holds c.mu.
func (c *Cluster) members(snap *topology.Snapshot) map[string]topology.Node {
	now := time.Now()
	grace := c.inGrace(now)
	out := make(map[string]topology.Node, len(snap.Nodes))
	for id, reg := range snap.Nodes {
		out[id] = reg
		if c.retained[id] {
			delete(c.retained, id)
			c.logger.Info("retained node registered again", "node", id)
		}
	}
	for id, reg := range c.known {
		if _, ok := snap.Nodes[id]; ok {
			continue
		}
		if !grace {
			if c.retained[id] {
				delete(c.retained, id)
				c.logger.Warn("node did not register again within the grace after the etcd outage; counting it down", "node", id, "grace", c.grace)
			}
			delete(c.known, id)
			continue
		}
		if !c.retained[id] {
			c.retained[id] = true
			c.logger.Warn("node registration vanished during or just after an etcd outage; still counting it as a replica", "node", id, "grace", c.grace)
		}
		out[id] = reg
	}
	for id, reg := range snap.Nodes {
		c.known[id] = reg
	}
	return out
}

// View returns the current routing table.
func (c *Cluster) View() *View { return c.view.Load() }

// Stale reports whether the topology may be out of date (etcd unreachable).
func (c *Cluster) Stale() bool { return c.watcher != nil && c.watcher.Stale() }

// Node returns the connection to a registered node.
func (c *Cluster) Node(id string) (*Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	return n, ok
}

func (c *Cluster) rebuild(snap *topology.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	members := c.members(snap)
	// Connections follow registrations; a node that re-registers with a new
	// address gets a new connection.
	for id, n := range c.nodes {
		reg, ok := members[id]
		if !ok || reg.Address != n.Addr {
			n.close()
			delete(c.nodes, id)
			c.nodesGen++
		}
	}
	for id, reg := range members {
		if _, ok := c.nodes[id]; ok {
			continue
		}
		conn, err := grpcx.Dial(reg.Address, append(c.dialOpts[:len(c.dialOpts):len(c.dialOpts)], storagemux.DialOptions()...)...)
		if err != nil {
			c.logger.Error("dial storage node", "node", id, "addr", reg.Address, "err", err)
			continue
		}
		mux := storagemux.New(conn, storagemux.Options{})
		c.nodes[id] = &Node{ID: id, Addr: reg.Address, conn: conn, mux: mux, Client: mux}
		c.nodesGen++
	}
	v := &View{Snapshot: snap, nodesGen: c.nodesGen}
	if snap.Config != nil {
		v.Partitions = snap.Config.Partitions
	}
	if p := snap.Placement; p != nil && snap.Config != nil && p.Partitions == snap.Config.Partitions {
		v.Epoch = p.Epoch
		// Most snapshots change nothing routing depends on (progress
		// reports, presences, tables): keep the routes then.
		if prev := c.view.Load(); prev != nil && prev.Snapshot.Placement == p && prev.nodesGen == c.nodesGen && prev.routes != nil {
			v.replicas, v.routes = prev.replicas, prev.routes
		} else {
			v.replicas, v.routes = buildRoutes(p, func(id string) *Node { return c.nodes[id] })
		}
	}
	prev := c.view.Swap(v)
	c.publishedLocked(prev, v)
}

// publishedLocked wakes WaitEpoch callers and reports a new epoch to the
// epoch listener, after v is the view requests use. The caller holds c.mu.
func (c *Cluster) publishedLocked(prev, v *View) {
	close(c.changed)
	c.changed = make(chan struct{})
	if c.onEpoch != nil && (prev == nil || v.Epoch > prev.Epoch) {
		c.onEpoch(v.Epoch)
	}
}

// OnEpoch sets fn to be called with the view's placement epoch now and
// whenever a view with a newer epoch is published (the router reports it
// in its presence: it routes by that epoch from then on). fn must not
// block.
func (c *Cluster) OnEpoch(fn func(epoch uint64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onEpoch = fn
	if v := c.view.Load(); v != nil {
		fn(v.Epoch)
	}
}

// WaitEpoch waits until the view's placement epoch is at least epoch, or
// ctx ends, and returns the view.
func (c *Cluster) WaitEpoch(ctx context.Context, epoch uint64) (*View, error) {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if v := c.view.Load(); v.Epoch >= epoch {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: placement epoch %d not seen yet (routing by %d): %w", epoch, c.view.Load().Epoch, ctx.Err())
		case <-ch:
		}
	}
}

// NewStatic returns a cluster whose view never changes: partitions
// partitions, partition p replicated on replicas[p] (a nil entry is a down
// replica, named by ids[p]), and tables. Tests use it to drive the
// coordinator and the router's handlers with fake storage clients.
func NewStatic(partitions uint32, ids [][]string, replicas [][]*Node, tables ...topology.Table) *Cluster {
	byID := map[string]*Node{}
	for p, rs := range replicas {
		for i, n := range rs {
			if n != nil {
				byID[ids[p][i]] = n
			}
		}
	}
	doc := placement.Document{Epoch: 1, Partitions: partitions, Replicas: ids}
	return NewStaticDocument(doc, byID, tables...)
}

// NewStaticDocument returns a cluster whose view is doc (moves included)
// over the given nodes (an id without a node is down), and tables, until
// Publish. Tests use it to drive the coordinator through moves.
func NewStaticDocument(doc placement.Document, nodes map[string]*Node, tables ...topology.Table) *Cluster {
	c := &Cluster{nodes: map[string]*Node{}, known: map[string]topology.Node{}, retained: map[string]bool{},
		changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	close(c.done)
	c.Publish(doc, nodes, tables...)
	return c
}

// Publish replaces a static cluster's view (see NewStaticDocument).
func (c *Cluster) Publish(doc placement.Document, nodes map[string]*Node, tables ...topology.Table) {
	snap := &topology.Snapshot{
		Config:     &topology.ClusterConfig{Partitions: doc.Partitions, ReplicationFactor: doc.RF},
		Placement:  &doc,
		Nodes:      map[string]topology.Node{},
		Tables:     map[string]topology.Table{},
		TablesByID: map[uint64]topology.Table{},
	}
	for _, t := range tables {
		snap.Tables[t.Name] = t
		snap.TablesByID[t.ID] = t
	}
	v := &View{Snapshot: snap, Partitions: doc.Partitions, Epoch: doc.Epoch}
	v.replicas, v.routes = buildRoutes(&doc, func(id string) *Node { return nodes[id] })
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.view.Swap(v)
	c.publishedLocked(prev, v)
}

// Close stops following the topology and closes every connection.
func (c *Cluster) Close() {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.nodes {
		n.close()
		delete(c.nodes, id)
	}
}
