package server

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPresenceFollowsEpoch: a router reports in its presence the epoch of
// the view it routes by; a new cluster's first placement carries its
// members (epoch 1, nothing else written); a node joining gets moves.
func TestPresenceFollowsEpoch(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := clientv3.New(topology.ClientConfig([]string{e.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := topology.NewStore(cli, "test")
	ctx := t.Context()
	register := func(id string) {
		b, _ := json.Marshal(topology.Node{ID: id, Address: "127.0.0.1:1", State: topology.NodeUp})
		if _, err := cli.Put(ctx, store.Keys.Node(id), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		register(id)
	}
	s, err := Start(ctx, Config{ID: "r1", ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdClient: cli, Partitions: 16, ReplicationFactor: 3, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	presence := func() topology.Router { return s.watcher.Snapshot().Routers["r1"] }
	waitEpoch := func(e uint64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for presence().PlacementEpoch < e {
			if time.Now().After(deadline) {
				t.Fatalf("presence %+v, want epoch %d", presence(), e)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitEpoch(1)
	time.Sleep(300 * time.Millisecond)
	d, _, _ := store.Placement(ctx)
	if d.Epoch != 1 || len(d.Members) != 3 {
		t.Fatalf("placement at epoch %d with members %v, want 1 and n1..n3", d.Epoch, d.Members)
	}
	register("n4")
	waitEpoch(2)
	st, err := (&adminService{s: s}).ClusterStatus(ctx, &kvv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var n4 *kvv1.NodeStatus
	for _, n := range st.GetNodes() {
		if n.GetId() == "n4" {
			n4 = n
		}
	}
	if n4 == nil || n4.GetState() != kvv1.NodeState_NODE_STATE_JOINING || n4.GetPending() == 0 || n4.GetMembership() != kvv1.Membership_MEMBERSHIP_ACTIVE {
		t.Errorf("n4 status %v", n4)
	}
	if st.GetRebalance() == nil || len(st.GetRebalance().GetMoves()) == 0 || st.GetRebalance().GetBalanced() {
		t.Errorf("rebalance %v", st.GetRebalance())
	}
}

func TestViewFollowsTables(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := clientv3.New(topology.ClientConfig([]string{e.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := topology.NewStore(cli, "test")
	ctx := t.Context()
	// The router starts first, as in the dev stack.
	s, err := Start(ctx, Config{ID: "r1", ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdClient: cli, Partitions: 16, ReplicationFactor: 1, MinNodes: 1, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, _ := json.Marshal(topology.Node{ID: "n1", Address: "127.0.0.1:1", State: topology.NodeUp})
	if _, err := cli.Put(ctx, store.Keys.Node("n1"), string(b)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := "table" + string(rune('a'+i))
		if _, err := (&adminService{s: s}).CreateTable(ctx, &kvv1.CreateTableRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for s.cluster.View().Snapshot.Tables[name].Name == "" {
			if time.Now().After(deadline) {
				t.Fatalf("view has no %s: watcher rev %d, view rev %d", name, s.watcher.Snapshot().Revision, s.cluster.View().Snapshot.Revision)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
