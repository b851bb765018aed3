// Package server is the embeddable storage node: it opens the engine,
// serves veltrix.storage.v1.StorageService over gRPC, registers the node in
// etcd under a kept-alive lease and exports Prometheus metrics. The
// veltrix-storage binary, the dev stack and the tests all start it the same
// way: fill a Config, Start, Close.
package server

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Config configures a storage node.
type Config struct {
	// ID is the node's stable identifier. Default: the id DataDir is
	// stamped with (a random one on a fresh directory). A directory stamped
	// for another node, or an empty one for an id that holds partitions, is
	// refused (ErrIdentity).
	ID string
	// ListenAddr is the gRPC listen address. Default: 127.0.0.1:0 (a free
	// port).
	ListenAddr string
	// AdvertiseAddr is the address registered in etcd for routers to dial.
	// Default: the address actually listened on.
	AdvertiseAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it. Default: "".
	MetricsAddr string
	// DataDir holds Pebble's files and the IDENTITY stamp. Required.
	DataDir string
	// Zone is the node's failure domain label. Default: "".
	Zone string
	// CapacityBytes is the disk capacity the node offers. Default: 0
	// (unknown).
	CapacityBytes uint64
	// Cluster is the cluster name (etcd key prefix). Default: "default".
	Cluster string
	// EtcdEndpoints are the etcd client URLs; ignored when EtcdClient is
	// set. Default: http://127.0.0.1:2379.
	EtcdEndpoints []string
	// EtcdClient, when set, is used instead of dialing EtcdEndpoints (the dev
	// stack shares one). The node does not close it.
	EtcdClient *clientv3.Client
	// NoSync acknowledges writes before the WAL is synced: a crash can lose
	// acknowledged writes. Default: false (every write is on disk first).
	NoSync bool
	// CacheBytes is the size of the LIRS cache for point reads; 0 disables
	// it. Default: 256 MiB (set by AddFlags and EnsureDefaults when negative).
	CacheBytes int64
	// TombstoneGrace is how long tombstones are kept at least (with
	// anti-entropy on, also until every replica has them). Default: 24h.
	TombstoneGrace time.Duration
	// PurgeInterval is the time between purges of tombstones and expired
	// items. Default: 1m.
	PurgeInterval time.Duration
	// AntiEntropyClockSkew is how far the clocks of two nodes may differ:
	// a tombstone is purged only if written this long before its
	// partition's sync point. Default: 1m.
	AntiEntropyClockSkew time.Duration
	// LeaseTTL is the TTL of the node's registration lease. Default: 10s.
	LeaseTTL time.Duration
	// ShutdownTimeout bounds the graceful drain on Close. Default: 10s.
	ShutdownTimeout time.Duration
	// EtcdStartTimeout is how long Start waits for etcd before a node whose
	// data directory is stamped and holds a persisted topology starts from
	// that topology (a restart during an etcd outage). A node without both
	// waits 30s and fails. Default: 5s.
	EtcdStartTimeout time.Duration
	// AntiEntropyInterval is the time between anti-entropy rounds, in which
	// the replicas of each partition compare digests and exchange what
	// differs; negative turns anti-entropy off (then tombstones are purged
	// after TombstoneGrace alone, and a replica away longer than that can
	// resurrect deletes). Default: 30s.
	AntiEntropyInterval time.Duration
	// AntiEntropyRateMBps caps the bytes anti-entropy moves, per node, in
	// MiB/s. Default: 32.
	AntiEntropyRateMBps float64
	// AntiEntropyBuckets is how many hash buckets a differing partition is
	// split into to find what differs. Default: 256.
	AntiEntropyBuckets int
	// HintMaxBytes bounds the bytes of hints (writes other replicas missed,
	// held for them: hinted handoff) the node stores; beyond it StoreHints
	// is refused. Default: 256 MiB.
	HintMaxBytes int64
	// HintMaxAge is how long a hint is kept for a node that does not come
	// back; older hints are dropped (anti-entropy repairs what they would
	// have). Default: 3h.
	HintMaxAge time.Duration
	// MaxBackfills bounds the partitions the node backfills at once as the
	// destination of a move. Default: 2.
	MaxBackfills int
	// StreamRateMBps caps the bytes of streamed records the node's
	// backfills apply, all together, in MiB/s; negative is unlimited (the
	// flag's 0). Default: 64.
	StreamRateMBps float64
	// MaxIngestBytes bounds the keys and values of one Ingest run (bulk
	// import), which the node holds in memory while it builds the run's
	// SST; a larger run is refused (RESOURCE_EXHAUSTED). Default: 256 MiB.
	MaxIngestBytes int64
	// TLS are the node's certificate, key and CA files. With a certificate
	// the gRPC listener serves TLS and requires a client certificate of a
	// Veltrix service (router, migrator or storage) verified by the CA, and
	// the node presents its certificate to its peers. Default: none
	// (plaintext).
	TLS tlsx.Files
	// EtcdTLS are the etcd client's TLS files (https:// endpoints).
	// Default: none.
	EtcdTLS tlsx.Files
	// MetricsTLS serves /metrics over HTTPS with the TLS certificate.
	// Default: false.
	MetricsTLS bool
	// Logger receives the node's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the node's clock (tombstone grace, expiry, sync points); for
	// tests. Default: time.Now.
	Now func() time.Time
}

