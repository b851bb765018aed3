package controller_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/router/internal/controller"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testPartitions keeps documents small; RF is 3.
const testPartitions = 16

// harness is a cluster in an embedded etcd whose storage nodes and routers
// are fakes: keys the test writes, with the epochs and progress it chooses.
type harness struct {
	t      *testing.T
	cli    *clientv3.Client
	store  *topology.Store
	w      *topology.Watcher
	logger *slog.Logger
	cc     topology.ClusterConfig
	// nodes are the registered fakes, by id.
	nodes map[string]topology.Node
}

func newHarness(t *testing.T, ids ...string) *harness {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(topology.ClientConfig([]string{e.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	h := &harness{t: t, cli: cli, store: topology.NewStore(cli, "test"), logger: logger, nodes: map[string]topology.Node{},
		cc: topology.ClusterConfig{Partitions: testPartitions, ReplicationFactor: 3, HashFunction: placement.HashFunction}}
	ctx := t.Context()
	if _, err := h.store.BootstrapConfig(ctx, h.cc); err != nil {
		t.Fatal(err)
	}
	var pn []placement.Node
	for _, id := range ids {
		pn = append(pn, placement.Node{ID: id})
		h.register(id)
	}
	tbl, err := placement.Compute(pn, testPartitions, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutPlacement(ctx, placement.NewDocument(1, tbl), 0); err != nil {
		t.Fatal(err)
	}
	h.w, err = h.store.Watch(ctx, topology.WatcherOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.w.Close)
	h.presence("r1", 1)
	return h
}

func (h *harness) put(key string, v any) {
	h.t.Helper()
	b, _ := json.Marshal(v)
	if _, err := h.cli.Put(context.Background(), key, string(b)); err != nil {
		h.t.Fatal(err)
	}
}

// register registers node id (incarnation "inc-<id>" unless set before).
func (h *harness) register(id string) {
	h.t.Helper()
	n, ok := h.nodes[id]
	if !ok {
		n = topology.Node{ID: id, Address: "127.0.0.1:1", State: topology.NodeUp, Incarnation: "inc-" + id}
	}
	h.nodes[id] = n
	h.put(h.store.Keys.Node(id), n)
}

func (h *harness) unregister(id string) {
	h.t.Helper()
	delete(h.nodes, id)
	if _, err := h.cli.Delete(context.Background(), h.store.Keys.Node(id)); err != nil {
		h.t.Fatal(err)
	}
}

// presence writes router id's presence at epoch.
func (h *harness) presence(id string, epoch uint64) {
	h.put(h.store.Keys.Router(id), topology.Router{ID: id, PlacementEpoch: epoch})
}

// reportNodes makes every registered node report epoch.
func (h *harness) reportNodes(epoch uint64) {
	for id, n := range h.nodes {
		n.PlacementEpoch = epoch
		h.nodes[id] = n
		h.put(h.store.Keys.Node(id), n)
	}
}

// doc reads the stored placement.
func (h *harness) doc() placement.Document {
	h.t.Helper()
	d, found, err := h.store.Placement(context.Background())
	if err != nil || !found {
		h.t.Fatalf("placement: %v (found %v)", err, found)
	}
	return d
}

func (h *harness) start(id string) *controller.Controller {
	c := controller.Start(h.cli, h.store, h.w, controller.Config{
		ID: id, Cluster: h.cc, Settle: 50 * time.Millisecond, SessionTTL: 1,
		MaxMovesPerNode: 2, Interval: 50 * time.Millisecond, Logger: h.logger.With("controller", id),
	})
	h.t.Cleanup(c.Close)
	return c
}

// waitDoc waits until cond holds for the stored placement and returns it.
func (h *harness) waitDoc(what string, cond func(d placement.Document) bool) placement.Document {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := h.doc()
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; placement at epoch %d: moves %v, members %v", what, d.Epoch, d.Moves, d.Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// progress writes node's progress report for partition p.
func (h *harness) progress(p uint32, node, incarnation string, done, dropped bool) {
	var move uint64
	d := h.doc()
	if m, ok := d.MoveOf(p); ok && m.Add == node {
		move = m.Created
	}
	h.put(h.store.Keys.MoveProgress(p, node), topology.MoveProgress{
		Partition: p, Node: node, Incarnation: incarnation, Move: move, Done: done, Dropped: dropped, Bytes: 100, Records: 1,
	})
}

// drive plays every fake process until the placement is balanced: each
// round every process reports the current epoch, every streaming move's
// destination reports its backfill done, every cleanup its drop.
func (h *harness) drive() placement.Document {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := h.doc()
		if len(d.Moves) == 0 && d.Rebalance != nil && !d.Rebalance.EndTime.IsZero() {
			return d
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("not balanced: epoch %d, moves %v", d.Epoch, d.Moves)
		}
		h.reportNodes(d.Epoch)
		h.presence("r1", d.Epoch)
		for _, m := range d.Moves {
			switch {
			case m.Stage == placement.StageStreaming:
				h.progress(m.Partition, m.Add, h.nodes[m.Add].Incarnation, true, false)
			case !m.Active():
				h.progress(m.Partition, m.Remove, h.nodes[m.Remove].Incarnation, false, true)
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func activeMoves(d placement.Document) []placement.Move {
	return slices.DeleteFunc(slices.Clone(d.Moves), func(m placement.Move) bool { return !m.Active() })
}

// checkBalanced checks that d's replica sets are its target's and that
// no progress reports are left.
func (h *harness) checkBalanced(d placement.Document) {
	h.t.Helper()
	target, err := d.Target()
	if err != nil {
		h.t.Fatal(err)
	}
	if n := placement.Diff(d.Table(), target); n != 0 {
		h.t.Errorf("%d replicas differ from the target", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.w.Snapshot().Progress) > 0 {
		if time.Now().After(deadline) {
			h.t.Errorf("progress reports left: %v", h.w.Snapshot().Progress)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func topologyNode(id, incarnation string) topology.Node {
	return topology.Node{ID: id, Address: "127.0.0.1:1", State: topology.NodeUp, Incarnation: incarnation}
}
