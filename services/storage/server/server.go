package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"github.com/veltrixdb/veltrix/services/storage/internal/locks"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Server is a running storage node.
type Server struct {
	sk      *svcmain.Skeleton
	cfg     Config
	logger  *slog.Logger
	id      string
	eng     *engine.Engine
	cache   *lirsCache // nil when --cache-bytes is 0
	etcd    *clientv3.Client
	watcher *topology.Watcher
	repair  *repairer // nil when anti-entropy is off
	hints   *hinter
	locks   *locks.Table
	peers   *peerPool
	// startTime is when Start began.
	startTime time.Time
	// reg is the registration (nil until registered); regMu guards it
	// while background goroutines run.
	regMu sync.Mutex
	reg   *topology.Registration
	// node is the registration as last written; nodeMu guards it.
	nodeMu sync.Mutex
	node   topology.Node
	// writes are the writes in flight by the epoch they were checked
	// against (epoch.go).
	writes      inflightWrites
	moveMetrics *moveMetrics
	// unfilled are the partitions a replacing node has not backfilled
	// (unfilled.go).
	unfilled unfilledState
	stamp    stamp
	// reincarnated is true when this process stamped a new directory for
	// a node id that an earlier directory served: that one's locks are
	// unknown here (locks.go).
	reincarnated bool
	// Registry holds the node's metrics (also served at MetricsAddr).
	Registry *prometheus.Registry
	// bgCancel stops, and bg waits for, the goroutines that persist the
	// topology and (after a start without etcd) register the node.
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	// exchangeDrain is closed when the node starts shutting down: Exchange
	// streams take no more calls (exchange.go).
	exchangeDrain chan struct{}
}

