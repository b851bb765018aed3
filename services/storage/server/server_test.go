package server_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const partitions = 16

type env struct {
	cli   *clientv3.Client
	store *topology.Store
	srv   *server.Server
	c     storagev1.StorageServiceClient
	cfg   server.Config
}

func setup(t *testing.T) *env {
	t.Helper()
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	store := topology.NewStore(cli, "test")
	if _, err := store.BootstrapConfig(ctx, topology.ClusterConfig{Partitions: partitions, ReplicationFactor: 1, HashFunction: placement.HashFunction}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := server.Config{ID: "n1", DataDir: t.TempDir(), Cluster: "test", EtcdClient: cli, CacheBytes: 1 << 20, Logger: logger}
	// A node id that holds partitions only starts on its own stamped data
	// directory: stamp it as a new node before the placement exists.
	first, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The node holds every partition but the last.
	doc := placement.Document{Epoch: 1, HashFunction: placement.HashFunction, Partitions: partitions, RF: 1}
	for p := 0; p < partitions; p++ {
		owner := "n1"
		if p == partitions-1 {
			owner = "other"
		}
		doc.Replicas = append(doc.Replicas, []string{owner})
	}
	if err := store.PutPlacement(ctx, doc, 0); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cc, err := grpcx.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &env{cli: cli, store: store, srv: srv, c: storagev1.NewStorageServiceClient(cc), cfg: cfg}
}

// key builds a storage key in the right partition for (table, pk).
func key(table uint64, pk, sk string) *storagev1.Key {
	return &storagev1.Key{Partition: placement.PartitionOf(table, []byte(pk), partitions), TableId: table, PartitionKey: []byte(pk), SortKey: []byte(sk)}
}

// ownedPK returns a partition key the node holds (not in the last partition).
func ownedPK(t *testing.T, table uint64, seed string) string {
	for i := 0; i < 1000; i++ {
		pk := seed + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if placement.PartitionOf(table, []byte(pk), partitions) != partitions-1 {
			return pk
		}
	}
	t.Fatal("no owned key")
	return ""
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v, want %s containing %q", err, code, substr)
	}
}

