package dynamodb

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	"google.golang.org/grpc"
)

// fuzzStore is a storage client (no network) holding a few items of table
// 7 in every partition: reads, Scan and StreamPartition answer from them.
type fuzzStore struct {
	storagev1.StorageServiceClient
	recs []*storagev1.Record
}

func (f *fuzzStore) Read(_ context.Context, req *storagev1.ReadRequest, _ ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	for _, r := range f.recs {
		if string(r.GetKey().GetPartitionKey()) == string(req.GetKey().GetPartitionKey()) && string(r.GetKey().GetSortKey()) == string(req.GetKey().GetSortKey()) {
			return &storagev1.ReadResponse{Found: true, Record: r}, nil
		}
	}
	return &storagev1.ReadResponse{}, nil
}

func (f *fuzzStore) BatchRead(ctx context.Context, req *storagev1.BatchReadRequest, _ ...grpc.CallOption) (*storagev1.BatchReadResponse, error) {
	resp := &storagev1.BatchReadResponse{}
	for _, k := range req.GetKeys() {
		r, _ := f.Read(ctx, &storagev1.ReadRequest{Key: k})
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fuzzStore) Scan(_ context.Context, req *storagev1.ScanRequest, _ ...grpc.CallOption) (*storagev1.ScanResponse, error) {
	var out []*storagev1.Record
	for _, r := range f.recs {
		if string(r.GetKey().GetPartitionKey()) == string(req.GetPartitionKey()) {
			out = append(out, r)
		}
	}
	return &storagev1.ScanResponse{Records: out}, nil
}

type fuzzStream struct {
	grpc.ClientStream
	msgs []*storagev1.StreamPartitionResponse
}

func (s *fuzzStream) Recv() (*storagev1.StreamPartitionResponse, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func (f *fuzzStore) StreamPartition(_ context.Context, req *storagev1.StreamPartitionRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[storagev1.StreamPartitionResponse], error) {
	s := &fuzzStream{}
	if req.GetPartition() == 0 {
		for _, r := range f.recs {
			s.msgs = append(s.msgs, &storagev1.StreamPartitionResponse{Records: []*storagev1.Record{r}, Resume: coord.ScanPosition(r.GetKey())})
		}
	}
	return s, nil
}

// fuzzBackend serves table "tbl" (pk S, sk N) over fuzzStore replicas.
type fuzzBackend struct {
	co *coord.Coordinator
}

func (b *fuzzBackend) View() (*cluster.View, error)    { return b.co.View() }
func (b *fuzzBackend) Coordinator() *coord.Coordinator { return b.co }
func (b *fuzzBackend) Clock() *hlc.Clock               { return hlc.New() }
func (b *fuzzBackend) CreateTable(context.Context, topology.Table) (topology.Table, error) {
	return topology.Table{}, nil
}
func (b *fuzzBackend) DeleteTable(context.Context, string) (topology.Table, error) {
	return topology.Table{}, nil
}
func (b *fuzzBackend) UpdateTable(context.Context, string, func(*topology.Table) error) (topology.Table, error) {
	return topology.Table{}, nil
}

func newFuzzHandler() *Handler {
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}}
	st := &fuzzStore{}
	for i, it := range []ddb.Item{
		{"pk": ddb.S("a"), "sk": ddb.MustN("1"), "v": ddb.S("x")},
		{"pk": ddb.S("a"), "sk": ddb.MustN("-2.5"), "m": ddb.M{"k": ddb.L{ddb.Bool(true)}}},
		{"pk": ddb.S("b"), "sk": ddb.MustN("1e10"), "n": ddb.NS{ddb.MustN("3")}},
	} {
		pk, sk, err := ks.Key(it)
		if err != nil {
			panic(err)
		}
		st.recs = append(st.recs, &storagev1.Record{Key: &storagev1.Key{TableId: 7, PartitionKey: pk, SortKey: sk}, Version: uint64(i + 1), Value: ddb.EncodeItem(it)})
	}
	ids := [][]string{{"n1", "n2", "n3"}, {"n1", "n2", "n3"}}
	n := &cluster.Node{ID: "n", Client: st}
	reps := [][]*cluster.Node{{n, n, n}, {n, n, n}}
	tbl := topology.Table{Name: "tbl", ID: 7, KeySchema: &topology.KeySchema{
		PartitionKey: topology.KeyAttribute{Name: "pk", Type: "S"}, SortKey: &topology.KeyAttribute{Name: "sk", Type: "N"}}}
	c := cluster.NewStatic(2, ids, reps, tbl)
	co := coord.New(c, coord.Options{Logger: slog.New(slog.DiscardHandler)})
	return NewHandler(&fuzzBackend{co: co}, Options{})
}

