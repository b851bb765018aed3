package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/jobs"
	"google.golang.org/grpc"
)

// Server is a running migrator.
type Server struct {
	sk     *svcmain.Skeleton
	cfg    Config
	logger *slog.Logger
	client *client.Client // retries Unavailable (pkg/client)
	direct *client.Client // one attempt per call: jobs.Env.Direct
	store  *jobs.Store
	migs   *migration.Watcher // tables in migration mode
	rates  *jobs.Rates
	mgr    *jobs.Manager
	// Registry holds the migrator's metrics (also served at MetricsAddr).
	Registry *prometheus.Registry
	stopping chan struct{} // closed by Close: ends WatchJob streams
	auth     *auth.Store   // principals and keys (verifies tokens)
}

// Start connects to etcd and the routers, starts working on the jobs in
// etcd it can claim (resuming those a previous migrator left), and serves.
// It is ready (SERVING) once connected, that is when it returns.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("migrator", cfg.ID)
	sk := svcmain.New(svcmain.Options{
		Name: "migrator", Logger: logger, ShutdownTimeout: cfg.ShutdownTimeout,
		Services: []string{migratorv1.MigratorService_ServiceDesc.ServiceName},
		TLS:      cfg.TLS, EtcdTLS: cfg.EtcdTLS, MetricsTLS: cfg.MetricsTLS,
		// Operators come with a principal certificate or a token.
		ClientAuth: tlsx.VerifyIfGiven,
	})
	s := &Server{sk: sk, cfg: cfg, logger: logger, Registry: sk.Registry,
		rates: jobs.NewRates(0), stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := s.sk.LoadTLS(); err != nil {
		return nil, err
	}
	if err := s.sk.ConnectEtcd(cfg.EtcdClient, cfg.EtcdEndpoints); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	s.client, s.direct, err = jobs.DialRouters(cctx, cfg.RouterEndpoints, client.WithDialOptions(s.sk.DialOptions()...))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	s.store = jobs.NewStore(s.sk.Etcd, cfg.Cluster)
	cctx, cancel = context.WithTimeout(ctx, cfg.StartTimeout)
	s.migs, err = migration.NewStore(s.sk.Etcd, cfg.Cluster).Watch(cctx, migration.WatcherOptions{Logger: s.logger})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	metrics := newMetrics(s.Registry)
	env := &jobs.Env{
		Store: s.store, Target: s.client, Direct: s.direct, ID: cfg.ID, Logger: s.logger, Observer: metrics, Rates: s.rates,
		MaxStoredRejects: int64(cfg.MaxStoredRejects), WriteRetry: cfg.WriteRetry,
		Migrations: s.migs, Sync: migrationv1.NewMigrationServiceClient(s.direct.Conn()),
		Topology: topology.NewStore(s.sk.Etcd, cfg.Cluster), DialOptions: s.sk.DialOptions(),
	}
	if s.mgr, err = jobs.StartManager(env, jobs.ManagerOptions{MaxConcurrentJobs: cfg.MaxConcurrentJobs, SessionTTL: cfg.SessionTTL}); err != nil {
		return nil, fmt.Errorf("migrator: cannot start an etcd session at %v: %w", cfg.EtcdEndpoints, err)
	}

	sv := &service{s: s}
	guard, err := s.startAuth(ctx, sv)
	if err != nil {
		return nil, err
	}
	if err := s.sk.Listen(cfg.ListenAddr, grpcx.ServerOptions{Unary: []grpc.UnaryServerInterceptor{guard.Unary}, Stream: []grpc.StreamServerInterceptor{guard.Stream}}); err != nil {
		return nil, err
	}
	migratorv1.RegisterMigratorServiceServer(s.sk.GRPC.Server, sv)
	if missing := guard.Missing(s.sk.GRPC.GetServiceInfo()); len(missing) > 0 {
		return nil, fmt.Errorf("migrator: methods without a permission rule: %v", missing)
	}
	if err := s.sk.Serve(cfg.MetricsAddr); err != nil {
		return nil, err
	}
	s.sk.SetReady()
	s.logger.Info("migrator serving", "addr", s.sk.Addr(), "routers", cfg.RouterEndpoints)
	return s, nil
}

// Addr is the address the migrator listens on.
func (s *Server) Addr() string { return s.sk.Addr() }

// MetricsAddr is the HTTP address of /metrics, or "" when off.
func (s *Server) MetricsAddr() string { return s.sk.MetricsAddr() }

// Err receives the gRPC server's error if it stops serving on its own.
func (s *Server) Err() <-chan error { return s.sk.Err() }

// Ready is closed once the migrator is connected to etcd and the routers
// and serving (its health SERVING): when Start returns.
func (s *Server) Ready() <-chan struct{} { return s.sk.Ready() }

// ID is the migrator's id.
func (s *Server) ID() string { return s.cfg.ID }

// Running lists the jobs this migrator is working on now.
func (s *Server) Running() []string { return s.mgr.Running() }

// Close stops serving (draining calls within ShutdownTimeout), stops its
// job runs, whose checkpoints stay in etcd for the next migrator, and
// releases its claims.
func (s *Server) Close() error {
	return s.sk.Close(svcmain.Stages{
		// Stop the runs before the drain: WatchJob streams end when the
		// server stops.
		BeforeDrain: func(context.Context) {
			close(s.stopping)
			if s.mgr != nil {
				s.mgr.Close()
			}
		},
		Subsystems: func() error {
			if s.auth != nil {
				s.auth.Close()
			}
			if s.migs != nil {
				s.migs.Close()
			}
			for _, c := range []*client.Client{s.client, s.direct} {
				if c != nil {
					_ = c.Close()
				}
			}
			return nil
		},
	})
}
