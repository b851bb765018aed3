package svcmain

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// Defaults of the fields every service has.
const (
	// DefaultCluster is the default cluster name (etcd key prefix).
	DefaultCluster = "default"
	// DefaultEtcdEndpoint is the default etcd client URL.
	DefaultEtcdEndpoint = "http://127.0.0.1:2379"
	// DefaultShutdownTimeout bounds the graceful drain by default.
	DefaultShutdownTimeout = 10 * time.Second
)

// Common points at the fields every service's Config has. The fields stay
// in each service's Config (so a Config literal names them directly); the
// service hands Common pointers to them, and their flags, defaults and
// checks are written here once.
type Common struct {
	Cluster       *string
	EtcdEndpoints *[]string
	// EtcdClientSet reports whether the Config carries an etcd client, in
	// which case EtcdEndpoints gets no default.
	EtcdClientSet   bool
	ListenAddr      *string
	MetricsAddr     *string
	ShutdownTimeout *time.Duration
	// AdvertiseAddr is nil for a service that registers no address.
	AdvertiseAddr *string
}

// Addrs are a service's default addresses.
type Addrs struct {
	// Listen is the default of Config.ListenAddr.
	Listen string
	// FlagListen is the binary's --listen-addr default when it differs
	// from Listen (an embedded storage node takes a free port).
	FlagListen string
	// FlagMetrics is the binary's --metrics-addr default; an embedded
	// server serves no metrics unless asked.
	FlagMetrics string
}

// AddFlags registers --cluster, --etcd-endpoints, --listen-addr,
// --metrics-addr, --shutdown-timeout and (when the service has one)
// --advertise-addr, with the defaults of EnsureDefaults and a.
func (c Common) AddFlags(fs *flag.FlagSet, a Addrs) {
	listen := a.FlagListen
	if listen == "" {
		listen = a.Listen
	}
	fs.StringVar(c.ListenAddr, "listen-addr", listen, "gRPC listen address")
	if c.AdvertiseAddr != nil {
		fs.StringVar(c.AdvertiseAddr, "advertise-addr", "", "address registered for routers (default: the listen address)")
	}
	fs.StringVar(c.MetricsAddr, "metrics-addr", a.FlagMetrics, "HTTP address for /metrics (empty: off)")
	fs.StringVar(c.Cluster, "cluster", DefaultCluster, "cluster name (etcd key prefix)")
	*c.EtcdEndpoints = []string{DefaultEtcdEndpoint}
	fs.Var((*flagenv.StringList)(c.EtcdEndpoints), "etcd-endpoints", "comma-separated etcd client URLs")
	fs.DurationVar(c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "graceful shutdown deadline")
}

// EnsureDefaults fills the unset common fields.
func (c Common) EnsureDefaults(a Addrs) {
	if *c.ListenAddr == "" {
		*c.ListenAddr = a.Listen
	}
	if *c.Cluster == "" {
		*c.Cluster = DefaultCluster
	}
	if len(*c.EtcdEndpoints) == 0 && !c.EtcdClientSet {
		*c.EtcdEndpoints = []string{DefaultEtcdEndpoint}
	}
	if *c.ShutdownTimeout == 0 {
		*c.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// Validate returns every problem of the common fields.
func (c Common) Validate() []error {
	var errs []error
	if err := topology.ValidateClusterName(*c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(*c.ListenAddr); err != nil {
		errs = append(errs, fmt.Errorf("--listen-addr %q: want host:port", *c.ListenAddr))
	}
	if *c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("--shutdown-timeout must not be negative"))
	}
	return errs
}

// DefaultID is a process id for the election and claims of a router or
// migrator started without one: the hostname plus a random suffix, so two
// on one host differ.
func DefaultID() string {
	host, _ := os.Hostname()
	var r [3]byte
	_, _ = rand.Read(r[:])
	return host + "-" + hex.EncodeToString(r[:])
}
