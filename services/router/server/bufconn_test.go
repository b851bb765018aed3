package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// memStorage is a storage node served over bufconn: it keeps the newest
// version of each key; fail, when set, is every call's answer, and hang
// makes every call wait for its caller to give up.
type memStorage struct {
	storagev1.UnimplementedStorageServiceServer
	mu   sync.Mutex
	recs map[string]*storagev1.Record
	fail error
	hang bool
}

func (m *memStorage) set(fail error, hang bool) {
	m.mu.Lock()
	m.fail, m.hang = fail, hang
	m.mu.Unlock()
}

func (m *memStorage) enter(ctx context.Context) error {
	m.mu.Lock()
	fail, hang := m.fail, m.hang
	m.mu.Unlock()
	if hang {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return fail
}

func memKey(k *storagev1.Key) string {
	return fmt.Sprintf("%d/%d/%q/%q", k.GetPartition(), k.GetTableId(), k.GetPartitionKey(), k.GetSortKey())
}

func (m *memStorage) Apply(ctx context.Context, req *storagev1.ApplyRequest) (*storagev1.ApplyResponse, error) {
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		k := memKey(r.GetKey())
		if cur := m.recs[k]; cur != nil && cur.GetVersion() >= r.GetVersion() {
			resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_SUPERSEDED)
			resp.CurrentVersions = append(resp.CurrentVersions, cur.GetVersion())
			continue
		}
		m.recs[k] = r
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
		resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
	}
	return resp, nil
}

func (m *memStorage) read(k *storagev1.Key) *storagev1.ReadResponse {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[memKey(k)]; r != nil {
		return &storagev1.ReadResponse{Found: true, Record: r}
	}
	return &storagev1.ReadResponse{}
}

func (m *memStorage) Read(ctx context.Context, req *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	return m.read(req.GetKey()), nil
}

func (m *memStorage) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest) (*storagev1.BatchReadResponse, error) {
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	resp := &storagev1.BatchReadResponse{}
	for _, k := range req.GetKeys() {
		resp.Results = append(resp.Results, m.read(k))
	}
	return resp, nil
}

// Scan returns the partition key's records in sort-key order (no limits:
// the tests' queries are small).
func (m *memStorage) Scan(ctx context.Context, req *storagev1.ScanRequest) (*storagev1.ScanResponse, error) {
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &storagev1.ScanResponse{}
	for _, r := range m.recs {
		k := r.GetKey()
		if k.GetPartition() == req.GetPartition() && k.GetTableId() == req.GetTableId() && bytes.Equal(k.GetPartitionKey(), req.GetPartitionKey()) &&
			(req.GetIncludeTombstones() || !r.GetTombstone()) {
			resp.Records = append(resp.Records, r)
		}
	}
	slices.SortFunc(resp.Records, func(a, b *storagev1.Record) int {
		return bytes.Compare(a.GetKey().GetSortKey(), b.GetKey().GetSortKey())
	})
	return resp, nil
}

// bufListen serves register's services on a new bufconn listener until
// the test ends and returns a client connection to it.
func bufListen(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-served
	})
	return conn
}

// newBufRouter is a router whose KV service and three storage nodes (RF
// 3, every partition on n1, n2, n3) all talk real gRPC over bufconn. It
// returns a KV client and the storage nodes by id.
func newBufRouter(t *testing.T) (kvv1.KVServiceClient, map[string]*memStorage) {
	t.Helper()
	ids := []string{"n1", "n2", "n3"}
	nodes := map[string]*memStorage{}
	var reps []*cluster.Node
	for _, id := range ids {
		ms := &memStorage{recs: map[string]*storagev1.Record{}}
		nodes[id] = ms
		conn := bufListen(t, func(s *grpc.Server) { storagev1.RegisterStorageServiceServer(s, ms) })
		reps = append(reps, &cluster.Node{ID: id, Client: storagev1.NewStorageServiceClient(conn)})
	}
	idSets := make([][]string, testPartitions)
	repSets := make([][]*cluster.Node, testPartitions)
	for p := range idSets {
		idSets[p], repSets[p] = ids, reps
	}
	cl := cluster.NewStatic(testPartitions, idSets, repSets, testTables...)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{Logger: logger}
	cfg.EnsureDefaults()
	// Timeout bounds calls that outlive a request (straggling writes to a
	// hung node), so none outlives the test by long.
	co := coord.New(cl, coord.Options{Logger: logger, Timeout: 500 * time.Millisecond, FailureWait: 50 * time.Millisecond})
	kv := &kvService{s: &Server{cfg: cfg, logger: logger, clock: hlc.New(), cluster: cl, coord: co}}
	conn := bufListen(t, func(s *grpc.Server) { kvv1.RegisterKVServiceServer(s, kv) })
	return kvv1.NewKVServiceClient(conn), nodes
}