func TestApplyReadScanStream(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "user")
	var recs []*storagev1.Record
	for _, sk := range []string{"a", "b", "c", "d"} {
		recs = append(recs, &storagev1.Record{Key: key(7, pk, sk), Version: 10, Value: []byte("v-" + sk)})
	}
	resp, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range resp.Outcomes {
		if o != storagev1.Outcome_OUTCOME_APPLIED {
			t.Fatalf("outcome %d = %v", i, o)
		}
	}
	// An older version loses; a tombstone with a newer one wins.
	resp, err = env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{
		{Key: key(7, pk, "a"), Version: 5, Value: []byte("old")},
		{Key: key(7, pk, "b"), Version: 11, Tombstone: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Outcomes[0] != storagev1.Outcome_OUTCOME_SUPERSEDED || resp.Outcomes[1] != storagev1.Outcome_OUTCOME_APPLIED {
		t.Fatalf("outcomes = %v", resp.Outcomes)
	}
	r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, pk, "a")})
	if err != nil || !r.Found || string(r.Record.Value) != "v-a" || r.Record.Version != 10 {
		t.Fatalf("read a = %v, %v", r, err)
	}
	r, err = env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, pk, "b")})
	if err != nil || !r.Found || !r.Record.Tombstone || r.Record.Version != 11 {
		t.Fatalf("read tombstone = %v, %v", r, err)
	}
	// The second read of a key is served by the LIRS cache.
	if _, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, pk, "a")}); err != nil {
		t.Fatal(err)
	}
	if hits := metric(t, env.srv, "veltrix_storage_cache_hits_total"); hits < 1 {
		t.Fatalf("cache hits = %v after reading a key twice", hits)
	}
	if b := metric(t, env.srv, "veltrix_storage_cache_bytes"); b <= 0 {
		t.Fatalf("cache bytes = %v", b)
	}
	br, err := env.c.BatchRead(ctx, &storagev1.BatchReadRequest{Keys: []*storagev1.Key{key(7, pk, "d"), key(7, pk, "zz"), key(7, pk, "c")}})
	if err != nil || len(br.Results) != 3 || !br.Results[0].Found || br.Results[1].Found || !br.Results[2].Found ||
		string(br.Results[0].Record.Value) != "v-d" || string(br.Results[2].Record.Value) != "v-c" {
		t.Fatalf("batch read = %v, %v; want v-d, not found, v-c in key order", br, err)
	}
	// Reads answer without echoing the keys: the caller matches results by
	// position.
	if r.Record.Key != nil || br.Results[0].Record.Key != nil || br.Results[2].Record.Key != nil {
		t.Fatalf("reads echoed keys: read %v, batch read %v", r.Record.Key, br.Results)
	}

	sc, err := env.c.Scan(ctx, &storagev1.ScanRequest{Partition: key(7, pk, "").Partition, TableId: 7, PartitionKey: []byte(pk), Reverse: true, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Records) != 2 || string(sc.Records[0].Key.SortKey) != "d" || string(sc.Records[1].Key.SortKey) != "c" || len(sc.Resume) == 0 {
		t.Fatalf("scan page 1 = %v", sc.Records)
	}
	sc, err = env.c.Scan(ctx, &storagev1.ScanRequest{Partition: key(7, pk, "").Partition, TableId: 7, PartitionKey: []byte(pk), Reverse: true, Limit: 2, Resume: sc.Resume})
	if err != nil || len(sc.Records) != 1 || string(sc.Records[0].Key.SortKey) != "a" {
		t.Fatalf("scan page 2 (tombstone skipped) = %v, %v", sc, err)
	}

	sc, err = env.c.Scan(ctx, &storagev1.ScanRequest{Partition: key(7, pk, "").Partition, TableId: 7, PartitionKey: []byte(pk), IncludeTombstones: true})
	if err != nil || len(sc.Records) != 4 || !sc.Records[1].Tombstone || sc.Records[1].Version != 11 {
		t.Fatalf("scan with tombstones = %v, %v", sc, err)
	}

	stream, err := env.c.StreamPartition(ctx, &storagev1.StreamPartitionRequest{Partition: key(7, pk, "").Partition})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		for _, rec := range m.Records {
			streamed = append(streamed, string(rec.Key.SortKey))
		}
	}
	if strings.Join(streamed, ",") != "a,b,c,d" {
		t.Fatalf("streamed %v (tombstones included)", streamed)
	}
	dg, err := env.c.PartitionDigests(ctx, &storagev1.PartitionDigestsRequest{})
	if err != nil || len(dg.Digests) != 1 || dg.Digests[0].Count != 4 {
		t.Fatalf("digests = %v, %v", dg, err)
	}
}

