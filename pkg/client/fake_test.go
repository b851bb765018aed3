package client_test

import (
	"bytes"
	"context"
	"hash/fnv"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// This file is a test double of a Veltrix cluster: a map behind
// KVService and AdminService, served on loopback by one or more fake
// routers that share it. It tests the client's own logic (spreading,
// retries, paging, chunking), not the router.

type itemKey struct{ table, pk, sk string }

// store is the cluster's data, shared by every fake router.
type store struct {
	mu      sync.Mutex
	tables  map[string]*kvv1.Table
	items   map[itemKey]*kvv1.Item // tombstones are removed
	version uint64
}

func newStore() *store {
	return &store{tables: map[string]*kvv1.Table{}, items: map[itemKey]*kvv1.Item{}}
}

func (s *store) nextVersion(v uint64) uint64 {
	if v != 0 {
		return v
	}
	s.version++
	return s.version
}

func (s *store) checkTable(name string) error {
	if _, ok := s.tables[name]; !ok {
		return status.Errorf(codes.NotFound, "table %q not found", name)
	}
	return nil
}

func (s *store) put(k *kvv1.Key, value []byte, exp *timestamppb.Timestamp, version uint64) (uint64, *kvv1.WriteOutcome, error) {
	if err := s.checkTable(k.GetTable()); err != nil {
		return 0, nil, err
	}
	if len(k.GetPartitionKey()) == 0 {
		return 0, nil, status.Error(codes.InvalidArgument, "key.partition_key: required")
	}
	v := s.nextVersion(version)
	ik := itemKey{k.GetTable(), string(k.GetPartitionKey()), string(k.GetSortKey())}
	if old, ok := s.items[ik]; ok && old.GetVersion() > v {
		return v, &kvv1.WriteOutcome{CurrentVersion: old.GetVersion()}, nil
	}
	s.items[ik] = &kvv1.Item{Key: proto.Clone(k).(*kvv1.Key), Value: value, Version: v, ExpireTime: exp}
	return v, &kvv1.WriteOutcome{Applied: true, CurrentVersion: v}, nil
}

// del deletes unless a newer version is stored (the fake keeps no
// tombstones).
func (s *store) del(k *kvv1.Key, version uint64) (uint64, *kvv1.WriteOutcome, error) {
	if err := s.checkTable(k.GetTable()); err != nil {
		return 0, nil, err
	}
	v := s.nextVersion(version)
	ik := itemKey{k.GetTable(), string(k.GetPartitionKey()), string(k.GetSortKey())}
	if old, ok := s.items[ik]; ok && old.GetVersion() > v {
		return v, &kvv1.WriteOutcome{CurrentVersion: old.GetVersion()}, nil
	}
	delete(s.items, ik)
	return v, &kvv1.WriteOutcome{Applied: true, CurrentVersion: v}, nil
}

func (s *store) get(k *kvv1.Key) (*kvv1.GetResponse, error) {
	if err := s.checkTable(k.GetTable()); err != nil {
		return nil, err
	}
	it, ok := s.items[itemKey{k.GetTable(), string(k.GetPartitionKey()), string(k.GetSortKey())}]
	if !ok || (it.ExpireTime != nil && it.ExpireTime.AsTime().Before(time.Now())) {
		return &kvv1.GetResponse{}, nil
	}
	return &kvv1.GetResponse{Found: true, Value: it.Value, Version: it.Version, ExpireTime: it.ExpireTime}, nil
}

// sorted returns a table's items ordered by partition key, then sort key.
func (s *store) sorted(table string, match func(*kvv1.Item) bool) []*kvv1.Item {
	var out []*kvv1.Item
	for k, it := range s.items {
		if k.table == table && match(it) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b *kvv1.Item) int {
		if c := bytes.Compare(a.Key.PartitionKey, b.Key.PartitionKey); c != 0 {
			return c
		}
		return bytes.Compare(a.Key.SortKey, b.Key.SortKey)
	})
	return out
}

// fakeRouter serves the store on a loopback port. fail, when set, is
// consulted before each call and its error returned instead.
type fakeRouter struct {
	kvv1.UnimplementedKVServiceServer
	kvv1.UnimplementedAdminServiceServer

	st   *store
	srv  *grpc.Server
	addr string

	calls atomic.Int64
	fail  atomic.Pointer[func(ctx context.Context, method string) error]
	// unary counts the unary calls (calls minus those made on Exchange).
	unary atomic.Int64
	// ex, when set, serves Exchange (fake_exchange_test.go); otherwise
	// Exchange answers UNIMPLEMENTED, as a router that predates it.
	ex atomic.Pointer[exchanger]
	// exchangeCalls counts Exchange RPCs, served or not.
	exchangeCalls atomic.Int64
	// scanFailAfter makes the next Scan stream fail with Unavailable after
	// sending this many batches (once); 0 never.
	scanFailAfter atomic.Int32

	mu       sync.Mutex
	requests []proto.Message
}

