package topology

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/placement"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store reads and writes the cluster's documents in etcd.
type Store struct {
	Client *clientv3.Client
	Keys   Keys
}

// NewStore returns a Store for cluster.
func NewStore(cli *clientv3.Client, cluster string) *Store {
	return &Store{Client: cli, Keys: NewKeys(cluster)}
}

func getJSON(ctx context.Context, cli *clientv3.Client, key string, v any) (bool, int64, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return false, 0, fmt.Errorf("topology: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return false, resp.Header.Revision, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return false, 0, fmt.Errorf("topology: decode %s: %w", key, err)
	}
	return true, resp.Kvs[0].ModRevision, nil
}

// BootstrapConfig stores want as the cluster config unless one exists, and
// returns the stored config. A stored config that differs from want in
// partitions or hash function is returned with ErrConfigMismatch: those can
// never change for a cluster.
func (s *Store) BootstrapConfig(ctx context.Context, want ClusterConfig) (ClusterConfig, error) {
	if err := want.Validate(); err != nil {
		return ClusterConfig{}, err
	}
	b, err := json.Marshal(want)
	if err != nil {
		return ClusterConfig{}, err
	}
	key := s.Keys.Config()
	resp, err := s.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return ClusterConfig{}, fmt.Errorf("topology: bootstrap config: %w", err)
	}
	if resp.Succeeded {
		return want, nil
	}
	var got ClusterConfig
	if err := json.Unmarshal(resp.Responses[0].GetResponseRange().Kvs[0].Value, &got); err != nil {
		return ClusterConfig{}, fmt.Errorf("topology: decode %s: %w", key, err)
	}
	if got.Partitions != want.Partitions || got.HashFunction != want.HashFunction {
		return got, fmt.Errorf("%w: stored partitions=%d hash=%s, configured partitions=%d hash=%s",
			ErrConfigMismatch, got.Partitions, got.HashFunction, want.Partitions, want.HashFunction)
	}
	return got, nil
}

// EnsureClusterID returns the cluster's random id, creating it if no
// process did yet. The id tells clusters of the same name apart (a cluster
// rebuilt on a new etcd gets a new id), so a data directory stamped with it
// is never mistaken for one of another cluster. Clusters bootstrapped before
// the id existed get one the first time a node or router asks.
func (s *Store) EnsureClusterID(ctx context.Context) (string, error) {
	key := s.Keys.ClusterID()
	id, err := newUUID()
	if err != nil {
		return "", err
	}
	resp, err := s.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, id)).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return "", fmt.Errorf("topology: cluster id: %w", err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || len(kvs[0].Value) == 0 {
		return "", fmt.Errorf("topology: %s is empty", key)
	}
	return string(kvs[0].Value), nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// Node reads the registration of node id; found is false when the node is
// not registered (not running, or its lease expired).
func (s *Store) Node(ctx context.Context, id string) (n Node, found bool, err error) {
	found, _, err = getJSON(ctx, s.Client, s.Keys.Node(id), &n)
	return n, found, err
}

// NodeIdentity reads node id's identity claim; rev is its revision, to
// pass to ClaimNodeIdentity (0 when there is none).
func (s *Store) NodeIdentity(ctx context.Context, id string) (ni NodeIdentity, rev int64, found bool, err error) {
	resp, err := s.Client.Get(ctx, s.Keys.NodeIdentity(id))
	if err != nil {
		return NodeIdentity{}, 0, false, fmt.Errorf("topology: get identity of %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return NodeIdentity{}, 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &ni); err != nil {
		return NodeIdentity{}, 0, false, fmt.Errorf("topology: decode %s: %w", resp.Kvs[0].Key, err)
	}
	return ni, resp.Kvs[0].ModRevision, true, nil
}

// ClaimNodeIdentity writes ni if node ni.NodeID's claim is still at
// revision prevRev (0: there is none), and returns an error wrapping
// ErrIdentityConflict otherwise: of two directories claiming one node id at
// once, one wins.
func (s *Store) ClaimNodeIdentity(ctx context.Context, ni NodeIdentity, prevRev int64) error {
	b, err := json.Marshal(ni)
	if err != nil {
		return err
	}
	key := s.Keys.NodeIdentity(ni.NodeID)
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", prevRev)
	if prevRev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	resp, err := s.Client.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("topology: claim identity of %s: %w", ni.NodeID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: node %s", ErrIdentityConflict, ni.NodeID)
	}
	return nil
}

// Config reads the cluster config; found is false before bootstrap.
func (s *Store) Config(ctx context.Context) (cfg ClusterConfig, found bool, err error) {
	found, _, err = getJSON(ctx, s.Client, s.Keys.Config(), &cfg)
	return cfg, found, err
}

// Nodes lists the registered nodes in id order.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	resp, err := s.Client.Get(ctx, s.Keys.NodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("topology: list nodes: %w", err)
	}
	nodes := make([]Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("topology: decode %s: %w", kv.Key, err)
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

// CreateTable stores a new table. Its ID is the etcd create revision of
// its key: unique and never reused, even after a table of the same name was
// deleted.
func (s *Store) CreateTable(ctx context.Context, t Table) (Table, error) {
	if err := ValidateTableName(t.Name); err != nil {
		return Table{}, fmt.Errorf("topology: %w", err)
	}
	if t.CreateTime.IsZero() {
		t.CreateTime = time.Now().UTC()
	}
	b, err := json.Marshal(t)
	if err != nil {
		return Table{}, err
	}
	key := s.Keys.Table(t.Name)
	resp, err := s.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return Table{}, fmt.Errorf("topology: create table %s: %w", t.Name, err)
	}
	if !resp.Succeeded {
		return Table{}, fmt.Errorf("%w: %s", ErrTableExists, t.Name)
	}
	// A transaction with one put creates exactly one revision.
	t.ID = uint64(resp.Header.Revision)
	return t, nil
}

func decodeTable(kv *mvccpb.KeyValue) (Table, error) {
	var t Table
	if err := json.Unmarshal(kv.Value, &t); err != nil {
		return Table{}, fmt.Errorf("topology: decode %s: %w", kv.Key, err)
	}
	t.ID = uint64(kv.CreateRevision)
	return t, nil
}

// DeleteTable removes a table.
func (s *Store) DeleteTable(ctx context.Context, name string) (Table, error) {
	resp, err := s.Client.Delete(ctx, s.Keys.Table(name), clientv3.WithPrevKV())
	if err != nil {
		return Table{}, fmt.Errorf("topology: delete table %s: %w", name, err)
	}
	if len(resp.PrevKvs) == 0 {
		return Table{}, fmt.Errorf("%w: %s", ErrTableNotFound, name)
	}
	return decodeTable(resp.PrevKvs[0])
}

// UpdateTable changes a table's document with change, atomically (a
// compare-and-swap on its revision, retried on conflict). change must not
// alter Name or KeySchema. ErrTableNotFound when it does not exist.
func (s *Store) UpdateTable(ctx context.Context, name string, change func(*Table) error) (Table, error) {
	key := s.Keys.Table(name)
	for {
		resp, err := s.Client.Get(ctx, key)
		if err != nil {
			return Table{}, fmt.Errorf("topology: update table %s: %w", name, err)
		}
		if len(resp.Kvs) == 0 {
			return Table{}, fmt.Errorf("%w: %s", ErrTableNotFound, name)
		}
		kv := resp.Kvs[0]
		t, err := decodeTable(kv)
		if err != nil {
			return Table{}, err
		}
		if err := change(&t); err != nil {
			return Table{}, err
		}
		t.Name = name
		b, err := json.Marshal(t)
		if err != nil {
			return Table{}, err
		}
		txn, err := s.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return Table{}, fmt.Errorf("topology: update table %s: %w", name, err)
		}
		if txn.Succeeded {
			return t, nil
		}
	}
}