func TestBadInput(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 7, "k")
	good := &storagev1.Record{Key: key(7, pk, "s"), Version: 1, Value: []byte("v")}
	var foreign string
	for i := 0; ; i++ {
		foreign = "f" + strings.Repeat("y", i)
		if placement.PartitionOf(7, []byte(foreign), partitions) == partitions-1 {
			break
		}
	}
	cases := []struct {
		name   string
		rec    *storagev1.Record
		code   codes.Code
		substr string
	}{
		{"empty partition key", &storagev1.Record{Key: &storagev1.Key{TableId: 7}, Version: 1}, codes.InvalidArgument, "records[1]"},
		{"missing key", &storagev1.Record{Version: 1}, codes.InvalidArgument, "key is missing"},
		{"oversize partition key", &storagev1.Record{Key: key(7, strings.Repeat("p", 2049), ""), Version: 1}, codes.InvalidArgument, "partition key"},
		{"oversize sort key", &storagev1.Record{Key: key(7, pk, strings.Repeat("s", 1025)), Version: 1}, codes.InvalidArgument, "sort key"},
		{"oversize value", &storagev1.Record{Key: key(7, pk, "s"), Version: 1, Value: make([]byte, 64<<20+1)}, codes.InvalidArgument, "value"},
		{"zero version", &storagev1.Record{Key: key(7, pk, "s")}, codes.InvalidArgument, "version is 0"},
		{"wrong partition", &storagev1.Record{Key: &storagev1.Key{Partition: (key(7, pk, "").Partition + 1) % (partitions - 1), TableId: 7, PartitionKey: []byte(pk)}, Version: 1}, codes.InvalidArgument, "given for a key of partition"},
		{"partition not held", &storagev1.Record{Key: key(7, foreign, ""), Version: 1}, codes.FailedPrecondition, "does not hold partition"},
		{"tombstone with value", &storagev1.Record{Key: key(7, pk, "s"), Version: 1, Tombstone: true, Value: []byte("x")}, codes.InvalidArgument, "tombstone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{good, tc.rec}})
			wantCode(t, err, tc.code, tc.substr)
			// The valid record of the rejected batch was not applied.
			r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: good.Key})
			if err != nil || r.Found {
				t.Fatalf("rejected batch applied its valid record: %v, %v", r, err)
			}
		})
	}
	_, err := env.c.Apply(ctx, &storagev1.ApplyRequest{})
	wantCode(t, err, codes.InvalidArgument, "empty batch")
	_, err = env.c.Scan(ctx, &storagev1.ScanRequest{TableId: 7})
	wantCode(t, err, codes.InvalidArgument, "partition_key")
	_, err = env.c.Read(ctx, &storagev1.ReadRequest{Key: key(7, foreign, "")})
	wantCode(t, err, codes.FailedPrecondition, "does not hold")
}

func TestLargeValue(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	pk := ownedPK(t, 9, "big")
	val := make([]byte, 64<<20)
	for i := range val {
		val[i] = byte(i * 7)
	}
	if _, err := env.c.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{{Key: key(9, pk, ""), Version: 1, Value: val}}}); err != nil {
		t.Fatal(err)
	}
	r, err := env.c.Read(ctx, &storagev1.ReadRequest{Key: key(9, pk, "")})
	if err != nil || !r.Found || len(r.Record.Value) != len(val) || r.Record.Value[12345] != val[12345] {
		t.Fatalf("64 MiB value did not round-trip: %v", err)
	}
}

