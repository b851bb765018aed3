package topology_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func startEtcd(t *testing.T) (*etcdembed.Etcd, *clientv3.Client) {
	t.Helper()
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := e.Client()
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		e.Close()
	})
	return e, cli
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegistrationAndWatch(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changes := w.Changes()

	regs := map[string]*topology.Registration{}
	for _, id := range []string{"n1", "n2"} {
		r, err := store.Register(ctx, topology.Node{ID: id, Address: "127.0.0.1:1", Zone: "z-" + id, State: topology.NodeUp}, 5*time.Second, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		regs[id] = r
	}
	waitFor(t, "both nodes in the snapshot", func() bool { return len(w.Snapshot().Nodes) == 2 })
	if got := w.Snapshot().Nodes["n2"].Zone; got != "z-n2" {
		t.Fatalf("zone of n2 = %q", got)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification")
	}

	// Revoking n1's lease removes it from the watch; n2 stays.
	if err := regs["n1"].Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to disappear", func() bool {
		_, ok := w.Snapshot().Nodes["n1"]
		return !ok
	})
	if _, ok := w.Snapshot().Nodes["n2"]; !ok {
		t.Fatal("n2 disappeared with n1")
	}
	nodes, err := store.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "n2" {
		t.Fatalf("Nodes() = %v, %v", nodes, err)
	}

	// Updating a registration is seen by the watcher.
	if err := regs["n2"].Update(ctx, topology.Node{ID: "n2", Address: "127.0.0.1:2", State: topology.NodeDraining}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 draining", func() bool { return w.Snapshot().Nodes["n2"].State == topology.NodeDraining })
	if err := regs["n2"].Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to disappear", func() bool { return len(w.Snapshot().Nodes) == 0 })
}

func TestRegistrationSurvivesLeaseLoss(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	r, err := store.Register(ctx, topology.Node{ID: "n1", Address: "a:1", State: topology.NodeUp}, 2*time.Second, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	// Revoke the lease behind the registration's back, as an expiry would.
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases = %v, %v", leases, err)
	}
	if _, err := cli.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-registration", func() bool {
		nodes, err := store.Nodes(ctx)
		return err == nil && len(nodes) == 1
	})
}

