// Package localcluster builds a whole Veltrix cluster in one process:
// embedded etcd, storage nodes on real Pebble directories, routers and
// optionally a migrator, each started through its server package exactly as
// its binary starts it. It is the one way the dev stack (`veltrix dev`), the
// in-process benchmark (`veltrix bench`) and the in-process tests
// (e2e/cluster) get a cluster; each wraps it with its own defaults and
// error handling.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	migrator "github.com/veltrixdb/veltrix/services/migrator/server"
	router "github.com/veltrixdb/veltrix/services/router/server"
	storage "github.com/veltrixdb/veltrix/services/storage/server"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options shape a cluster. Zero values take the defaults.
type Options struct {
	// Dir holds etcd's data and one directory per storage node (n1, n2,
	// …). Required.
	Dir string
	// Cluster is the cluster name. Default "local".
	Cluster string
	// Nodes is the number of storage nodes. Default 3.
	Nodes int
	// Routers is the number of routers. Default 1.
	Routers int
	// RF is the replication factor. Default min(3, Nodes).
	RF int
	// Partitions is P. Default 1024 (the product default).
	Partitions uint32
	// Zones, when set, labels node i with Zones[i%len(Zones)].
	Zones []string
	// NoSync turns off WAL syncing on the storage nodes (acknowledged
	// writes may be lost in a crash).
	NoSync bool
	// CacheBytes is each node's LIRS cache. Default
	// storage.DefaultCacheBytes; negative turns it off.
	CacheBytes int64
	// EtcdSync makes the embedded etcd fsync. Default false: tests and
	// benchmarks do not need it; the dev stack keeps its data and sets it.
	EtcdSync bool
	// RouterAddr is the first router's listen address; default a free
	// loopback port (as for every other listener).
	RouterAddr string
	// DynamoDBAddr, when set, serves the first router's DynamoDB-compatible
	// endpoint there ("127.0.0.1:0": a free port; see DynamoDBAddr).
	// Default: off.
	DynamoDBAddr string
	// DynamoDBAllRouters also serves the endpoint on every other router,
	// each on a free loopback port (see RouterDynamoDBAddr); DynamoDBAddr
	// must be set. Default: router 1 only.
	DynamoDBAllRouters bool
	// RouterStateDir, when set, gives router i the state directory
	// RouterStateDir/r<i>.
	RouterStateDir string
	// Upstream is every router's credentials for upstream DynamoDB in
	// migration mode. Default: the AWS SDK's default chain.
	Upstream router.UpstreamConfig
	// RouterAuth is every router's authentication config (--auth,
	// --auth-key-file, --auth-admins). Default: off.
	RouterAuth router.AuthConfig
	// Migrator also starts a migrator once the routers can route, on
	// MigratorAddr (default a free loopback port).
	Migrator     bool
	MigratorAddr string
	// MigratorAuth is the migrator's authentication config (--auth,
	// --auth-admins); it reaches the routers with its service certificate
	// (TLS), which they let do everything. Default: off.
	MigratorAuth migrator.AuthConfig
	// Metrics gives every server a /metrics listener on a free port.
	Metrics bool
	// TLS, when set, runs every server with TLS and mutual TLS between
	// them: routers with TLS.Router, storage nodes with TLS.Storage, the
	// migrator with TLS.Migrator (tlsx.WriteDevPKI writes such a set);
	// /metrics is served over HTTPS. Default: plaintext.
	TLS *tlsx.DevPKI
	// ReadyTimeout bounds the wait for the routers to route. Default 60s.
	ReadyTimeout time.Duration
	// Logger receives every server's logs. Default: discarded.
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() error {
	if o.Dir == "" {
		return errors.New("localcluster: Options.Dir is required")
	}
	if o.Cluster == "" {
		o.Cluster = "local"
	}
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
		o.Partitions = 1024
	}
	switch {
	case o.CacheBytes == 0:
		o.CacheBytes = storage.DefaultCacheBytes
	case o.CacheBytes < 0:
		o.CacheBytes = 0
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Cluster is a running in-process cluster.
type Cluster struct {
	Opts    Options
	Etcd    *etcdembed.Etcd
	EtcdCli *clientv3.Client
	// Nodes are the storage nodes; a stopped node's entry is nil.
	Nodes []*storage.Server
	// Routers are the routers; a stopped router's entry is nil.
	Routers []*router.Server
	// Migrator is the migrator, nil unless Options.Migrator.
	Migrator *migrator.Server

	nodeCfgs   []storage.Config
	routerCfgs []router.Config
}

// Start starts etcd, the routers, the storage nodes and (with
// Options.Migrator) the migrator, and returns once every router can route.
// On error everything started is stopped.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if err := o.ensureDefaults(); err != nil {
		return nil, err
	}
	c := &Cluster{Opts: o}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.Etcd, err = etcdembed.Start(etcdembed.Config{Dir: filepath.Join(o.Dir, "etcd"), UnsafeNoFsync: !o.EtcdSync}); err != nil {
		return nil, fmt.Errorf("localcluster: start etcd: %w", err)
	}
	if c.EtcdCli, err = c.Etcd.Client(); err != nil {
		return nil, err
	}
	metricsAddr := ""
	if o.Metrics {
		metricsAddr = "127.0.0.1:0"
	}
	// Routers first: they bootstrap the cluster config the nodes join.
	for i := range o.Routers {
		cfg := router.Config{
			ID: fmt.Sprintf("r%d", i+1), ListenAddr: "127.0.0.1:0", MetricsAddr: metricsAddr, Cluster: o.Cluster,
			EtcdClient: c.EtcdCli, Partitions: o.Partitions, ReplicationFactor: o.RF, MinNodes: o.Nodes,
			Logger: o.Logger.With("router", i+1), Upstream: o.Upstream, Auth: o.RouterAuth,
		}
		if o.TLS != nil {
			cfg.TLS, cfg.MetricsTLS = o.TLS.Router, true
		}
		if i == 0 && o.RouterAddr != "" {
			cfg.ListenAddr = o.RouterAddr
		}
		switch {
		case i == 0:
			cfg.DynamoDBAddr = o.DynamoDBAddr
		case o.DynamoDBAllRouters && o.DynamoDBAddr != "":
			cfg.DynamoDBAddr = "127.0.0.1:0"
		}
		if o.RouterStateDir != "" {
			cfg.StateDir = filepath.Join(o.RouterStateDir, fmt.Sprintf("r%d", i+1))
		}
		c.routerCfgs = append(c.routerCfgs, cfg)
		c.Routers = append(c.Routers, nil)
		if err := c.StartRouter(ctx, i); err != nil {
			return nil, err
		}
	}
	for i := range o.Nodes {
		cfg := storage.Config{
			ID: fmt.Sprintf("n%d", i+1), ListenAddr: "127.0.0.1:0", MetricsAddr: metricsAddr,
			DataDir: filepath.Join(o.Dir, fmt.Sprintf("n%d", i+1)), Cluster: o.Cluster, EtcdClient: c.EtcdCli,
			NoSync: o.NoSync, CacheBytes: o.CacheBytes, Logger: o.Logger.With("node", i+1),
		}
		if o.TLS != nil {
			cfg.TLS, cfg.MetricsTLS = o.TLS.Storage, true
		}
		if len(o.Zones) > 0 {
			cfg.Zone = o.Zones[i%len(o.Zones)]
		}
		c.nodeCfgs = append(c.nodeCfgs, cfg)
		c.Nodes = append(c.Nodes, nil)
		if err := c.StartNode(ctx, i); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	for _, r := range c.Routers {
		if err := r.WaitReady(wctx); err != nil {
			return nil, fmt.Errorf("localcluster: router %s: %w", r.ID(), err)
		}
	}
	if o.Migrator {
		addr := o.MigratorAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		mcfg := migrator.Config{
			ID: "m1", ListenAddr: addr, MetricsAddr: metricsAddr, Cluster: o.Cluster, EtcdClient: c.EtcdCli,
			RouterEndpoints: c.RouterAddrs(), Logger: o.Logger.With("migrator", 1), Auth: o.MigratorAuth,
		}
		if o.TLS != nil {
			mcfg.TLS, mcfg.MetricsTLS = o.TLS.Migrator, true
		}
		if c.Migrator, err = migrator.Start(ctx, mcfg); err != nil {
			return nil, fmt.Errorf("localcluster: start migrator on %s: %w", addr, err)
		}
	}
	return c, nil
}

// StartNode starts storage node i (again, on its data directory; a
// restarted node listens on a new port and registers again).
func (c *Cluster) StartNode(ctx context.Context, i int) error {
	s, err := storage.Start(ctx, c.nodeCfgs[i])
	if err != nil {
		return fmt.Errorf("localcluster: start storage node %s: %w", c.nodeCfgs[i].ID, err)
	}
	c.Nodes[i] = s
	return nil
}

// StopNode stops storage node i gracefully (it deregisters).
func (c *Cluster) StopNode(i int) error {
	if c.Nodes[i] == nil {
		return nil
	}
	err := c.Nodes[i].Close()
	c.Nodes[i] = nil
	if err != nil {
		return fmt.Errorf("localcluster: stop storage node %s: %w", c.nodeCfgs[i].ID, err)
	}
	return nil
}

// StartRouter starts router i (again).
func (c *Cluster) StartRouter(ctx context.Context, i int) error {
	r, err := router.Start(ctx, c.routerCfgs[i])
	if err != nil {
		return fmt.Errorf("localcluster: start router %s on %s: %w", c.routerCfgs[i].ID, c.routerCfgs[i].ListenAddr, err)
	}
	c.Routers[i] = r
	return nil
}

// StopRouter stops router i.
func (c *Cluster) StopRouter(i int) error {
	if c.Routers[i] == nil {
		return nil
	}
	err := c.Routers[i].Close()
	c.Routers[i] = nil
	return err
}

// RouterAddrs are the running routers' gRPC addresses.
func (c *Cluster) RouterAddrs() []string {
	var out []string
	for _, r := range c.Routers {
		if r != nil {
			out = append(out, r.Addr())
		}
	}
	return out
}

// DynamoDBAddr is the address of the first router's DynamoDB endpoint, or
// "" when it is off or the router is stopped.
func (c *Cluster) DynamoDBAddr() string { return c.RouterDynamoDBAddr(0) }

// RouterDynamoDBAddr is the address of router i's DynamoDB endpoint, or ""
// when it is off or the router is stopped.
func (c *Cluster) RouterDynamoDBAddr(i int) string {
	if i >= len(c.Routers) || c.Routers[i] == nil {
		return ""
	}
	return c.Routers[i].DynamoDBAddr()
}

// Close stops everything, in order: the migrator, the routers, the storage
// nodes, then etcd. It may be called again.
func (c *Cluster) Close() error {
	var errs []error
	if c.Migrator != nil {
		errs = append(errs, c.Migrator.Close())
		c.Migrator = nil
	}
	for i := range c.Routers {
		errs = append(errs, c.StopRouter(i))
	}
	for i := range c.Nodes {
		errs = append(errs, c.StopNode(i))
	}
	if c.EtcdCli != nil {
		errs = append(errs, c.EtcdCli.Close())
		c.EtcdCli = nil
	}
	if c.Etcd != nil {
		c.Etcd.Close()
		c.Etcd = nil
	}
	return errors.Join(errs...)
}