func startFake(st *store, opts ...grpc.ServerOption) (*fakeRouter, error) {
	return startFakeAt("127.0.0.1:0", st, opts...)
}

// startFakeAt starts a fake router listening on addr (a restart: the
// address of one stopped).
func startFakeAt(addr string, st *store, opts ...grpc.ServerOption) (*fakeRouter, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &fakeRouter{st: st, addr: ln.Addr().String()}
	f.srv = grpc.NewServer(append([]grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			f.unary.Add(1)
			return f.intercept(ctx, req, info, h)
		}),
	}, opts...)...)
	kvv1.RegisterKVServiceServer(f.srv, f)
	kvv1.RegisterAdminServiceServer(f.srv, f)
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// startFakes starts n fake routers over one store, stopped at the end of
// the test.
func startFakes(t testing.TB, st *store, n int) []*fakeRouter {
	t.Helper()
	var fs []*fakeRouter
	for range n {
		f, err := startFake(st)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.srv.Stop)
		fs = append(fs, f)
	}
	return fs
}

func addrs(fs []*fakeRouter) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.addr)
	}
	return out
}

// intercept runs before every call, unary or on Exchange.
func (f *fakeRouter) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	f.calls.Add(1)
	if fn := f.fail.Load(); fn != nil {
		if err := (*fn)(ctx, info.FullMethod); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, proto.Clone(req.(proto.Message)))
	f.mu.Unlock()
	return h(ctx, req)
}

func (f *fakeRouter) setFail(fn func(ctx context.Context, method string) error) {
	if fn == nil {
		f.fail.Store(nil)
		return
	}
	f.fail.Store(&fn)
}

// takeRequests returns and forgets the requests served so far.
func (f *fakeRouter) takeRequests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.requests
	f.requests = nil
	return r
}

func (f *fakeRouter) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	return f.st.get(req.GetKey())
}

