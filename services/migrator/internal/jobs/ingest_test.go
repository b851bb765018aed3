package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeIngestNode is a StorageService that only ingests, for the unit tests
// of the ingester's routing, chunking and retries (the real node's Ingest
// is tested in services/storage and with the whole cluster in e2e).
type fakeIngestNode struct {
	storagev1.UnimplementedStorageServiceServer
	id   string
	addr string
	srv  *grpc.Server

	mu       sync.Mutex
	runs     [][]*storagev1.Record // records of each accepted run
	maxMsg   int                   // largest message, bytes
	epochs   []uint64
	failNext []error // errors for the next runs, in order
	invalid  func(*storagev1.Record) string
	held     map[string]uint64 // key -> version: supersedes equal or older
}

func startFakeIngestNode(t *testing.T, id string) *fakeIngestNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeIngestNode{id: id, addr: ln.Addr().String(), srv: grpc.NewServer(), held: map[string]uint64{}}
	storagev1.RegisterStorageServiceServer(n.srv, n)
	go func() { _ = n.srv.Serve(ln) }()
	t.Cleanup(n.srv.Stop)
	return n
}

func (n *fakeIngestNode) Ingest(stream grpc.ClientStreamingServer[storagev1.IngestRequest, storagev1.IngestResponse]) error {
	var recs []*storagev1.Record
	var epoch uint64
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.maxMsg = max(n.maxMsg, proto.Size(req))
		n.mu.Unlock()
		epoch = req.GetPlacementEpoch()
		recs = append(recs, req.GetRecords()...)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.epochs = append(n.epochs, epoch)
	if len(n.failNext) > 0 {
		err := n.failNext[0]
		n.failNext = n.failNext[1:]
		return err
	}
	n.runs = append(n.runs, recs)
	resp := &storagev1.IngestResponse{}
	for i, r := range recs {
		if n.invalid != nil {
			if why := n.invalid(r); why != "" {
				resp.Invalid = append(resp.Invalid, &storagev1.IngestInvalid{Index: uint64(i), Reason: why})
				continue
			}
		}
		k := string(r.GetKey().GetPartitionKey()) + "/" + string(r.GetKey().GetSortKey())
		if n.held[k] >= r.GetVersion() {
			resp.Superseded++
			continue
		}
		n.held[k] = r.GetVersion()
		resp.Applied++
	}
	return stream.SendAndClose(resp)
}

func staleErr(epoch uint64) error {
	st, _ := status.New(codes.FailedPrecondition, "stale placement epoch").WithDetails(&errdetails.ErrorInfo{
		Reason: "STALE_PLACEMENT_EPOCH", Metadata: map[string]string{"epoch": fmt.Sprint(epoch)}})
	return st.Err()
}

// ingestCluster is a topology in etcd over fake nodes.
type ingestCluster struct {
	topo  *topology.Store
	nodes []*fakeIngestNode
	doc   placement.Document
}

func newIngestCluster(t *testing.T, nodes, rf int) *ingestCluster {
	t.Helper()
	ctx := context.Background()
	cli, err := testEtcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c := &ingestCluster{topo: topology.NewStore(cli, fmt.Sprintf("ingest%d", clusterSeq.Add(1)))}
	if _, err := c.topo.BootstrapConfig(ctx, topology.ClusterConfig{Partitions: 16, ReplicationFactor: rf, HashFunction: placement.HashFunction}); err != nil {
		t.Fatal(err)
	}
	var pn []placement.Node
	for i := range nodes {
		n := startFakeIngestNode(t, fmt.Sprintf("n%d", i))
		c.nodes = append(c.nodes, n)
		reg, err := c.topo.Register(ctx, topology.Node{ID: n.id, Address: n.addr, State: topology.NodeUp}, 10*time.Second, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = reg.Close(context.Background()) })
		pn = append(pn, placement.Node{ID: n.id})
	}
	tab, err := placement.Compute(pn, 16, rf)
	if err != nil {
		t.Fatal(err)
	}
	c.doc = placement.NewDocument(1, tab)
	if err := c.topo.PutPlacement(ctx, c.doc, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.topo.CreateTable(ctx, topology.Table{Name: "tbl"}); err != nil {
		t.Fatal(err)
	}
	return c
}

