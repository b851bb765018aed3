package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/controller"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Node membership administration: every change is one placement update
// (compare-and-swap at the next epoch) that the placement controller then
// carries out; a refused request changes nothing.

var (
	// errNodeNotFound marks a request naming a node the cluster does not
	// know; use errors.Is. It maps to NotFound.
	errNodeNotFound = errors.New("node not found")
	// errPrecondition marks a request the cluster's state does not allow;
	// use errors.Is. It maps to FailedPrecondition.
	errPrecondition = errors.New("failed precondition")
)

// who names the caller of an admin request for the logs.
func who(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "in-process"
}

func checkNodeID(id string) error {
	if !utf8.ValidString(id) {
		return invalidf("node_id: not valid UTF-8")
	}
	if id == "" {
		return invalidf("node_id: empty")
	}
	return nil
}

// changeMembers applies change to the placement for node id, with the
// node's registration as etcd has it now, and logs the change. change
// returns an error to change nothing.
func (a *adminService) changeMembers(ctx context.Context, op, id string, change func(d *placement.Document, reg topology.Node, registered bool, now time.Time) error) (placement.Document, error) {
	if err := checkNodeID(id); err != nil {
		return placement.Document{}, err
	}
	if a.s.watcher.Snapshot().Placement == nil {
		return placement.Document{}, fmt.Errorf("%w: no placement yet (waiting for enough storage nodes to register)", errPrecondition)
	}
	ectx, cancel, err := a.s.etcdContext(ctx)
	if err != nil {
		return placement.Document{}, err
	}
	defer cancel()
	reg, registered, err := a.s.store.Node(ectx, id)
	if err != nil {
		return placement.Document{}, etcdError(ctx, err)
	}
	nodes := a.s.watcher.Snapshot().Nodes
	now := time.Now().UTC()
	before := uint64(0)
	doc, err := a.s.store.UpdatePlacement(ectx, func(d *placement.Document) error {
		before = d.Epoch - 1
		controller.FillMembers(d, nodes, now)
		return change(d, reg, registered, now)
	})
	if errors.Is(err, topology.ErrNoPlacement) {
		return placement.Document{}, fmt.Errorf("%w: %w", errPrecondition, err)
	}
	if err != nil {
		a.s.logger.Warn("admin: "+op+" refused", "who", who(ctx), "node", id, "err", err)
		return placement.Document{}, etcdError(ctx, err)
	}
	a.s.logger.Info("admin: "+op, "who", who(ctx), "node", id, "state", doc.Members[id].State, "epoch", doc.Epoch, "changed", doc.Epoch != before)
	// Answer once this router routes by the change, as CreateTable does.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	if a.s.cluster != nil {
		_, _ = a.s.cluster.WaitEpoch(wctx, doc.Epoch)
	} else {
		_ = a.s.watcher.WaitEpoch(wctx, doc.Epoch)
	}
	wcancel()
	return doc, nil
}

func (a *adminService) nodeResponse(doc *placement.Document, id string) *kvv1.NodeStatus {
	return nodeStatuses(doc, a.s.watcher.Snapshot().Nodes)[id]
}