// FuzzReadRequests: any request body to GetItem, BatchGetItem, Query or
// Scan is answered without a panic, either with a response that encodes
// as JSON or with an error in DynamoDB's shape: a client error (400) for
// anything the request got wrong.
func FuzzReadRequests(f *testing.F) {
	seeds := []struct {
		op   byte
		body string
	}{
		{0, `{"TableName":"tbl","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"ProjectionExpression":"#v, m.k[0]","ExpressionAttributeNames":{"#v":"v"}}`},
		{0, `{"TableName":"tbl","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"AttributesToGet":["v"],"ConsistentRead":true,"ReturnConsumedCapacity":"INDEXES"}`},
		{1, `{"RequestItems":{"tbl":{"Keys":[{"pk":{"S":"a"},"sk":{"N":"1"}},{"pk":{"S":"b"},"sk":{"N":"1E+10"}}],"ConsistentRead":false}}}`},
		{2, `{"TableName":"tbl","KeyConditionExpression":"pk = :p AND sk BETWEEN :a AND :b","ExpressionAttributeValues":{":p":{"S":"a"},":a":{"N":"-3"},":b":{"N":"2"}},"ScanIndexForward":false,"Limit":1}`},
		{2, `{"TableName":"tbl","KeyConditionExpression":"pk = :p AND begins_with(sk, :a)","ExpressionAttributeValues":{":p":{"S":"a"},":a":{"N":"1"}}}`},
		{2, `{"TableName":"tbl","KeyConditions":{"pk":{"ComparisonOperator":"EQ","AttributeValueList":[{"S":"a"}]}},"QueryFilter":{"v":{"ComparisonOperator":"NOT_NULL"}},"ExclusiveStartKey":{"pk":{"S":"a"},"sk":{"N":"-2.5"}}}`},
		{2, `{"TableName":"tbl","KeyConditionExpression":"pk = :p","FilterExpression":"size(m) > :z","Select":"COUNT","ExpressionAttributeValues":{":p":{"S":"a"},":z":{"N":"0"}}}`},
		{3, `{"TableName":"tbl","Segment":0,"TotalSegments":3,"Limit":2,"ExclusiveStartKey":{"pk":{"S":"a"},"sk":{"N":"1"}}}`},
		{3, `{"TableName":"tbl","ScanFilter":{"n":{"ComparisonOperator":"CONTAINS","AttributeValueList":[{"N":"3"}]}},"ConsistentRead":true,"Select":"SPECIFIC_ATTRIBUTES","AttributesToGet":["pk"]}`},
		{3, `{"TableName":"tbl","Segment":7,"TotalSegments":1000000}`},
	}
	for _, s := range seeds {
		f.Add(s.op, []byte(s.body))
	}
	h := newFuzzHandler()
	ops := []opFunc{getItem, batchGetItem, query, scan}
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		resp, err := ops[int(op)%len(ops)](t.Context(), h, body)
		if err != nil {
			e := toError(err)
			if e.Status != http.StatusBadRequest {
				t.Fatalf("%s: status %d for %q", e.Type, e.Status, body)
			}
			return
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("response does not encode: %v (request %q)", err, body)
		}
	})
}
