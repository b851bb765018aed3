package svcmain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// EtcdLogLevel is the least level of the etcd client's own log lines that
// reach the service's logger: its info lines are per-connection chatter.
const EtcdLogLevel = slog.LevelWarn

// NewEtcdClient dials etcd with topology.ClientConfig, its client's logs
// going to logger at EtcdLogLevel and above, over TLS when tlsConfig is set
// (https:// endpoints).
func NewEtcdClient(endpoints []string, logger *slog.Logger, tlsConfig *tls.Config) (*clientv3.Client, error) {
	cfg := topology.ClientConfig(endpoints)
	cfg.Logger = ZapLogger(logger.With("component", "etcd-client").Handler(), EtcdLogLevel)
	cfg.TLS = tlsConfig
	return clientv3.New(cfg)
}

// Options configure a Skeleton.
type Options struct {
	// Name prefixes errors: "storage", "router", "migrator".
	Name string
	// Logger receives the skeleton's logs and the etcd client's.
	Logger *slog.Logger
	// ShutdownTimeout bounds the drain of in-flight calls on Close.
	ShutdownTimeout time.Duration
	// Services are the health names of the gRPC services the server
	// registers: NOT_SERVING until SetReady.
	Services []string
	// LiveBeforeReady reports the overall health ("") SERVING as soon as
	// the server serves, and only the Services' names wait for SetReady.
	// The router needs it: routers start before the storage nodes whose
	// registration makes them ready, and start-up scripts (and the e2e
	// framework) wait for each process's overall SERVING in that order.
	// Otherwise "" follows readiness too.
	LiveBeforeReady bool
	// TLS are the service's certificate files; when Enabled, LoadTLS
	// loads them, the gRPC listener serves TLS asking ClientAuth of
	// clients, and DialOptions present the certificate.
	TLS tlsx.Files
	// ClientAuth is what the gRPC listener asks of client certificates
	// when TLS is on; AllowedRoles are the service roles RequireService
	// lets in.
	ClientAuth   tlsx.ClientAuth
	AllowedRoles []tlsx.Role
	// EtcdTLS are the etcd client's TLS files (any set: TLS to etcd).
	EtcdTLS tlsx.Files
	// MetricsTLS serves /metrics over HTTPS with the TLS certificate.
	MetricsTLS bool
}

// Skeleton is what every service's Server is built on: the TLS
// certificates, the etcd client, the gRPC listener and server (pkg/grpcx),
// the metrics endpoint, the readiness signal and the ordered shutdown. A
// service's Start calls LoadTLS, ConnectEtcd, Listen, Serve and SetReady in
// that order, and its Close (and a failed Start) calls Close.
type Skeleton struct {
	opts Options
	// Registry holds the service's metrics (served at the metrics address).
	Registry *prometheus.Registry
	// Etcd is the etcd client (after ConnectEtcd).
	Etcd    *clientv3.Client
	ownEtcd bool
	// GRPC is the gRPC server (after Listen).
	GRPC    *grpcx.Server
	ln      net.Listener
	metrics *grpcx.MetricsServer
	// tls and etcdTLS are nil without TLS (after LoadTLS).
	tls     *tlsx.Source
	etcdTLS *tlsx.Source

	readyOnce sync.Once
	ready     chan struct{}
	serveErr  chan error
	closeOnce sync.Once
	closeErr  error
}

// New returns a skeleton with nothing started yet.
func New(o Options) *Skeleton {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Skeleton{opts: o, Registry: grpcx.NewRegistry(), ready: make(chan struct{}), serveErr: make(chan error, 1)}
}

// LoadTLS loads the TLS and etcd TLS files of the options (when set) and
// starts reloading them as they change. A file that does not load is an
// error naming its flag and path: the service refuses to start.
func (s *Skeleton) LoadTLS() error {
	if s.opts.TLS.Enabled() {
		src, err := tlsx.Load(s.opts.TLS, "tls", s.opts.Logger)
		if err != nil {
			return fmt.Errorf("%s: %w", s.opts.Name, err)
		}
		s.tls = src
	}
	if s.opts.EtcdTLS.Any() {
		src, err := tlsx.Load(s.opts.EtcdTLS, "etcd", s.opts.Logger)
		if err != nil {
			return fmt.Errorf("%s: %w", s.opts.Name, err)
		}
		s.etcdTLS = src
	}
	return nil
}

// TLS is the service's certificate source; nil when TLS is off.
func (s *Skeleton) TLS() *tlsx.Source { return s.tls }

// DialOptions are the options of the service's own gRPC dials to other
// Veltrix services: TLS presenting the service's certificate and verifying
// the other end against the CA when TLS is on, nothing otherwise.
func (s *Skeleton) DialOptions() []grpc.DialOption {
	if s.tls == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(s.tls.ClientCredentials())}
}

// ConnectEtcd uses client when set (and leaves closing it to its owner),
// or dials endpoints with NewEtcdClient (with TLS when the options have
// EtcdTLS).
func (s *Skeleton) ConnectEtcd(client *clientv3.Client, endpoints []string) error {
	if client != nil {
		s.Etcd = client
		return nil
	}
	var tc *tls.Config
	if s.etcdTLS != nil {
		tc = s.etcdTLS.ClientTLSConfig()
	}
	c, err := NewEtcdClient(endpoints, s.opts.Logger, tc)
	if err != nil {
		return fmt.Errorf("%s: etcd client for %v: %w", s.opts.Name, endpoints, err)
	}
	s.Etcd, s.ownEtcd = c, true
	return nil
}

