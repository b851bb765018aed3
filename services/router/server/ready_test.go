package server

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestReadyOncePlaced: a router is live (overall SERVING) as soon as it
// serves, so start-up can go on to the storage nodes, but its KVService
// reports NOT_SERVING, and Ready stays open, until a placement exists.
func TestReadyOncePlaced(t *testing.T) {
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
	ctx := t.Context()
	s, err := Start(ctx, Config{ID: "r1", ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdClient: cli, Partitions: 16, ReplicationFactor: 1, MinNodes: 1, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cc, err := grpcx.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		return resp.GetStatus()
	}
	time.Sleep(100 * time.Millisecond) // a few rounds of watchHealth
	if got := check(""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("overall health before a placement: %s, want SERVING", got)
	}
	if got := check(kvv1.KVService_ServiceDesc.ServiceName); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("KVService health before a placement: %s, want NOT_SERVING", got)
	}
	select {
	case <-s.Ready():
		t.Fatal("ready without a placement")
	default:
	}

	b, _ := json.Marshal(topology.Node{ID: "n1", Address: "127.0.0.1:1", State: topology.NodeUp})
	if _, err := cli.Put(ctx, topology.NewStore(cli, "test").Keys.Node("n1"), string(b)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready 10s after a node registered")
	}
	if _, err := s.coord.View(); err != nil {
		t.Errorf("ready but cannot route: %v", err)
	}
	for _, svc := range []string{"", kvv1.KVService_ServiceDesc.ServiceName, kvv1.AdminService_ServiceDesc.ServiceName} {
		if got := check(svc); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%q health once placed: %s, want SERVING", svc, got)
		}
	}
}