// Defaults of the config.
const (
	// DefaultCacheBytes is the default LIRS cache size.
	DefaultCacheBytes = 256 << 20
	// DefaultHintMaxBytes is the default hint budget.
	DefaultHintMaxBytes = 256 << 20
	// DefaultHintMaxAge is how long hints are kept by default.
	DefaultHintMaxAge = 3 * time.Hour
	// DefaultMaxBackfills is how many partitions a node backfills at once.
	DefaultMaxBackfills = 2
	// DefaultStreamRateMBps is the default backfill rate per node.
	DefaultStreamRateMBps = 64
	// DefaultMaxIngestBytes is the default bound of one Ingest run.
	DefaultMaxIngestBytes = 256 << 20
	// minMaxIngestBytes is the smallest run limit: one record with a
	// maximal value and keys.
	minMaxIngestBytes = engine.MaxValueLen + 4<<10
)

// addrs are the storage node's default addresses: an embedded node takes
// a free port, the binary a fixed one.
var addrs = svcmain.Addrs{Listen: "127.0.0.1:0", FlagListen: "127.0.0.1:7500", FlagMetrics: "127.0.0.1:9500"}

// common points at the fields every service has.
func (c *Config) common() svcmain.Common {
	return svcmain.Common{
		Cluster: &c.Cluster, EtcdEndpoints: &c.EtcdEndpoints, EtcdClientSet: c.EtcdClient != nil,
		ListenAddr: &c.ListenAddr, AdvertiseAddr: &c.AdvertiseAddr, MetricsAddr: &c.MetricsAddr,
		ShutdownTimeout: &c.ShutdownTimeout, TLS: &c.TLS, EtcdTLS: &c.EtcdTLS, MetricsTLS: &c.MetricsTLS,
	}
}

// AddFlags registers the config's flags on fs, with EnsureDefaults'
// defaults; every flag can also be set through its VELTRIX_* environment
// variable (see pkg/flagenv).
func (c *Config) AddFlags(fs *flag.FlagSet) {
	var d Config
	d.EnsureDefaults()
	fs.StringVar(&c.ID, "node-id", "", "node id (default: the id <data-dir> is stamped with; a random one for a fresh directory)")
	c.common().AddFlags(fs, addrs)
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for the node's data (required)")
	fs.StringVar(&c.Zone, "zone", "", "failure domain label; replicas are spread across zones")
	fs.Uint64Var(&c.CapacityBytes, "capacity-bytes", 0, "disk capacity offered, in bytes (0: unknown)")
	fs.BoolVar(&c.NoSync, "no-sync", false, "acknowledge writes before the WAL is synced (unsafe: a crash can lose acknowledged writes)")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", DefaultCacheBytes, "LIRS read cache size in bytes (0: off)")
	fs.DurationVar(&c.TombstoneGrace, "tombstone-grace", d.TombstoneGrace, "how long deletes are remembered at least (and until anti-entropy gave them to every replica)")
	fs.DurationVar(&c.PurgeInterval, "purge-interval", d.PurgeInterval, "time between purges of tombstones and expired items")
	fs.DurationVar(&c.AntiEntropyClockSkew, "anti-entropy-clock-skew", d.AntiEntropyClockSkew, "how far node clocks may differ; tombstones are purged only this long behind a sync point")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", d.LeaseTTL, "registration lease TTL")
	fs.DurationVar(&c.EtcdStartTimeout, "etcd-start-timeout", d.EtcdStartTimeout, "how long a restarted node (stamped directory with a persisted topology) waits for etcd before it starts from its persisted topology")
	fs.DurationVar(&c.AntiEntropyInterval, "anti-entropy-interval", d.AntiEntropyInterval, "time between anti-entropy rounds (negative: off)")
	fs.Float64Var(&c.AntiEntropyRateMBps, "anti-entropy-rate", d.AntiEntropyRateMBps, "MiB/s anti-entropy may move per node")
	fs.IntVar(&c.AntiEntropyBuckets, "anti-entropy-buckets", d.AntiEntropyBuckets, "hash buckets a differing partition is split into")
	fs.Int64Var(&c.HintMaxBytes, "hint-max-bytes", d.HintMaxBytes, "bytes of hints held for other nodes at most (hinted handoff)")
	fs.DurationVar(&c.HintMaxAge, "hint-max-age", d.HintMaxAge, "how long a hint is kept for a node that does not come back")
	fs.IntVar(&c.MaxBackfills, "max-backfills", d.MaxBackfills, "partitions the node backfills at once as the destination of a move")
	fs.Int64Var(&c.MaxIngestBytes, "max-ingest-bytes", d.MaxIngestBytes, "bytes of keys and values one Ingest run (bulk import) may hold; larger runs are refused")
	c.StreamRateMBps = d.StreamRateMBps
	fs.Var((*streamRate)(&c.StreamRateMBps), "stream-rate", "MiB/s of streamed records the node's backfills apply, all together (0: unlimited)")
}