// TestKVOverGRPC: puts, gets, deletes, batches and queries through the
// router's KV service to three storage nodes, over real gRPC.
func TestKVOverGRPC(t *testing.T) {
	kv, nodes := newBufRouter(t)
	ctx := t.Context()
	k := &kvv1.Key{Table: "t1", PartitionKey: []byte("user"), SortKey: []byte("a")}
	put, err := kv.Put(ctx, &kvv1.PutRequest{Key: k, Value: []byte("1"), Consistency: kvv1.Consistency_CONSISTENCY_ALL})
	if err != nil || !put.GetOutcome().GetApplied() {
		t.Fatalf("put: %v, %v", put, err)
	}
	for id, n := range nodes {
		n.mu.Lock()
		held := len(n.recs)
		n.mu.Unlock()
		if held != 1 {
			t.Errorf("%s holds %d records after a put at ALL", id, held)
		}
	}
	got, err := kv.Get(ctx, &kvv1.GetRequest{Key: k, Consistency: kvv1.Consistency_CONSISTENCY_QUORUM})
	if err != nil || !got.GetFound() || string(got.GetValue()) != "1" || got.GetVersion() != put.GetVersion() {
		t.Fatalf("get: %v, %v", got, err)
	}
	k2 := &kvv1.Key{Table: "t1", PartitionKey: []byte("user"), SortKey: []byte("b")}
	bw, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
		{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: k2, Value: []byte("2")},
		{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: k},
	}})
	if err != nil || len(bw.GetOutcomes()) != 2 {
		t.Fatalf("batch write: %v, %v", bw, err)
	}
	bg, err := kv.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: []*kvv1.Key{k, k2}, Consistency: kvv1.Consistency_CONSISTENCY_ALL})
	if err != nil || bg.GetResults()[0].GetFound() || string(bg.GetResults()[1].GetValue()) != "2" {
		t.Fatalf("batch get: %v, %v (the deleted key must read as absent)", bg, err)
	}
	q, err := kv.Query(ctx, &kvv1.QueryRequest{Table: "t1", PartitionKey: []byte("user"), Consistency: kvv1.Consistency_CONSISTENCY_QUORUM})
	if err != nil || len(q.GetItems()) != 1 || string(q.GetItems()[0].GetKey().GetSortKey()) != "b" {
		t.Fatalf("query: %v, %v", q, err)
	}
	// A version the replicas already superseded is reported as such.
	old, err := kv.Put(ctx, &kvv1.PutRequest{Key: k2, Value: []byte("old"), Version: 1})
	if err != nil || old.GetOutcome().GetApplied() || old.GetOutcome().GetCurrentVersion() != bw.GetVersions()[0] {
		t.Fatalf("put of an old version: %v, %v", old, err)
	}
}

