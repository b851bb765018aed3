package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/controller"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TopologyHealthService is the health service name that reports
// NOT_SERVING while etcd is unreachable and the router serves from its last
// topology snapshot. The router itself ("" and the KV services) stays
// SERVING.
const TopologyHealthService = "veltrix.router.topology"

// Server is a running router.
type Server struct {
	sk     *svcmain.Skeleton
	cfg    Config
	logger *slog.Logger
	etcd   *clientv3.Client
	store  *topology.Store
	// cacheSamples keeps the storage nodes' cache counters over the last
	// hour for migration mode's windowed cache_hit_ratio criterion.
	cacheSamples cacheSampler
	watcher      *topology.Watcher
	cluster      *cluster.Cluster
	coord        *coord.Coordinator
	ctrl         *controller.Controller
	// presence reports the placement epoch the router routes by.
	presence *topology.Presence
	clock    *hlc.Clock
	// Registry holds the router's metrics (also served at MetricsAddr).
	Registry *prometheus.Registry
	stop     chan struct{}
	// done is closed when watchHealth has stopped (nil if it never ran).
	done chan struct{}
	// persisted is closed when persistTopology has stopped.
	persisted chan struct{}
	// dynamo serves the DynamoDB endpoint (nil when DynamoDBAddr is "");
	// dynamoLn is its listener and dynamoDone is closed when Serve returns.
	dynamo     *http.Server
	dynamoLn   net.Listener
	dynamoDone chan struct{}
	// syncer re-syncs migrating items (MigrationService.SyncItems): the
	// DynamoDB endpoint's handler, nil when the endpoint is off.
	syncer ItemSyncer
	// dynamoHandler is the endpoint's handler and migWatcher the
	// migration control it routes by (nil when the endpoint is off).
	dynamoHandler *dynamodb.Handler
	migWatcher    *migration.Watcher
	// auth holds the principals and API keys (always loaded, so keys can
	// be managed before --auth is turned on).
	auth *auth.Store
	// kvMux serves KVService.Exchange: KVService's unary methods framed on
	// one stream.
	kvMux *grpcx.Mux
}