// streamRate is the --stream-rate flag: MiB/s, where 0 means unlimited
// (Config.StreamRateMBps negative, since its zero value is the default).
type streamRate float64

func (r *streamRate) String() string {
	if r == nil || *r < 0 {
		return "0"
	}
	return strconv.FormatFloat(float64(*r), 'g', -1, 64)
}

func (r *streamRate) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil:
		return fmt.Errorf("want MiB/s: %w", err)
	case f < 0:
		return fmt.Errorf("%v: want 0 (unlimited) or a positive MiB/s", f)
	case f == 0:
		f = -1
	}
	*r = streamRate(f)
	return nil
}

// EnsureDefaults fills unset fields with their defaults: the one place
// they are written (AddFlags takes its defaults from here).
func (c *Config) EnsureDefaults() {
	c.common().EnsureDefaults(addrs)
	if c.CacheBytes < 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = 24 * time.Hour
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = time.Minute
	}
	if c.AntiEntropyClockSkew == 0 {
		c.AntiEntropyClockSkew = time.Minute
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.EtcdStartTimeout == 0 {
		c.EtcdStartTimeout = 5 * time.Second
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = 30 * time.Second
	}
	if c.AntiEntropyRateMBps == 0 {
		c.AntiEntropyRateMBps = 32
	}
	if c.AntiEntropyBuckets == 0 {
		c.AntiEntropyBuckets = 256
	}
	if c.HintMaxBytes == 0 {
		c.HintMaxBytes = DefaultHintMaxBytes
	}
	if c.HintMaxAge == 0 {
		c.HintMaxAge = DefaultHintMaxAge
	}
	if c.MaxBackfills == 0 {
		c.MaxBackfills = DefaultMaxBackfills
	}
	if c.StreamRateMBps == 0 {
		c.StreamRateMBps = DefaultStreamRateMBps
	}
	if c.MaxIngestBytes == 0 {
		c.MaxIngestBytes = DefaultMaxIngestBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the config at once.
func (c *Config) Validate() error {
	errs := c.common().Validate()
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	// With anti-entropy a tombstone is purged only once every replica has
	// it, whatever the grace; without, the grace is all that protects a
	// delete from a replica that was away.
	if c.AntiEntropyInterval <= 0 && c.TombstoneGrace < time.Minute {
		errs = append(errs, fmt.Errorf("--tombstone-grace %s: want at least 1m with anti-entropy off (a replica that was down longer than this can resurrect deletes)", c.TombstoneGrace))
	}
	if c.TombstoneGrace < time.Second {
		errs = append(errs, fmt.Errorf("--tombstone-grace %s: want at least 1s", c.TombstoneGrace))
	}
	if c.PurgeInterval < 0 || c.AntiEntropyClockSkew < 0 {
		errs = append(errs, fmt.Errorf("--purge-interval %s, --anti-entropy-clock-skew %s: must not be negative", c.PurgeInterval, c.AntiEntropyClockSkew))
	}
	if c.AntiEntropyRateMBps < 0 {
		errs = append(errs, fmt.Errorf("--anti-entropy-rate %v: want a positive MiB/s", c.AntiEntropyRateMBps))
	}
	if c.AntiEntropyBuckets < 1 || c.AntiEntropyBuckets > 65536 {
		errs = append(errs, fmt.Errorf("--anti-entropy-buckets %d: want 1 to 65536", c.AntiEntropyBuckets))
	}
	if c.HintMaxBytes < 0 || c.HintMaxAge < 0 {
		errs = append(errs, fmt.Errorf("--hint-max-bytes %d, --hint-max-age %s: must not be negative", c.HintMaxBytes, c.HintMaxAge))
	}
	if c.MaxBackfills < 1 {
		errs = append(errs, fmt.Errorf("--max-backfills %d: want at least 1", c.MaxBackfills))
	}
	if c.MaxIngestBytes < minMaxIngestBytes {
		errs = append(errs, fmt.Errorf("--max-ingest-bytes %d: want at least %d (one record with a 64 MiB value)", c.MaxIngestBytes, minMaxIngestBytes))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("--lease-ttl %s: want at least 1s", c.LeaseTTL))
	}
	if c.EtcdStartTimeout < 0 {
		errs = append(errs, fmt.Errorf("--etcd-start-timeout %s: must not be negative", c.EtcdStartTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: invalid config: %w", err)
	}
	return nil
}
