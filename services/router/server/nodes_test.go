package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newAdminEtcd returns an admin service over an embedded etcd holding a
// 16-partition RF 3 placement on n1..n4, every one an active member, n1..n3
// registered (n4 is down). With empty set it has no placement.
func newAdminEtcd(t *testing.T, empty bool) (*adminService, *topology.Store) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
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
	store := topology.NewStore(cli, "test")
	ctx := t.Context()
	if _, err := store.BootstrapConfig(ctx, topology.ClusterConfig{Partitions: 16, ReplicationFactor: 3, HashFunction: placement.HashFunction}); err != nil {
		t.Fatal(err)
	}
	if !empty {
		for _, id := range []string{"n1", "n2", "n3"} {
			b, _ := json.Marshal(topology.Node{ID: id, Address: "127.0.0.1:1", State: topology.NodeUp})
			if _, err := cli.Put(ctx, store.Keys.Node(id), string(b)); err != nil {
				t.Fatal(err)
			}
		}
		var nodes []placement.Node
		doc := placement.Document{Members: map[string]placement.Member{}}
		for _, id := range []string{"n1", "n2", "n3", "n4"} {
			nodes = append(nodes, placement.Node{ID: id})
			doc.Members[id] = placement.Member{State: placement.MemberActive, Since: time.Now().UTC()}
		}
		tbl, err := placement.Compute(nodes, 16, 3)
		if err != nil {
			t.Fatal(err)
		}
		d := placement.NewDocument(1, tbl)
		d.Members = doc.Members
		if err := store.PutPlacement(ctx, d, 0); err != nil {
			t.Fatal(err)
		}
	}
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	cfg := Config{Logger: logger}
	cfg.EnsureDefaults()
	return &adminService{s: &Server{cfg: cfg, logger: logger, store: store, watcher: w}}, store
}

func placementJSON(t *testing.T, store *topology.Store) []byte {
	t.Helper()
	d, _, err := store.Placement(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	return b
}

// TestNodeAdminRefusals: requests the cluster's state does not allow fail
// with the right code and change nothing.
func TestNodeAdminRefusals(t *testing.T) {
	a, store := newAdminEtcd(t, false)
	ctx := t.Context()
	// n1 leaves first: three placed members remain, as many as RF.
	if _, err := a.DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"decommission unknown", func() error {
			_, err := a.DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: "nx"})
			return err
		}, codes.NotFound, `node "nx" is not a member`},
		{"decommission below RF", func() error {
			_, err := a.DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: "n2"})
			return err
		}, codes.FailedPrecondition, "would leave 2 nodes to place replicas on, fewer than the replication factor 3"},
		{"remove without dead", func() error {
			_, err := a.RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: "n4"})
			return err
		}, codes.InvalidArgument, "dead: must be true"},
		{"remove a live node as dead", func() error {
			_, err := a.RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: "n2", Dead: true})
			return err
		}, codes.FailedPrecondition, "node n2 is registered at 127.0.0.1:1: decommission it instead"},
		{"remove unknown", func() error {
			_, err := a.RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: "nx", Dead: true})
			return err
		}, codes.NotFound, `"nx"`},
		{"replace a live node", func() error {
			_, err := a.ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: "n3"})
			return err
		}, codes.FailedPrecondition, "node n3 is registered at 127.0.0.1:1"},
		{"replace unknown", func() error {
			_, err := a.ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: "nx"})
			return err
		}, codes.NotFound, `"nx"`},
		{"empty id", func() error {
			_, err := a.ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{})
			return err
		}, codes.InvalidArgument, "node_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := placementJSON(t, store)
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("err = %v, want %s containing %q", err, tc.code, tc.msg)
			}
			if after := placementJSON(t, store); !bytes.Equal(before, after) {
				t.Errorf("placement changed:\n%s\n%s", before, after)
			}
		})
	}
	// Repeating a decommission is harmless and writes nothing.
	before := placementJSON(t, store)
	resp, err := a.DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: "n1"})
	if err != nil || resp.GetNode().GetMembership() != kvv1.Membership_MEMBERSHIP_LEAVING {
		t.Fatalf("second decommission: %v, %v", resp, err)
	}
	if after := placementJSON(t, store); !bytes.Equal(before, after) {
		t.Errorf("a repeated decommission changed the placement")
	}
}

// TestReplaceAndRemoveNode: replacing a down member backfills every
// partition it holds in place; removing it as dead then makes it dead.
func TestReplaceAndRemoveNode(t *testing.T) {
	a, store := newAdminEtcd(t, false)
	ctx := t.Context()
	resp, err := a.ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: "n4"})
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := store.Placement(ctx)
	held := d.Table().PartitionsPerNode()["n4"]
	if int(resp.GetPartitions()) != held || held == 0 || d.Members["n4"].State != placement.MemberReplacing {
		t.Fatalf("replace: %d partitions, n4 holds %d, member %+v", resp.GetPartitions(), held, d.Members["n4"])
	}
	for _, m := range d.Moves {
		if !m.Replace() || m.Add != "n4" || m.Stage != placement.StagePending || d.ChangedAt(m.Partition) != d.Epoch {
			t.Errorf("move %s since %d changed %d epoch %d", m, m.Since, d.ChangedAt(m.Partition), d.Epoch)
		}
	}
	// Idempotent.
	if resp, err := a.ReplaceNode(ctx, &kvv1.ReplaceNodeRequest{NodeId: "n4"}); err != nil || int(resp.GetPartitions()) != held {
		t.Fatalf("second replace: %v, %v", resp, err)
	}
	if d2, _, _ := store.Placement(ctx); d2.Epoch != d.Epoch {
		t.Errorf("a repeated replace wrote epoch %d", d2.Epoch)
	}
	st, err := a.RebalanceStatus(ctx, &kvv1.RebalanceStatusRequest{})
	if err != nil || st.GetRemaining() != uint64(held) || st.GetBalanced() || len(st.GetMoves()) != held {
		t.Fatalf("rebalance status %v, %v", st, err)
	}
	rm, err := a.RemoveNode(ctx, &kvv1.RemoveNodeRequest{NodeId: "n4", Dead: true})
	if err != nil || rm.GetNode().GetMembership() != kvv1.Membership_MEMBERSHIP_DEAD || rm.GetNode().GetState() != kvv1.NodeState_NODE_STATE_DOWN {
		t.Fatalf("remove: %v, %v", rm, err)
	}
}

// TestNodeAdminNeedsPlacement: before the first placement every node
// operation is FailedPrecondition.
func TestNodeAdminNeedsPlacement(t *testing.T) {
	a, _ := newAdminEtcd(t, true)
	ctx := t.Context()
	_, err := a.DecommissionNode(ctx, &kvv1.DecommissionNodeRequest{NodeId: "n1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("decommission: %v", err)
	}
	_, err = a.RebalanceStatus(ctx, &kvv1.RebalanceStatusRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("rebalance status: %v", err)
	}
}