func TestTables(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	a, err := store.CreateTable(ctx, topology.Table{Name: "sessions", DefaultTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateTable(ctx, topology.Table{Name: "sessions"}); !errors.Is(err, topology.ErrTableExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := store.CreateTable(ctx, topology.Table{Name: "x"}); err == nil {
		t.Fatal("short name accepted")
	}
	waitFor(t, "table in snapshot", func() bool { return w.Snapshot().Tables["sessions"].ID == a.ID })
	if got := w.Snapshot().TablesByID[a.ID]; got.Name != "sessions" || got.DefaultTTL != time.Hour {
		t.Fatalf("by id: %+v", got)
	}
	if _, err := store.DeleteTable(ctx, "sessions"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.DeleteTable(ctx, "sessions"); !errors.Is(err, topology.ErrTableNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	b, err := store.CreateTable(ctx, topology.Table{Name: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ID <= a.ID {
		t.Fatalf("recreated table reused id: %d then %d", a.ID, b.ID)
	}
	waitFor(t, "recreated table", func() bool { return w.Snapshot().Tables["sessions"].ID == b.ID })
	if _, ok := w.Snapshot().TablesByID[a.ID]; ok {
		t.Fatal("old id still resolves")
	}
	tables, err := store.Tables(ctx)
	if err != nil || len(tables) != 1 || tables[0].ID != b.ID {
		t.Fatalf("Tables() = %+v, %v", tables, err)
	}

	// Concurrent updates of different settings all land (compare-and-swap,
	// retried), and the table keeps its id.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := store.UpdateTable(ctx, "sessions", func(t *topology.Table) error {
				if i == 0 {
					t.TTLAttribute = "expires"
				} else {
					t.MaxItemBytes += uint64(i)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "updated table", func() bool {
		got := w.Snapshot().Tables["sessions"]
		return got.ID == b.ID && got.TTLAttribute == "expires" && got.MaxItemBytes == 1+2+3+4+5+6+7
	})
	if _, err := store.UpdateTable(ctx, "nosuch", func(*topology.Table) error { return nil }); !errors.Is(err, topology.ErrTableNotFound) {
		t.Fatalf("update of a missing table: %v", err)
	}
}

func TestConfigAndPlacement(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	want := topology.ClusterConfig{Partitions: 8, ReplicationFactor: 3, HashFunction: "h1"}
	got, err := store.BootstrapConfig(ctx, want)
	if err != nil || got.Partitions != 8 {
		t.Fatalf("bootstrap: %+v, %v", got, err)
	}
	// A second bootstrap with the same shape returns the stored config.
	if _, err := store.BootstrapConfig(ctx, want); err != nil {
		t.Fatal(err)
	}
	other := want
	other.Partitions = 16
	if _, err := store.BootstrapConfig(ctx, other); !errors.Is(err, topology.ErrConfigMismatch) {
		t.Fatalf("mismatch not detected: %v", err)
	}
	if _, err := store.BootstrapConfig(ctx, topology.ClusterConfig{}); err == nil {
		t.Fatal("invalid config accepted")
	}

	p := placement.Document{Epoch: 1, HashFunction: placement.HashFunction, Partitions: 2, RF: 1, Replicas: [][]string{{"a"}, {"b"}}}
	if err := store.PutPlacement(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	if err := store.PutPlacement(ctx, p, 0); !errors.Is(err, topology.ErrEpochConflict) {
		t.Fatalf("second initial placement: %v", err)
	}
	p2 := p
	p2.Epoch = 2
	p2.Replicas = [][]string{{"b"}, {"a"}}
	stale := p2
	stale.Epoch = 9
	if err := store.PutPlacement(ctx, stale, 5); !errors.Is(err, topology.ErrEpochConflict) {
		t.Fatalf("wrong prev epoch: %v", err)
	}
	if err := store.PutPlacement(ctx, p2, 1); err != nil {
		t.Fatal(err)
	}
	bad := p2
	bad.Epoch = 3
	bad.Replicas = [][]string{{"a", "a"}, {"b"}}
	if err := store.PutPlacement(ctx, bad, 2); err == nil {
		t.Fatal("duplicate replica accepted")
	}
	cur, found, err := store.Placement(ctx)
	if err != nil || !found || cur.Epoch != 2 || cur.Replicas[0][0] != "b" {
		t.Fatalf("placement = %+v %v %v", cur, found, err)
	}
}

func TestWatcherStaleWhenEtcdStops(t *testing.T) {
	e, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	if _, err := store.CreateTable(ctx, topology.Table{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: testLogger(t), PingInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Stale() {
		t.Fatal("stale at start")
	}
	e.Close()
	waitFor(t, "stale", w.Stale)
	if _, ok := w.Snapshot().Tables["kept"]; !ok {
		t.Fatal("snapshot lost when etcd stopped")
	}
}

func TestClusterIDAndIncarnations(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	id, err := store.EnsureClusterID(ctx)
	if err != nil || len(id) != 36 {
		t.Fatalf("cluster id = %q, %v", id, err)
	}
	if again, err := store.EnsureClusterID(ctx); err != nil || again != id {
		t.Fatalf("cluster id changed: %q then %q (%v)", id, again, err)
	}
	if other, err := topology.NewStore(cli, "other").EnsureClusterID(ctx); err != nil || other == id {
		t.Fatalf("cluster other has id %q (%v), cluster test %q", other, err, id)
	}

	n := topology.Node{ID: "n1", Address: "a:1", State: topology.NodeUp, Incarnation: "inc-a"}
	a, err := store.Register(ctx, n, 10*time.Second, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	// Another data directory under the same id is refused and leaves the
	// registration alone.
	b := n
	b.Address, b.Incarnation = "b:1", "inc-b"
	if r, err := store.Register(ctx, b, 10*time.Second, testLogger(t)); !errors.Is(err, topology.ErrNodeIDInUse) {
		if r != nil {
			r.Close(ctx)
		}
		t.Fatalf("register another incarnation: %v, want ErrNodeIDInUse", err)
	}
	if got, found, err := store.Node(ctx, "n1"); err != nil || !found || got.Incarnation != "inc-a" || got.Address != "a:1" {
		t.Fatalf("registration = %+v found=%v err=%v", got, found, err)
	}
	// The same incarnation (a restart before the old lease expired) takes
	// the registration over.
	c := n
	c.Address = "c:1"
	r, err := store.Register(ctx, c, 10*time.Second, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if got, _, _ := store.Node(ctx, "n1"); got.Address != "c:1" {
		t.Fatalf("registration = %+v, want the restarted one", got)
	}

	// The identity claim: one of two directories claiming the id wins.
	if _, rev, found, err := store.NodeIdentity(ctx, "n1"); err != nil || found || rev != 0 {
		t.Fatalf("claim before any: rev %d found %v err %v", rev, found, err)
	}
	if err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: "n1", Incarnation: "inc-a"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: "n1", Incarnation: "inc-b"}, 0); !errors.Is(err, topology.ErrIdentityConflict) {
		t.Fatalf("second claim from nothing: %v, want ErrIdentityConflict", err)
	}
	ni, rev, found, err := store.NodeIdentity(ctx, "n1")
	if err != nil || !found || ni.Incarnation != "inc-a" {
		t.Fatalf("claim = %+v found %v err %v", ni, found, err)
	}
	if err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: "n1", Incarnation: "inc-c"}, rev); err != nil {
		t.Fatal(err)
	}
	if err := store.ClaimNodeIdentity(ctx, topology.NodeIdentity{NodeID: "n1", Incarnation: "inc-d"}, rev); !errors.Is(err, topology.ErrIdentityConflict) {
		t.Fatalf("claim at a stale revision: %v, want ErrIdentityConflict", err)
	}
}

func TestSnapshotFileAndFallback(t *testing.T) {
	e, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	if _, err := store.CreateTable(ctx, topology.Table{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "topology.json")
	if _, err := topology.ReadSnapshotFile(path, "test"); !errors.Is(err, topology.ErrNoSnapshotFile) {
		t.Fatalf("read missing file: %v, want ErrNoSnapshotFile", err)
	}
	want := w.Snapshot()
	w.Close()
	if err := topology.WriteSnapshotFile(path, "test", want); err != nil {
		t.Fatal(err)
	}
	if _, err := topology.ReadSnapshotFile(path, "other"); err == nil {
		t.Fatal("read another cluster's snapshot")
	}
	got, err := topology.ReadSnapshotFile(path, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != want.Revision || got.Tables["kept"].ID != want.Tables["kept"].ID || got.TablesByID[want.Tables["kept"].ID].Name != "kept" {
		t.Fatalf("round trip: got %+v, want %+v", got, want)
	}

	e.Close()
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := store.Watch(sctx, topology.WatcherOptions{Logger: testLogger(t)}); err == nil {
		t.Fatal("watch without etcd and without fallback succeeded")
	}
	sctx2, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	fw, err := store.Watch(sctx2, topology.WatcherOptions{Logger: testLogger(t), Fallback: got})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if !fw.Stale() || fw.LastUnreachable().IsZero() {
		t.Fatal("watcher started from a fallback is not stale")
	}
	if _, ok := fw.Snapshot().Tables["kept"]; !ok {
		t.Fatal("fallback snapshot not served")
	}
}

// Other subsystems keep frequently written state under the cluster prefix
// (jobs' progress, migration figures and queues); writing it must not
// publish a snapshot or wake the watcher's listeners.
func TestForeignKeysDoNotWakeWatchers(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changes := w.Changes()
	var mu sync.Mutex
	var seen []int // nodes in the snapshot at each notification
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-changes:
				mu.Lock()
				seen = append(seen, len(w.Snapshot().Nodes))
				mu.Unlock()
			case <-time.After(3 * time.Second):
				return
			}
		}
	}()
	for i := range 20 {
		if _, err := cli.Put(ctx, store.Keys.Prefix()+fmt.Sprintf("migration/stats/t/r%d", i), "x"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r, err := store.Register(ctx, topology.Node{ID: "n1", Address: "127.0.0.1:1", State: topology.NodeUp}, 5*time.Second, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close(ctx) }()
	waitFor(t, "n1 in the snapshot", func() bool { return len(w.Snapshot().Nodes) == 1 })
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no notification for the node's registration")
	}
	for _, n := range seen {
		if n != 1 {
			t.Fatalf("a notification came before the node registered (nodes at each: %v): foreign keys woke the watcher", seen)
		}
	}
}
