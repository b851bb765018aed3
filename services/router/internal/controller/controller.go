// Package controller is the placement controller. Every router runs one, but
// only the holder of the etcd election acts: it bootstraps the cluster
// config (P, RF) on first start, and once enough storage nodes have
// registered and membership has settled, computes the placement with
// rendezvous hashing and writes it with epoch 1.
//
// From then on it moves replicas as membership changes (placement.Move):
// a state machine driven by the watcher's snapshot, one placement update
// (compare-and-swap, next epoch) per iteration. Every iteration
//
//   - fills the members (nodes in the replica sets and newly registered
//     ones are active; a removed id that registers again is active again)
//     and declares dead an active member unregistered for Config.DeadAfter
//     (measured since this router became leader);
//   - advances each move one stage: pending → streaming once every router
//     and storage node reports the move's epoch (Snapshot.Reached);
//     streaming → read_new once Add reported its backfill Done from its
//     current incarnation; read_new → promoted once every process routes
//     by read_new; a cleanup entry ends when Remove reported Dropped or is
//     dead or removed; a move whose Add is no longer placed is abandoned;
//   - completes members: a leaving or dead member holding nothing is
//     removed, a replacing one with no backfill left is active;
//   - plans new moves towards the target (Document.Target, Document.Plan,
//     at most Config.MaxMovesPerNode per node) and keeps the Rebalance
//     record;
//
// and then deletes the progress reports of moves that ended. All state is
// in the document and the progress reports, so a new leader resumes where
// the last one stopped; each step is idempotent.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Config configures the controller.
type Config struct {
	// ID identifies this router in the election.
	ID string
	// Cluster is the config written at bootstrap (P, RF, hash function).
	Cluster topology.ClusterConfig
	// MinNodes is how many storage nodes must be registered before the
	// first placement is computed. Default: Cluster.ReplicationFactor.
	MinNodes int
	// Settle is how long membership must stay unchanged before the first
	// placement, so nodes starting together all get partitions. Default: 1s.
	Settle time.Duration
	// SessionTTL is the election lease TTL in seconds. Default: 5.
	SessionTTL int
	// DeadAfter is how long an active member may stay unregistered before
	// the controller declares it dead and re-creates its replicas elsewhere;
	// negative: never. Default: 15m.
	DeadAfter time.Duration
	// MaxMovesPerNode bounds the moves a node takes part in at once.
	// Default: 2.
	MaxMovesPerNode int
	// Interval is how often the leader re-evaluates without a topology
	// change (for DeadAfter). Default: 1s.
	Interval time.Duration
	// Metrics receive the rebalance gauges. Default: unregistered metrics.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Controller campaigns for the controller role and acts while it holds it.
type Controller struct {
	cfg     Config
	cli     *clientv3.Client
	store   *topology.Store
	watcher *topology.Watcher

	mu     sync.Mutex
	leader bool
	// bootstrapErr is set when the stored config contradicts ours.
	bootstrapErr error

	// absent is when each member was first seen unregistered since this
	// router became leader; used by the leader's goroutine only.
	absent  map[string]time.Time
	metrics *Metrics

	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs the controller until Close.
func Start(cli *clientv3.Client, store *topology.Store, w *topology.Watcher, cfg Config) *Controller {
	if cfg.MinNodes <= 0 {
		cfg.MinNodes = cfg.Cluster.ReplicationFactor
	}
	if cfg.Settle <= 0 {
		cfg.Settle = time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 5
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 15 * time.Minute
	}
	if cfg.MaxMovesPerNode <= 0 {
		cfg.MaxMovesPerNode = 2
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{cfg: cfg, cli: cli, store: store, watcher: w, cancel: cancel, done: make(chan struct{}), metrics: cfg.Metrics}
	go c.run(ctx)
	return c
}

// IsLeader reports whether this router holds the controller role now.
func (c *Controller) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// SetDeadAfter changes Config.DeadAfter (tests).
func (c *Controller) SetDeadAfter(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.DeadAfter = d
}

// Err reports a fatal configuration conflict (the stored cluster config
// differs from this router's), or nil.
func (c *Controller) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bootstrapErr
}

// Leader returns the id of the router holding the role, as etcd says.
func (c *Controller) Leader(ctx context.Context) (string, error) {
	resp, err := c.cli.Get(ctx, c.store.Keys.Controller()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Close resigns and stops. With etcd unreachable, resigning can block
// inside the etcd client until it is closed, so Close waits at most a few
// seconds; the caller then closes the client, which ends the campaign.
func (c *Controller) Close() {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		c.cfg.Logger.Warn("controller: still resigning; continuing shutdown")
	}
}

func (c *Controller) setLeader(v bool) {
	c.mu.Lock()
	c.leader = v
	c.mu.Unlock()
}

func (c *Controller) run(ctx context.Context) {
	defer close(c.done)
	log := c.cfg.Logger
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(c.cli, concurrency.WithTTL(c.cfg.SessionTTL), concurrency.WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("controller: etcd session", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		el := concurrency.NewElection(sess, c.store.Keys.Controller())
		if err := el.Campaign(ctx, c.cfg.ID); err != nil {
			_ = sess.Close()
			if ctx.Err() == nil {
				log.Warn("controller: campaign", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		log.Info("controller: elected", "router", c.cfg.ID)
		c.setLeader(true)
		lead, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
			case <-lead.Done():
			}
			cancel()
		}()
		c.lead(lead)
		cancel()
		c.setLeader(false)
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		_ = el.Resign(rctx)
		rcancel()
		_ = sess.Close()
		if ctx.Err() == nil {
			log.Warn("controller: lost the role; campaigning again")
		}
	}
}

// lead does the controller's work while ctx (the leadership) lasts.
func (c *Controller) lead(ctx context.Context) {
	log := c.cfg.Logger
	for {
		_, err := c.store.BootstrapConfig(ctx, c.cfg.Cluster)
		if err == nil {
			break
		}
		if errors.Is(err, topology.ErrConfigMismatch) {
			log.Error("controller: cluster config conflict; not placing", "err", err)
			c.mu.Lock()
			c.bootstrapErr = err
			c.mu.Unlock()
			<-ctx.Done()
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("controller: bootstrap config", "err", err)
		sleep(ctx, time.Second)
	}
	changes := c.watcher.Changes()
	defer c.watcher.StopChanges(changes)
	var lastMembers string
	var stableSince time.Time
	tick := time.NewTicker(c.cfg.Settle / 4)
	defer tick.Stop()
	for {
		snap := c.watcher.Snapshot()
		if snap.Placement != nil {
			c.moveReplicas(ctx, changes)
			return
		}
		ids := make([]string, 0, len(snap.Nodes))
		for id, n := range snap.Nodes {
			if n.State == topology.NodeUp {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		members := stringsKey(ids)
		if members != lastMembers {
			lastMembers, stableSince = members, time.Now()
		}
		if len(ids) >= c.cfg.MinNodes && time.Since(stableSince) >= c.cfg.Settle {
			if err := c.place(ctx, snap, ids); err != nil {
				log.Warn("controller: write placement", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

// moveReplicas runs the rebalancing state machine (see the package doc)
// on every topology change and every Interval while ctx lasts.
func (c *Controller) moveReplicas(ctx context.Context, changes <-chan struct{}) {
	c.absent = map[string]time.Time{}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		if err := c.rebalance(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("controller: rebalance", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

func (c *Controller) place(ctx context.Context, snap *topology.Snapshot, ids []string) error {
	nodes := make([]placement.Node, len(ids))
	for i, id := range ids {
		nodes[i] = placement.Node{ID: id, Zone: snap.Nodes[id].Zone}
	}
	cc := c.cfg.Cluster
	if snap.Config != nil {
		cc = *snap.Config
	}
	t, err := placement.Compute(nodes, cc.Partitions, cc.ReplicationFactor)
	if err != nil {
		return err
	}
	doc := placement.NewDocument(1, t)
	// The members are written with the first placement, so a new cluster
	// starts at epoch 1 with nothing left for the rebalancer to fill in.
	FillMembers(&doc, snap.Nodes, time.Now().UTC())
	if err := c.store.PutPlacement(ctx, doc, 0); err != nil {
		return err
	}
	c.cfg.Logger.Info("controller: placement written", "epoch", doc.Epoch, "nodes", len(ids), "partitions", cc.Partitions, "rf", cc.ReplicationFactor)
	return nil
}

func stringsKey(ids []string) string {
	n := 0
	for _, id := range ids {
		n += len(id) + 1
	}
	b := make([]byte, 0, n)
	for _, id := range ids {
		b = append(append(b, id...), 0)
	}
	return string(b)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
