package server

import (
	"context"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"math"
	"testing"
	"time"

	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// checkOutcome is the property every public RPC must keep for any request:
// no panic (the fuzzer reports one), only OK or InvalidArgument (NotFound
// only for a table that does not exist), and a response that can be
// encoded (an invalid UTF-8 string echoed back would fail as Internal).
func checkOutcome(t *testing.T, rpc string, resp proto.Message, err error, table string) {
	t.Helper()
	switch code := status.Code(err); code {
	case codes.OK:
		if _, merr := proto.Marshal(resp); merr != nil {
			t.Fatalf("%s: response cannot be encoded: %v", rpc, merr)
		}
	case codes.InvalidArgument:
	case codes.NotFound:
		for _, tt := range testTables {
			if tt.Name == table {
				t.Fatalf("%s: NotFound for existing table %q: %v", rpc, table, err)
			}
		}
	default:
		t.Fatalf("%s: code %s: %v", rpc, code, err)
	}
}

var (
	t1600 = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	t2300 = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	t9999 = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
)

// FuzzKVRequests fuzzes the validation of every KVService RPC with one set
// of fields spread over all request types. The seeds are issue 12's cases:
// expiries in 1600, 2300 and 9999, invalid UTF-8 table names, a version of
// 2^64-1.
func FuzzKVRequests(f *testing.F) {
	type seed struct {
		table              string
		pk, sk, value, tok []byte
		expSec             int64
		expNanos           int32
		version            uint64
		cons, mtype        int32
		limit, seg, total  uint32
	}
	for _, s := range []seed{
		{"t1", []byte("k"), nil, []byte("v"), nil, 0, 0, 0, 0, 1, 0, 0, 0},
		{"t1", []byte("k"), []byte("s"), []byte("v"), nil, t1600, 0, 0, 2, 1, 10, 0, 1},
		{"t1", []byte("k"), nil, nil, nil, t2300, 0, 0, 3, 1, 0, 0, 0},
		{"ttl_table", []byte("k"), nil, nil, nil, t9999, 0, 0, 0, 2, 0, 1, 4},
		{"t1", []byte("k"), nil, nil, nil, -1, 0, math.MaxUint64, 0, 1, 0, 0, 0},
		{"t1", []byte("k"), nil, nil, nil, 1, -5, 1, 9, 7, 20000, 5, 3},
		{"t\xff\xfe", []byte("k"), nil, nil, nil, 0, 0, 0, 0, 1, 0, 0, 0},
		{"\xc3", nil, nil, nil, []byte{1, 0, 0, 0, 9}, math.MaxInt64, 999999999, 0, -1, -1, 1, math.MaxUint32, math.MaxUint32},
		{"", []byte("k"), nil, nil, []byte{1}, 0, 0, 0, 0, 1, 0, 0, 0},
		{"missing_table", make([]byte, 2049), make([]byte, 1025), nil, []byte{2, 3}, 253402300800, 0, 0, 0, 1, 0, 0, 0},
		{"t1", []byte("k"), []byte("b"), []byte("a"), []byte{1, 0, 0, 0, 63}, 0, 0, 0, 0, 2, 0, 0, 0},
	} {
		f.Add(s.table, s.pk, s.sk, s.value, s.tok, s.expSec, s.expNanos, s.version, s.cons, s.mtype, s.limit, s.seg, s.total)
	}
	kv, _ := newTestServer(f)
	f.Fuzz(func(t *testing.T, table string, pk, sk, value, tok []byte, expSec int64, expNanos int32, version uint64, cons, mtype int32, limit, seg, total uint32) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var exp *timestamppb.Timestamp
		if expSec != 0 || expNanos != 0 {
			exp = &timestamppb.Timestamp{Seconds: expSec, Nanos: expNanos}
		}
		c := kvv1.Consistency(cons)
		k := &kvv1.Key{Table: table, PartitionKey: pk, SortKey: sk}

		get, err := kv.Get(ctx, &kvv1.GetRequest{Key: k, Consistency: c})
		checkOutcome(t, "Get", get, err, table)
		put, err := kv.Put(ctx, &kvv1.PutRequest{Key: k, Value: value, ExpireTime: exp, Version: version, Consistency: c})
		checkOutcome(t, "Put", put, err, table)
		if err == nil && exp != nil && (expSec < 0 || expSec > kvrecord.MaxExpiry.Unix()) {
			t.Fatalf("Put accepted expire_time %v", exp)
		}
		del, err := kv.Delete(ctx, &kvv1.DeleteRequest{Key: k, Version: version, Consistency: c})
		checkOutcome(t, "Delete", del, err, table)
		bg, err := kv.BatchGet(ctx, &kvv1.BatchGetRequest{Keys: []*kvv1.Key{k, {Table: "t1", PartitionKey: []byte("x")}}, Consistency: c})
		checkOutcome(t, "BatchGet", bg, err, table)
		bw, err := kv.BatchWrite(ctx, &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
			{Type: kvv1.Mutation_MutationType(mtype), Key: k, Value: value, ExpireTime: exp, Version: version},
		}, Consistency: c})
		checkOutcome(t, "BatchWrite", bw, err, table)
		q := &kvv1.QueryRequest{Table: table, PartitionKey: pk, Limit: limit, Reverse: mtype%2 == 0, PageToken: tok, Consistency: c}
		switch mtype % 3 {
		case 1:
			q.Condition = &kvv1.QueryRequest_Range{Range: &kvv1.SortKeyRange{Start: sk, End: value}}
		case 2:
			q.Condition = &kvv1.QueryRequest_Prefix{Prefix: sk}
		}
		qr, err := kv.Query(ctx, q)
		checkOutcome(t, "Query", qr, err, table)
		ss := &fakeScanServer{ctx: ctx}
		err = kv.Scan(&kvv1.ScanRequest{Table: table, Segment: seg, TotalSegments: total, PageToken: tok}, ss)
		checkOutcome(t, "Scan", &kvv1.ScanResponse{}, err, table)
		for _, m := range ss.sent {
			if _, err := proto.Marshal(m); err != nil {
				t.Fatalf("Scan: message cannot be encoded: %v", err)
			}
		}
	})
}

