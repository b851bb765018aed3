package bench

import (
	"context"
	"log/slog"

	"github.com/veltrixdb/veltrix/localcluster"
	router "github.com/veltrixdb/veltrix/services/router/server"
)

// ClusterOptions shape the in-process Veltrix cluster a benchmark runs.
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
	// DynamoDBAddr, when set, serves the router's DynamoDB endpoint there
	// ("127.0.0.1:0": a free port). Default: off.
	DynamoDBAddr string
	// Upstream is the router's credentials for upstream DynamoDB in
	// migration mode. Default: the AWS SDK's default chain.
	Upstream router.UpstreamConfig
	// Logger receives the servers' logs. Default: discarded.
	Logger *slog.Logger
}

// Cluster is a running in-process cluster with one router (localcluster).
type Cluster struct {
	*localcluster.Cluster
	Router *router.Server
}

// StartCluster starts etcd, the router and the storage nodes and waits
// until the router can route.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	lc, err := localcluster.Start(ctx, localcluster.Options{
		Dir: o.Dir, Cluster: "bench", Nodes: o.Nodes, RF: o.RF, Partitions: o.Partitions,
		NoSync: !o.Sync, CacheBytes: o.CacheBytes, DynamoDBAddr: o.DynamoDBAddr, Upstream: o.Upstream, Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Cluster{Cluster: lc, Router: lc.Routers[0]}, nil
}