// ingester returns an ingester of table "tbl" on c.
func (c *ingestCluster) ingester(t *testing.T) *ingester {
	t.Helper()
	e := &Env{Topology: c.topo, Logger: testLogger(t), Target: &storedVersions{}}
	e.defaults()
	g, err := e.newIngester(context.Background(), "job", "tbl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func ingestMuts(n, valueBytes int) []client.Mutation {
	v := hlc.FromTime(time.Now().Add(-time.Hour), 0)
	muts := make([]client.Mutation, n)
	for i := range muts {
		// Reverse order: the ingester must sort.
		muts[i] = client.Mutation{Key: client.Key{Table: "tbl", PartitionKey: fmt.Appendf(nil, "pk%05d", n-i)},
			Value: make([]byte, valueBytes), Version: v}
	}
	return muts
}

func TestIngesterRoutesSortsAndChunks(t *testing.T) {
	c := newIngestCluster(t, 3, 2)
	g := c.ingester(t)
	muts := ingestMuts(3000, 1000) // ~3 MB: several messages per node
	muts = append(muts, client.Mutation{Key: client.Key{Table: "tbl", PartitionKey: []byte("big"), SortKey: make([]byte, 1500)}, Value: []byte("x"), Version: muts[0].Version})
	res, err := g.ingest(context.Background(), muts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.refused) != 1 || res.refused[3000] == nil || !strings.Contains(res.refused[3000].Error(), "invalid argument: mutations[0].key.sort_key: 1500 bytes, at most 1024") {
		t.Fatalf("refused = %v; want the oversized sort key, in the router's words", res.refused)
	}
	if res.superseded != 0 {
		t.Errorf("superseded = %d on empty nodes", res.superseded)
	}
	tab, _ := c.topo.Tables(context.Background())
	got := map[string]int{}
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.maxMsg > ingestMessageBytes+2<<10 {
			t.Errorf("node %s got a %d-byte message; want at most about %d", n.id, n.maxMsg, ingestMessageBytes)
		}
		for _, run := range n.runs {
			if !slices.IsSortedFunc(run, func(a, b *storagev1.Record) int { return compareKeys(a.GetKey(), b.GetKey()) }) {
				t.Errorf("node %s: a run is not sorted", n.id)
			}
			for _, r := range run {
				p := r.GetKey().GetPartition()
				if want := placement.PartitionOf(tab[0].ID, r.GetKey().GetPartitionKey(), 16); p != want || r.GetKey().GetTableId() != tab[0].ID {
					t.Fatalf("record %s: partition %d table %d; want %d %d", r.GetKey().GetPartitionKey(), p, r.GetKey().GetTableId(), want, tab[0].ID)
				}
				if !slices.Contains(c.doc.Replicas[p], n.id) {
					t.Errorf("node %s got a record of partition %d, replicas %v", n.id, p, c.doc.Replicas[p])
				}
				got[string(r.GetKey().GetPartitionKey())]++
			}
		}
		if slices.ContainsFunc(n.epochs, func(e uint64) bool { return e != 1 }) {
			t.Errorf("node %s: epochs %v; want 1", n.id, n.epochs)
		}
		n.mu.Unlock()
	}
	for _, m := range muts[:3000] {
		if got[string(m.Key.PartitionKey)] != 2 {
			t.Fatalf("%s reached %d replicas; want 2", m.Key.PartitionKey, got[string(m.Key.PartitionKey)])
		}
	}
	// Sent again: every record is held, and the first replicas count each
	// once as superseded; read back, they are this very version (a re-sent
	// run: written, as BatchWrite counts it), then newer ones.
	stored := &storedVersions{}
	g.e.Target = stored
	for _, tc := range []struct {
		name    string
		version uint64
		want    int64
	}{{"same version", muts[0].Version, 0}, {"newer version", muts[0].Version + 1, 3000}} {
		stored.version = tc.version
		res, err = g.ingest(context.Background(), muts[:3000])
		if err != nil || res.superseded != tc.want || len(res.refused) != 0 || stored.reads != 3000 {
			t.Fatalf("again, stored at the %s: %+v, %v, %d reads; want %d superseded after reading 3000", tc.name, res, err, stored.reads, tc.want)
		}
		stored.reads = 0
	}
}

// storedVersions is a Target whose every item is stored at version.
type storedVersions struct {
	Target
	version uint64
	reads   int
}

func (s *storedVersions) BatchGet(_ context.Context, keys []client.Key, _ ...client.CallOption) ([]client.Result, error) {
	s.reads += len(keys)
	out := make([]client.Result, len(keys))
	for i := range out {
		out[i] = client.Result{Found: true, Item: client.Item{Version: s.version}}
	}
	return out, nil
}