// Listen listens on addr and builds the gRPC server with so (its Logger
// and Registerer are the skeleton's) and extra options after grpcx's (with
// TLS, the server credentials of the options' ClientAuth), every health
// status NOT_SERVING. Register services on GRPC, then call Serve.
func (s *Skeleton) Listen(addr string, so grpcx.ServerOptions, extra ...grpc.ServerOption) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", s.opts.Name, addr, err)
	}
	s.ln = ln
	if s.tls != nil {
		extra = append(extra, grpc.Creds(s.tls.ServerCredentials(s.opts.ClientAuth, s.opts.AllowedRoles...)))
	}
	so.Logger, so.Registerer = s.opts.Logger, s.Registry
	s.GRPC = grpcx.NewServer(so, extra...)
	s.setStatus(healthpb.HealthCheckResponse_NOT_SERVING, true)
	return nil
}

// Serve starts serving gRPC on the listener and, when metricsAddr is set,
// /metrics over HTTP (HTTPS with the options' MetricsTLS; no client
// certificate is asked for).
func (s *Skeleton) Serve(metricsAddr string) error {
	s.GRPC.InitMetrics()
	go func() {
		// Non-blocking: Fail may have filled serveErr already.
		select {
		case s.serveErr <- s.GRPC.Serve(s.ln):
		default:
		}
	}()
	if s.opts.LiveBeforeReady {
		s.GRPC.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	}
	if metricsAddr != "" {
		var tc *tls.Config
		if s.opts.MetricsTLS && s.tls != nil {
			tc = s.tls.ServerTLSConfig(tlsx.NoClientCert)
		}
		m, err := grpcx.ServeMetrics(metricsAddr, s.Registry, s.opts.Logger, tc)
		if err != nil {
			return fmt.Errorf("%s: %w", s.opts.Name, err)
		}
		s.metrics = m
	}
	return nil
}

// setStatus sets the health of the Services and, with overall, of "".
func (s *Skeleton) setStatus(st healthpb.HealthCheckResponse_ServingStatus, overall bool) {
	if overall {
		s.GRPC.Health.SetServingStatus("", st)
	}
	for _, name := range s.opts.Services {
		s.GRPC.Health.SetServingStatus(name, st)
	}
}

// SetReady reports the server SERVING and closes Ready. Once Close began,
// health stays NOT_SERVING.
func (s *Skeleton) SetReady() {
	s.readyOnce.Do(func() {
		s.setStatus(healthpb.HealthCheckResponse_SERVING, !s.opts.LiveBeforeReady)
		close(s.ready)
	})
}

// Ready is closed once the server is ready (SetReady).
func (s *Skeleton) Ready() <-chan struct{} { return s.ready }

// Fail reports the server NOT_SERVING for good and err on Err: it can no
// longer serve, and the binary exits.
func (s *Skeleton) Fail(err error) {
	s.setStatus(healthpb.HealthCheckResponse_NOT_SERVING, true)
	select {
	case s.serveErr <- err:
	default:
	}
}

// Err receives the error of a server that stopped on its own.
func (s *Skeleton) Err() <-chan error { return s.serveErr }

// Addr is the gRPC address listened on.
func (s *Skeleton) Addr() string { return s.ln.Addr().String() }

// MetricsAddr is the HTTP address of /metrics, or "" when off.
func (s *Skeleton) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr()
}

// Stages are a service's own steps of Close, around the skeleton's.
type Stages struct {
	// BeforeDrain runs once health says NOT_SERVING, while in-flight calls
	// still run: deregistering, ending streams that would hold the drain.
	// ctx ends with the shutdown timeout.
	BeforeDrain func(ctx context.Context)
	// Subsystems closes what the service started, in order, once no call
	// runs any more; the etcd client is closed after them.
	Subsystems func() error
}

// Close shuts the server down in order: every health status NOT_SERVING;
// st.BeforeDrain; stop accepting and drain in-flight calls within the
// shutdown timeout (then cancel them); the metrics endpoint;
// st.Subsystems; the etcd client (when the skeleton dialed it); the TLS
// files' reloading. A failed
// Start calls it too: each step skips what was not started. Only the first
// call does anything.
func (s *Skeleton) Close(st Stages) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(st) })
	return s.closeErr
}

func (s *Skeleton) close(st Stages) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if s.GRPC != nil {
		// Health.Shutdown: NOT_SERVING, and later updates are ignored.
		s.GRPC.Health.Shutdown()
	}
	if st.BeforeDrain != nil {
		st.BeforeDrain(ctx)
	}
	if s.GRPC != nil {
		s.GRPC.Shutdown(ctx)
	} else if s.ln != nil {
		_ = s.ln.Close()
	}
	var errs []error
	if s.metrics != nil {
		if err := s.metrics.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, fmt.Errorf("%s: metrics server: %w", s.opts.Name, err))
		}
	}
	if st.Subsystems != nil {
		if err := st.Subsystems(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.ownEtcd && s.Etcd != nil {
		// A client whose endpoints are gone reports the cancelled
		// connections it closes: not a failed shutdown.
		_ = s.Etcd.Close()
	}
	s.tls.Close()
	s.etcdTLS.Close()
	return errors.Join(errs...)
}