// Start opens the engine, starts serving and registers the node. On error
// everything already started is stopped again.
//
// A node restarted on its stamped data directory while etcd is unreachable
// (no answer within EtcdStartTimeout) starts from the topology it persisted
// in the directory, after checking the directory's stamps against it; it
// keeps trying to register in the background, and if etcd then refuses the
// directory it turns NOT_SERVING and reports the error on Err. A new or
// empty directory never starts without etcd.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, startTime: time.Now(), peers: newPeerPool(), exchangeDrain: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: data dir: %w", err)
	}
	dir := dirState{dir: cfg.DataDir}
	if dir.file, err = readStampFile(cfg.DataDir); err != nil {
		return nil, err
	}
	if dir.legacyID, err = readLegacyID(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.id, err = resolveNodeID(cfg.DataDir, cfg.ID, dir.file, dir.legacyID); err != nil {
		return nil, err
	}
	if err := (topology.Node{ID: s.id, Address: "x"}).Validate(); err != nil {
		return nil, err
	}
	s.logger = s.logger.With("node", s.id)
	s.sk = svcmain.New(svcmain.Options{
		Name: "storage", Logger: s.logger, ShutdownTimeout: cfg.ShutdownTimeout,
		Services: []string{storagev1.StorageService_ServiceDesc.ServiceName},
		TLS:      cfg.TLS, EtcdTLS: cfg.EtcdTLS, MetricsTLS: cfg.MetricsTLS,
		// Only Veltrix services call a storage node.
		ClientAuth: tlsx.RequireService, AllowedRoles: []tlsx.Role{tlsx.RoleRouter, tlsx.RoleMigrator, tlsx.RoleStorage},
	})
	// Before anything else starts: a bad certificate file refuses the node.
	if err := s.sk.LoadTLS(); err != nil {
		return nil, err
	}
	s.peers.dialOpts = s.sk.DialOptions()
	s.Registry = s.sk.Registry
	s.moveMetrics = newMoveMetrics(s.Registry)
	bg, bgCancel := context.WithCancel(context.Background())
	s.bgCancel = bgCancel

	var cache engine.Cache
	if cfg.CacheBytes > 0 {
		if s.cache, err = newCache(cfg.CacheBytes); err != nil {
			return nil, fmt.Errorf("storage: cache: %w", err)
		}
		cache = s.cache
	}
	s.eng, err = engine.Open(engine.Options{
		Dir:            filepath.Join(cfg.DataDir, "pebble"),
		NoSync:         cfg.NoSync,
		TombstoneGrace: cfg.TombstoneGrace,
		PurgeNeedsSync: cfg.AntiEntropyInterval > 0,
		PurgeInterval:  cfg.PurgeInterval,
		SyncSkew:       cfg.AntiEntropyClockSkew,
		MaxHintBytes:   cfg.HintMaxBytes,
		MaxIngestBytes: int(cfg.MaxIngestBytes),
		Now:            cfg.Now,
		Cache:          cache,
		Logger:         s.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: open engine in %s: %w", cfg.DataDir, err)
	}

	if err := s.sk.ConnectEtcd(cfg.EtcdClient, cfg.EtcdEndpoints); err != nil {
		return nil, err
	}
	s.etcd = s.sk.Etcd
	if err := s.readEngineStamp(&dir); err != nil {
		return nil, err
	}
	// A restart (the directory is stamped, in its file and in Pebble, and
	// holds the topology it last saw) may start from that topology when
	// etcd does not answer: routers keep sending to the node at its last
	// address through an etcd outage. A new, empty or half-wiped directory
	// never starts without etcd.
	store := topology.NewStore(s.etcd, cfg.Cluster)
	wo := topology.WatcherOptions{Logger: s.logger}
	wait, noFallback := 30*time.Second, "the data directory holds no persisted topology"
	if dir.file != nil && dir.pebble != nil {
		snap, err := topology.ReadSnapshotFile(s.snapshotPath(), cfg.Cluster)
		switch {
		case err == nil:
			wo.Fallback, wait = snap, cfg.EtcdStartTimeout
		case errors.Is(err, topology.ErrNoSnapshotFile):
		default:
			noFallback = err.Error()
			s.logger.Warn("persisted topology unusable", "err", err)
		}
	} else {
		noFallback = "the data directory is not stamped (a new node needs etcd)"
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	s.watcher, err = store.Watch(wctx, wo)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("storage: cannot read cluster state from etcd %v within %s and %s: %w", cfg.EtcdEndpoints, wait, noFallback, err)
	}
	offline := wo.Fallback != nil && s.watcher.Snapshot() == wo.Fallback
	// The identity check comes before listening: a refused node never
	// serves anything. Without etcd only the directory and the persisted
	// topology are checked; etcd's side is checked when it answers.
	if offline {
		s.stamp, err = checkIdentityOffline(s.id, cfg.Cluster, dir, wo.Fallback)
	} else {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s.stamp, err = s.checkIdentity(ictx, store, dir)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadUnfilled(); err != nil {
		return nil, err
	}
	if s.locks, err = s.newLockTable(s.reincarnated); err != nil {
		return nil, err
	}
	s.bg.Add(1)
	go s.persistTopology(bg)

	// NOT_SERVING until registered: registration is where a second
	// incarnation of the node id is refused. A node started without etcd
	// serves unregistered (routers retain it at its last address through
	// the outage, and without it QUORUM loses a replica); it registers,
	// or stops, when etcd answers.
	if err := s.sk.Listen(cfg.ListenAddr, grpcx.ServerOptions{}, grpc.InitialWindowSize(exchangeStreamWindow), grpc.InitialConnWindowSize(exchangeConnWindow)); err != nil {
		return nil, err
	}
	s.hints = newHinter(s)
	storagev1.RegisterStorageServiceServer(s.sk.GRPC.Server, &service{s: s, exchange: newExchangeCalls(s.sk.GRPC)})
	s.Registry.MustRegister(newCollector(s))
	if err := s.sk.Serve(cfg.MetricsAddr); err != nil {
		return nil, err
	}

	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = s.Addr()
	}
	node := topology.Node{
		ID: s.id, Address: adv, Zone: cfg.Zone, CapacityBytes: cfg.CapacityBytes,
		State: topology.NodeUp, StartTime: time.Now().UTC(), Incarnation: s.stamp.Incarnation,
		PlacementEpoch: s.watcher.Snapshot().Epoch(), UsedBytes: s.usedBytes(),
	}
	s.node = node
	if offline {
		if last, ok := wo.Fallback.Nodes[s.id]; ok && last.Address != adv {
			s.logger.Warn("starting without etcd on another address than the persisted topology's: routers send to the old one until etcd returns",
				"advertise", adv, "persisted", last.Address)
		}
	} else {
		reg, err := s.register(ctx, store, node)
		if err != nil {
			return nil, err
		}
		s.setRegistration(reg)
	}
	if cfg.AntiEntropyInterval > 0 {
		s.repair = newRepairer(s)
		go s.repair.run(cfg.AntiEntropyInterval)
	}
	s.hints.start()
	s.bg.Add(2)
	go s.reportLoop(bg)
	go newMover(s, store).run(bg)
	s.sk.SetReady()
	s.logger.Info("storage node serving", "addr", s.Addr(), "advertise", adv, "data_dir", cfg.DataDir,
		"anti_entropy_interval", cfg.AntiEntropyInterval, "without_etcd", offline)
	if offline {
		// After SERVING, so that a refusal's NOT_SERVING is the last word.
		s.bg.Add(1)
		go s.rejoin(bg, store, dir, node)
	}
	return s, nil
}

// ID is the node's id.
func (s *Server) ID() string { return s.id }

// Addr is the gRPC address the node listens on.
func (s *Server) Addr() string { return s.sk.Addr() }

// MetricsAddr is the HTTP address of /metrics, or "" when off.
func (s *Server) MetricsAddr() string { return s.sk.MetricsAddr() }

// Err receives the gRPC server's error if it stops serving on its own.
func (s *Server) Err() <-chan error { return s.sk.Err() }

// Ready is closed once the node has loaded its topology and registered
// (or started from its persisted topology while etcd is unreachable), when
// its health turns SERVING.
func (s *Server) Ready() <-chan struct{} { return s.sk.Ready() }

// Close drains the node: it reports NOT_SERVING and deregisters (so
// routers stop sending), finishes in-flight requests within
// ShutdownTimeout, stops its background work and closes the engine last
// before etcd. A failed Start closes what it started the same way.
func (s *Server) Close() error {
	if s.sk == nil { // Start failed before the engine was opened
		return nil
	}
	return s.sk.Close(svcmain.Stages{
		BeforeDrain: func(ctx context.Context) {
			close(s.exchangeDrain)
			s.stopBackground()
			s.regMu.Lock()
			reg := s.reg
			s.reg = nil
			s.regMu.Unlock()
			if reg != nil {
				// If etcd is unreachable the lease expires on its own within
				// LeaseTTL; that is no reason to fail the shutdown.
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if err := reg.Close(rctx); err != nil {
					s.logger.Warn("deregister failed; the registration expires with its lease", "ttl", s.cfg.LeaseTTL, "err", err)
				}
				cancel()
			}
		},
		Subsystems: func() error {
			if s.repair != nil {
				s.repair.close()
			}
			if s.hints != nil {
				s.hints.close() // s.hints stays: a late StoreHints still counts
			}
			s.peers.close()
			s.closeLocks()
			if s.watcher != nil {
				s.watcher.Close()
			}
			return s.closeEngine()
		},
	})
}

// stopBackground stops the goroutines Start left running; s.reg is set
// only before they return.
func (s *Server) stopBackground() {
	if s.bgCancel != nil {
		s.bgCancel()
		s.bg.Wait()
	}
}

// register registers node, whose identity was checked.
func (s *Server) register(ctx context.Context, store *topology.Store, node topology.Node) (*topology.Registration, error) {
	reg, err := store.Register(ctx, node, s.cfg.LeaseTTL, s.logger)
	if errors.Is(err, topology.ErrNodeIDInUse) {
		return nil, fmt.Errorf("%w: %w. Stop the other process, or start this one under a new node id on a fresh directory (%s)", ErrIdentity, err, replaceHint)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: register in etcd: %w", err)
	}
	return reg, nil
}

// snapshotPath is where the node persists the last topology it saw.
func (s *Server) snapshotPath() string { return filepath.Join(s.cfg.DataDir, snapshotFile) }

// persistTopology writes every new topology snapshot to the data
// directory, so the node can restart while etcd is unreachable. A snapshot
// the watcher started from (the persisted one) is not written back.
func (s *Server) persistTopology(ctx context.Context) {
	defer s.bg.Done()
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
		case <-ctx.Done():
			return
		case <-changes:
		}
	}
}

