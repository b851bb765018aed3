package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// deadEtcd returns an etcd URL nothing listens on.
func deadEtcd(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestStartWithoutEtcd: without a persisted topology a router refuses to
// start and says why; with one it starts stale, routes, and refuses
// CreateTable with Unavailable at once.
func TestStartWithoutEtcd(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	cfg := Config{
		ID: "r1", ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdEndpoints: []string{deadEtcd(t)},
		StateDir: dir, EtcdStartTimeout: 300 * time.Millisecond, Logger: logger,
	}
	ctx := context.Background()
	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no persisted topology in "+dir) {
		t.Fatalf("Start without etcd or persisted topology: %v", err)
	}

	nodes := []placement.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}
	tbl, err := placement.Compute(nodes, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	doc := placement.NewDocument(1, tbl)
	snap := &topology.Snapshot{
		Revision:  7,
		Config:    &topology.ClusterConfig{Partitions: 8, ReplicationFactor: 3, HashFunction: placement.HashFunction},
		Placement: &doc,
		Nodes: map[string]topology.Node{
			"n1": {ID: "n1", Address: "127.0.0.1:1", State: topology.NodeUp},
			"n2": {ID: "n2", Address: "127.0.0.1:2", State: topology.NodeUp},
			"n3": {ID: "n3", Address: "127.0.0.1:3", State: topology.NodeUp},
		},
		Tables:     map[string]topology.Table{"t": {Name: "t", ID: 5}},
		TablesByID: map[uint64]topology.Table{5: {Name: "t", ID: 5}},
	}
	if err := topology.WriteSnapshotFile(snap2path(dir), "test", snap); err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start from the persisted topology: %v", err)
	}
	defer s.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	if !s.watcher.Stale() {
		t.Error("router started without etcd is not stale")
	}
	if _, ok := s.watcher.Snapshot().Tables["t"]; !ok {
		t.Error("persisted table missing")
	}
	begin := time.Now()
	_, err = (&adminService{s: s}).CreateTable(ctx, &kvv1.CreateTableRequest{Name: "new_table"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "etcd unreachable") || time.Since(begin) > time.Second {
		t.Errorf("CreateTable without etcd: %v after %s, want Unavailable at once", err, time.Since(begin))
	}
}

func snap2path(dir string) string { return (&Server{cfg: Config{StateDir: dir}}).snapshotPath() }
