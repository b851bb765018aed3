package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/jobs"
	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Server is a running migrator.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	etcd    *clientv3.Client
	ownEtcd bool
	client  *client.Client // retries Unavailable (pkg/client)
	direct  *client.Client // one attempt per call: jobs.Env.Direct
	store   *jobs.Store
	rates   *jobs.Rates
	mgr     *jobs.Manager
	grpc    *grpcx.Server
	ln      net.Listener
	metrics *grpcx.MetricsServer
	// Registry holds the migrator's metrics (also served at MetricsAddr).
	Registry *prometheus.Registry
	serveErr chan error
	stopping chan struct{} // closed by Close: ends WatchJob streams
}

// Start connects to etcd and the routers, starts working on the jobs in
// etcd it can claim (resuming those a previous migrator left), and serves.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: cfg.Logger.With("migrator", cfg.ID), Registry: grpcx.NewRegistry(),
		rates: jobs.NewRates(0), serveErr: make(chan error, 1), stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			s.abort()
		}
	}()
	if cfg.EtcdClient != nil {
		s.etcd = cfg.EtcdClient
	} else {
		s.etcd, err = clientv3.New(topology.ClientConfig(cfg.EtcdEndpoints))
		if err != nil {
			return nil, fmt.Errorf("migrator: etcd client for %v: %w", cfg.EtcdEndpoints, err)
		}
		s.ownEtcd = true
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	s.client, s.direct, err = jobs.DialRouters(cctx, cfg.RouterEndpoints)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	s.store = jobs.NewStore(s.etcd, cfg.Cluster)
	metrics := newMetrics(s.Registry)
	env := &jobs.Env{
		Store: s.store, Target: s.client, Direct: s.direct, ID: cfg.ID, Logger: s.logger, Observer: metrics, Rates: s.rates,
		MaxStoredRejects: int64(cfg.MaxStoredRejects), WriteRetry: cfg.WriteRetry,
	}
	if s.mgr, err = jobs.StartManager(env, jobs.ManagerOptions{MaxConcurrentJobs: cfg.MaxConcurrentJobs, SessionTTL: cfg.SessionTTL}); err != nil {
		return nil, fmt.Errorf("migrator: cannot start an etcd session at %v: %w", cfg.EtcdEndpoints, err)
	}

	s.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("migrator: listen on %s: %w", cfg.ListenAddr, err)
	}
	s.grpc = grpcx.NewServer(grpcx.ServerOptions{Logger: s.logger, Registerer: s.Registry})
	migratorv1.RegisterMigratorServiceServer(s.grpc.Server, &service{s: s})
	s.grpc.InitMetrics()
	go func() { s.serveErr <- s.grpc.Serve(s.ln) }()
	for _, name := range []string{"", migratorv1.MigratorService_ServiceDesc.ServiceName} {
		s.grpc.Health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if cfg.MetricsAddr != "" {
		if s.metrics, err = grpcx.ServeMetrics(cfg.MetricsAddr, s.Registry, s.logger); err != nil {
			return nil, err
		}
	}
	s.logger.Info("migrator serving", "addr", s.ln.Addr().String(), "routers", cfg.RouterEndpoints)
	return s, nil
}

// Addr is the address the migrator listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ID is the migrator's id.
func (s *Server) ID() string { return s.cfg.ID }

// MetricsAddr is the HTTP address of /metrics, or "" when off.
func (s *Server) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr()
}

// Err receives the gRPC server's error if it stops serving on its own.
func (s *Server) Err() <-chan error { return s.serveErr }

// Running lists the jobs this migrator is working on now.
func (s *Server) Running() []string { return s.mgr.Running() }

// Close stops serving (draining calls within ShutdownTimeout), stops its
// job runs, whose checkpoints stay in etcd for the next migrator, and
// releases its claims.
func (s *Server) Close() error {
	select {
	case <-s.stopping:
	default:
		close(s.stopping)
	}
	if s.grpc != nil {
		s.grpc.Health.Shutdown()
	}
	// Stop the runs first: WatchJob streams end when the server stops.
	if s.mgr != nil {
		s.mgr.Close()
		s.mgr = nil
	}
	if s.grpc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		s.grpc.Shutdown(ctx)
	}
	s.abort()
	return nil
}

func (s *Server) abort() {
	if s.grpc != nil {
		s.grpc.Stop()
	}
	if s.mgr != nil {
		s.mgr.Close()
		s.mgr = nil
	}
	if s.metrics != nil {
		_ = s.metrics.Close(context.Background())
		s.metrics = nil
	}
	for _, c := range []**client.Client{&s.client, &s.direct} {
		if *c != nil {
			_ = (*c).Close()
			*c = nil
		}
	}
	if s.ownEtcd && s.etcd != nil {
		_ = s.etcd.Close()
		s.etcd = nil
	}
}