// Tables lists every table in name order.
func (s *Store) Tables(ctx context.Context) ([]Table, error) {
	resp, err := s.Client.Get(ctx, s.Keys.TablesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("topology: list tables: %w", err)
	}
	out := make([]Table, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		t, err := decodeTable(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Placement reads the placement document; found is false before the
// controller first wrote one.
func (s *Store) Placement(ctx context.Context) (p placement.Document, found bool, err error) {
	found, _, err = getJSON(ctx, s.Client, s.Keys.Placement(), &p)
	return p, found, err
}

// PutPlacement writes p if the stored placement's epoch is still prevEpoch
// (0: none stored). p.Epoch must be greater than prevEpoch.
func (s *Store) PutPlacement(ctx context.Context, p placement.Document, prevEpoch uint64) error {
	if p.Epoch <= prevEpoch {
		return fmt.Errorf("topology: placement epoch %d must exceed %d", p.Epoch, prevEpoch)
	}
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	key := s.Keys.Placement()
	var cmp clientv3.Cmp
	if prevEpoch == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	} else {
		cur, found, err := s.Placement(ctx)
		if err != nil {
			return err
		}
		if !found || cur.Epoch != prevEpoch {
			return fmt.Errorf("%w: stored epoch %d, expected %d", ErrEpochConflict, cur.Epoch, prevEpoch)
		}
		prev, _ := json.Marshal(cur)
		cmp = clientv3.Compare(clientv3.Value(key), "=", string(prev))
	}
	resp, err := s.Client.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("topology: put placement: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: placement changed while writing epoch %d", ErrEpochConflict, p.Epoch)
	}
	return nil
}

// registerMaxBackoff bounds the wait between re-registration attempts.
const registerMaxBackoff = time.Second

// Registration keeps a node registered under a lease until Close. If the
// lease is lost (etcd unreachable longer than the TTL), it registers again
// as soon as etcd answers.
type Registration struct {
	store  *Store
	logger *slog.Logger
	ttl    time.Duration

	mu    sync.Mutex
	node  Node
	lease clientv3.LeaseID

	bg     context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Register puts n under a new lease with the given TTL (default 10s) and
// keeps the lease alive in the background. If the node id is registered by
// another incarnation (n.Incarnation and the stored one both set and
// different), it returns an error wrapping ErrNodeIDInUse: two data
// directories must not serve as one node. A registration of the same
// incarnation (the node restarted before its old lease expired) is taken
// over.
func (s *Store) Register(ctx context.Context, n Node, ttl time.Duration, logger *slog.Logger) (*Registration, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	bg, cancel := context.WithCancel(context.Background())
	r := &Registration{store: s, logger: logger, ttl: ttl, node: n, bg: bg, cancel: cancel, done: make(chan struct{})}
	ka, err := r.grant(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go r.run(bg, ka)
	return r, nil
}

func (r *Registration) grant(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	cli := r.store.Client
	lease, err := cli.Grant(ctx, int64((r.ttl+time.Second-1)/time.Second))
	if err != nil {
		return nil, fmt.Errorf("topology: grant lease: %w", err)
	}
	r.mu.Lock()
	n := r.node
	r.lease = lease.ID
	r.mu.Unlock()
	if err := r.put(ctx, n, lease.ID); err != nil {
		// Best effort: the lease expires on its own anyway.
		_, _ = cli.Revoke(ctx, lease.ID)
		return nil, err
	}
	// The keepalive stream lives until the registration is closed, not
	// until ctx (the caller's start-up context) ends.
	ka, err := cli.KeepAlive(r.bg, lease.ID)
	if err != nil {
		return nil, fmt.Errorf("topology: keep lease alive: %w", err)
	}
	return ka, nil
}

// put writes n under lease unless another incarnation holds the node id.
// The write is a compare-and-swap on the key's revision, so two processes
// checking at once cannot both win.
func (r *Registration) put(ctx context.Context, n Node, lease clientv3.LeaseID) error {
	cli := r.store.Client
	key := r.store.Keys.Node(n.ID)
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("topology: register node %s: %w", n.ID, err)
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(cur.Kvs) > 0 {
			var other Node
			if err := json.Unmarshal(cur.Kvs[0].Value, &other); err != nil {
				return fmt.Errorf("topology: decode %s: %w", key, err)
			}
			if other.Incarnation != "" && n.Incarnation != "" && other.Incarnation != n.Incarnation {
				return fmt.Errorf("%w: node %s is registered at %s with incarnation %s (started %s), this process has incarnation %s",
					ErrNodeIDInUse, n.ID, other.Address, other.Incarnation, other.StartTime.Format(time.RFC3339), n.Incarnation)
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", cur.Kvs[0].ModRevision)
		}
		resp, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b), clientv3.WithLease(lease))).Commit()
		if err != nil {
			return fmt.Errorf("topology: register node %s: %w", n.ID, err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("topology: register node %s: its registration kept changing concurrently", n.ID)
}

func (r *Registration) run(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(r.done)
	backoff := 100 * time.Millisecond
	for {
		for range ka {
		}
		if ctx.Err() != nil {
			return
		}
		r.logger.Warn("node lease lost; registering again", "node", r.node.ID)
		for {
			// A short attempt: when etcd answers, grant, get, put and
			// keepalive take milliseconds; when it does not, the next try
			// comes sooner.
			gctx, cancel := context.WithTimeout(ctx, min(r.ttl, 3*time.Second))
			next, err := r.grant(gctx)
			cancel()
			if err == nil {
				ka = next
				backoff = 100 * time.Millisecond
				r.logger.Info("node registered again", "node", r.node.ID)
				break
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNodeIDInUse) {
				r.logger.Error("register node: another incarnation holds the node id", "node", r.node.ID, "err", err)
			} else {
				r.logger.Warn("register node", "node", r.node.ID, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			// At most a second between attempts: re-registering promptly
			// after an etcd outage is what lets routers stop counting on
			// their grace for this node.
			backoff = min(2*backoff, registerMaxBackoff)
		}
	}
}

// Update rewrites the registration with n (same id), e.g. to report
// draining. Like Register it never overwrites another incarnation's
// registration.
func (r *Registration) Update(ctx context.Context, n Node) error {
	r.mu.Lock()
	if n.ID != r.node.ID {
		r.mu.Unlock()
		return fmt.Errorf("topology: registration of %s cannot become %s", r.node.ID, n.ID)
	}
	r.node = n
	lease := r.lease
	r.mu.Unlock()
	if err := r.put(ctx, n, lease); err != nil {
		return fmt.Errorf("topology: update node %s: %w", n.ID, err)
	}
	return nil
}

// Close stops the keepalive and revokes the lease, which removes the
// registration at once.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	_, err := r.store.Client.Revoke(ctx, lease)
	<-r.done
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("topology: revoke lease of %s: %w", r.node.ID, err)
	}
	return nil
}