// rejoin, after a start without etcd, waits for etcd, runs the identity
// checks that need it (cluster id, the node id's claim and registration)
// and registers the node. If etcd refuses the directory the node stops
// serving: NOT_SERVING, and the error on Err (the binary exits).
func (s *Server) rejoin(ctx context.Context, store *topology.Store, dir dirState, node topology.Node) {
	defer s.bg.Done()
	backoff := 100 * time.Millisecond
	for {
		// Short attempts: when etcd answers they take milliseconds.
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := s.checkIdentity(actx, store, dir)
		if err == nil {
			var reg *topology.Registration
			if reg, err = s.register(actx, store, node); err == nil {
				cancel()
				s.setRegistration(reg)
				s.logger.Info("etcd answers: identity checked and node registered")
				return
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrIdentity) {
			s.logger.Error("etcd refuses this data directory; stopping", "err", err)
			s.sk.Fail(err)
			return
		}
		s.logger.Debug("etcd still unreachable; not registered yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *Server) closeEngine() error {
	if s.eng == nil {
		return nil
	}
	err := s.eng.Close()
	s.eng = nil
	return err
}

// readEngineStamp fills in what the engine says about the directory's
// identity: its stamp and whether it holds data.
func (s *Server) readEngineStamp(dir *dirState) error {
	b, found, err := s.eng.Meta(stampMeta)
	if err != nil {
		return fmt.Errorf("storage: read identity stamp: %w", err)
	}
	if found {
		if dir.pebble, err = decodeStamp(b, "the Pebble store in "+s.cfg.DataDir); err != nil {
			return err
		}
	}
	if dir.hasData, err = s.eng.HasData(); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// checkIdentity reads what etcd knows of the node id and the stamp in the
// engine, decides with checkIdentity whether the node may run on its
// directory, and stamps a new node's directory (Pebble first, then the
// file, both synced).
func (s *Server) checkIdentity(ctx context.Context, store *topology.Store, dir dirState) (stamp, error) {
	c := clusterState{name: s.cfg.Cluster}
	var err error
	if c.id, err = store.EnsureClusterID(ctx); err != nil {
		return stamp{}, fmt.Errorf("storage: %w", err)
	}
	doc, found, err := store.Placement(ctx)
	if err != nil {
		return stamp{}, fmt.Errorf("storage: %w", err)
	}
	if found {
		c.held = doc.Table().PartitionsPerNode()[s.id]
		if m, ok := doc.Members[s.id]; ok {
			c.member = m.State
		}
	}
	live, found, err := store.Node(ctx, s.id)
	if err != nil {
		return stamp{}, fmt.Errorf("storage: %w", err)
	}
	if found {
		c.live = &live
	}
	claim, claimRev, found, err := store.NodeIdentity(ctx, s.id)
	if err != nil {
		return stamp{}, fmt.Errorf("storage: %w", err)
	}
	if found {
		c.claimed = claim.Incarnation
	}
	st, create, adopted, err := checkIdentity(s.id, dir, c, time.Now())
	if err != nil {
		return stamp{}, err
	}
	if create && c.member == placement.MemberReplacing {
		// Before the claim and the stamp: a stamped directory of a
		// replacing node always knows what it has not backfilled.
		if err := s.recordUnfilled(doc); err != nil {
			return stamp{}, err
		}
	}
	if c.claimed != st.Incarnation {
		// Claim the node id for this directory before stamping it: of two
		// directories starting as one new node at once, one wins. (A
		// directory stamped before claims existed claims the id now.)
		err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: s.id, Incarnation: st.Incarnation, ClaimTime: time.Now().UTC()}, claimRev)
		if errors.Is(err, topology.ErrIdentityConflict) {
			return stamp{}, fmt.Errorf("%w: another data directory claimed node id %s while this one started (%v). Pick another node id (%s)", ErrIdentity, s.id, err, replaceHint)
		}
		if err != nil {
			return stamp{}, fmt.Errorf("storage: %w", err)
		}
	}
	s.reincarnated = create && !adopted && (c.claimed != "" || c.live != nil)
	if !create {
		return st, nil
	}
	if adopted {
		s.logger.Warn("stamping a data directory from before identity stamps; it holds data and names this node in NODE_ID",
			"data_dir", s.cfg.DataDir, "cluster_id", st.ClusterID, "incarnation", st.Incarnation)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return stamp{}, err
	}
	if err := s.eng.SetMeta(stampMeta, b); err != nil {
		return stamp{}, fmt.Errorf("storage: stamp %s: %w", s.cfg.DataDir, err)
	}
	if err := writeStampFile(s.cfg.DataDir, st); err != nil {
		return stamp{}, err
	}
	if dir.legacyID == "" {
		// Older builds read the node id from NODE_ID; keep it so a rolled
		// back binary still knows whose directory this is.
		if err := writeLegacyID(s.cfg.DataDir, st.NodeID); err != nil {
			return stamp{}, err
		}
	}
	s.logger.Info("data directory stamped", "data_dir", s.cfg.DataDir, "cluster_id", st.ClusterID, "incarnation", st.Incarnation)
	return st, nil
}

func (s *Server) cacheBytes() int64 {
	if s.cache == nil {
		return 0
	}
	return s.cache.Stats().Bytes
}