func TestIngesterStaleInvalidAndFallback(t *testing.T) {
	c := newIngestCluster(t, 2, 2)
	g := c.ingester(t)
	ctx := context.Background()

	t.Run("stale placement: resent by the newer one", func(t *testing.T) {
		c.nodes[0].mu.Lock()
		c.nodes[0].failNext = []error{staleErr(2)}
		c.nodes[0].mu.Unlock()
		go func() {
			doc := c.doc.Clone()
			doc.Epoch = 2
			if err := c.topo.PutPlacement(ctx, doc, 1); err != nil {
				t.Error(err)
			}
		}()
		if _, err := g.ingest(ctx, ingestMuts(50, 10)); err != nil {
			t.Fatal(err)
		}
		c.nodes[0].mu.Lock()
		defer c.nodes[0].mu.Unlock()
		if ep := c.nodes[0].epochs; len(ep) < 2 || ep[len(ep)-1] != 2 {
			t.Errorf("epochs sent to n0: %v; want a last run at epoch 2", ep)
		}
	})
	t.Run("invalid records are named", func(t *testing.T) {
		c.nodes[1].mu.Lock()
		c.nodes[1].invalid = func(r *storagev1.Record) string {
			if string(r.GetKey().GetPartitionKey()) == "pk00007" {
				return "bad record"
			}
			return ""
		}
		c.nodes[1].mu.Unlock()
		muts := ingestMuts(20, 10)
		res, err := g.ingest(ctx, muts)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(muts, func(m client.Mutation) bool { return string(m.Key.PartitionKey) == "pk00007" })
		if len(res.refused) != 1 || res.refused[i] == nil || res.refused[i].Error() != "invalid argument: bad record" {
			t.Errorf("refused = %v; want mutation %d: invalid argument: bad record", res.refused, i)
		}
	})
	t.Run("unavailable node: fall back", func(t *testing.T) {
		c.nodes[1].mu.Lock()
		c.nodes[1].failNext = []error{status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down")}
		c.nodes[1].mu.Unlock()
		_, err := g.ingest(ctx, ingestMuts(20, 10))
		if !errors.Is(err, errIngestFallback) || !strings.Contains(err.Error(), "n1") {
			t.Fatalf("err = %v; want errIngestFallback naming n1", err)
		}
	})
	t.Run("one failure is retried", func(t *testing.T) {
		c.nodes[1].mu.Lock()
		c.nodes[1].failNext = []error{status.Error(codes.Unavailable, "blip")}
		c.nodes[1].mu.Unlock()
		if _, err := g.ingest(ctx, ingestMuts(20, 10)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWritePathChoice(t *testing.T) {
	ingest, batch, auto := migratorv1.WritePath_WRITE_PATH_INGEST, migratorv1.WritePath_WRITE_PATH_BATCH_WRITE, migratorv1.WritePath_WRITE_PATH_UNSPECIFIED
	for _, tc := range []struct {
		name      string
		spec      migratorv1.WritePath
		billed    int64
		estimated uint64
		want      migratorv1.WritePath
	}{
		{"explicit ingest, small", ingest, 10, 0, ingest},
		{"explicit batch, large", batch, 1 << 40, 0, batch},
		{"auto, billed large", auto, AutoIngestBytes, 0, ingest},
		{"auto, billed small", auto, AutoIngestBytes - 1, 1 << 40, batch},
		{"auto, estimated large", auto, 0, AutoIngestBytes, ingest},
		{"auto, small", auto, 0, 1 << 20, batch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := &export.Export{Summary: export.Summary{BilledSizeBytes: tc.billed}}
			if got := writePath(&migratorv1.ImportSpec{WritePath: tc.spec}, exp, tc.estimated); got != tc.want {
				t.Errorf("writePath = %s; want %s", got, tc.want)
			}
		})
	}
}

// failingReads is a Target whose reads fail.
type failingReads struct{ Target }

func (failingReads) BatchGet(context.Context, []client.Key, ...client.CallOption) ([]client.Result, error) {
	return nil, status.Error(codes.Unavailable, "no quorum")
}

// TestIngesterOneRunPerNodeAndSuperseded: a batch is one run per node;
// when the superseded records cannot be read back, the nodes' counts are
// taken with each record counted once across its replicas.
func TestIngesterOneRunPerNodeAndSuperseded(t *testing.T) {
	c := newIngestCluster(t, 3, 2)
	g := c.ingester(t)
	ctx := context.Background()
	muts := ingestMuts(300, 10)
	if _, err := g.ingest(ctx, muts); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range c.nodes {
		n.mu.Lock()
		if len(n.runs) != 1 {
			t.Errorf("node %s got %d runs of one batch; want 1", n.id, len(n.runs))
		}
		for _, run := range n.runs {
			total += len(run)
		}
		n.mu.Unlock()
	}
	if total != 600 {
		t.Fatalf("the nodes got %d records; want 600 (300 × RF 2)", total)
	}
	g.e.Target = failingReads{}
	res, err := g.ingest(ctx, muts)
	if err != nil || res.superseded != 300 {
		t.Fatalf("sent again, read-back failing: %+v, %v; want 300 superseded", res, err)
	}
	// One replica of one record holds a newer version: at least that one.
	k := muts[0].Key
	for _, n := range c.nodes {
		n.mu.Lock()
		n.held = map[string]uint64{}
		n.mu.Unlock()
	}
	var replica *fakeIngestNode
	for _, n := range c.nodes {
		n.mu.Lock()
		if slices.ContainsFunc(n.runs[0], func(r *storagev1.Record) bool { return string(r.GetKey().GetPartitionKey()) == string(k.PartitionKey) }) {
			replica = n
		}
		n.mu.Unlock()
	}
	replica.mu.Lock()
	replica.held[string(k.PartitionKey)+"/"] = muts[0].Version + 1
	replica.mu.Unlock()
	res, err = g.ingest(ctx, muts)
	if err != nil || res.superseded != 1 {
		t.Fatalf("one replica newer, read-back failing: %+v, %v; want 1 superseded", res, err)
	}
}
