package dynamodb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// TestMain fails the package if a goroutine outlives the tests (writes to
// slow replicas may run on for up to the coordinator's 1 s timeout).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(3 * time.Second); ; {
			if err = goleak.Find(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// memStorage is a storage node served over bufconn that keeps the newest
// version of each key (last-writer-wins, as the real engine) and grants
// item locks.
type memStorage struct {
	storagev1.UnimplementedStorageServiceServer
	mu    sync.Mutex
	recs  map[string]*storagev1.Record
	locks map[string]uint64
	token uint64
	fail  error
	// afterRead, when set, runs after a Read has looked the key up and
	// before it answers.
	afterRead func()
}

func newMemStorage() *memStorage {
	return &memStorage{recs: map[string]*storagev1.Record{}, locks: map[string]uint64{}}
}

func memKey(k *storagev1.Key) string {
	return fmt.Sprintf("%d/%d/%q/%q", k.GetPartition(), k.GetTableId(), k.GetPartitionKey(), k.GetSortKey())
}

func (m *memStorage) setFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

func (m *memStorage) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		k := memKey(r.GetKey())
		if cur := m.recs[k]; cur != nil && cur.GetVersion() >= r.GetVersion() {
			o := storagev1.Outcome_OUTCOME_SUPERSEDED
			if cur.GetVersion() == r.GetVersion() {
				o = storagev1.Outcome_OUTCOME_APPLIED
			}
			resp.Outcomes = append(resp.Outcomes, o)
			resp.CurrentVersions = append(resp.CurrentVersions, cur.GetVersion())
			continue
		}
		m.recs[k] = r
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
		resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
	}
	return resp, nil
}

func (m *memStorage) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	m.mu.Lock()
	resp, err, after := &storagev1.ReadResponse{}, m.fail, m.afterRead
	if r := m.recs[memKey(req.GetKey())]; r != nil {
		resp = &storagev1.ReadResponse{Found: true, Record: r}
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if after != nil {
		after() // the answer is what the node held before
	}
	return resp, nil
}

func (m *memStorage) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	resp := &storagev1.BatchReadResponse{}
	for _, k := range req.GetKeys() {
		r, err := m.Read(ctx, &storagev1.ReadRequest{Key: k})
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// LockKey grants a key's lock, waiting up to wait_millis for its holder;
// leases are not modelled (tests release every lock they take).
func (m *memStorage) LockKey(ctx context.Context, req *storagev1.LockKeyRequest) (*storagev1.LockKeyResponse, error) {
	k := memKey(req.GetKey())
	deadline := time.Now().Add(time.Duration(req.GetWaitMillis()) * time.Millisecond)
	for {
		m.mu.Lock()
		if m.fail != nil {
			m.mu.Unlock()
			return nil, m.fail
		}
		if m.locks[k] == 0 {
			m.token++
			tok := m.token
			m.locks[k] = tok
			m.mu.Unlock()
			return &storagev1.LockKeyResponse{Token: tok}, nil
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, status.Error(codes.Aborted, "lock contended")
		}
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (m *memStorage) UnlockKey(ctx context.Context, req *storagev1.UnlockKeyRequest) (*storagev1.UnlockKeyResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey(req.GetKey())
	if m.locks[k] == req.GetToken() {
		delete(m.locks, k)
	}
	return &storagev1.UnlockKeyResponse{}, nil
}

// records are the node's records.
func (m *memStorage) records() []*storagev1.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*storagev1.Record, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, r)
	}
	return out
}

// count is the number of live (not tombstoned) records of table id.
func (m *memStorage) count(tableID uint64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.recs {
		if r.GetKey().GetTableId() == tableID && !r.GetTombstone() {
			n++
		}
	}
	return n
}

const testPartitions = 8

// testBackend is a Backend over a static cluster of three memStorage
// nodes (RF 3) reached over real gRPC (bufconn); its tables live in
// memory, as etcd would hold them.
type testBackend struct {
	cl    *cluster.Cluster
	co    *coord.Coordinator
	clock *hlc.Clock
	nodes []*memStorage
	doc   placement.Document
	byID  map[string]*cluster.Node

	mu     sync.Mutex
	tables map[string]topology.Table
	nextID uint64
}

