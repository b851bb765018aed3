package cluster_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRetainedAcrossEtcdOutage: a registration deleted while etcd was
// unreachable or within the grace after it returned (as expired leases
// are) keeps its node in the routing table until it registers again or
// the grace passes; outside the grace a deletion drops it at once.
func TestRetainedAcrossEtcdOutage(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ecfg := etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true, ClientPort: freePort(t), PeerPort: freePort(t)}
	e, err := etcdembed.Start(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Close() }()
	cli, err := clientv3.New(topology.ClientConfig([]string{e.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := topology.NewStore(cli, "test")
	ctx := context.Background()
	put := func(id string) {
		t.Helper()
		b, _ := json.Marshal(topology.Node{ID: id, Address: "127.0.0.1:1", State: topology.NodeUp})
		waitFor(t, "put "+id, func() bool {
			_, err := cli.Put(ctx, store.Keys.Node(id), string(b))
			return err == nil
		})
	}
	del := func(id string) {
		t.Helper()
		waitFor(t, "delete "+id, func() bool {
			_, err := cli.Delete(ctx, store.Keys.Node(id))
			return err == nil
		})
	}
	put("n1")
	put("n2")
	w, err := store.Watch(ctx, topology.WatcherOptions{Logger: logger, PingInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const grace = 2 * time.Second
	cl := cluster.New(w, logger, grace)
	defer cl.Close()
	node := func(id string) func() bool {
		return func() bool { _, ok := cl.Node(id); return ok }
	}
	gone := func(id string) func() bool {
		return func() bool { _, ok := cl.Node(id); return !ok }
	}
	waitFor(t, "n1 and n2", func() bool { return node("n1")() && node("n2")() })

	// Outside any outage a deletion is a departure.
	del("n2")
	waitFor(t, "n2 dropped", gone("n2"))

	e.Close()
	waitFor(t, "stale", w.Stale)
	if e, err = etcdembed.Start(ecfg); err != nil {
		t.Fatal(err)
	}
	del("n1") // as an expired lease would be
	waitFor(t, "watch sees the delete", func() bool { _, ok := w.Snapshot().Nodes["n1"]; return !ok })
	// The cluster applies the watcher's change a moment later: wait for it
	// (well within the grace), then n1 must be retained, not dropped.
	waitFor(t, "n1 retained after the outage", func() bool { return len(cl.Retained()) == 1 })
	if !node("n1")() {
		t.Fatalf("n1 dropped right after the outage; retained %v", cl.Retained())
	}
	put("n1") // it registers again
	waitFor(t, "n1 no longer retained", func() bool { return len(cl.Retained()) == 0 })
	if !node("n1")() {
		t.Fatal("n1 lost on registering again")
	}
	waitFor(t, "not stale", func() bool { return !w.Stale() })
	del("n1")
	waitFor(t, "watch sees the second delete", func() bool { _, ok := w.Snapshot().Nodes["n1"]; return !ok })
	if !node("n1")() {
		t.Fatal("n1 dropped within the grace")
	}
	time.Sleep(grace)
	waitFor(t, "n1 dropped after the grace", gone("n1"))
}
