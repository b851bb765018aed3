package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

func init() {
	register(command{name: "node", usage: "list storage nodes; decommission, remove --dead or replace one", run: subcommand("node", map[string]func([]string, io.Writer) error{
		"list":         nodeList,
		"decommission": nodeDecommission,
		"remove":       nodeRemove,
		"replace":      nodeReplace,
	})})
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

// nodesJSON prints {"nodes": [...]} with each node in protojson, as
// printJSON prints messages.
func nodesJSON(w io.Writer, nodes []*kvv1.NodeStatus) error {
	out := struct {
		Nodes []json.RawMessage `json:"nodes"`
	}{Nodes: []json.RawMessage{}}
	for _, n := range nodes {
		b, err := protojson.Marshal(n)
		if err != nil {
			return err
		}
		out.Nodes = append(out.Nodes, b)
	}
	return printJSON(w, out)
}

func nodeList(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix node list", flag.ContinueOnError)
	c.addFlags(fs)
	if _, err := parse(fs, args, 0, 0, &c); err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return explain(err, "list nodes")
	}
	if c.output == "json" {
		return nodesJSON(w, st.Nodes)
	}
	return table(w, nodeHeader, nodeRows(st.Nodes))
}

// nodeArg parses the flags and the one NODE_ID argument of a membership
// command.
func nodeArg(fs *flag.FlagSet, args []string, c *conn) (string, error) {
	c.addFlags(fs)
	pos, err := parse(fs, args, 1, 1, c)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(pos[0]) == "" {
		return "", usageErr("NODE_ID is empty (list nodes with 'veltrix node list')")
	}
	return pos[0], nil
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

func membershipUsage(fs *flag.FlagSet) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\n\nFlags:\n", fs.Name(), nodeUsage)
		fs.PrintDefaults()
	}
}

func nodeDecommission(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix node decommission NODE_ID", flag.ContinueOnError)
	fs.Usage = membershipUsage(fs)
	id, err := nodeArg(fs, args, &c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Admin().DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: id})
	if err != nil {
		return explainNode(err, "decommission", id)
	}
	if c.output == "json" {
		return printJSON(w, resp)
	}
	_, err = io.WriteString(w, decommissionText(id, resp.GetNode()))
	return err
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

func nodeRemove(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix node remove NODE_ID --dead", flag.ContinueOnError)
	fs.Usage = membershipUsage(fs)
	dead := fs.Bool("dead", false, "the node is gone for good: re-create its replicas from the surviving copies (required)")
	id, err := nodeArg(fs, args, &c)
	if err != nil {
		return err
	}
	if !*dead {
		return usageErr("remove needs --dead. 'veltrix node remove %s --dead' is for a node that is gone for good: its replicas are re-created from the surviving copies, and the router refuses it while the node is registered. To take a live node out, drain it with 'veltrix node decommission %s' instead: its replicas are copied from it first", id, id)
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Admin().RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: id, Dead: true})
	if err != nil {
		return explainNode(err, "remove", id)
	}
	if c.output == "json" {
		return printJSON(w, resp)
	}
	_, err = io.WriteString(w, removeText(id, resp.GetNode()))
	return err
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

func nodeReplace(args []string, w io.Writer) error {
	var c conn
	fs := flag.NewFlagSet("veltrix node replace NODE_ID", flag.ContinueOnError)
	fs.Usage = membershipUsage(fs)
	id, err := nodeArg(fs, args, &c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Admin().ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: id})
	if err != nil {
		return explainNode(err, "replace", id)
	}
	if c.output == "json" {
		return printJSON(w, resp)
	}
	_, err = io.WriteString(w, replaceText(id, resp))
	return err
}

func replaceText(id string, resp *kvv1.ReplaceNodeResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: replacing (membership %s): %d partitions to backfill in place.\n", id, membership(resp.GetNode().GetMembership()), resp.GetPartitions())
	fmt.Fprintf(&b, "Start it now on an empty data directory with --node-id %s (on Kubernetes: delete the pod's\n", id)
	fmt.Fprintf(&b, "PersistentVolumeClaim, then the pod). It takes writes at once and serves reads of each partition\n")
	fmt.Fprintf(&b, "once it has backfilled it from the surviving replicas. Follow it with:\n\n  %s\n", followHint)
	return b.String()
}
