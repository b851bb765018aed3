package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	router "github.com/veltrixdb/veltrix/services/router/server"
	storage "github.com/veltrixdb/veltrix/services/storage/server"
)

// ClusterOptions shape an in-process Veltrix cluster.
type ClusterOptions struct {
	// Dir holds etcd's and the nodes' data. Required.
	Dir string
	// Nodes is the number of storage nodes. Default 3.
	Nodes int
	// RF is the replication factor. Default min(3, Nodes).
	RF int
	// Partitions is P. Default 1024 (the product default).
	Partitions uint32
	// Sync makes storage nodes sync their WAL before acknowledging a write
	// (the product default). The coordination etcd never syncs: it is not
	// on the data path.
	Sync bool
	// CacheBytes is each node's LIRS cache. Default: the product default
	// (storage.DefaultCacheBytes); negative turns it off.
	CacheBytes int64
	// Logger receives the servers' logs. Default: warnings and errors to
	// nowhere.
	Logger *slog.Logger
}

// Cluster is a running in-process cluster: embedded etcd, storage nodes
// and one router, each on a free loopback port, started through the same
// server packages as the binaries.
type Cluster struct {
	Etcd   *etcdembed.Etcd
	Nodes  []*storage.Server
	Router *router.Server
}

// StartCluster starts etcd, the router and the storage nodes and waits
// until the router can route.
func StartCluster(ctx context.Context, o ClusterOptions) (_ *Cluster, err error) {
	if o.Dir == "" {
		return nil, errors.New("bench: cluster: Dir is required")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.RF == 0 {
		o.RF = min(3, o.Nodes)
	}
	if o.Partitions == 0 {
		o.Partitions = 1024
	}
	switch {
	case o.CacheBytes == 0:
		o.CacheBytes = storage.DefaultCacheBytes
	case o.CacheBytes < 0:
		o.CacheBytes = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.Etcd, err = etcdembed.Start(etcdembed.Config{Dir: filepath.Join(o.Dir, "etcd"), UnsafeNoFsync: true}); err != nil {
		return nil, err
	}
	c.Router, err = router.Start(ctx, router.Config{
		ID: "bench-router", ListenAddr: "127.0.0.1:0", Cluster: "bench", EtcdEndpoints: []string{c.Etcd.Endpoint()},
		Partitions: o.Partitions, ReplicationFactor: o.RF, MinNodes: o.Nodes, Logger: o.Logger.With("router", 1),
	})
	if err != nil {
		return nil, err
	}
	for i := range o.Nodes {
		n, err := storage.Start(ctx, storage.Config{
			ID: fmt.Sprintf("n%d", i+1), ListenAddr: "127.0.0.1:0", DataDir: filepath.Join(o.Dir, fmt.Sprintf("n%d", i+1)),
			Cluster: "bench", EtcdEndpoints: []string{c.Etcd.Endpoint()}, NoSync: !o.Sync, CacheBytes: o.CacheBytes,
			Logger: o.Logger.With("node", i+1),
		})
		if err != nil {
			return nil, fmt.Errorf("bench: start storage node %d: %w", i+1, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.Router.WaitReady(wctx); err != nil {
		return nil, err
	}
	// Every node must also see the placement before it accepts requests.
	return c, nil
}

// Close stops the router, the nodes and etcd.
func (c *Cluster) Close() error {
	var errs []error
	if c.Router != nil {
		errs = append(errs, c.Router.Close())
		c.Router = nil
	}
	for _, n := range c.Nodes {
		errs = append(errs, n.Close())
	}
	c.Nodes = nil
	if c.Etcd != nil {
		c.Etcd.Close()
		c.Etcd = nil
	}
	return errors.Join(errs...)
}
