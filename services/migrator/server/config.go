// Package server is the embeddable migrator: it serves the
// veltrix.migrator.v1 MigratorService over gRPC, keeps jobs in etcd, and
// runs the import and verify jobs it can claim, writing to Veltrix through
// the routers. The veltrix-migrator binary, the dev stack and the tests all
// start it the same way: fill a Config, Start, Close.
package server

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Config configures a migrator.
type Config struct {
	// ID identifies the migrator in job claims, checkpoints and
	// Job.owners. Default: <hostname>-<random>.
	ID string
	// ListenAddr is the gRPC address. Default: 127.0.0.1:7600.
	ListenAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it. Default
	// (flag): 127.0.0.1:9600.
	MetricsAddr string
	// Cluster is the cluster name (etcd key prefix). Default: "default".
	Cluster string
	// EtcdEndpoints are the etcd client URLs; ignored when EtcdClient is
	// set. Default: http://127.0.0.1:2379.
	EtcdEndpoints []string
	// EtcdClient, when set, is used instead of dialing EtcdEndpoints. The
	// migrator does not close it.
	EtcdClient *clientv3.Client
	// RouterEndpoints are the routers (host:port) the migrator writes and
	// reads through. Default: 127.0.0.1:7400.
	RouterEndpoints []string
	// MaxConcurrentJobs is the most jobs this migrator works on at once.
	// Default: 4.
	MaxConcurrentJobs int
	// SessionTTL is the etcd lease TTL of this migrator's claims on data
	// files: after a crash, its files are taken over this long later (a
	// clean Close releases them at once). Default: 10s.
	SessionTTL time.Duration
	// MaxStoredRejects caps the dead-letter records stored per job; every
	// reject is counted regardless. Default: 10000.
	MaxStoredRejects int
	// WriteRetry is how long failing writes to Veltrix are retried before
	// the job fails. Default: 2m.
	WriteRetry time.Duration
	// StartTimeout bounds waiting for a router at Start. Default: 30s.
	StartTimeout time.Duration
	// ShutdownTimeout bounds the graceful drain on Close. Default: 10s.
	ShutdownTimeout time.Duration
	// TLS are the migrator's certificate, key and CA files. With a
	// certificate the gRPC listener serves TLS, verifying a client
	// certificate against the CA when one is presented, and the migrator
	// presents its certificate to the routers and storage nodes it dials.
	// Default: none (plaintext).
	TLS tlsx.Files
	// EtcdTLS are the etcd client's TLS files (https:// endpoints).
	// Default: none.
	EtcdTLS tlsx.Files
	// MetricsTLS serves /metrics over HTTPS with the TLS certificate.
	// Default: false.
	MetricsTLS bool
	// Auth configures authentication and per-table permissions (flags
	// --auth, --auth-admins). Default: off.
	Auth AuthConfig
	// Logger receives the migrator's logs. Default: slog.Default().
	Logger *slog.Logger
}

// addrs are the migrator's default addresses.
var addrs = svcmain.Addrs{Listen: "127.0.0.1:7600", FlagMetrics: "127.0.0.1:9600"}

// common points at the fields every service has.
func (c *Config) common() svcmain.Common {
	return svcmain.Common{
		Cluster: &c.Cluster, EtcdEndpoints: &c.EtcdEndpoints, EtcdClientSet: c.EtcdClient != nil,
		ListenAddr: &c.ListenAddr, MetricsAddr: &c.MetricsAddr, ShutdownTimeout: &c.ShutdownTimeout,
		TLS: &c.TLS, EtcdTLS: &c.EtcdTLS, MetricsTLS: &c.MetricsTLS,
	}
}

// AddFlags registers the config's flags on fs (each also read from its
// VELTRIX_* environment variable), with EnsureDefaults' defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	var d Config
	d.EnsureDefaults()
	fs.StringVar(&c.ID, "migrator-id", "", "migrator id (default: hostname plus a random suffix)")
	c.common().AddFlags(fs, addrs)
	c.RouterEndpoints = d.RouterEndpoints
	fs.Var((*flagenv.StringList)(&c.RouterEndpoints), "router-endpoints", "comma-separated router gRPC addresses (host:port)")
	fs.IntVar(&c.MaxConcurrentJobs, "max-concurrent-jobs", d.MaxConcurrentJobs, "most jobs this migrator works on at once")
	fs.DurationVar(&c.SessionTTL, "session-ttl", d.SessionTTL, "lease TTL of this migrator's claims (how soon another migrator takes over after a crash)")
	fs.IntVar(&c.MaxStoredRejects, "max-stored-rejects", d.MaxStoredRejects, "dead-letter records stored per job (all are counted)")
	fs.DurationVar(&c.WriteRetry, "write-retry", d.WriteRetry, "how long failing writes to Veltrix are retried before a job fails")
	fs.DurationVar(&c.StartTimeout, "start-timeout", d.StartTimeout, "how long to wait for a router at startup")
	fs.BoolVar(&c.Auth.Enabled, "auth", false, "authenticate every gRPC call (client certificate or bearer token) and check per-table permissions; off, every call may do everything")
	fs.Var((*flagenv.StringList)(&c.Auth.Admins), "auth-admins", "comma-separated principals that may do everything (bootstrap, e.g. the principal of an admin client certificate)")
}

// EnsureDefaults fills unset fields with their defaults: the one place
// they are written (AddFlags takes its defaults from here).
func (c *Config) EnsureDefaults() {
	if c.ID == "" {
		c.ID = svcmain.DefaultID()
	}
	c.common().EnsureDefaults(addrs)
	if len(c.RouterEndpoints) == 0 {
		c.RouterEndpoints = []string{"127.0.0.1:7400"}
	}
	if c.MaxConcurrentJobs == 0 {
		c.MaxConcurrentJobs = 4
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 10 * time.Second
	}
	if c.MaxStoredRejects == 0 {
		c.MaxStoredRejects = 10000
	}
	if c.WriteRetry == 0 {
		c.WriteRetry = 2 * time.Minute
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	errs := c.common().Validate()
	if c.ID == "" {
		errs = append(errs, errors.New("--migrator-id: empty"))
	}
	for _, e := range c.RouterEndpoints {
		if _, _, err := net.SplitHostPort(e); err != nil {
			errs = append(errs, fmt.Errorf("--router-endpoints: %q: want host:port", e))
		}
	}
	if c.MaxConcurrentJobs < 1 || c.MaxConcurrentJobs > 1000 {
		errs = append(errs, fmt.Errorf("--max-concurrent-jobs %d: want 1 to 1000", c.MaxConcurrentJobs))
	}
	if c.SessionTTL < time.Second {
		errs = append(errs, fmt.Errorf("--session-ttl %s: at least 1s", c.SessionTTL))
	}
	if c.MaxStoredRejects < 1 {
		errs = append(errs, fmt.Errorf("--max-stored-rejects %d: at least 1", c.MaxStoredRejects))
	}
	for _, a := range c.Auth.Admins {
		if err := auth.ValidatePrincipalName(a); err != nil {
			errs = append(errs, fmt.Errorf("--auth-admins: %v", err))
		}
	}
	if c.WriteRetry < 0 || c.StartTimeout < 0 {
		errs = append(errs, errors.New("--write-retry and --start-timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("migrator: invalid config: %w", err)
	}
	return nil
}