// Start connects to etcd, loads the topology, joins the controller election
// and starts serving. The router's overall health ("") is SERVING from
// then on; KVService and AdminService turn SERVING, and Ready closes, once
// it can route: a cluster config and a placement exist. (Routers start
// before the storage nodes whose registration lets the first placement be
// made, so start-up must not wait for that.)
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("router", cfg.ID)
	sk := svcmain.New(svcmain.Options{
		Name: "router", Logger: logger, ShutdownTimeout: cfg.ShutdownTimeout,
		Services:        []string{kvv1.KVService_ServiceDesc.ServiceName, kvv1.AdminService_ServiceDesc.ServiceName},
		LiveBeforeReady: true,
		TLS:             cfg.TLS, EtcdTLS: cfg.EtcdTLS, MetricsTLS: cfg.MetricsTLS,
		// Clients may come with a certificate (a principal, the migrator)
		// or without (a bearer token, or no authentication).
		ClientAuth: tlsx.VerifyIfGiven,
	})
	s := &Server{
		sk: sk, cfg: cfg, logger: logger, Registry: sk.Registry,
		clock: hlc.New(), stop: make(chan struct{}),
		persisted: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := sk.LoadTLS(); err != nil {
		return nil, err
	}
	if err := sk.ConnectEtcd(cfg.EtcdClient, cfg.EtcdEndpoints); err != nil {
		return nil, err
	}
	s.etcd = sk.Etcd
	s.store = topology.NewStore(s.etcd, cfg.Cluster)
	wo := topology.WatcherOptions{Logger: s.logger}
	noFallback := "no --state-dir to start from a persisted topology"
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("router: state dir: %w", err)
		}
		snap, err := topology.ReadSnapshotFile(s.snapshotPath(), cfg.Cluster)
		switch {
		case err == nil:
			wo.Fallback = snap
		case errors.Is(err, topology.ErrNoSnapshotFile):
			noFallback = fmt.Sprintf("no persisted topology in %s yet (a router persists one once it has reached etcd)", cfg.StateDir)
		default:
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.EtcdStartTimeout)
	s.watcher, err = s.store.Watch(wctx, wo)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("router: cannot read cluster state from etcd %v within %s and %s: %w", cfg.EtcdEndpoints, cfg.EtcdStartTimeout, noFallback, err)
	}
	if cfg.StateDir != "" {
		go s.persistTopology()
	} else {
		close(s.persisted)
	}
	if c := s.watcher.Snapshot().Config; c != nil && c.HashFunction != placement.HashFunction {
		return nil, fmt.Errorf("router: cluster %q uses partition hash %q, this build uses %q", cfg.Cluster, c.HashFunction, placement.HashFunction)
	}
	s.cluster = cluster.New(s.watcher, s.logger, cfg.TopologyGrace, sk.DialOptions()...)
	s.coord = coord.New(s.cluster, coord.Options{
		HedgeMin: cfg.HedgeMin, HedgeMax: cfg.HedgeMax, Timeout: cfg.RequestTimeout,
		HintedHandoff: !cfg.NoHintedHandoff,
		Logger:        s.logger, Metrics: coord.NewMetrics(s.Registry),
	})
	s.ctrl = controller.Start(s.etcd, s.store, s.watcher, controller.Config{
		ID: cfg.ID,
		Cluster: topology.ClusterConfig{
			Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
			HashFunction: placement.HashFunction, CreateTime: time.Now().UTC(),
		},
		MinNodes:        cfg.MinNodes,
		DeadAfter:       cfg.DeadAfter,
		MaxMovesPerNode: cfg.MaxMovesPerNode,
		Metrics:         controller.NewMetrics(s.Registry),
		Logger:          s.logger,
	})

	guard, err := s.startAuth(ctx)
	if err != nil {
		return nil, err
	}
	// CheckUTF8: invalid UTF-8 in a string field is InvalidArgument naming
	// the field, not grpc's Internal decode failure. The guard follows: a
	// request is decoded before its permissions are checked.
	so := grpcx.ServerOptions{
		CheckUTF8: true,
		Unary:     []grpc.UnaryServerInterceptor{guard.Unary},
		Stream:    []grpc.StreamServerInterceptor{guard.Stream},
	}
	if err := sk.Listen(cfg.ListenAddr, so); err != nil {
		return nil, err
	}
	// Registered on sk.GRPC (not its grpc.Server), which records the
	// unary methods that KVService.Exchange carries.
	kvv1.RegisterKVServiceServer(sk.GRPC, &kvService{s: s})
	kvv1.RegisterAdminServiceServer(sk.GRPC, &adminService{s: s})
	migrationv1.RegisterMigrationServiceServer(sk.GRPC, newMigrationService(s))
	authv1.RegisterAuthServiceServer(sk.GRPC, &authService{s: s})
	if s.kvMux, err = sk.GRPC.NewMux(grpcx.UnaryMethods(&kvv1.KVService_ServiceDesc)); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if missing := guard.Missing(sk.GRPC.GetServiceInfo()); len(missing) > 0 {
		return nil, fmt.Errorf("router: methods without a permission rule: %v", missing)
	}
	s.Registry.MustRegister(newCollector(s))
	if err := sk.Serve(cfg.MetricsAddr); err != nil {
		return nil, err
	}
	if cfg.DynamoDBAddr != "" {
		if err := s.serveDynamoDB(); err != nil {
			return nil, err
		}
	}
	s.done = make(chan struct{})
	go s.watchHealth()
	// The presence reports the epoch of each view once it is published:
	// from then on every request is routed by it (requests still in flight
	// under an older view are fenced by the storage nodes).
	s.presence = s.store.RegisterRouter(topology.Router{ID: cfg.ID, Address: s.Addr(), StartTime: time.Now().UTC()}, cfg.PresenceTTL, s.logger)
	s.cluster.OnEpoch(s.presence.SetEpoch)
	s.logger.Info("router serving", "addr", s.Addr(), "dynamodb_addr", s.DynamoDBAddr())
	return s, nil
}

