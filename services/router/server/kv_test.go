package server

import (
	"context"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("got %v; want %s containing %q", err, code, substr)
	}
}

func key(table, pk string) *kvv1.Key { return &kvv1.Key{Table: table, PartitionKey: []byte(pk)} }

// TestExpireTimeRange covers issue 12: 1600 was accepted and read back as
// 2184 (UnixNano wrapped), while 2300 and 9999 were refused as "before 1970".
func TestExpireTimeRange(t *testing.T) {
	kv, fs := newTestServer(t)
	for _, tc := range []struct {
		name string
		ts   *timestamppb.Timestamp
		want string // "" means accepted
	}{
		{"1600", timestamppb.New(time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)), "put.expire_time: 1600-01-01T00:00:00Z is not after 1970-01-01T00:00:00Z"},
		{"1969", timestamppb.New(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)), "is not after 1970"},
		{"epoch", &timestamppb.Timestamp{}, "is not after 1970"},
		{"2300", timestamppb.New(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)), "put.expire_time: 2300-01-01T00:00:00Z is after 2262-04-11T23:47:16.854775807Z"},
		{"9999", timestamppb.New(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), "is after 2262"},
		{"out of range", &timestamppb.Timestamp{Seconds: math.MaxInt64}, "put.expire_time:"},
		{"bad nanos", &timestamppb.Timestamp{Seconds: 10, Nanos: -1}, "put.expire_time:"},
		{"1970 plus 1ns", &timestamppb.Timestamp{Nanos: 1}, ""},
		{"2030", timestamppb.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), ""},
		{"last", timestamppb.New(kvrecord.MaxExpiry), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kv.Put(t.Context(), &kvv1.PutRequest{Key: key("t1", "k"), ExpireTime: tc.ts})
			if tc.want != "" {
				wantCode(t, err, codes.InvalidArgument, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fs.lastApplied()[0].GetExpireUnixNanos(); got != tc.ts.AsTime().UnixNano() {
				t.Fatalf("stored expiry %d, want %d", got, tc.ts.AsTime().UnixNano())
			}
		})
	}
	// The same rule in a batch names the mutation.
	_, err := kv.BatchWrite(t.Context(), &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
		{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("t1", "a")},
		{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("t1", "b"), ExpireTime: timestamppb.New(time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC))},
	}})
	wantCode(t, err, codes.InvalidArgument, "mutations[1].expire_time: 1600-01-01")
}

// TestVersionSkew checks the bound on caller-supplied versions.
func TestVersionSkew(t *testing.T) {
	kv, _ := newTestServer(t)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		version uint64
		ok      bool
	}{
		{"max uint64", math.MaxUint64, false},
		{"max physical", hlc.FromMicros(hlc.MaxPhysical, 0), false},
		{"2 hours ahead", hlc.FromTime(now.Add(2*time.Hour), 0), false},
		{"61 minutes ahead", hlc.FromTime(now.Add(61*time.Minute), 0), false},
		{"59 minutes ahead", hlc.FromTime(now.Add(59*time.Minute), 0), true},
		{"now", hlc.FromTime(now, 0), true},
		{"long ago", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := kv.Put(t.Context(), &kvv1.PutRequest{Key: key("t1", "k"), Version: tc.version})
			_, derr := kv.Delete(t.Context(), &kvv1.DeleteRequest{Key: key("t1", "k"), Version: tc.version})
			_, berr := kv.BatchWrite(t.Context(), &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
				{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: key("t1", "k"), Version: tc.version},
			}})
			if tc.ok {
				if perr != nil || derr != nil || berr != nil {
					t.Fatalf("refused: %v, %v, %v", perr, derr, berr)
				}
				return
			}
			wantCode(t, perr, codes.InvalidArgument, "put.version: ")
			wantCode(t, perr, codes.InvalidArgument, "--max-version-skew")
			wantCode(t, derr, codes.InvalidArgument, "delete.version: ")
			wantCode(t, berr, codes.InvalidArgument, "mutations[0].version: ")
		})
	}
	// The bound is configurable.
	kv.s.cfg.MaxVersionSkew = 3 * time.Hour
	if _, err := kv.Put(t.Context(), &kvv1.PutRequest{Key: key("t1", "k"), Version: hlc.FromTime(now.Add(2*time.Hour), 0)}); err != nil {
		t.Fatalf("2h ahead with a 3h bound: %v", err)
	}
}

