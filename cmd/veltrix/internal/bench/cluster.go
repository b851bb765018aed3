package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
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
	// Secure runs every listener with TLS (a dev PKI written to Dir/pki),
	// mutual TLS between the router and the nodes, and --auth on the
	// router, its API key secrets sealed with a fresh key in
	// Dir/auth-seal.key; the dev PKI's "admin" client certificate is a
	// cluster admin. Default: plaintext, no auth.
	Secure bool
	// Logger receives the servers' logs. Default: discarded.
	Logger *slog.Logger
}

// Cluster is a running in-process cluster with one router (localcluster).
type Cluster struct {
	*localcluster.Cluster
	Router *router.Server
	// PKI is the dev PKI of a Secure cluster; nil otherwise.
	PKI *tlsx.DevPKI
}

// StartCluster starts etcd, the router and the storage nodes and waits
// until the router can route.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	lo := localcluster.Options{
		Dir: o.Dir, Cluster: "bench", Nodes: o.Nodes, RF: o.RF, Partitions: o.Partitions,
		NoSync: !o.Sync, CacheBytes: o.CacheBytes, DynamoDBAddr: o.DynamoDBAddr, Upstream: o.Upstream, Logger: o.Logger,
	}
	var pki *tlsx.DevPKI
	if o.Secure {
		p, err := tlsx.WriteDevPKI(filepath.Join(o.Dir, "pki"), nil)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		keyFile, err := writeSealKey(filepath.Join(o.Dir, "auth-seal.key"))
		if err != nil {
			return nil, err
		}
		pki = &p
		lo.TLS = pki
		lo.RouterAuth = router.AuthConfig{Enabled: true, KeyFile: keyFile, Admins: []string{tlsx.DevAdmin}}
	}
	lc, err := localcluster.Start(ctx, lo)
	if err != nil {
		return nil, err
	}
	return &Cluster{Cluster: lc, Router: lc.Routers[0], PKI: pki}, nil
}

// writeSealKey writes a fresh --auth-key-file (64 hex characters) to path.
func writeSealKey(path string) (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bench: auth seal key: %w", err)
	}
	return path, nil
}