// serveDynamoDB starts the DynamoDB endpoint's HTTP listener. Until the
// router can route, its operations answer ServiceUnavailable (HTTP 503),
// which the AWS SDKs retry.
func (s *Server) serveDynamoDB() error {
	ln, err := net.Listen("tcp", s.cfg.DynamoDBAddr)
	if err != nil {
		return fmt.Errorf("router: DynamoDB endpoint: listen on %s: %w", s.cfg.DynamoDBAddr, err)
	}
	mig, err := s.migrationOptions()
	if err != nil {
		_ = ln.Close()
		return err
	}
	o := dynamodb.Options{
		Region: s.cfg.DynamoDBRegion, RequestTimeout: s.cfg.RequestTimeout,
		Logger: s.logger.With("endpoint", "dynamodb"), Metrics: dynamodb.NewMetrics(s.Registry),
		Migration: mig,
	}
	if s.cfg.Auth.Enabled {
		// Every request's SigV4 signature is verified against the keys
		// in the store, and its tables checked against the principal's
		// grants; without --auth any well-formed signature is anonymous.
		o.Auth = dynamodb.NewSigV4Verifier(s.auth, time.Now)
		o.Audit = auth.Audit{Logger: s.logger}
	}
	h := dynamodb.NewHandler(s, o)
	s.dynamoHandler = h
	s.syncer, _ = any(h).(ItemSyncer)
	s.dynamo = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// A body must arrive in time too: a slow client holds a goroutine.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	serve := s.dynamo.Serve
	if src := s.sk.TLS(); src != nil {
		// HTTPS with the router's certificate; a client certificate is
		// verified if given (SigV4 authenticates the requests).
		s.dynamo.TLSConfig = src.ServerTLSConfig(tlsx.VerifyIfGiven)
		serve = func(ln net.Listener) error { return s.dynamo.ServeTLS(ln, "", "") }
	}
	s.dynamoLn = ln
	s.dynamoDone = make(chan struct{})
	go func() {
		defer close(s.dynamoDone)
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("DynamoDB endpoint stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return nil
}

// closeDynamoDB stops accepting DynamoDB requests and drains in-flight
// ones until ctx ends, then closes the connections left.
func (s *Server) closeDynamoDB(ctx context.Context) {
	if s.dynamo == nil {
		return
	}
	if err := s.dynamo.Shutdown(ctx); err != nil {
		s.logger.Warn("DynamoDB endpoint: drain cut short", "err", err)
		_ = s.dynamo.Close()
	}
	<-s.dynamoDone
	s.dynamoHandler.Close()
	if s.migWatcher != nil {
		s.migWatcher.Close()
	}
}

// DynamoDBAddr is the address the DynamoDB endpoint listens on, or "" when
// it is off.
func (s *Server) DynamoDBAddr() string {
	if s.dynamoLn == nil {
		return ""
	}
	return s.dynamoLn.Addr().String()
}

// View is the cluster view requests are routed by (dynamodb.Backend).
func (s *Server) View() (*cluster.View, error) { return s.coord.View() }

// Coordinator is the router's replica coordinator (dynamodb.Backend).
func (s *Server) Coordinator() *coord.Coordinator { return s.coord }

// Clock versions the router's writes (dynamodb.Backend).
func (s *Server) Clock() *hlc.Clock { return s.clock }

// records is the conversion of KV mutations into storage records, by the
// router's clock.
func (s *Server) records() kvrecord.Builder {
	return kvrecord.Builder{Clock: s.clock, MaxVersionSkew: s.cfg.MaxVersionSkew}
}

func (s *Server) snapshotPath() string { return filepath.Join(s.cfg.StateDir, "topology.json") }

// persistTopology writes every new topology snapshot to the state dir, so a
// router restarted while etcd is unreachable can start from it. A snapshot
// the watcher started from (a fallback) is not written back.
func (s *Server) persistTopology() {
	defer close(s.persisted)
	changes := s.watcher.Changes()
	var last *topology.Snapshot
	if s.watcher.Stale() {
		last = s.watcher.Snapshot()
	}
	for {
		if snap := s.watcher.Snapshot(); snap != last {
			if err := topology.WriteSnapshotFile(s.snapshotPath(), s.cfg.Cluster, snap); err != nil {
				s.logger.Warn("persist topology snapshot", "err", err)
			} else {
				last = snap
			}
		}
		select {
		case <-s.stop:
			return
		case <-changes:
		}
	}
}

// watchHealth marks the router ready once it can route, and mirrors
// topology staleness into TopologyHealthService.
func (s *Server) watchHealth() {
	defer close(s.done)
	ready := false
	for {
		if !ready {
			if _, err := s.coord.View(); err == nil {
				s.sk.SetReady()
				ready = true
			}
		}
		st := healthpb.HealthCheckResponse_SERVING
		if s.watcher.Stale() {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.sk.GRPC.Health.SetServingStatus(TopologyHealthService, st)
		if ready {
			s.cacheSamples.observe(time.Now(), s.routingSnapshot())
		}
		wait := 250 * time.Millisecond
		if !ready {
			wait = 20 * time.Millisecond
		}
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
	}
}

// Addr is the address the router listens on.
func (s *Server) Addr() string { return s.sk.Addr() }

// Ready is closed once the router can route (a cluster config and a
// placement exist), when its KVService health turns SERVING.
func (s *Server) Ready() <-chan struct{} { return s.sk.Ready() }

// ID is the router's id.
func (s *Server) ID() string { return s.cfg.ID }

// MetricsAddr is the HTTP address of /metrics, or "" when off.
func (s *Server) MetricsAddr() string { return s.sk.MetricsAddr() }

// Err receives the gRPC server's error if it stops serving on its own.
func (s *Server) Err() <-chan error { return s.sk.Err() }

// IsController reports whether this router runs the placement controller.
func (s *Server) IsController() bool { return s.ctrl != nil && s.ctrl.IsLeader() }

// WaitReady blocks until the router can route (config and placement known)
// or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	for {
		if _, err := s.coord.View(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			_, err := s.coord.View()
			return fmt.Errorf("router: not ready: %w (%w)", err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops accepting requests (the DynamoDB endpoint's first, then
// gRPC's), drains in-flight ones within ShutdownTimeout (an Exchange
// stream is told it drains, answers the calls it took and ends), resigns
// the controller role and disconnects.
func (s *Server) Close() error {
	return s.sk.Close(svcmain.Stages{BeforeDrain: s.closeDynamoDB, Subsystems: func() error {
		close(s.stop)
		if s.done != nil {
			<-s.done
		}
		if s.watcher != nil {
			<-s.persisted
		}
		if s.ctrl != nil {
			s.ctrl.Close()
		}
		if s.presence != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.presence.Close(ctx)
			cancel()
		}
		if s.cluster != nil {
			s.cluster.Close()
		}
		if s.watcher != nil {
			s.watcher.Close()
		}
		if s.auth != nil {
			s.auth.Close()
		}
		return nil
	}})
}