func TestRegistrationAndShutdown(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	nodes, err := env.store.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "n1" || nodes[0].Address != env.srv.Addr() {
		t.Fatalf("registered nodes = %+v, %v", nodes, err)
	}
	cc, err := grpcx.Dial(env.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: storagev1.StorageService_ServiceDesc.ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	if err := env.srv.Close(); err != nil {
		t.Fatal(err)
	}
	nodes, err = env.store.Nodes(ctx)
	if err != nil || len(nodes) != 0 {
		t.Fatalf("node still registered after Close: %+v, %v", nodes, err)
	}
	// The data dir remembers the node id; another id for it is refused.
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := server.Start(ctx, server.Config{ID: "a", DataDir: dir, Cluster: "test", EtcdClient: env.cli, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = server.Start(ctx, server.Config{ID: "b", DataDir: dir, Cluster: "test", EtcdClient: env.cli, Logger: logger})
	if err == nil || !strings.Contains(err.Error(), `holds the data of node "a"`) {
		t.Fatalf("restart with another id: %v", err)
	}
	again, err := server.Start(ctx, server.Config{DataDir: dir, Cluster: "test", EtcdClient: env.cli, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.ID() != "a" {
		t.Fatalf("restarted node id = %q", again.ID())
	}
}

func metric(t *testing.T, srv *server.Server, name string) float64 {
	t.Helper()
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestIdentityThroughStart breaks the data directory of real nodes: a node
// id that holds partitions on an empty directory, a wiped Pebble store, a
// corrupt stamp, a directory of another cluster, two directories for one
// node id. Each is refused before the node listens, and nothing is
// re-stamped.
func TestIdentityThroughStart(t *testing.T) {
	env := setup(t) // n1 holds 15 of 16 partitions and is running
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := func(id, dir string) server.Config {
		return server.Config{ID: id, DataDir: dir, Cluster: "test", EtcdClient: env.cli, Logger: logger}
	}
	refused := func(t *testing.T, c server.Config, want string) {
		t.Helper()
		before, _ := os.ReadFile(filepath.Join(c.DataDir, "IDENTITY"))
		s, err := server.Start(ctx, c)
		if err == nil {
			s.Close()
			t.Fatalf("node %s started on %s, want refused with %q", c.ID, c.DataDir, want)
		}
		if !errors.Is(err, server.ErrIdentity) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want ErrIdentity containing %q", err, want)
		}
		after, _ := os.ReadFile(filepath.Join(c.DataDir, "IDENTITY"))
		if string(before) != string(after) {
			t.Fatalf("refused start changed %s/IDENTITY:\n%s\nto\n%s", c.DataDir, before, after)
		}
	}
	clusterID, err := env.store.EnsureClusterID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("empty dir for an id that holds partitions", func(t *testing.T) {
		refused(t, cfg("n1", t.TempDir()), "is empty but node id n1 holds 15 partitions in cluster test (id "+clusterID+")")
	})

	// A node that holds nothing yet can be stopped and broken freely.
	dir := t.TempDir()
	z, err := server.Start(ctx, cfg("z", dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	stampBytes, err := os.ReadFile(filepath.Join(dir, "IDENTITY"))
	if err != nil || !strings.Contains(string(stampBytes), clusterID) {
		t.Fatalf("IDENTITY = %s, %v; want the cluster id %s in it", stampBytes, err, clusterID)
	}

	t.Run("restart on its own directory", func(t *testing.T) {
		s, err := server.Start(ctx, cfg("", dir))
		if err != nil {
			t.Fatal(err)
		}
		n, found, err := env.store.Node(ctx, "z")
		if err != nil || !found || n.Incarnation == "" || !strings.Contains(string(stampBytes), n.Incarnation) {
			t.Fatalf("registration %+v (found %v, %v) does not carry the directory's incarnation", n, found, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("corrupt stamp file", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "IDENTITY"), stampBytes[:len(stampBytes)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, cfg("z", dir), "is corrupt")
		if err := os.WriteFile(filepath.Join(dir, "IDENTITY"), stampBytes, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stamp file lost", func(t *testing.T) {
		if err := os.Rename(filepath.Join(dir, "IDENTITY"), filepath.Join(dir, "IDENTITY.bak")); err != nil {
			t.Fatal(err)
		}
		refused(t, cfg("z", dir), "IDENTITY is missing")
		if _, err := os.Stat(filepath.Join(dir, "IDENTITY")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused start re-created IDENTITY: %v", err)
		}
		if err := os.Rename(filepath.Join(dir, "IDENTITY.bak"), filepath.Join(dir, "IDENTITY")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("directory of another cluster", func(t *testing.T) {
		c := cfg("z", dir)
		c.Cluster = "other"
		refused(t, c, "belongs to cluster test (id "+clusterID+"), not to cluster other")
	})

	t.Run("second directory while the first runs", func(t *testing.T) {
		s, err := server.Start(ctx, cfg("z", dir))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		refused(t, cfg("z", t.TempDir()), "registered by a running process at "+s.Addr())
	})

	t.Run("old directory after a newer one became the node", func(t *testing.T) {
		// z holds no partitions, so a fresh directory may become z once the
		// old one stopped; the old one is then stale, whether the new one
		// runs or not.
		other := t.TempDir()
		s, err := server.Start(ctx, cfg("z", other))
		if err != nil {
			t.Fatal(err)
		}
		refused(t, cfg("z", dir), "this one is stale")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		refused(t, cfg("z", dir), "this one is stale")
	})

	t.Run("pebble wiped, stamp file kept", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, "pebble")); err != nil {
			t.Fatal(err)
		}
		refused(t, cfg("z", dir), "has no stamp: its data was wiped or replaced")
	})
}
