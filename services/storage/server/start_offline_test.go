package server_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestStartWithoutEtcd: a node restarted on its stamped directory while
// etcd is down serves from its persisted topology and registers when etcd
// returns, or stops if etcd then refuses the directory; a fresh directory
// never starts without etcd.
func TestStartWithoutEtcd(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	clientPort, err := etcdembed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	peerPort, err := etcdembed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ecfg := etcdembed.Config{Dir: t.TempDir(), ClientPort: clientPort, PeerPort: peerPort, UnsafeNoFsync: true}
	var e *etcdembed.Etcd
	etcdUp := func(t *testing.T) *topology.Store {
		t.Helper()
		var err error
		if e, err = etcdembed.Start(ecfg); err != nil {
			t.Fatal(err)
		}
		cli, err := e.Client()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return topology.NewStore(cli, "test")
	}
	etcdUp(t)
	t.Cleanup(func() { e.Close() })
	dir := t.TempDir()
	cfg := server.Config{ID: "w", DataDir: dir, Cluster: "test", EtcdEndpoints: []string{e.Endpoint()},
		EtcdStartTimeout: 300 * time.Millisecond, LeaseTTL: 2 * time.Second, Logger: logger}
	s, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the persisted topology", func() bool {
		_, err := os.Stat(filepath.Join(dir, "topology.json"))
		return err == nil
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.Close()

	t.Run("fresh directory refused", func(t *testing.T) {
		c := cfg
		c.ID, c.DataDir = "fresh", t.TempDir()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if s, err := server.Start(sctx, c); err == nil {
			s.Close()
			t.Fatal("a fresh directory started without etcd")
		} else if !strings.Contains(err.Error(), "not stamped") {
			t.Fatalf("got %v, want it to say the directory is not stamped", err)
		}
		if _, err := os.Stat(filepath.Join(c.DataDir, "IDENTITY")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused start stamped the directory: %v", err)
		}
	})

	t.Run("restart registers when etcd returns", func(t *testing.T) {
		s, err := server.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wantHealth(t, s.Addr(), healthpb.HealthCheckResponse_SERVING)
		store := etcdUp(t)
		defer e.Close()
		waitFor(t, "the registration", func() bool {
			n, found, err := store.Node(ctx, "w")
			return err == nil && found && n.Address == s.Addr() && n.Incarnation != ""
		})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refused when etcd returns", func(t *testing.T) {
		// Another directory became w while this one was away.
		store := etcdUp(t)
		_, rev, _, err := store.NodeIdentity(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: "w", Incarnation: "newer", ClaimTime: time.Now().UTC()}, rev); err != nil {
			t.Fatal(err)
		}
		e.Close()
		s, err := server.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		etcdUp(t)
		defer e.Close()
		select {
		case err := <-s.Err():
			if !errors.Is(err, server.ErrIdentity) || !strings.Contains(err.Error(), "this one is stale") {
				t.Fatalf("Err() = %v, want ErrIdentity saying the directory is stale", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("still running 15s after etcd returned with another directory's claim")
		}
		wantHealth(t, s.Addr(), healthpb.HealthCheckResponse_NOT_SERVING)
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 15s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantHealth(t *testing.T, addr string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	cc, err := grpcx.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: storagev1.StorageService_ServiceDesc.ServiceName})
	if err != nil || h.Status != want {
		t.Fatalf("health = %v, %v; want %v", h, err, want)
	}
}