func (f *fakeRouter) Put(_ context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	v, o, err := f.st.put(req.GetKey(), req.GetValue(), req.GetExpireTime(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &kvv1.PutResponse{Version: v, Outcome: o}, nil
}

func (f *fakeRouter) Delete(_ context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	v, o, err := f.st.del(req.GetKey(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &kvv1.DeleteResponse{Version: v, Outcome: o}, nil
}

func (f *fakeRouter) BatchGet(_ context.Context, req *kvv1.BatchGetRequest) (*kvv1.BatchGetResponse, error) {
	if len(req.GetKeys()) > 1000 {
		return nil, status.Errorf(codes.InvalidArgument, "keys: %d keys, at most 1000", len(req.GetKeys()))
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	resp := &kvv1.BatchGetResponse{}
	for _, k := range req.GetKeys() {
		r, err := f.st.get(k)
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fakeRouter) BatchWrite(_ context.Context, req *kvv1.BatchWriteRequest) (*kvv1.BatchWriteResponse, error) {
	if len(req.GetMutations()) > 1000 {
		return nil, status.Errorf(codes.InvalidArgument, "mutations: %d mutations, at most 1000", len(req.GetMutations()))
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	resp := &kvv1.BatchWriteResponse{}
	for i, m := range req.GetMutations() {
		var v uint64
		var o *kvv1.WriteOutcome
		var err error
		switch m.GetType() {
		case kvv1.Mutation_MUTATION_TYPE_PUT:
			v, o, err = f.st.put(m.GetKey(), m.GetValue(), m.GetExpireTime(), m.GetVersion())
		case kvv1.Mutation_MUTATION_TYPE_DELETE:
			v, o, err = f.st.del(m.GetKey(), m.GetVersion())
		default:
			err = status.Errorf(codes.InvalidArgument, "mutations[%d].type: unspecified", i)
		}
		if err != nil {
			return nil, err
		}
		resp.Versions = append(resp.Versions, v)
		resp.Outcomes = append(resp.Outcomes, o)
	}
	return resp, nil
}

// Query pages by sort key: the page token is the last sort key returned.
func (f *fakeRouter) Query(_ context.Context, req *kvv1.QueryRequest) (*kvv1.QueryResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = 1000
	case limit > 10000:
		return nil, status.Errorf(codes.InvalidArgument, "limit %d: at most 10000", limit)
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	if err := f.st.checkTable(req.GetTable()); err != nil {
		return nil, err
	}
	tok := req.GetPageToken()
	items := f.st.sorted(req.GetTable(), func(it *kvv1.Item) bool {
		sk := it.Key.SortKey
		if !bytes.Equal(it.Key.PartitionKey, req.GetPartitionKey()) {
			return false
		}
		if r := req.GetRange(); r != nil {
			if bytes.Compare(sk, r.Start) < 0 || (len(r.End) > 0 && bytes.Compare(sk, r.End) >= 0) {
				return false
			}
		}
		if p := req.GetPrefix(); p != nil && !bytes.HasPrefix(sk, p) {
			return false
		}
		if tok != nil {
			c := bytes.Compare(sk, tok)
			return (!req.GetReverse() && c > 0) || (req.GetReverse() && c < 0)
		}
		return true
	})
	if req.GetReverse() {
		slices.Reverse(items)
	}
	resp := &kvv1.QueryResponse{}
	if len(items) > limit {
		items = items[:limit]
		resp.NextPageToken = items[limit-1].Key.SortKey
	}
	resp.Items = items
	return resp, nil
}

// Scan sends batches of 4 items; a page token is "pk\x00sk" of the last
// item sent.
func (f *fakeRouter) Scan(req *kvv1.ScanRequest, stream grpc.ServerStreamingServer[kvv1.ScanResponse]) error {
	f.calls.Add(1)
	if fn := f.fail.Load(); fn != nil {
		if err := (*fn)(stream.Context(), "/veltrix.kv.v1.KVService/Scan"); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, proto.Clone(req))
	f.mu.Unlock()
	tokenOf := func(it *kvv1.Item) string { return string(it.Key.PartitionKey) + "\x00" + string(it.Key.SortKey) }
	total := max(req.GetTotalSegments(), 1)
	f.st.mu.Lock()
	if err := f.st.checkTable(req.GetTable()); err != nil {
		f.st.mu.Unlock()
		return err
	}
	items := f.st.sorted(req.GetTable(), func(it *kvv1.Item) bool {
		h := fnv.New32a()
		h.Write(it.Key.PartitionKey)
		return h.Sum32()%total == req.GetSegment() && (req.PageToken == nil || strings.Compare(tokenOf(it), string(req.PageToken)) > 0)
	})
	f.st.mu.Unlock()
	failAfter := f.scanFailAfter.Swap(0)
	for sent := int32(0); len(items) > 0; sent++ {
		if failAfter > 0 && sent == failAfter {
			return status.Error(codes.Unavailable, "router shutting down")
		}
		n := min(4, len(items))
		batch := items[:n]
		items = items[n:]
		if err := stream.Send(&kvv1.ScanResponse{Items: batch, NextPageToken: []byte(tokenOf(batch[n-1]))}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRouter) CreateTable(_ context.Context, req *kvv1.CreateTableRequest) (*kvv1.CreateTableResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	if _, ok := f.st.tables[req.GetName()]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "table %q already exists", req.GetName())
	}
	t := &kvv1.Table{Name: req.GetName(), Id: uint64(len(f.st.tables) + 1), KeySchema: req.GetKeySchema(), DefaultTtl: req.GetDefaultTtl()}
	f.st.tables[t.Name] = t
	return &kvv1.CreateTableResponse{Table: t}, nil
}

func (f *fakeRouter) DeleteTable(_ context.Context, req *kvv1.DeleteTableRequest) (*kvv1.DeleteTableResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	t, ok := f.st.tables[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "table %q not found", req.GetName())
	}
	delete(f.st.tables, t.Name)
	return &kvv1.DeleteTableResponse{Table: t}, nil
}

func (f *fakeRouter) ListTables(context.Context, *kvv1.ListTablesRequest) (*kvv1.ListTablesResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	resp := &kvv1.ListTablesResponse{}
	for _, t := range f.st.tables {
		resp.Tables = append(resp.Tables, t)
	}
	slices.SortFunc(resp.Tables, func(a, b *kvv1.Table) int { return strings.Compare(a.Name, b.Name) })
	return resp, nil
}

func (f *fakeRouter) DescribeTable(_ context.Context, req *kvv1.DescribeTableRequest) (*kvv1.DescribeTableResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	t, ok := f.st.tables[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "table %q not found", req.GetName())
	}
	return &kvv1.DescribeTableResponse{Table: t}, nil
}

func (f *fakeRouter) UpdateTable(_ context.Context, req *kvv1.UpdateTableRequest) (*kvv1.UpdateTableResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	t, ok := f.st.tables[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "table %q not found", req.GetName())
	}
	t = proto.Clone(t).(*kvv1.Table)
	if req.TtlAttribute != nil {
		t.TtlAttribute = req.GetTtlAttribute()
	}
	if req.MaxItemBytes != nil {
		t.MaxItemBytes = req.GetMaxItemBytes()
	}
	if req.GetWriteIsolation() != kvv1.WriteIsolation_WRITE_ISOLATION_UNSPECIFIED {
		t.WriteIsolation = req.GetWriteIsolation()
	}
	f.st.tables[t.Name] = t
	return &kvv1.UpdateTableResponse{Table: t}, nil
}

func (f *fakeRouter) ClusterStatus(context.Context, *kvv1.ClusterStatusRequest) (*kvv1.ClusterStatusResponse, error) {
	return &kvv1.ClusterStatusResponse{Cluster: "test", Partitions: 1024, ReplicationFactor: 3, RouterId: f.addr}, nil
}
