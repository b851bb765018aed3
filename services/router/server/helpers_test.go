package server

import (
	"context"
	"io"
	"log/slog"
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
	"google.golang.org/grpc/metadata"
)

// fakeStorage is a storage node that stores nothing: Apply applies
// everything (remembering the last batch), reads find nothing, and
// StreamPartition streams chunks[p] for partition p.
type fakeStorage struct {
	storagev1.StorageServiceClient
	mu      sync.Mutex
	applied []*storagev1.Record
	chunks  map[uint32][][]*storagev1.Record
}

func (f *fakeStorage) Apply(_ context.Context, req *storagev1.ApplyRequest, _ ...grpc.CallOption) (*storagev1.ApplyResponse, error) {
	f.mu.Lock()
	f.applied = req.GetRecords()
	f.mu.Unlock()
	resp := &storagev1.ApplyResponse{}
	for _, r := range req.GetRecords() {
		resp.Outcomes = append(resp.Outcomes, storagev1.Outcome_OUTCOME_APPLIED)
		resp.CurrentVersions = append(resp.CurrentVersions, r.GetVersion())
	}
	return resp, nil
}

func (f *fakeStorage) lastApplied() []*storagev1.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fakeStorage) Read(context.Context, *storagev1.ReadRequest, ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	return &storagev1.ReadResponse{}, nil
}

func (f *fakeStorage) BatchRead(_ context.Context, req *storagev1.BatchReadRequest, _ ...grpc.CallOption) (*storagev1.BatchReadResponse, error) {
	return &storagev1.BatchReadResponse{Results: make([]*storagev1.ReadResponse, len(req.GetKeys()))}, nil
}

func (f *fakeStorage) Scan(context.Context, *storagev1.ScanRequest, ...grpc.CallOption) (*storagev1.ScanResponse, error) {
	return &storagev1.ScanResponse{}, nil
}

func (f *fakeStorage) StreamPartition(_ context.Context, req *storagev1.StreamPartitionRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[storagev1.StreamPartitionResponse], error) {
	chunks := f.chunks[req.GetPartition()]
	if len(chunks) == 0 {
		chunks = [][]*storagev1.Record{nil} // storage nodes send one empty chunk
	}
	next := 0 // the resume position is the index of the next chunk
	if a := req.GetAfter(); len(a) == 1 {
		next = int(a[0])
	}
	return &fakePartitionStream{chunks: chunks, next: next}, nil
}

type fakePartitionStream struct {
	grpc.ClientStream
	chunks [][]*storagev1.Record
	next   int
}

func (s *fakePartitionStream) Recv() (*storagev1.StreamPartitionResponse, error) {
	if s.next >= len(s.chunks) {
		return nil, io.EOF
	}
	c := s.chunks[s.next]
	s.next++
	return &storagev1.StreamPartitionResponse{Records: c, Resume: []byte{byte(s.next)}}, nil
}

// fakeScanServer collects what a Scan sends.
type fakeScanServer struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*kvv1.ScanResponse
}

func (s *fakeScanServer) Send(m *kvv1.ScanResponse) error { s.sent = append(s.sent, m); return nil }
func (s *fakeScanServer) Context() context.Context        { return s.ctx }
func (s *fakeScanServer) SetHeader(metadata.MD) error     { return nil }

const testPartitions = 64

var testTables = []topology.Table{{Name: "t1", ID: 7}, {Name: "ttl_table", ID: 8, DefaultTTL: time.Hour}}

// newTestServer is a router over one fake storage node (RF 1) holding
// testTables, without etcd: enough for the KV handlers.
func newTestServer(t testing.TB) (*kvService, *fakeStorage) {
	t.Helper()
	fs := &fakeStorage{chunks: map[uint32][][]*storagev1.Record{}}
	ids := make([][]string, testPartitions)
	reps := make([][]*cluster.Node, testPartitions)
	n := &cluster.Node{ID: "n1", Client: fs}
	for p := range ids {
		ids[p], reps[p] = []string{"n1"}, []*cluster.Node{n}
	}
	cl := cluster.NewStatic(testPartitions, ids, reps, testTables...)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{Logger: logger}
	cfg.EnsureDefaults()
	s := &Server{cfg: cfg, logger: logger, clock: hlc.New(), cluster: cl, coord: coord.New(cl, coord.Options{Logger: logger})}
	return &kvService{s: s}, fs
}