func TestWriteResponsesCarryOutcomes(t *testing.T) {
	kv, _ := newTestServer(t)
	put, err := kv.Put(t.Context(), &kvv1.PutRequest{Key: key("t1", "k"), Version: 5})
	if err != nil || !put.GetOutcome().GetApplied() || put.GetOutcome().GetCurrentVersion() != 5 {
		t.Fatalf("put = %v, %v", put, err)
	}
	bw, err := kv.BatchWrite(t.Context(), &kvv1.BatchWriteRequest{Mutations: []*kvv1.Mutation{
		{Type: kvv1.Mutation_MUTATION_TYPE_PUT, Key: key("t1", "a"), Version: 9},
		{Type: kvv1.Mutation_MUTATION_TYPE_DELETE, Key: key("t1", "b"), Version: 10},
	}})
	if err != nil || len(bw.GetOutcomes()) != 2 || bw.GetOutcomes()[1].GetCurrentVersion() != 10 {
		t.Fatalf("batch = %v, %v", bw, err)
	}
}

func TestInvalidUTF8TableName(t *testing.T) {
	kv, _ := newTestServer(t)
	_, err := kv.Get(t.Context(), &kvv1.GetRequest{Key: key("t\xff", "k")})
	wantCode(t, err, codes.InvalidArgument, "key: table is not valid UTF-8")
	err = kv.Scan(&kvv1.ScanRequest{Table: "\xc3"}, &fakeScanServer{ctx: t.Context()})
	wantCode(t, err, codes.InvalidArgument, "table: table is not valid UTF-8")
	_, err = createTableSpec(&kvv1.CreateTableRequest{Name: "ok_name", KeySchema: &kvv1.KeySchema{PartitionKey: &kvv1.KeyAttribute{Name: "p\xff", Type: kvv1.AttributeType_ATTRIBUTE_TYPE_S}}})
	wantCode(t, toStatus(err), codes.InvalidArgument, "key_schema.partition_key.name: not valid UTF-8")
	wantCode(t, toStatus(checkTableName("\xff\xfe", "name")), codes.InvalidArgument, "name: not valid UTF-8")
}

// TestScanSkipsEmptyPages: a 3-item table used to stream one empty page per
// partition.
func TestScanSkipsEmptyPages(t *testing.T) {
	kv, fs := newTestServer(t)
	recs := []*storagev1.Record{
		{Key: &storagev1.Key{PartitionKey: []byte("a")}, Version: 1, Value: []byte("1")},
		{Key: &storagev1.Key{PartitionKey: []byte("b")}, Version: 1, Tombstone: true},
		{Key: &storagev1.Key{PartitionKey: []byte("c")}, Version: 1, Value: []byte("3")},
	}
	fs.chunks[5] = [][]*storagev1.Record{recs[:2], nil, recs[2:]}
	fs.chunks[40] = [][]*storagev1.Record{{{Key: &storagev1.Key{PartitionKey: []byte("d")}, Version: 1}}}
	ss := &fakeScanServer{ctx: t.Context()}
	if err := kv.Scan(&kvv1.ScanRequest{Table: "t1"}, ss); err != nil {
		t.Fatal(err)
	}
	items := 0
	for i, m := range ss.sent {
		if len(m.GetItems()) == 0 {
			t.Errorf("message %d of %d is empty", i, len(ss.sent))
		}
		if len(m.GetNextPageToken()) == 0 || string(m.GetNextPageToken()) != string(m.GetPageToken()) { //nolint:staticcheck // the deprecated name must match
			t.Errorf("message %d: next_page_token %x, page_token %x", i, m.GetNextPageToken(), m.GetPageToken()) //nolint:staticcheck
		}
		items += len(m.GetItems())
	}
	if len(ss.sent) != 3 || items != 3 {
		t.Fatalf("%d messages with %d items, want 3 with 3", len(ss.sent), items)
	}
	// Resuming from the token of the first message skips what it covered.
	ss2 := &fakeScanServer{ctx: context.Background()}
	if err := kv.Scan(&kvv1.ScanRequest{Table: "t1", PageToken: ss.sent[1].GetNextPageToken()}, ss2); err != nil {
		t.Fatal(err)
	}
	if len(ss2.sent) != 1 || string(ss2.sent[0].GetItems()[0].GetKey().GetPartitionKey()) != "d" {
		t.Fatalf("resumed scan sent %v", ss2.sent)
	}
}

