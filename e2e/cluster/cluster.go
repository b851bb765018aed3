// Package cluster starts a whole Veltrix cluster in-process for integration
// tests and benchmarks: embedded etcd, storage nodes on real Pebble
// directories and routers, each listening on a free loopback port, started
// exactly as the binaries start them (their server packages).
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	router "github.com/veltrixdb/veltrix/services/router/server"
	storage "github.com/veltrixdb/veltrix/services/storage/server"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options shape the cluster. Zero values take the defaults.
type Options struct {
	// Nodes is the number of storage nodes. Default 3.
	Nodes int
	// Routers is the number of routers. Default 1.
	Routers int
	// RF is the replication factor. Default min(3, Nodes).
	RF int
	// Partitions is P. Default 64 (small clusters start faster).
	Partitions uint32
	// Zones, when set, labels node i with Zones[i%len(Zones)].
	Zones []string
	// NoSync turns off WAL syncing on the storage nodes (benchmarks that say
	// so).
	NoSync bool
	// Logger receives every server's logs. Default: warnings to t.Output().
	Logger *slog.Logger
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t       testing.TB
	opts    Options
	dir     string
	Etcd    *etcdembed.Etcd
	EtcdCli *clientv3.Client
	// Nodes are the storage nodes; a stopped node's entry is nil.
	Nodes    []*storage.Server
	nodeCfgs []storage.Config
	// Routers are the routers; a stopped router's entry is nil.
	Routers    []*router.Server
	routerCfgs []router.Config
}

// Start starts etcd, the storage nodes and the routers, and waits until
// every router can route. Everything is stopped by t.Cleanup.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Routers == 0 {
		o.Routers = 1
	}
	if o.RF == 0 {
		o.RF = min(3, o.Nodes)
	}
	if o.Partitions == 0 {
		o.Partitions = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &Cluster{t: t, opts: o, dir: t.TempDir()}
	t.Cleanup(c.Close)
	var err error
	c.Etcd, err = etcdembed.Start(etcdembed.Config{Dir: filepath.Join(c.dir, "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.EtcdCli, err = c.Etcd.Client(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < o.Routers; i++ {
		cfg := router.Config{
			ID: fmt.Sprintf("r%d", i+1), ListenAddr: "127.0.0.1:0", Cluster: "test", EtcdEndpoints: []string{c.Etcd.Endpoint()},
			Partitions: o.Partitions, ReplicationFactor: o.RF, MinNodes: o.Nodes, Logger: o.Logger.With("router", i+1),
		}
		c.routerCfgs = append(c.routerCfgs, cfg)
		c.Routers = append(c.Routers, nil)
		c.StartRouter(i)
	}
	for i := 0; i < o.Nodes; i++ {
		cfg := storage.Config{
			ID: fmt.Sprintf("n%d", i+1), ListenAddr: "127.0.0.1:0", DataDir: filepath.Join(c.dir, fmt.Sprintf("n%d", i+1)),
			Cluster: "test", EtcdEndpoints: []string{c.Etcd.Endpoint()}, NoSync: o.NoSync, CacheBytes: 64 << 20,
			Logger: o.Logger.With("node", i+1),
		}
		if len(o.Zones) > 0 {
			cfg.Zone = o.Zones[i%len(o.Zones)]
		}
		c.nodeCfgs = append(c.nodeCfgs, cfg)
		c.Nodes = append(c.Nodes, nil)
		c.StartNode(i)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, r := range c.Routers {
		if err := r.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// StartNode starts storage node i (again, on its data dir; a restarted node
// listens on a new port and re-registers).
func (c *Cluster) StartNode(i int) {
	c.t.Helper()
	s, err := storage.Start(context.Background(), c.nodeCfgs[i])
	if err != nil {
		c.t.Fatalf("start storage node %d: %v", i+1, err)
	}
	c.Nodes[i] = s
}

// StopNode stops storage node i gracefully (it deregisters).
func (c *Cluster) StopNode(i int) {
	c.t.Helper()
	if c.Nodes[i] == nil {
		return
	}
	if err := c.Nodes[i].Close(); err != nil {
		c.t.Errorf("stop storage node %d: %v", i+1, err)
	}
	c.Nodes[i] = nil
}

// StartRouter starts router i (again).
func (c *Cluster) StartRouter(i int) {
	c.t.Helper()
	r, err := router.Start(context.Background(), c.routerCfgs[i])
	if err != nil {
		c.t.Fatalf("start router %d: %v", i+1, err)
	}
	c.Routers[i] = r
}

// StopRouter stops router i.
func (c *Cluster) StopRouter(i int) {
	if c.Routers[i] == nil {
		return
	}
	_ = c.Routers[i].Close()
	c.Routers[i] = nil
}

// RouterAddr is router i's gRPC address.
func (c *Cluster) RouterAddr(i int) string { return c.Routers[i].Addr() }

// Clients dials router i and returns KV and Admin clients.
func (c *Cluster) Clients(i int) (kvv1.KVServiceClient, kvv1.AdminServiceClient) {
	c.t.Helper()
	cc, err := grpcx.Dial(c.Routers[i].Addr())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return kvv1.NewKVServiceClient(cc), kvv1.NewAdminServiceClient(cc)
}

// Close stops everything: routers, storage nodes, then etcd.
func (c *Cluster) Close() {
	for i := range c.Routers {
		c.StopRouter(i)
	}
	for i := range c.Nodes {
		c.StopNode(i)
	}
	if c.EtcdCli != nil {
		c.EtcdCli.Close()
		c.EtcdCli = nil
	}
	if c.Etcd != nil {
		c.Etcd.Close()
	}
}