func newTestBackend(t *testing.T) *testBackend {
	t.Helper()
	ids := []string{"n1", "n2", "n3"}
	b := &testBackend{clock: hlc.New(), tables: map[string]topology.Table{}, nextID: 100, byID: map[string]*cluster.Node{}}
	for _, id := range ids {
		ms := newMemStorage()
		b.nodes = append(b.nodes, ms)
		lis := bufconn.Listen(1 << 20)
		srv := grpc.NewServer(grpc.MaxRecvMsgSize(80<<20), grpc.MaxSendMsgSize(80<<20))
		storagev1.RegisterStorageServiceServer(srv, ms)
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(lis) }()
		conn, err := grpc.NewClient("passthrough:///bufnet",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80<<20), grpc.MaxCallSendMsgSize(80<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(); srv.Stop(); <-served })
		b.byID[id] = &cluster.Node{ID: id, Client: storagev1.NewStorageServiceClient(conn)}
	}
	reps := make([][]string, testPartitions)
	for p := range reps {
		reps[p] = ids
	}
	b.doc = placement.Document{Epoch: 1, Partitions: testPartitions, Replicas: reps}
	b.cl = cluster.NewStaticDocument(b.doc, b.byID)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.co = coord.New(b.cl, coord.Options{Logger: logger, Timeout: time.Second, FailureWait: 50 * time.Millisecond})
	return b
}

func (b *testBackend) View() (*cluster.View, error)    { return b.co.View() }
func (b *testBackend) Coordinator() *coord.Coordinator { return b.co }
func (b *testBackend) Clock() *hlc.Clock               { return b.clock }

// publishLocked makes the tables the cluster's view.
func (b *testBackend) publishLocked() {
	var ts []topology.Table
	for _, t := range b.tables {
		ts = append(ts, t)
	}
	b.cl.Publish(b.doc, b.byID, ts...)
}

func (b *testBackend) CreateTable(ctx context.Context, t topology.Table) (topology.Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.tables[t.Name]; ok {
		return topology.Table{}, fmt.Errorf("create %s: %w", t.Name, topology.ErrTableExists)
	}
	b.nextID++
	t.ID, t.CreateTime = b.nextID, time.Now().UTC()
	b.tables[t.Name] = t
	b.publishLocked()
	return t, nil
}

func (b *testBackend) DeleteTable(ctx context.Context, name string) (topology.Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tables[name]
	if !ok {
		return topology.Table{}, fmt.Errorf("delete %s: %w", name, topology.ErrTableNotFound)
	}
	delete(b.tables, name)
	b.publishLocked()
	return t, nil
}

func (b *testBackend) UpdateTable(ctx context.Context, name string, change func(*topology.Table) error) (topology.Table, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tables[name]
	if !ok {
		return topology.Table{}, fmt.Errorf("update %s: %w", name, topology.ErrTableNotFound)
	}
	if err := change(&t); err != nil {
		return topology.Table{}, fmt.Errorf("update %s: %w", name, err)
	}
	b.tables[name] = t
	b.publishLocked()
	return t, nil
}

// table is the stored table document.
func (b *testBackend) table(name string) topology.Table {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tables[name]
}

// addTable adds a table as the admin API or the migrator would make it.
func (b *testBackend) addTable(t topology.Table) topology.Table {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	t.ID, t.CreateTime = b.nextID, time.Now().UTC()
	b.tables[t.Name] = t
	b.publishLocked()
	return t
}

// endpoint is a Handler over a testBackend behind an HTTP server, with an
// AWS SDK for Go v2 client pointed at it.
type endpoint struct {
	b   *testBackend
	h   *Handler
	reg *prometheus.Registry
	srv *httptest.Server
	c   *awsddb.Client
}

func newEndpoint(t *testing.T) *endpoint {
	t.Helper()
	e := &endpoint{b: newTestBackend(t), reg: prometheus.NewRegistry()}
	e.h = NewHandler(e.b, Options{Metrics: NewMetrics(e.reg), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	e.c = awsddb.New(awsddb.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(e.srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1,
	})
	return e
}

// stored is the item the replicas hold at key (nil: none), read back at
// QUORUM without the endpoint.
func (e *endpoint) stored(t *testing.T, table string, key map[string]string) []byte {
	t.Helper()
	v, err := e.b.View()
	if err != nil {
		t.Fatal(err)
	}
	tb, ok := v.Snapshot.Tables[table]
	if !ok {
		t.Fatalf("no table %s", table)
	}
	pk := []byte(key["pk"])
	k := &storagev1.Key{Partition: placement.PartitionOf(tb.ID, pk, v.Partitions), TableId: tb.ID, PartitionKey: pk}
	if sk, ok := key["sk"]; ok {
		k.SortKey = []byte(sk)
	}
	rec, err := e.b.co.Read(t.Context(), k, coord.Quorum)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.GetTombstone() {
		return nil
	}
	return bytes.Clone(rec.GetValue())
}
