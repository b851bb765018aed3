package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

func init() {
	register(command{name: "node", build: nodeCmd})
}

func nodeCmd(c *conn) *cobra.Command {
	return group("node", "list storage nodes; decommission, remove --dead or replace one",
		nodeListCmd(c), nodeDecommissionCmd(c), nodeRemoveCmd(c), nodeReplaceCmd(c))
}

// followHint is where every membership command points: the moves it
// started are followed there.
const followHint = "veltrix cluster rebalance status --watch"

// upper renders an enum value without its prefix ("MEMBERSHIP_LEAVING" →
// "LEAVING"), "-" for the unspecified value (a router that does not report
// it).
func upper(s, prefix string) string {
	s = strings.TrimPrefix(s, prefix)
	if s == "UNSPECIFIED" || s == "" {
		return "-"
	}
	return s
}

func membership(m kvv1.Membership) string { return upper(m.String(), "MEMBERSHIP_") }

func nodeState(s kvv1.NodeState) string { return upper(s.String(), "NODE_STATE_") }

// nodeRows is the node list's table: one row per node, in the router's
// order.
func nodeRows(nodes []*kvv1.NodeStatus) [][]string {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		pending := "-"
		if n.Pending > 0 {
			pending = strconv.FormatUint(uint64(n.Pending), 10)
		}
		used := "-" // not reported yet
		if n.UsedBytes > 0 {
			used = fmtBytes(n.UsedBytes)
		}
		epoch := "-"
		if n.PlacementEpoch > 0 {
			epoch = strconv.FormatUint(n.PlacementEpoch, 10)
		}
		rows = append(rows, []string{n.Id, orDash(n.Address), orDash(n.Zone), nodeState(n.State), membership(n.Membership),
			strconv.FormatUint(uint64(n.Replicas), 10), pending, used, epoch})
	}
	return rows
}

var nodeHeader = []string{"ID", "ADDRESS", "ZONE", "STATE", "MEMBERSHIP", "PARTITIONS", "PENDING", "BYTES", "EPOCH"}

// nodesJSON prints nodesDoc as JSON.
func nodesJSON(w io.Writer, nodes []*kvv1.NodeStatus) error {
	v, err := nodesDoc(nodes)
	if err != nil {
		return err
	}
	return printJSON(w, v)
}

// nodesDoc is {"nodes": [...]} with each node in protojson, as printJSON
// prints messages.
func nodesDoc(nodes []*kvv1.NodeStatus) (any, error) {
	out := struct {
		Nodes []json.RawMessage `json:"nodes"`
	}{Nodes: []json.RawMessage{}}
	for _, n := range nodes {
		b, err := protojson.Marshal(n)
		if err != nil {
			return nil, err
		}
		out.Nodes = append(out.Nodes, b)
	}
	return out, nil
}

func nodeListCmd(c *conn) *cobra.Command {
	return leaf("list", "list storage nodes: state, membership, partitions, bytes", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			st, err := cl.ClusterStatus(ctx)
			if err != nil {
				return explain(err, "list nodes")
			}
			v, err := nodesDoc(st.Nodes)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return c.print(w, v, func() error { return table(w, nodeHeader, nodeRows(st.Nodes)) })
		})
	})
}

// membershipCmd makes a membership command on one NODE_ID; run calls the
// router.
func membershipCmd(c *conn, use, short string, run func(cmd *cobra.Command, ctx context.Context, cl *client.Client, id string) error) *cobra.Command {
	cmd := leaf(use, short, 1, 1, func(cmd *cobra.Command, pos []string) error {
		if strings.TrimSpace(pos[0]) == "" {
			return usageErr("NODE_ID is empty (list nodes with 'veltrix node list')")
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error { return run(cmd, ctx, cl, pos[0]) })
	})
	cmd.Long = nodeUsage
	return cmd
}

// explainNode turns a membership RPC's error into what a person can act
// on. The router refuses (FailedPrecondition, NotFound) before changing
// anything, so the message says nothing changed; both exit 1.
func explainNode(err error, what, id string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.NotFound:
		return withExit(exitFailure, fmt.Errorf("%s %s: no such node: %s (nothing changed; list nodes with 'veltrix node list')", what, id, st.Message()))
	case codes.FailedPrecondition:
		return withExit(exitFailure, fmt.Errorf("%s %s: refused: %s (nothing changed)", what, id, st.Message()))
	case codes.Unimplemented:
		return withExit(exitFailure, fmt.Errorf("%s %s: the router does not support it (%s); upgrade the routers", what, id, st.Message()))
	}
	return explain(err, what+" "+id)
}

const nodeUsage = `Membership commands. Each one changes the target placement; the controller
then moves replicas a few at a time, and nothing is lost while it does:
writes reach their consistency level in both the old and the new replica set
until a partition's new replica is complete.

  decommission NODE_ID   drain a live node: its replicas are copied from it to
                         the other nodes, then it is REMOVED and can be stopped.
  remove NODE_ID --dead  a node that is gone for good: its replicas are
                         re-created from the surviving copies.
  replace NODE_ID        a node that is down and comes back on an empty data
                         directory under the same id: it backfills in place.

Follow any of them with '` + followHint + `'.`

