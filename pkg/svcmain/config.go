package svcmain

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
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
	// TLS are the service's certificate, key and CA files
	// (--tls-cert-file, --tls-key-file, --tls-ca-file); nil for none.
	TLS *tlsx.Files
	// EtcdTLS are the etcd client's TLS files (--etcd-cert, --etcd-key,
	// --etcd-cacert); nil for none.
	EtcdTLS *tlsx.Files
	// MetricsTLS serves /metrics over HTTPS with the TLS certificate
	// (--metrics-tls); nil for none.
	MetricsTLS *bool
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
// --metrics-addr, --shutdown-timeout and (when the service has them)
// --advertise-addr, the TLS flags (--tls-cert-file, --tls-key-file,
// --tls-ca-file), the etcd client's (--etcd-cacert, --etcd-cert,
// --etcd-key) and --metrics-tls, with the defaults of EnsureDefaults and a.
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
	if c.TLS != nil {
		fs.StringVar(&c.TLS.CertFile, "tls-cert-file", "", "PEM certificate served on the gRPC (and HTTP) listeners and presented on the service's own gRPC dials (empty: plaintext)")
		fs.StringVar(&c.TLS.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
		fs.StringVar(&c.TLS.CAFile, "tls-ca-file", "", "PEM CA certificates that verify clients and the services dialed (required with --tls-cert-file)")
	}
	if c.EtcdTLS != nil {
		fs.StringVar(&c.EtcdTLS.CAFile, "etcd-cacert", "", "PEM CA certificates that verify etcd (https:// endpoints; empty: the system roots)")
		fs.StringVar(&c.EtcdTLS.CertFile, "etcd-cert", "", "PEM client certificate presented to etcd")
		fs.StringVar(&c.EtcdTLS.KeyFile, "etcd-key", "", "PEM private key of --etcd-cert")
	}
	if c.MetricsTLS != nil {
		fs.BoolVar(c.MetricsTLS, "metrics-tls", false, "serve /metrics over HTTPS with --tls-cert-file")
	}
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
	return append(errs, c.validateTLS()...)
}

// validateTLS checks that the TLS flags come in working sets; the files
// themselves are read by the Skeleton's LoadTLS.
func (c Common) validateTLS() []error {
	var errs []error
	var tlsOn bool
	if f := c.TLS; f != nil {
		tlsOn = f.Enabled()
		switch {
		case f.CertFile != "" && f.KeyFile == "":
			errs = append(errs, fmt.Errorf("--tls-cert-file %s: --tls-key-file is required with it", f.CertFile))
		case f.KeyFile != "" && f.CertFile == "":
			errs = append(errs, fmt.Errorf("--tls-key-file %s: --tls-cert-file is required with it", f.KeyFile))
		}
		switch {
		case f.CertFile != "" && f.CAFile == "":
			errs = append(errs, fmt.Errorf("--tls-cert-file %s: --tls-ca-file is required with it (the CA verifies the other services and client certificates)", f.CertFile))
		case f.CAFile != "" && f.CertFile == "":
			errs = append(errs, fmt.Errorf("--tls-ca-file %s: --tls-cert-file and --tls-key-file are required with it (a listener serves TLS with a certificate)", f.CAFile))
		}
	}
	if c.MetricsTLS != nil && *c.MetricsTLS && !tlsOn {
		errs = append(errs, errors.New("--metrics-tls: --tls-cert-file is required with it (the metrics endpoint serves that certificate)"))
	}
	if f := c.EtcdTLS; f != nil && f.Any() {
		switch {
		case f.CertFile != "" && f.KeyFile == "":
			errs = append(errs, fmt.Errorf("--etcd-cert %s: --etcd-key is required with it", f.CertFile))
		case f.KeyFile != "" && f.CertFile == "":
			errs = append(errs, fmt.Errorf("--etcd-key %s: --etcd-cert is required with it", f.KeyFile))
		}
		if c.EtcdEndpoints != nil && !c.EtcdClientSet {
			for _, e := range *c.EtcdEndpoints {
				if strings.HasPrefix(e, "http://") {
					errs = append(errs, fmt.Errorf("--etcd-endpoints %s: want https:// with --etcd-cacert/--etcd-cert (etcd's client speaks TLS only to https endpoints)", e))
				}
			}
		}
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