func TestTableSettings(t *testing.T) {
	spec, err := createTableSpec(&kvv1.CreateTableRequest{
		Name: "settings", BillingMode: kvv1.BillingMode_BILLING_MODE_PROVISIONED, ReadCapacityUnits: 5, WriteCapacityUnits: 7,
		MaxItemBytes: 1 << 20, WriteIsolation: kvv1.WriteIsolation_WRITE_ISOLATION_FORBID_RMW,
	})
	if err != nil {
		t.Fatal(err)
	}
	if spec.BillingMode != "PROVISIONED" || spec.ReadCapacityUnits != 5 || spec.WriteCapacityUnits != 7 ||
		spec.ItemLimit() != 1<<20 || spec.Isolation() != topology.IsolationForbidRMW {
		t.Fatalf("spec %+v", spec)
	}
	got := tableProto(spec)
	if got.GetBillingMode() != kvv1.BillingMode_BILLING_MODE_PROVISIONED || got.GetWriteIsolation() != kvv1.WriteIsolation_WRITE_ISOLATION_FORBID_RMW ||
		got.GetMaxItemBytes() != 1<<20 || got.GetReadCapacityUnits() != 5 {
		t.Fatalf("proto %v", got)
	}
	// Defaults read as DynamoDB's: on-demand, 400 KB, every write locked.
	def := tableProto(topology.Table{Name: "plain"})
	if def.GetBillingMode() != kvv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST || def.GetWriteIsolation() != kvv1.WriteIsolation_WRITE_ISOLATION_ALWAYS_USE_LWT ||
		(topology.Table{}).ItemLimit() != 400<<10 {
		t.Fatalf("defaults %v", def)
	}
	for _, tc := range []struct {
		req  *kvv1.CreateTableRequest
		want string
	}{
		{&kvv1.CreateTableRequest{Name: "big", MaxItemBytes: 65 << 20}, "max_item_bytes: 68157440, at most 67108864"},
		{&kvv1.CreateTableRequest{Name: "iso", WriteIsolation: 99}, "write_isolation: unknown value 99"},
		{&kvv1.CreateTableRequest{Name: "cap", ReadCapacityUnits: 1}, "only with BILLING_MODE_PROVISIONED"},
	} {
		_, err := createTableSpec(tc.req)
		wantCode(t, toStatus(err), codes.InvalidArgument, tc.want)
	}
	ttl := "expires"
	ts := tableSettings{ttl: &ttl, isolation: kvv1.WriteIsolation_WRITE_ISOLATION_UNSAFE_RMW}
	if err := ts.check(); err != nil {
		t.Fatal(err)
	}
	tbl := spec
	ts.apply(&tbl)
	if tbl.TTLAttribute != "expires" || tbl.Isolation() != topology.IsolationUnsafeRMW || tbl.ItemLimit() != 1<<20 {
		t.Fatalf("after update %+v", tbl)
	}
}