// FuzzAdminRequests fuzzes the validation of the AdminService requests that
// take input (CreateTable, DeleteTable and DescribeTable names).
func FuzzAdminRequests(f *testing.F) {
	f.Add("users", int64(3600), int32(0), "pk", "sk", int32(1), int32(2))
	f.Add("t\xff\xfe", int64(-1), int32(0), "p\xff", "", int32(1), int32(0))
	f.Add("", int64(0), int32(-1), "", "s\xc3", int32(9), int32(-3))
	f.Add("ab", int64(math.MaxInt64), int32(999999999), "pk", "sk", int32(0), int32(3))
	f.Fuzz(func(t *testing.T, name string, ttlSec int64, ttlNanos int32, pkName, skName string, pkType, skType int32) {
		req := &kvv1.CreateTableRequest{
			Name:       name,
			DefaultTtl: &durationpb.Duration{Seconds: ttlSec, Nanos: ttlNanos},
			KeySchema: &kvv1.KeySchema{
				PartitionKey: &kvv1.KeyAttribute{Name: pkName, Type: kvv1.AttributeType(pkType)},
				SortKey:      &kvv1.KeyAttribute{Name: skName, Type: kvv1.AttributeType(skType)},
			},
		}
		tbl, err := createTableSpec(req)
		if code := status.Code(toStatus(err)); code != codes.OK && code != codes.InvalidArgument {
			t.Fatalf("CreateTable: code %s: %v", code, err)
		}
		if err == nil {
			// What is accepted must be storable and echoable.
			if _, merr := proto.Marshal(tableProto(tbl)); merr != nil {
				t.Fatalf("CreateTable accepted %+v, which cannot be encoded: %v", tbl, merr)
			}
		}
		if code := status.Code(toStatus(checkTableName(name, "name"))); code != codes.OK && code != codes.InvalidArgument {
			t.Fatalf("DeleteTable/DescribeTable name: code %s", code)
		}
	})
}