func nodeDecommissionCmd(c *conn) *cobra.Command {
	return membershipCmd(c, "decommission NODE_ID", "drain a live node, then it is REMOVED", func(cmd *cobra.Command, ctx context.Context, cl *client.Client, id string) error {
		resp, err := cl.Admin().DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: id})
		if err != nil {
			return explainNode(err, "decommission", id)
		}
		w := cmd.OutOrStdout()
		return c.print(w, resp, func() error {
			_, err := io.WriteString(w, decommissionText(id, resp.GetNode()))
			return err
		})
	})
}

func decommissionText(id string, n *kvv1.NodeStatus) string {
	// The router accepts a repeated request and changes nothing for a node
	// already on its way out.
	switch n.GetMembership() {
	case kvv1.Membership_MEMBERSHIP_REMOVED:
		return fmt.Sprintf("node %s is already REMOVED: it holds no replicas and may be stopped (nothing changed).\n", id)
	case kvv1.Membership_MEMBERSHIP_DEAD:
		return fmt.Sprintf("node %s was removed as dead (DEAD): its replicas are being re-created from the surviving copies (nothing changed).\nFollow it with:\n\n  %s\n", id, followHint)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: decommissioning (membership %s). Its %d replicas move to the other nodes, copied from it;\n", id, membership(n.GetMembership()), n.GetReplicas())
	fmt.Fprintf(&b, "keep it running until then. Follow the moves with:\n\n  %s\n\n", followHint)
	fmt.Fprintf(&b, "When 'veltrix node list' shows %s REMOVED, stop the node (on Kubernetes: scale the StatefulSet down).\n", id)
	return b.String()
}

func nodeRemoveCmd(c *conn) *cobra.Command {
	var dead bool
	cmd := membershipCmd(c, "remove NODE_ID --dead", "re-create a node's replicas from the surviving copies: it is gone for good", func(cmd *cobra.Command, ctx context.Context, cl *client.Client, id string) error {
		resp, err := cl.Admin().RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: id, Dead: true})
		if err != nil {
			return explainNode(err, "remove", id)
		}
		w := cmd.OutOrStdout()
		return c.print(w, resp, func() error {
			_, err := io.WriteString(w, removeText(id, resp.GetNode()))
			return err
		})
	})
	// --dead is checked before dialing: without it, nothing reaches a router.
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		if id := pos[0]; !dead && strings.TrimSpace(id) != "" {
			return usageErr("remove needs --dead. 'veltrix node remove %s --dead' is for a node that is gone for good: its replicas are re-created from the surviving copies, and the router refuses it while the node is registered. To take a live node out, drain it with 'veltrix node decommission %s' instead: its replicas are copied from it first", id, id)
		}
		return run(cmd, pos)
	}
	cmd.Flags().BoolVar(&dead, "dead", false, "the node is gone for good: re-create its replicas from the surviving copies (required)")
	return cmd
}

func removeText(id string, n *kvv1.NodeStatus) string {
	if n.GetMembership() == kvv1.Membership_MEMBERSHIP_REMOVED {
		return fmt.Sprintf("node %s is already REMOVED (nothing changed).\n", id)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: removed as dead (membership %s). Its %d replicas are re-created on the other nodes\n", id, membership(n.GetMembership()), n.GetReplicas())
	fmt.Fprintf(&b, "from the surviving copies; until then those partitions run on fewer replicas. Follow the moves with:\n\n  %s\n\n", followHint)
	fmt.Fprintf(&b, "Do not start %s again on its old data directory; a removed id may join again only on an empty one.\n", id)
	return b.String()
}

func nodeReplaceCmd(c *conn) *cobra.Command {
	return membershipCmd(c, "replace NODE_ID", "a node back on an empty data directory under the same id backfills in place", func(cmd *cobra.Command, ctx context.Context, cl *client.Client, id string) error {
		resp, err := cl.Admin().ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: id})
		if err != nil {
			return explainNode(err, "replace", id)
		}
		w := cmd.OutOrStdout()
		return c.print(w, resp, func() error {
			_, err := io.WriteString(w, replaceText(id, resp))
			return err
		})
	})
}

func replaceText(id string, resp *kvv1.ReplaceNodeResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: replacing (membership %s): %d partitions to backfill in place.\n", id, membership(resp.GetNode().GetMembership()), resp.GetPartitions())
	fmt.Fprintf(&b, "Start it now on an empty data directory with --node-id %s (on Kubernetes: delete the pod's\n", id)
	fmt.Fprintf(&b, "PersistentVolumeClaim, then the pod). It takes writes at once and serves reads of each partition\n")
	fmt.Fprintf(&b, "once it has backfilled it from the surviving replicas. Follow it with:\n\n  %s\n", followHint)
	return b.String()
}