// TestKVErrorMapping: what a client sees when replicas fail, refuse or
// hang, and when its request is bad: each failure has its gRPC code, and
// an Unavailable names the replicas and their reasons.
func TestKVErrorMapping(t *testing.T) {
	k := &kvv1.Key{Table: "t1", PartitionKey: []byte("p")}
	for _, tc := range []struct {
		name  string
		setup func(nodes map[string]*memStorage)
		call  func(ctx context.Context, kv kvv1.KVServiceClient) error
		code  codes.Code
		want  []string
	}{
		{"put at ALL, n3 down", func(n map[string]*memStorage) {
			n["n3"].set(status.Error(codes.Unavailable, "connection refused"), false)
		},
			func(ctx context.Context, kv kvv1.KVServiceClient) error {
				_, err := kv.Put(ctx, &kvv1.PutRequest{Key: k, Consistency: kvv1.Consistency_CONSISTENCY_ALL})
				return err
			}, codes.Unavailable, []string{"at ALL reached 2 of 3 required replicas (applied on 2", "n3: Unavailable: connection refused"}},
		{"put at QUORUM, n3 down", func(n map[string]*memStorage) {
			n["n3"].set(status.Error(codes.Unavailable, "connection refused"), false)
		},
			func(ctx context.Context, kv kvv1.KVServiceClient) error {
				_, err := kv.Put(ctx, &kvv1.PutRequest{Key: k})
				return err
			}, codes.OK, nil},
		{"get at ALL, n2 busy", func(n map[string]*memStorage) {
			n["n2"].set(status.Error(codes.ResourceExhausted, "queue full"), false)
		},
			func(ctx context.Context, kv kvv1.KVServiceClient) error {
				_, err := kv.Get(ctx, &kvv1.GetRequest{Key: k, Consistency: kvv1.Consistency_CONSISTENCY_ALL})
				return err
			}, codes.Unavailable, []string{"at ALL reached", "of 3 required replicas", "n2: ResourceExhausted: queue full"}},
		{"storage refuses the input", func(n map[string]*memStorage) {
			for _, m := range n {
				m.set(status.Error(codes.InvalidArgument, "value too large"), false)
			}
		}, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Put(ctx, &kvv1.PutRequest{Key: k})
			return err
		}, codes.InvalidArgument, []string{"value too large"}},
		{"get past its deadline", func(n map[string]*memStorage) {
			for _, m := range n {
				m.set(nil, true)
			}
		}, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			_, err := kv.Get(ctx, &kvv1.GetRequest{Key: k})
			return err
		}, codes.DeadlineExceeded, nil},
		{"unknown table", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Get(ctx, &kvv1.GetRequest{Key: &kvv1.Key{Table: "nope", PartitionKey: []byte("p")}})
			return err
		}, codes.NotFound, []string{"nope"}},
		{"unknown consistency", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Get(ctx, &kvv1.GetRequest{Key: k, Consistency: 42})
			return err
		}, codes.InvalidArgument, []string{"consistency: unknown value 42"}},
		{"batch too large", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: make([]*kvv1.Key, 1001)})
			return err
		}, codes.InvalidArgument, []string{"1001 keys, at most 1000 per BatchGet"}},
		{"batch get key without a partition key", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: []*kvv1.Key{k, {Table: "t1"}}})
			return err
		}, codes.InvalidArgument, []string{"keys[1].partition_key: empty"}},
		{"batch write key of an unknown table", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
				{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: k},
				{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: &kvv1.Key{Table: "nope", PartitionKey: []byte("p")}},
			}})
			return err
		}, codes.NotFound, []string{`"nope" (mutations[1].key)`}},
		{"delete with a value", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: k, Value: []byte("x")}}})
			return err
		}, codes.InvalidArgument, []string{"mutations[0]: a DELETE carries no value or expire_time"}},
		{"mutation without a type", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{{Key: k}}})
			return err
		}, codes.InvalidArgument, []string{"mutations[0].type: must be PUT or DELETE"}},
		{"query range backwards", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Query(ctx, &kvv1.QueryRequest{Table: "t1", PartitionKey: []byte("p"),
				Condition: &kvv1.QueryRequest_Range{Range: &kvv1.SortKeyRange{Start: []byte("b"), End: []byte("a")}}})
			return err
		}, codes.InvalidArgument, []string{"range: start"}},
		{"query page token from elsewhere", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Query(ctx, &kvv1.QueryRequest{Table: "t1", PartitionKey: []byte("p"), PageToken: []byte{9}})
			return err
		}, codes.InvalidArgument, []string{"page_token: not a token this router issued"}},
		{"query limit too large", nil, func(ctx context.Context, kv kvv1.KVServiceClient) error {
			_, err := kv.Query(ctx, &kvv1.QueryRequest{Table: "t1", PartitionKey: []byte("p"), Limit: maxLimit + 1})
			return err
		}, codes.InvalidArgument, []string{"limit: 10001, at most 10000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv, nodes := newBufRouter(t)
			if tc.setup != nil {
				tc.setup(nodes)
			}
			err := tc.call(t.Context(), kv)
			if status.Code(err) != tc.code {
				t.Fatalf("code %s (%v), want %s", status.Code(err), err, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(status.Convert(err).Message(), w) {
					t.Errorf("message %q does not contain %q", status.Convert(err).Message(), w)
				}
			}
		})
	}
}

// TestToStatus: the one place router errors become codes maps wrapped
// sentinels too, and passes statuses and context errors through.
func TestToStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("router: doing it: %w", err) }
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{nil, codes.OK},
		{wrap(coord.ErrUnavailable), codes.Unavailable},
		{wrap(coord.ErrNotReady), codes.Unavailable},
		{wrap(coord.ErrInvalidArgument), codes.InvalidArgument},
		{wrap(topology.ErrTableNotFound), codes.NotFound},
		{invalidf("bad %s", "thing"), codes.InvalidArgument},
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{wrap(context.Canceled), codes.Canceled},
		{status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		// A bug is not a reason to retry: Internal, not Unavailable.
		{errors.New("surprise"), codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.code {
			t.Errorf("toStatus(%v) = %s, want %s", tc.err, got, tc.code)
		}
	}
}