// DecommissionNode marks a member leaving: the controller moves its
// replicas to the others and then marks it removed. A node already leaving,
// removed or dead is left as it is.
func (a *adminService) DecommissionNode(ctx context.Context, req *kvv1.DecommissionNodeRequest) (*kvv1.DecommissionNodeResponse, error) {
	id := req.GetNodeId()
	doc, err := a.changeMembers(ctx, "decommission node", id, func(d *placement.Document, _ topology.Node, _ bool, now time.Time) error {
		m, ok := d.Members[id]
		if !ok {
			return fmt.Errorf("%w: node %q is not a member of the cluster", errNodeNotFound, id)
		}
		switch m.State {
		case placement.MemberLeaving, placement.MemberRemoved, placement.MemberDead:
			return nil
		}
		placed := 0
		for other, om := range d.Members {
			if other != id && om.State.Placed() {
				placed++
			}
		}
		if placed < d.RF {
			return fmt.Errorf("%w: decommissioning %s would leave %d nodes to place replicas on, fewer than the replication factor %d; add a node first",
				errPrecondition, id, placed, d.RF)
		}
		d.Members[id] = placement.Member{State: placement.MemberLeaving, Zone: m.Zone, Since: now, Reason: "admin: decommission requested by " + who(ctx), Incarnation: m.Incarnation}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.DecommissionNodeResponse{Node: a.nodeResponse(&doc, id)}, nil
}

// RemoveNode marks a member that is gone dead: its replicas are re-created
// on the others from the surviving copies.
func (a *adminService) RemoveNode(ctx context.Context, req *kvv1.RemoveNodeRequest) (*kvv1.RemoveNodeResponse, error) {
	id := req.GetNodeId()
	if !req.GetDead() {
		if err := checkNodeID(id); err != nil {
			return nil, toStatus(err)
		}
		return nil, toStatus(invalidf("dead: must be true: RemoveNode re-creates the replicas of a node that is gone from the surviving copies; decommission a live node instead"))
	}
	doc, err := a.changeMembers(ctx, "remove dead node", id, func(d *placement.Document, reg topology.Node, registered bool, now time.Time) error {
		if registered {
			return fmt.Errorf("%w: node %s is registered at %s: decommission it instead", errPrecondition, id, reg.Address)
		}
		m, ok := d.Members[id]
		if !ok {
			return fmt.Errorf("%w: node %q is not a member of the cluster", errNodeNotFound, id)
		}
		if m.State == placement.MemberDead || m.State == placement.MemberRemoved {
			return nil
		}
		d.Members[id] = placement.Member{State: placement.MemberDead, Zone: m.Zone, Since: now, Reason: "admin: removed as dead by " + who(ctx), Incarnation: m.Incarnation}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.RemoveNodeResponse{Node: a.nodeResponse(&doc, id)}, nil
}

// ReplaceNode lets a member that is down come back on an empty data
// directory: every partition it holds gets a move backfilling it in place
// (it is written at once, read only once backfilled). A move adding it
// elsewhere is abandoned; a move removing it continues; another move of a
// partition it holds is abandoned so that the backfill starts now (the
// controller plans it again later). Replacing a dead member is allowed: it
// becomes replacing instead.
func (a *adminService) ReplaceNode(ctx context.Context, req *kvv1.ReplaceNodeRequest) (*kvv1.ReplaceNodeResponse, error) {
	id := req.GetNodeId()
	doc, err := a.changeMembers(ctx, "replace node", id, func(d *placement.Document, reg topology.Node, registered bool, now time.Time) error {
		if registered {
			return fmt.Errorf("%w: node %s is registered at %s: only a node that is down can be replaced; stop it, empty its data directory, call ReplaceNode, then start it", errPrecondition, id, reg.Address)
		}
		m, ok := d.Members[id]
		if !ok {
			return fmt.Errorf("%w: node %q is not a member of the cluster", errNodeNotFound, id)
		}
		switch m.State {
		case placement.MemberRemoved:
			return fmt.Errorf("%w: node %s was removed: started on an empty directory it joins as a new node", errPrecondition, id)
		case placement.MemberLeaving:
			return fmt.Errorf("%w: node %s is being decommissioned: remove it as dead instead", errPrecondition, id)
		}
		E := d.Epoch
		for _, mv := range slices.Clone(d.Moves) {
			if mv.Active() && mv.Add == id && !mv.Replace() {
				d.Abandon(mv, E)
			}
		}
		for p, set := range d.Replicas {
			if !slices.Contains(set, id) {
				continue
			}
			if mv, ok := d.MoveOf(uint32(p)); ok {
				if mv.Remove == id || mv.Replace() {
					continue
				}
				d.Abandon(mv, E)
			}
			d.Moves = append(d.Moves, placement.Move{Partition: uint32(p), Add: id, Remove: id, Stage: placement.StagePending, Since: E, Created: E})
			d.MarkChanged(uint32(p), E)
		}
		if m.State != placement.MemberReplacing {
			d.Members[id] = placement.Member{State: placement.MemberReplacing, Zone: m.Zone, Since: now, Reason: "admin: replace requested by " + who(ctx), Incarnation: m.Incarnation}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	n := 0
	for _, mv := range doc.Moves {
		if mv.Active() && mv.Replace() && mv.Add == id {
			n++
		}
	}
	return &kvv1.ReplaceNodeResponse{Node: a.nodeResponse(&doc, id), Partitions: uint32(n)}, nil
}

// RebalanceStatus reports the moves in the placement this router routes by.
func (a *adminService) RebalanceStatus(ctx context.Context, req *kvv1.RebalanceStatusRequest) (*kvv1.RebalanceStatusResponse, error) {
	snap := a.s.watcher.Snapshot()
	if snap.Placement == nil {
		return nil, toStatus(fmt.Errorf("%w: no placement yet (waiting for enough storage nodes to register)", errPrecondition))
	}
	return rebalanceStatus(snap, time.Now()), nil
}

// rebalanceStatus summarizes the snapshot's moves. remaining is
// placement.Diff(current, target) — which counts the moves in flight, as
// they change the replica sets only when promoted — plus the nodes
// backfilling in place, which Diff cannot see. The ETA extrapolates the
// rate of completed moves.
func rebalanceStatus(snap *topology.Snapshot, now time.Time) *kvv1.RebalanceStatusResponse {
	d := snap.Placement
	resp := &kvv1.RebalanceStatusResponse{PlacementEpoch: d.Epoch}
	active := 0
	var inFlightBytes uint64
	for _, m := range d.Moves {
		node := m.Remove
		if m.Active() {
			node = m.Add
			active++
		}
		pr := snap.Progress[topology.MoveKey{Partition: m.Partition, Node: node}]
		resp.Moves = append(resp.Moves, &kvv1.PartitionMove{
			Partition: m.Partition, Add: m.Add, Remove: m.Remove, Stage: string(m.Stage),
			Records: pr.Records, Bytes: pr.Bytes, Error: pr.Error,
		})
		if m.Active() {
			inFlightBytes += pr.Bytes
			if m.Replace() {
				resp.Remaining++
			}
		}
	}
	if target, err := d.Target(); err == nil {
		resp.Remaining += uint64(placement.Diff(d.Table(), target))
	}
	resp.UnderReplicated = uint32(controller.UnderReplicated(d, snap.Nodes))
	resp.BytesStreamed = inFlightBytes
	if r := d.Rebalance; r != nil {
		resp.Moved = r.Moved
		resp.BytesStreamed += r.Bytes
		if r.EndTime.IsZero() {
			resp.StartTime = timestamppb.New(r.StartTime)
			if el := now.Sub(r.StartTime); el > 0 {
				resp.RateBytesPerSecond = float64(resp.BytesStreamed) / el.Seconds()
				if r.Moved > 0 && resp.Remaining > 0 {
					resp.Eta = durationpb.New(time.Duration(float64(el) * float64(resp.Remaining) / float64(r.Moved)))
				}
			}
		}
	}
	// Balanced only once the old copies are dropped too: an operator
	// waiting for it may stop the nodes that held them.
	resp.Balanced = len(resp.Moves) == 0 && resp.Remaining == 0
	return resp
}

func membershipProto(s placement.MemberState) kvv1.Membership {
	switch s {
	case placement.MemberActive:
		return kvv1.Membership_MEMBERSHIP_ACTIVE
	case placement.MemberLeaving:
		return kvv1.Membership_MEMBERSHIP_LEAVING
	case placement.MemberDead:
		return kvv1.Membership_MEMBERSHIP_DEAD
	case placement.MemberReplacing:
		return kvv1.Membership_MEMBERSHIP_REPLACING
	case placement.MemberRemoved:
		return kvv1.Membership_MEMBERSHIP_REMOVED
	}
	return kvv1.Membership_MEMBERSHIP_UNSPECIFIED
}

// nodeStatuses describes every node that is registered, holds partitions
// or is a member. A registered node is UP (DRAINING when it says so) and
// JOINING while it is not a member yet, or holds nothing and has moves
// onto it pending; a node holding partitions that is not registered is
// DOWN; a removed member is REMOVED.
func nodeStatuses(d *placement.Document, nodes map[string]topology.Node) map[string]*kvv1.NodeStatus {
	out := map[string]*kvv1.NodeStatus{}
	for id, n := range nodes {
		st := kvv1.NodeState_NODE_STATE_UP
		if n.State == topology.NodeDraining {
			st = kvv1.NodeState_NODE_STATE_DRAINING
		}
		out[id] = &kvv1.NodeStatus{Id: id, Address: n.Address, Zone: n.Zone, State: st, CapacityBytes: n.CapacityBytes,
			UsedBytes: n.UsedBytes, PlacementEpoch: n.PlacementEpoch}
	}
	if d == nil {
		return out
	}
	get := func(id string) *kvv1.NodeStatus {
		ns, ok := out[id]
		if !ok {
			ns = &kvv1.NodeStatus{Id: id, State: kvv1.NodeState_NODE_STATE_DOWN}
			out[id] = ns
		}
		return ns
	}
	for _, rs := range d.Replicas {
		for i, id := range rs {
			ns := get(id)
			ns.Replicas++
			if i == 0 {
				ns.Primaries++
			}
		}
	}
	for _, m := range d.Moves {
		if m.Active() {
			get(m.Add).Pending++
		}
	}
	for id, m := range d.Members {
		ns := get(id)
		ns.Membership = membershipProto(m.State)
		if ns.Zone == "" {
			ns.Zone = m.Zone
		}
	}
	for id, ns := range out {
		_, registered := nodes[id]
		m, member := d.Members[id]
		switch {
		case member && m.State == placement.MemberRemoved:
			ns.State = kvv1.NodeState_NODE_STATE_REMOVED
		case ns.State != kvv1.NodeState_NODE_STATE_UP || !registered:
		case !member && ns.Replicas == 0, member && ns.Replicas == 0 && ns.Pending > 0:
			ns.State = kvv1.NodeState_NODE_STATE_JOINING
		}
	}
	return out
}

// sortedStatuses returns the statuses in id order.
func sortedStatuses(m map[string]*kvv1.NodeStatus) []*kvv1.NodeStatus {
	out := make([]*kvv1.NodeStatus, 0, len(m))
	for _, ns := range m {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Id, out[j].Id) < 0 })
	return out
}
