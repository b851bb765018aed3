// Package cluster starts a whole Veltrix cluster in-process for integration
// tests and benchmarks: localcluster with test defaults (cluster "test",
// 64 partitions, 64 MiB caches, warnings logged to the test), its data under
// t.TempDir(), stopped by t.Cleanup, and failures reported with t.Fatal.
package cluster

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
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
	*localcluster.Cluster
	t testing.TB
}

// Start starts etcd, the storage nodes and the routers, and waits until
// every router can route. Everything is stopped by t.Cleanup.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Partitions == 0 {
		o.Partitions = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	lc, err := localcluster.Start(context.Background(), localcluster.Options{
		Dir: t.TempDir(), Cluster: "test", Nodes: o.Nodes, Routers: o.Routers, RF: o.RF,
		Partitions: o.Partitions, Zones: o.Zones, NoSync: o.NoSync, CacheBytes: 64 << 20,
		ReadyTimeout: 30 * time.Second, Logger: o.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Cluster: lc, t: t}
	t.Cleanup(c.Close)
	return c
}

// StartNode starts storage node i (again, on its data dir; a restarted node
// listens on a new port and re-registers).
func (c *Cluster) StartNode(i int) {
	c.t.Helper()
	if err := c.Cluster.StartNode(context.Background(), i); err != nil {
		c.t.Fatal(err)
	}
}

// StopNode stops storage node i gracefully (it deregisters).
func (c *Cluster) StopNode(i int) {
	c.t.Helper()
	if err := c.Cluster.StopNode(i); err != nil {
		c.t.Error(err)
	}
}

// StartRouter starts router i (again).
func (c *Cluster) StartRouter(i int) {
	c.t.Helper()
	if err := c.Cluster.StartRouter(context.Background(), i); err != nil {
		c.t.Fatal(err)
	}
}

// StopRouter stops router i.
func (c *Cluster) StopRouter(i int) { _ = c.Cluster.StopRouter(i) }

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
func (c *Cluster) Close() { _ = c.Cluster.Close() }
