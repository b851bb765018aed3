package clustertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/placement"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	ddbep "github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
)

// endpoint is an in-process cluster (embedded etcd, storage nodes on real
// Pebble, a router) with the DynamoDB endpoint over its router, and an AWS
// SDK client for it.
type endpoint struct {
	c  *localcluster.Cluster
	db *dynamodb.Client
}

func newEndpoint(dir string, logger *slog.Logger, nodes, rf int, partitions uint32) (*endpoint, func(), error) {
	c, err := localcluster.Start(context.Background(), localcluster.Options{
		Dir: dir, Cluster: "test", Nodes: nodes, RF: rf, Partitions: partitions,
		NoSync: true, CacheBytes: 16 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
	})
	if err != nil {
		return nil, nil, err
	}
	srv := httptest.NewServer(ddbep.NewHandler(c.Routers[0], ddbep.Options{Logger: logger}))
	db := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		// As clients run: a request that fails as unavailable while the
		// topology changes (a node stopping) is retried.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 3 }),
	})
	return &endpoint{c: c, db: db}, func() { srv.Close(); _ = c.Close() }, nil
}

// startEndpoint starts a cluster of its own for one test.
func startEndpoint(t *testing.T, nodes, rf int, partitions uint32) *endpoint {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	e, stop, err := newEndpoint(t.TempDir(), logger, nodes, rf, partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return e
}

// shared is one cluster for the tests that do not stop nodes (TestMain
// starts and stops it).
var shared *endpoint

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dynamodb-reads-")
	if err != nil {
		panic(err)
	}
	e, stop, err := newEndpoint(dir, slog.New(slog.DiscardHandler), 3, 3, 16)
	if err != nil {
		panic(err)
	}
	shared = e
	code := m.Run()
	stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func createTable(t *testing.T, e *endpoint, name string, pk, pkType, sk, skType string) {
	t.Helper()
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(pk), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(pk), AttributeType: types.ScalarAttributeType(pkType)}},
	}
	if sk != "" {
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(sk), KeyType: types.KeyTypeRange})
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(sk), AttributeType: types.ScalarAttributeType(skType)})
	}
	if _, err := e.db.CreateTable(t.Context(), in); err != nil {
		t.Fatalf("CreateTable %s: %v", name, err)
	}
}

// put writes items straight through the router's coordinator at ALL, so
// that reads at ONE see them, in the stored form the endpoint reads
// (ddb.EncodeItem under the key ddb.KeySchema.Key derives).
func put(t *testing.T, e *endpoint, table string, items ...map[string]types.AttributeValue) {
	t.Helper()
	putTTL(t, e, table, time.Time{}, items...)
}

func putB(b *testing.B, e *endpoint, table string, items ...map[string]types.AttributeValue) {
	b.Helper()
	putTTL(b, e, table, time.Time{}, items...)
}

func putTTL(t testing.TB, e *endpoint, table string, expire time.Time, items ...map[string]types.AttributeValue) {
	t.Helper()
	r := e.c.Routers[0]
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	tb, ok := v.Snapshot.Tables[table]
	if !ok {
		t.Fatalf("no table %s", table)
	}
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: tb.KeySchema.PartitionKey.Name}}
	if ks.PartitionKey.Type, err = ddb.ParseType(tb.KeySchema.PartitionKey.Type); err != nil {
		t.Fatal(err)
	}
	if sk := tb.KeySchema.SortKey; sk != nil && sk.Name != "" {
		ks.SortKey.Name = sk.Name
		if ks.SortKey.Type, err = ddb.ParseType(sk.Type); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*storagev1.Record
	for _, av := range items {
		it := toItem(t, av)
		pk, sk, err := ks.Key(it)
		if err != nil {
			t.Fatal(err)
		}
		rec := &storagev1.Record{
			Key:     &storagev1.Key{Partition: placement.PartitionOf(tb.ID, pk, v.Partitions), TableId: tb.ID, PartitionKey: pk, SortKey: sk},
			Version: r.Clock().Now(), Value: ddb.EncodeItem(it),
		}
		if !expire.IsZero() {
			rec.ExpireUnixNanos = expire.UnixNano()
		}
		recs = append(recs, rec)
	}
	for len(recs) > 0 {
		n := min(100, len(recs))
		if _, err := r.Coordinator().Write(t.Context(), recs[:n], coord.All); err != nil {
			t.Fatalf("write %d items: %v", n, err)
		}
		recs = recs[n:]
	}
}

// toItem converts an SDK item to a ddb.Item.
func toItem(t testing.TB, av map[string]types.AttributeValue) ddb.Item {
	t.Helper()
	it := ddb.Item{}
	for k, v := range av {
		it[k] = toValue(t, v)
	}
	return it
}

func toValue(t testing.TB, v types.AttributeValue) ddb.Value {
	t.Helper()
	num := func(s string) ddb.N {
		n, err := ddb.ParseN(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return ddb.S(x.Value)
	case *types.AttributeValueMemberN:
		return num(x.Value)
	case *types.AttributeValueMemberB:
		return ddb.B(x.Value)
	case *types.AttributeValueMemberBOOL:
		return ddb.Bool(x.Value)
	case *types.AttributeValueMemberNULL:
		return ddb.Null{}
	case *types.AttributeValueMemberM:
		m := ddb.M{}
		for k, e := range x.Value {
			m[k] = toValue(t, e)
		}
		return m
	case *types.AttributeValueMemberL:
		var l ddb.L
		for _, e := range x.Value {
			l = append(l, toValue(t, e))
		}
		return l
	case *types.AttributeValueMemberSS:
		return ddb.SS(x.Value)
	case *types.AttributeValueMemberNS:
		var ns ddb.NS
		for _, e := range x.Value {
			ns = append(ns, num(e))
		}
		return ns
	}
	t.Fatalf("unsupported attribute value %T", v)
	return nil
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
func b(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: v} }

func str(t *testing.T, v types.AttributeValue) string {
	t.Helper()
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return x.Value
	case *types.AttributeValueMemberN:
		return x.Value
	case *types.AttributeValueMemberB:
		return string(x.Value)
	case nil:
		return "<missing>"
	}
	t.Fatalf("unexpected attribute value %T", v)
	return ""
}

// wantAPIError checks that err is a DynamoDB error of type code whose
// message contains msg.
func wantAPIError(t *testing.T, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s (%q), got %v", code, msg, err)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Fatalf("want %s containing %q, got %s: %s", code, msg, ae.ErrorCode(), ae.ErrorMessage())
	}
}

func TestGetItem(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "get1", "pk", "S", "sk", "N")
	big := strings.Repeat("x", 5000)
	put(t, e, "get1",
		map[string]types.AttributeValue{"pk": s("a"), "sk": n("1"), "v": s("one"), "w": n("7"), "big": s(big)},
		map[string]types.AttributeValue{"pk": s("a"), "sk": n("-2.5"), "v": s("minus")},
	)
	for _, consistent := range []bool{false, true} {
		out, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")},
			ConsistentRead: aws.Bool(consistent), ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
		})
		if err != nil {
			t.Fatalf("GetItem consistent=%v: %v", consistent, err)
		}
		if got := str(t, out.Item["v"]); got != "one" || str(t, out.Item["big"]) != big || len(out.Item) != 5 {
			t.Fatalf("GetItem consistent=%v: item %v", consistent, out.Item)
		}
		// 5 KB: two 4 KB units strongly consistent, half that eventually.
		want := 1.0
		if consistent {
			want = 2
		}
		if cc := out.ConsumedCapacity; cc == nil || aws.ToFloat64(cc.CapacityUnits) != want || aws.ToString(cc.TableName) != "get1" {
			t.Fatalf("GetItem consistent=%v: ConsumedCapacity %+v, want %v units", consistent, cc, want)
		}
	}
	// The N sort key is found by value, whatever its spelling.
	out, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("-25e-1")}})
	if err != nil || str(t, out.Item["v"]) != "minus" {
		t.Fatalf("GetItem -25e-1: %v, %v", out, err)
	}
	out, err = e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("2")}})
	if err != nil || out.Item != nil {
		t.Fatalf("GetItem of a missing item: %v, %v; want no Item", out.Item, err)
	}

	errCases := []struct {
		name string
		in   *dynamodb.GetItemInput
		code string
		msg  string
	}{
		{"missing sort key", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a")}},
			"ValidationException", "The provided key element does not match the schema"},
		{"extra attribute", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1"), "v": s("x")}},
			"ValidationException", "The provided key element does not match the schema"},
		{"wrong key type", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}},
			"ValidationException", "Type mismatch for key sk expected: N actual: S"},
		{"no such table", &dynamodb.GetItemInput{TableName: aws.String("nope"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")}},
			"ResourceNotFoundException", "Requested resource not found"},
		{"both projections", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")},
			ProjectionExpression: aws.String("v"), AttributesToGet: []string{"v"}},
			"ValidationException", "Can not use both expression and non-expression parameters in the same request"},
		{"names without expression", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")},
			ExpressionAttributeNames: map[string]string{"#v": "v"}},
			"ValidationException", "ExpressionAttributeNames can only be specified when using expressions"},
		{"bad ReturnConsumedCapacity", &dynamodb.GetItemInput{TableName: aws.String("get1"), Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")},
			ReturnConsumedCapacity: "ALL"},
			"ValidationException", "Value 'ALL' at 'returnConsumedCapacity' failed to satisfy constraint"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.db.GetItem(ctx, tc.in)
			wantAPIError(t, err, tc.code, tc.msg)
		})
	}
}

func TestGetItemProjection(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "getproj", "pk", "S", "", "")
	put(t, e, "getproj", map[string]types.AttributeValue{"pk": s("a"), "v": s("one"), "w": n("7"),
		"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"x": n("1"), "y": n("2")}}})
	out, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("getproj"), Key: map[string]types.AttributeValue{"pk": s("a")},
		ProjectionExpression: aws.String("#w, m.y"), ExpressionAttributeNames: map[string]string{"#w": "w"}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := out.Item["m"].(*types.AttributeValueMemberM)
	if len(out.Item) != 2 || str(t, out.Item["w"]) != "7" || m == nil || len(m.Value) != 1 || str(t, m.Value["y"]) != "2" {
		t.Fatalf("projection #w, m.y: got %v", out.Item)
	}
	out, err = e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("getproj"), Key: map[string]types.AttributeValue{"pk": s("a")},
		AttributesToGet: []string{"v", "pk"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Item) != 2 || str(t, out.Item["v"]) != "one" || str(t, out.Item["pk"]) != "a" {
		t.Fatalf("AttributesToGet v, pk: got %v", out.Item)
	}
	_, err = e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("getproj"), Key: map[string]types.AttributeValue{"pk": s("a")},
		ProjectionExpression: aws.String("v"), ExpressionAttributeNames: map[string]string{"#w": "w"}})
	wantAPIError(t, err, "ValidationException", "unused")
}

// queryAll pages through a query with the SDK's paginator and returns the
// items and the number of pages.
func queryAll(t *testing.T, e *endpoint, in *dynamodb.QueryInput) ([]map[string]types.AttributeValue, int) {
	t.Helper()
	var items []map[string]types.AttributeValue
	pages := 0
	pg := dynamodb.NewQueryPaginator(e.db, in)
	for pg.HasMorePages() {
		out, err := pg.NextPage(t.Context())
		if err != nil {
			t.Fatalf("Query page %d: %v", pages+1, err)
		}
		pages++
		if int(out.Count) != len(out.Items) {
			t.Fatalf("Query page %d: Count %d, %d items", pages, out.Count, len(out.Items))
		}
		items = append(items, out.Items...)
	}
	return items, pages
}

func sortKeys(t *testing.T, items []map[string]types.AttributeValue, attr string) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		out = append(out, str(t, it[attr]))
	}
	return out
}

func TestQueryNumberSortKeys(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "qnum", "pk", "S", "sk", "N")
	// In DynamoDB's numeric order.
	ordered := []string{"-1E+100", "-123.45", "-12", "-1.5", "-1", "-0.001", "0", "1E-130", "0.0001", "0.5", "1", "1.5", "2", "10", "12.5", "99", "100", "1E+10", "9.99E+125"}
	var items []map[string]types.AttributeValue
	for i, k := range ordered {
		items = append(items, map[string]types.AttributeValue{"pk": s("p"), "sk": n(k), "i": n(fmt.Sprint(i)), "odd": &types.AttributeValueMemberBOOL{Value: i%2 == 1}})
	}
	// Another partition key, which must never show up.
	items = append(items, map[string]types.AttributeValue{"pk": s("other"), "sk": n("1")})
	put(t, e, "qnum", items...)
	canon := func(ks []string) []string {
		var out []string
		for _, k := range ks {
			n, err := ddb.ParseN(k)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n.String())
		}
		return out
	}
	all := canon(ordered)
	rev := slices.Clone(all)
	slices.Reverse(rev)
	vals := func(kv ...string) map[string]types.AttributeValue {
		m := map[string]types.AttributeValue{":p": s("p")}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = n(kv[i+1])
		}
		return m
	}
	cases := []struct {
		name    string
		cond    string
		vals    map[string]types.AttributeValue
		reverse bool
		limit   int32
		want    []string
	}{
		{"all", "pk = :p", vals(), false, 0, all},
		{"all reversed", "pk = :p", vals(), true, 0, rev},
		{"all by 3", "pk = :p", vals(), false, 3, all},
		{"all reversed by 4", "pk = :p", vals(), true, 4, rev},
		{"eq", "pk = :p AND sk = :a", vals(":a", "1.50"), false, 0, []string{"1.5"}},
		{"eq missing", "pk = :p AND sk = :a", vals(":a", "3"), false, 0, nil},
		{"lt", "pk = :p AND sk < :a", vals(":a", "-1"), false, 0, canon(ordered[:4])},
		{"le", "pk = :p AND sk <= :a", vals(":a", "-1"), false, 0, canon(ordered[:5])},
		{"gt", "pk = :p AND sk > :a", vals(":a", "12.5"), false, 0, canon(ordered[15:])},
		{"ge reversed by 2", "pk = :p AND sk >= :a", vals(":a", "12.5"), true, 2, canon([]string{"9.99E+125", "1E+10", "100", "99", "12.5"})},
		{"between", "pk = :p AND sk BETWEEN :a AND :b", vals(":a", "-0.001", ":b", "1"), false, 0, canon(ordered[5:11])},
		{"between reversed by 1", "pk = :p AND sk BETWEEN :a AND :b", vals(":a", "-1.5", ":b", "0"), true, 1, []string{"0", "-0.001", "-1", "-1.5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String(tc.cond),
				ExpressionAttributeValues: tc.vals, ScanIndexForward: aws.Bool(!tc.reverse)}
			if tc.limit > 0 {
				in.Limit = aws.Int32(tc.limit)
			}
			got, pages := queryAll(t, e, in)
			if !slices.Equal(sortKeys(t, got, "sk"), tc.want) {
				t.Fatalf("got %v, want %v", sortKeys(t, got, "sk"), tc.want)
			}
			if tc.limit > 0 && pages < (len(tc.want)+int(tc.limit)-1)/int(tc.limit) {
				t.Fatalf("%d pages for %d items at Limit %d", pages, len(tc.want), tc.limit)
			}
		})
	}

	t.Run("filter after limit", func(t *testing.T) {
		out, err := e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p"),
			FilterExpression: aws.String("odd = :t"), ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p"), ":t": &types.AttributeValueMemberBOOL{Value: true}},
			Limit: aws.Int32(5)})
		if err != nil {
			t.Fatal(err)
		}
		if out.ScannedCount != 5 || out.Count != 2 || len(out.Items) != 2 || out.LastEvaluatedKey == nil {
			t.Fatalf("ScannedCount %d Count %d items %d LastEvaluatedKey %v; want 5, 2, 2, set", out.ScannedCount, out.Count, len(out.Items), out.LastEvaluatedKey)
		}
		if got := str(t, out.LastEvaluatedKey["sk"]); got != "-1" || str(t, out.LastEvaluatedKey["pk"]) != "p" || len(out.LastEvaluatedKey) != 2 {
			t.Fatalf("LastEvaluatedKey %v, want pk p, sk -1", out.LastEvaluatedKey)
		}
		got, _ := queryAll(t, e, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p"),
			FilterExpression: aws.String("odd = :t"), ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p"), ":t": &types.AttributeValueMemberBOOL{Value: true}},
			Limit: aws.Int32(5)})
		var want []string
		for i := 1; i < len(all); i += 2 {
			want = append(want, all[i])
		}
		if !slices.Equal(sortKeys(t, got, "sk"), want) {
			t.Fatalf("filtered: got %v, want %v", sortKeys(t, got, "sk"), want)
		}
	})
	t.Run("count and projection", func(t *testing.T) {
		out, err := e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")}, Select: types.SelectCount})
		if err != nil {
			t.Fatal(err)
		}
		if out.Count != int32(len(all)) || out.ScannedCount != int32(len(all)) || out.Items != nil {
			t.Fatalf("COUNT: Count %d ScannedCount %d Items %v", out.Count, out.ScannedCount, out.Items)
		}
		out, err = e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p AND sk = :z"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p"), ":z": n("0")}, ProjectionExpression: aws.String("#i"),
			ExpressionAttributeNames: map[string]string{"#i": "i"}, ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Items) != 1 || len(out.Items[0]) != 1 || str(t, out.Items[0]["i"]) != "6" {
			t.Fatalf("projection #i: %v", out.Items)
		}
		if cc := out.ConsumedCapacity; cc == nil || aws.ToFloat64(cc.CapacityUnits) != 1 {
			t.Fatalf("ConsumedCapacity %+v, want 1", cc)
		}
	})
	t.Run("exclusive start key", func(t *testing.T) {
		out, err := e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")},
			ExclusiveStartKey:         map[string]types.AttributeValue{"pk": s("p"), "sk": n("99")}})
		if err != nil {
			t.Fatal(err)
		}
		if got := sortKeys(t, out.Items, "sk"); !slices.Equal(got, all[16:]) || out.LastEvaluatedKey != nil {
			t.Fatalf("after 99: %v (LastEvaluatedKey %v), want %v", got, out.LastEvaluatedKey, all[16:])
		}
		out, err = e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("qnum"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")}, ScanIndexForward: aws.Bool(false),
			ExclusiveStartKey: map[string]types.AttributeValue{"pk": s("p"), "sk": n("-1")}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sortKeys(t, out.Items, "sk"), rev[len(rev)-4:]; !slices.Equal(got, want) {
			t.Fatalf("reversed before -1: %v, want %v", got, want)
		}
	})

	errCases := []struct {
		name string
		in   *dynamodb.QueryInput
		code string
		msg  string
	}{
		{"between reversed", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p AND sk BETWEEN :a AND :b"), ExpressionAttributeValues: vals(":a", "2", ":b", "1")},
			"ValidationException", "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound"},
		{"index", &dynamodb.QueryInput{IndexName: aws.String("gsi1"), KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals()},
			"ValidationException", "The table does not have the specified index: gsi1"},
		{"no key condition", &dynamodb.QueryInput{},
			"ValidationException", "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."},
		{"limit 0", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(), Limit: aws.Int32(0)},
			"ValidationException", "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"},
		{"select specific without projection", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(), Select: types.SelectSpecificAttributes},
			"ValidationException", "1 validation error detected: Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"},
		{"select projected", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(), Select: types.SelectAllProjectedAttributes},
			"ValidationException", "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"},
		{"count with projection", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(), Select: types.SelectCount, ProjectionExpression: aws.String("i")},
			"ValidationException", "1 validation error detected: Cannot specify the ProjectionExpression when choosing to get only the Count"},
		{"start key of another partition key", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(),
			ExclusiveStartKey: map[string]types.AttributeValue{"pk": s("other"), "sk": n("1")}},
			"ValidationException", "The provided starting key is outside query boundaries based on provided conditions"},
		{"start key outside the range", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p AND sk > :a"), ExpressionAttributeValues: vals(":a", "5"),
			ExclusiveStartKey: map[string]types.AttributeValue{"pk": s("p"), "sk": n("1")}},
			"ValidationException", "The provided starting key does not match the range key predicate"},
		{"start key without sort key", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(),
			ExclusiveStartKey: map[string]types.AttributeValue{"pk": s("p")}},
			"ValidationException", "The provided starting key is invalid"},
		{"filter on the sort key", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), FilterExpression: aws.String("sk > :a"), ExpressionAttributeValues: vals(":a", "1")},
			"ValidationException", "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk"},
		{"empty values", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: map[string]types.AttributeValue{}},
			"ValidationException", "ExpressionAttributeValues must not be empty"},
		{"unused value", &dynamodb.QueryInput{KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals(":x", "1")},
			"ValidationException", "unused"},
		{"no such table", &dynamodb.QueryInput{TableName: aws.String("nope"), KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: vals()},
			"ResourceNotFoundException", "Requested resource not found"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in.TableName == nil {
				tc.in.TableName = aws.String("qnum")
			}
			_, err := e.db.Query(ctx, tc.in)
			wantAPIError(t, err, tc.code, tc.msg)
		})
	}
}

func TestQueryBeginsWith(t *testing.T) {
	e := shared
	createTable(t, e, "qstr", "pk", "S", "sk", "S")
	createTable(t, e, "qbin", "pk", "B", "sk", "B")
	var sItems, bItems []map[string]types.AttributeValue
	for _, k := range []string{"a", "ab", "abc", "abd", "ac", "b", "é", "éa"} {
		sItems = append(sItems, map[string]types.AttributeValue{"pk": s("p"), "sk": s(k)})
	}
	for _, k := range [][]byte{{0}, {1}, {1, 0}, {1, 0xff}, {1, 0xff, 0}, {2}, {0xff}} {
		bItems = append(bItems, map[string]types.AttributeValue{"pk": b([]byte("p")), "sk": b(k)})
	}
	put(t, e, "qstr", sItems...)
	put(t, e, "qbin", bItems...)
	cases := []struct {
		table  string
		prefix types.AttributeValue
		pk     types.AttributeValue
		want   []string
	}{
		{"qstr", s("ab"), s("p"), []string{"ab", "abc", "abd"}},
		{"qstr", s("é"), s("p"), []string{"é", "éa"}},
		{"qstr", s("z"), s("p"), nil},
		{"qbin", b([]byte{1}), b([]byte("p")), []string{"\x01", "\x01\x00", "\x01\xff", "\x01\xff\x00"}},
		{"qbin", b([]byte{1, 0xff}), b([]byte("p")), []string{"\x01\xff", "\x01\xff\x00"}},
		{"qbin", b([]byte{0xff}), b([]byte("p")), []string{"\xff"}},
	}
	for _, tc := range cases {
		for _, fwd := range []bool{true, false} {
			got, _ := queryAll(t, e, &dynamodb.QueryInput{TableName: aws.String(tc.table), KeyConditionExpression: aws.String("pk = :p AND begins_with(sk, :x)"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":p": tc.pk, ":x": tc.prefix}, ScanIndexForward: aws.Bool(fwd), Limit: aws.Int32(1)})
			want := slices.Clone(tc.want)
			if !fwd {
				slices.Reverse(want)
			}
			if gk := sortKeys(t, got, "sk"); !slices.Equal(gk, want) {
				t.Errorf("%s begins_with %q forward=%v: got %q, want %q", tc.table, str(t, tc.prefix), fwd, gk, want)
			}
		}
	}
}

// TestQueryPagesOverOneMB: a partition key holding 2.5 MB is read in pages
// that stop once 1 MB was read, forward and reversed, and every item comes
// back once, in order.
func TestQueryPagesOverOneMB(t *testing.T) {
	e := shared
	createTable(t, e, "qbig", "pk", "S", "sk", "N")
	pad := strings.Repeat("z", 10<<10)
	var items []map[string]types.AttributeValue
	for i := range 250 {
		items = append(items, map[string]types.AttributeValue{"pk": s("p"), "sk": n(fmt.Sprint(i - 100)), "pad": s(pad)})
	}
	put(t, e, "qbig", items...)
	for _, fwd := range []bool{true, false} {
		var got []string
		pages := 0
		pg := dynamodb.NewQueryPaginator(e.db, &dynamodb.QueryInput{TableName: aws.String("qbig"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")}, ScanIndexForward: aws.Bool(fwd)})
		for pg.HasMorePages() {
			out, err := pg.NextPage(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			pages++
			size := 0
			for _, it := range out.Items {
				size += len(str(t, it["pad"])) + 3 + 2 + 2 + 3 + 2
			}
			// Stops at the first item that reaches 1 MB.
			if size > 1<<20+11<<10 || (out.LastEvaluatedKey != nil && size < 1<<20-11<<10) {
				t.Fatalf("page %d: %d items, %d bytes, LastEvaluatedKey %v", pages, len(out.Items), size, out.LastEvaluatedKey)
			}
			got = append(got, sortKeys(t, out.Items, "sk")...)
		}
		var want []string
		for i := range 250 {
			want = append(want, fmt.Sprint(i-100))
		}
		if !fwd {
			slices.Reverse(want)
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Fatalf("forward=%v: %d pages, got %d items %v…, want %d", fwd, pages, len(got), got[:min(5, len(got))], len(want))
		}
	}
}

// scanAll pages through a scan (segment seg of total, or the whole table
// when total is 0) with the SDK's paginator.
func scanAll(t *testing.T, e *endpoint, in dynamodb.ScanInput, seg, total int32) ([]map[string]types.AttributeValue, int) {
	t.Helper()
	if total > 0 {
		in.Segment, in.TotalSegments = aws.Int32(seg), aws.Int32(total)
	}
	var items []map[string]types.AttributeValue
	pages := 0
	pg := dynamodb.NewScanPaginator(e.db, &in)
	for pg.HasMorePages() {
		out, err := pg.NextPage(t.Context())
		if err != nil {
			t.Errorf("Scan segment %d/%d page %d: %v", seg, total, pages+1, err)
			return items, pages
		}
		pages++
		items = append(items, out.Items...)
	}
	return items, pages
}

func TestScan(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "scan1", "pk", "S", "sk", "N")
	createTable(t, e, "scan2", "pk", "S", "", "")
	pad := strings.Repeat("y", 8<<10)
	var items []map[string]types.AttributeValue
	want := map[string]bool{}
	for i := range 400 {
		pk, sk := fmt.Sprintf("p%d", i%37), fmt.Sprint(i)
		items = append(items, map[string]types.AttributeValue{"pk": s(pk), "sk": n(sk), "pad": s(pad), "even": &types.AttributeValueMemberBOOL{Value: i%2 == 0}})
		want[pk+"/"+sk] = true
	}
	put(t, e, "scan1", items...)
	// Another table's items share the partitions and must not show up.
	put(t, e, "scan2", map[string]types.AttributeValue{"pk": s("p1")}, map[string]types.AttributeValue{"pk": s("p2")})
	// Deleted and expired items do not show up either.
	put(t, e, "scan1", map[string]types.AttributeValue{"pk": s("gone"), "sk": n("1")})
	putTTL(t, e, "scan1", time.Now().Add(-time.Minute), map[string]types.AttributeValue{"pk": s("expired"), "sk": n("1")})
	deleteDirect(t, e, "scan1", map[string]types.AttributeValue{"pk": s("gone"), "sk": n("1")})

	check := func(t *testing.T, got []map[string]types.AttributeValue, want map[string]bool) {
		t.Helper()
		seen := map[string]int{}
		for _, it := range got {
			seen[str(t, it["pk"])+"/"+str(t, it["sk"])]++
		}
		for k, c := range seen {
			if c != 1 || !want[k] {
				t.Errorf("item %s returned %d times (wanted: %v)", k, c, want[k])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("%d distinct items, want %d", len(seen), len(want))
		}
	}
	t.Run("a table created later", func(t *testing.T) {
		// Its scan starts past the other table's records in each partition.
		got, _ := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("scan2")}, 0, 0)
		if keys := sortKeys(t, got, "pk"); len(keys) != 2 || !slices.Contains(keys, "p1") || !slices.Contains(keys, "p2") {
			t.Fatalf("scan2: %v, want p1 and p2", keys)
		}
	})
	t.Run("whole table over 1 MB", func(t *testing.T) {
		got, pages := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("scan1")}, 0, 0)
		check(t, got, want)
		if pages < 4 {
			t.Errorf("%d pages for 3.2 MB", pages)
		}
	})
	t.Run("consistent with limit", func(t *testing.T) {
		got, pages := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("scan1"), Limit: aws.Int32(70), ConsistentRead: aws.Bool(true)}, 0, 0)
		check(t, got, want)
		if pages < 6 {
			t.Errorf("%d pages for 400 items at Limit 70", pages)
		}
	})
	for _, total := range []int32{4, 7, 100} {
		t.Run(fmt.Sprintf("%d segments in parallel", total), func(t *testing.T) {
			res := make([][]map[string]types.AttributeValue, total)
			var wg sync.WaitGroup
			for seg := range total {
				wg.Go(func() {
					res[seg], _ = scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("scan1"), Limit: aws.Int32(13)}, seg, total)
				})
			}
			wg.Wait()
			check(t, slices.Concat(res...), want)
		})
	}
	t.Run("filter, count and projection", func(t *testing.T) {
		got, _ := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("scan1"), FilterExpression: aws.String("even = :t"),
			ProjectionExpression: aws.String("pk, sk"), ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberBOOL{Value: true}}}, 0, 0)
		even := map[string]bool{}
		for i := 0; i < 400; i += 2 {
			even[fmt.Sprintf("p%d/%d", i%37, i)] = true
		}
		check(t, got, even)
		for _, it := range got {
			if len(it) != 2 {
				t.Fatalf("projected item has %d attributes: %v", len(it), it)
			}
		}
		total, scanned := int32(0), int32(0)
		pg := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: aws.String("scan1"), Select: types.SelectCount, FilterExpression: aws.String("even = :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberBOOL{Value: true}}})
		for pg.HasMorePages() {
			out, err := pg.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if out.Items != nil {
				t.Fatalf("COUNT returned items")
			}
			total += out.Count
			scanned += out.ScannedCount
		}
		if total != 200 || scanned != 400 {
			t.Fatalf("COUNT: Count %d ScannedCount %d, want 200 and 400", total, scanned)
		}
	})
	t.Run("last evaluated key resumes", func(t *testing.T) {
		out, err := e.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("scan1"), Limit: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Items) != 1 || len(out.LastEvaluatedKey) != 2 || str(t, out.LastEvaluatedKey["sk"]) != str(t, out.Items[0]["sk"]) {
			t.Fatalf("Limit 1: items %d LastEvaluatedKey %v", len(out.Items), out.LastEvaluatedKey)
		}
	})

	errCases := []struct {
		name string
		in   *dynamodb.ScanInput
		msg  string
	}{
		{"segment without total", &dynamodb.ScanInput{Segment: aws.Int32(1)},
			"The TotalSegments parameter is required but was not present in the request when Segment parameter is present"},
		{"total without segment", &dynamodb.ScanInput{TotalSegments: aws.Int32(2)},
			"The Segment parameter is required but was not present in the request when parameter TotalSegments is present"},
		{"segment too large", &dynamodb.ScanInput{Segment: aws.Int32(4), TotalSegments: aws.Int32(4)},
			"The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 4 is not less than TotalSegments: 4"},
		{"total 0", &dynamodb.ScanInput{Segment: aws.Int32(0), TotalSegments: aws.Int32(0)},
			"Value '0' at 'totalSegments' failed to satisfy constraint: Member must have value greater than or equal to 1"},
		{"total too large", &dynamodb.ScanInput{Segment: aws.Int32(0), TotalSegments: aws.Int32(1000001)},
			"Value '1000001' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000"},
		{"negative segment", &dynamodb.ScanInput{Segment: aws.Int32(-1), TotalSegments: aws.Int32(2)},
			"Value '-1' at 'segment' failed to satisfy constraint: Member must have value greater than or equal to 0"},
		{"start key of another segment", &dynamodb.ScanInput{Segment: aws.Int32(0), TotalSegments: aws.Int32(16),
			ExclusiveStartKey: otherSegmentKey(t, e, "scan1", 0, 16)},
			"The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: 16 Segment: 0"},
		{"index", &dynamodb.ScanInput{IndexName: aws.String("i")}, "The table does not have the specified index: i"},
		{"select projected", &dynamodb.ScanInput{Select: types.SelectAllProjectedAttributes}, "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.TableName = aws.String("scan1")
			_, err := e.db.Scan(ctx, tc.in)
			wantAPIError(t, err, "ValidationException", tc.msg)
		})
	}
}

// otherSegmentKey is the key of an item (in the table scan1 fills) outside
// segment seg of total.
func otherSegmentKey(t *testing.T, e *endpoint, table string, seg, total uint32) map[string]types.AttributeValue {
	t.Helper()
	v, err := e.c.Routers[0].View()
	if err != nil {
		t.Fatal(err)
	}
	id := v.Snapshot.Tables[table].ID
	for i := range 1000 {
		pk := fmt.Sprintf("p%d", i)
		p := placement.PartitionOf(id, []byte(pk), v.Partitions)
		if p < seg*v.Partitions/total || p >= (seg+1)*v.Partitions/total {
			return map[string]types.AttributeValue{"pk": s(pk), "sk": n("1")}
		}
	}
	t.Fatal("no key outside the segment")
	return nil
}

// deleteDirect writes tombstones for keys through the coordinator.
func deleteDirect(t *testing.T, e *endpoint, table string, keys ...map[string]types.AttributeValue) {
	t.Helper()
	r := e.c.Routers[0]
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	tb := v.Snapshot.Tables[table]
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}}
	if tb.KeySchema.SortKey != nil && tb.KeySchema.SortKey.Name != "" {
		ks.SortKey = ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}
	}
	var recs []*storagev1.Record
	for _, k := range keys {
		pk, sk, err := ks.Key(toItem(t, k))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &storagev1.Record{Key: &storagev1.Key{Partition: placement.PartitionOf(tb.ID, pk, v.Partitions), TableId: tb.ID, PartitionKey: pk, SortKey: sk},
			Version: r.Clock().Now(), Tombstone: true})
	}
	if _, err := r.Coordinator().Write(t.Context(), recs, coord.All); err != nil {
		t.Fatal(err)
	}
}

func TestBatchGetItem(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "bg1", "pk", "S", "sk", "N")
	createTable(t, e, "bg2", "id", "N", "", "")
	var items []map[string]types.AttributeValue
	for i := range 30 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i)), "sk": n("1"), "v": n(fmt.Sprint(i)), "w": s("x")})
	}
	put(t, e, "bg1", items...)
	put(t, e, "bg2", map[string]types.AttributeValue{"id": n("7"), "name": s("seven")})
	var keys []map[string]types.AttributeValue
	for i := range 32 { // two are missing
		keys = append(keys, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i)), "sk": n("1")})
	}
	out, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
		RequestItems: map[string]types.KeysAndAttributes{
			"bg1": {Keys: keys, ProjectionExpression: aws.String("pk, #v"), ExpressionAttributeNames: map[string]string{"#v": "v"}, ConsistentRead: aws.Bool(true)},
			"bg2": {Keys: []map[string]types.AttributeValue{{"id": n("7.0")}, {"id": n("8")}}},
		},
		ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.UnprocessedKeys) != 0 {
		t.Fatalf("UnprocessedKeys %v", out.UnprocessedKeys)
	}
	got := map[string]string{}
	for _, it := range out.Responses["bg1"] {
		if len(it) != 2 {
			t.Fatalf("projected item %v", it)
		}
		got[str(t, it["pk"])] = str(t, it["v"])
	}
	if len(got) != 30 || got["p29"] != "29" {
		t.Fatalf("bg1: %d items: %v", len(got), got)
	}
	if r := out.Responses["bg2"]; len(r) != 1 || str(t, r[0]["name"]) != "seven" {
		t.Fatalf("bg2: %v", r)
	}
	if len(out.ConsumedCapacity) != 2 {
		t.Fatalf("ConsumedCapacity %+v", out.ConsumedCapacity)
	}
	for _, cc := range out.ConsumedCapacity {
		// bg1: 32 strongly consistent reads of one unit; bg2: two halves.
		want := map[string]float64{"bg1": 32, "bg2": 1}[aws.ToString(cc.TableName)]
		if aws.ToFloat64(cc.CapacityUnits) != want {
			t.Fatalf("%s: %v units, want %v", aws.ToString(cc.TableName), aws.ToFloat64(cc.CapacityUnits), want)
		}
	}

	var many []map[string]types.AttributeValue
	for i := range 101 {
		many = append(many, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i)), "sk": n("1")})
	}
	errCases := []struct {
		name string
		in   map[string]types.KeysAndAttributes
		code string
		msg  string
	}{
		{"too many", map[string]types.KeysAndAttributes{"bg1": {Keys: many}}, "ValidationException", "Too many items requested for the BatchGetItem call"},
		{"too many over tables", map[string]types.KeysAndAttributes{"bg1": {Keys: many[:99]}, "bg2": {Keys: []map[string]types.AttributeValue{{"id": n("1")}, {"id": n("2")}}}},
			"ValidationException", "Too many items requested for the BatchGetItem call"},
		{"duplicates", map[string]types.KeysAndAttributes{"bg2": {Keys: []map[string]types.AttributeValue{{"id": n("1")}, {"id": n("1.0")}}}},
			"ValidationException", "Provided list of item keys contains duplicates"},
		{"no keys", map[string]types.KeysAndAttributes{"bg2": {Keys: []map[string]types.AttributeValue{}}},
			"ValidationException", "failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"bad key", map[string]types.KeysAndAttributes{"bg2": {Keys: []map[string]types.AttributeValue{{"pk": s("1")}}}},
			"ValidationException", "The provided key element does not match the schema"},
		{"no such table", map[string]types.KeysAndAttributes{"nope": {Keys: []map[string]types.AttributeValue{{"id": n("1")}}}},
			"ResourceNotFoundException", "Requested resource not found"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: tc.in})
			wantAPIError(t, err, tc.code, tc.msg)
		})
	}
}

// TestBatchGetItemUnprocessedKeys: with a storage node stopped (one replica
// per partition), the keys it holds come back as UnprocessedKeys, in
// DynamoDB's shape with the table's projection and consistency, and the
// others are read; asking for those keys alone fails as unavailable until
// the node is back, and then reads them.
func TestBatchGetItemUnprocessedKeys(t *testing.T) {
	e := startEndpoint(t, 3, 1, 16)
	ctx := t.Context()
	createTable(t, e, "bgu", "pk", "S", "", "")
	var items, keys []map[string]types.AttributeValue
	for i := range 60 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%d", i)), "v": n(fmt.Sprint(i))})
		keys = append(keys, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%d", i))})
	}
	put(t, e, "bgu", items...)
	if err := e.c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	req := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		"bgu": {Keys: keys, ProjectionExpression: aws.String("pk, v"), ConsistentRead: aws.Bool(false)},
	}}
	var out *dynamodb.BatchGetItemOutput
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		out, err = e.db.BatchGetItem(ctx, req)
		if err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
		if err == nil && (len(out.UnprocessedKeys) > 0 || time.Now().After(deadline)) {
			break
		}
		// Until the router sees the node gone, or while the topology
		// changes, a read may fail as a whole: try again.
		time.Sleep(50 * time.Millisecond)
	}
	un, ok := out.UnprocessedKeys["bgu"]
	if !ok {
		t.Fatal("no UnprocessedKeys with a node stopped")
	}
	if aws.ToString(un.ProjectionExpression) != "pk, v" || un.ConsistentRead == nil || *un.ConsistentRead {
		t.Fatalf("UnprocessedKeys lost the projection or consistency: %+v", un)
	}
	got := map[string]bool{}
	for _, it := range out.Responses["bgu"] {
		got[str(t, it["pk"])] = true
	}
	for _, k := range un.Keys {
		pk := str(t, k["pk"])
		if got[pk] {
			t.Fatalf("%s both read and unprocessed", pk)
		}
		got[pk] = true
	}
	if len(got) != 60 || len(un.Keys) == 60 || len(un.Keys) == 0 {
		t.Fatalf("%d keys accounted for, %d unprocessed; want all 60, some unprocessed", len(got), len(un.Keys))
	}
	_, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"bgu": un}})
	wantAPIError(t, err, "ServiceUnavailable", "not enough replicas")
	if err := e.c.StartNode(ctx, 0); err != nil {
		t.Fatal(err)
	}
	left := map[string]types.KeysAndAttributes{"bgu": un}
	read := 0
	for deadline := time.Now().Add(30 * time.Second); len(left) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still unprocessed after the node restarted", len(left["bgu"].Keys))
		}
		out, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: left})
		if err != nil {
			// Until the node is back no key can be read: the call fails.
			wantAPIError(t, err, "ServiceUnavailable", "")
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, it := range out.Responses["bgu"] {
			if len(it) != 2 {
				t.Fatalf("retried read lost the projection: %v", it)
			}
			read++
		}
		left = out.UnprocessedKeys
		time.Sleep(50 * time.Millisecond)
	}
	if read != len(un.Keys) {
		t.Fatalf("read %d of %d unprocessed keys after the restart", read, len(un.Keys))
	}
}

// TestLegacyParameters: KeyConditions, QueryFilter, ScanFilter and
// AttributesToGet, the parameters older SDK code still sends.
func TestLegacyParameters(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "legacy", "pk", "S", "sk", "N")
	var items []map[string]types.AttributeValue
	for i := range 10 {
		items = append(items, map[string]types.AttributeValue{"pk": s("p"), "sk": n(fmt.Sprint(i)), "v": n(fmt.Sprint(i % 3)), "w": s("w")})
	}
	put(t, e, "legacy", items...)
	out, err := e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("legacy"),
		KeyConditions: map[string]types.Condition{
			"pk": {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{s("p")}},
			"sk": {ComparisonOperator: types.ComparisonOperatorBetween, AttributeValueList: []types.AttributeValue{n("2"), n("8")}},
		},
		QueryFilter:      map[string]types.Condition{"v": {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{n("0")}}},
		AttributesToGet:  []string{"sk", "v"},
		ScanIndexForward: aws.Bool(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sortKeys(t, out.Items, "sk"); !slices.Equal(got, []string{"6", "3"}) || out.ScannedCount != 7 || len(out.Items[0]) != 2 {
		t.Fatalf("KeyConditions + QueryFilter: %v (ScannedCount %d), want [6 3] of 7", out.Items, out.ScannedCount)
	}
	sc, err := e.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("legacy"),
		ScanFilter: map[string]types.Condition{
			"v":  {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{n("1")}},
			"sk": {ComparisonOperator: types.ComparisonOperatorGt, AttributeValueList: []types.AttributeValue{n("4")}},
		},
		ConditionalOperator: types.ConditionalOperatorAnd,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := sortKeys(t, sc.Items, "sk")
	sort.Strings(got)
	if !slices.Equal(got, []string{"7"}) || sc.ScannedCount != 10 {
		t.Fatalf("ScanFilter: %v (ScannedCount %d), want [7] of 10", got, sc.ScannedCount)
	}
	// KeyConditions may go with a FilterExpression (as DynamoDB allows),
	// not with a KeyConditionExpression or a legacy QueryFilter beside one.
	out, err = e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("legacy"),
		KeyConditions:    map[string]types.Condition{"pk": {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{s("p")}}},
		FilterExpression: aws.String("v = :v"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": n("1")}})
	if err != nil || !slices.Equal(sortKeys(t, out.Items, "sk"), []string{"1", "4", "7"}) {
		t.Fatalf("KeyConditions + FilterExpression: %v, %v", out, err)
	}
	_, err = e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("legacy"),
		KeyConditions:          map[string]types.Condition{"pk": {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{s("p")}}},
		KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")}})
	wantAPIError(t, err, "ValidationException", "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {KeyConditions} Expression parameters: {KeyConditionExpression}")
	_, err = e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("legacy"),
		KeyConditionExpression: aws.String("pk = :p"), ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")},
		QueryFilter: map[string]types.Condition{"v": {ComparisonOperator: types.ComparisonOperatorEq, AttributeValueList: []types.AttributeValue{n("0")}}}})
	wantAPIError(t, err, "ValidationException", "Non-expression parameters: {QueryFilter} Expression parameters: {KeyConditionExpression}")
	_, err = e.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("legacy"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": n("1")}})
	wantAPIError(t, err, "ValidationException", "ExpressionAttributeValues can only be specified when using expressions")
}

// TestExpiredItemsReadAsAbsent: an item whose expiry has passed is not
// returned by any read, before any purge.
func TestExpiredItemsReadAsAbsent(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "ttl1", "pk", "S", "sk", "S")
	put(t, e, "ttl1", map[string]types.AttributeValue{"pk": s("p"), "sk": s("live")})
	putTTL(t, e, "ttl1", time.Now().Add(-time.Second), map[string]types.AttributeValue{"pk": s("p"), "sk": s("dead")})
	for _, consistent := range []bool{false, true} {
		g, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("ttl1"), Key: map[string]types.AttributeValue{"pk": s("p"), "sk": s("dead")}, ConsistentRead: aws.Bool(consistent)})
		if err != nil || g.Item != nil {
			t.Fatalf("GetItem of an expired item (consistent %v): %v, %v", consistent, g.Item, err)
		}
		q, err := e.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("ttl1"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p")}, ConsistentRead: aws.Bool(consistent)})
		if err != nil || !slices.Equal(sortKeys(t, q.Items, "sk"), []string{"live"}) {
			t.Fatalf("Query (consistent %v): %v, %v", consistent, q, err)
		}
		b, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"ttl1": {
			Keys: []map[string]types.AttributeValue{{"pk": s("p"), "sk": s("dead")}, {"pk": s("p"), "sk": s("live")}}, ConsistentRead: aws.Bool(consistent)}}})
		if err != nil || !slices.Equal(sortKeys(t, b.Responses["ttl1"], "sk"), []string{"live"}) {
			t.Fatalf("BatchGetItem (consistent %v): %v, %v", consistent, b, err)
		}
	}
}

// TestConsistentReadsSeeTheNewest: a version written to two of three
// replicas only (the third holds an older one) is what every strongly
// consistent read returns, whichever two replicas it asks: GetItem,
// BatchGetItem, Query and Scan (which merges two replicas' streams).
func TestConsistentReadsSeeTheNewest(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "cons", "pk", "S", "sk", "N")
	var items []map[string]types.AttributeValue
	for i := range 50 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i%5)), "sk": n(fmt.Sprint(i)), "v": s("old")})
	}
	put(t, e, "cons", items...)
	r := e.c.Routers[0]
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	tb := v.Snapshot.Tables["cons"]
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}, SortKey: ddb.KeyAttribute{Name: "sk", Type: ddb.TypeN}}
	// Every tenth item gets a new version on its first two replicas only;
	// every 7th is deleted there.
	want := map[string]string{}
	for i, av := range items {
		it := toItem(t, av)
		pk, sk, err := ks.Key(it)
		if err != nil {
			t.Fatal(err)
		}
		key := &storagev1.Key{Partition: placement.PartitionOf(tb.ID, pk, v.Partitions), TableId: tb.ID, PartitionKey: pk, SortKey: sk}
		id := str(t, av["pk"]) + "/" + str(t, av["sk"])
		want[id] = "old"
		var rec *storagev1.Record
		switch {
		case i%10 == 0:
			it["v"] = ddb.S("new")
			rec = &storagev1.Record{Key: key, Version: r.Clock().Now(), Value: ddb.EncodeItem(it)}
			want[id] = "new"
		case i%7 == 0:
			rec = &storagev1.Record{Key: key, Version: r.Clock().Now(), Tombstone: true}
			delete(want, id)
		default:
			continue
		}
		for _, node := range v.Route(key.GetPartition()).ReadNodes[:2] {
			if _, err := node.Client.Apply(ctx, &storagev1.ApplyRequest{Records: []*storagev1.Record{rec}, PlacementEpoch: v.Epoch}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string, got []map[string]types.AttributeValue, want map[string]string) {
		t.Helper()
		seen := map[string]string{}
		for _, it := range got {
			seen[str(t, it["pk"])+"/"+str(t, it["sk"])] = str(t, it["v"])
		}
		if len(seen) != len(want) || len(got) != len(want) {
			t.Fatalf("%s: %d items (%d distinct), want %d", what, len(got), len(seen), len(want))
		}
		for k, v := range want {
			if seen[k] != v {
				t.Fatalf("%s: %s has v %q, want %q", what, k, seen[k], v)
			}
		}
	}
	// Several rounds: the replicas a read asks are chosen at random.
	for round := range 5 {
		got, _ := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("cons"), ConsistentRead: aws.Bool(true), Limit: aws.Int32(9)}, 0, 0)
		check(fmt.Sprintf("Scan round %d", round), got, want)
		for p := range 5 {
			q, _ := queryAll(t, e, &dynamodb.QueryInput{TableName: aws.String("cons"), KeyConditionExpression: aws.String("pk = :p"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":p": s(fmt.Sprintf("p%d", p))}, ConsistentRead: aws.Bool(true), Limit: aws.Int32(3)})
			sub := map[string]string{}
			for k, v := range want {
				if strings.HasPrefix(k, fmt.Sprintf("p%d/", p)) {
					sub[k] = v
				}
			}
			check(fmt.Sprintf("Query p%d round %d", p, round), q, sub)
		}
		var keys []map[string]types.AttributeValue
		for _, av := range items {
			keys = append(keys, map[string]types.AttributeValue{"pk": av["pk"], "sk": av["sk"]})
		}
		b, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"cons": {Keys: keys, ConsistentRead: aws.Bool(true)}}})
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("BatchGetItem round %d", round), b.Responses["cons"], want)
		g, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("cons"), Key: map[string]types.AttributeValue{"pk": s("p0"), "sk": n("0")}, ConsistentRead: aws.Bool(true)})
		if err != nil || str(t, g.Item["v"]) != "new" {
			t.Fatalf("GetItem round %d: %v, %v", round, g.Item, err)
		}
	}
}

// TestBatchGetItemResponseLimit: a response stops before 16 MB; the keys
// left are UnprocessedKeys, and reading them gets the rest.
func TestBatchGetItemResponseLimit(t *testing.T) {
	e := shared
	ctx := t.Context()
	createTable(t, e, "bgbig", "pk", "S", "", "")
	pad := strings.Repeat("q", 390<<10)
	var keys []map[string]types.AttributeValue
	for i := range 50 {
		put(t, e, "bgbig", map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%d", i)), "pad": s(pad)})
		keys = append(keys, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%d", i))})
	}
	req := map[string]types.KeysAndAttributes{"bgbig": {Keys: keys}}
	got := map[string]bool{}
	rounds := 0
	for len(req) > 0 {
		rounds++
		out, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, it := range out.Responses["bgbig"] {
			got[str(t, it["pk"])] = true
			size += len(str(t, it["pad"]))
		}
		if size > 16<<20 {
			t.Fatalf("round %d: %d bytes of items", rounds, size)
		}
		req = out.UnprocessedKeys
	}
	if len(got) != 50 || rounds != 2 {
		t.Fatalf("%d items in %d rounds, want 50 in 2", len(got), rounds)
	}
}

// TestScanReadAhead: a Scan reads the partitions after the current one
// ahead while they are small; a large partition among small ones is read
// ahead only in part and the rest streamed in turn. Every item comes back
// once whatever the page size.
func TestScanReadAhead(t *testing.T) {
	e := shared
	createTable(t, e, "scanmix", "pk", "S", "sk", "N")
	pad := strings.Repeat("m", 10<<10)
	want := map[string]bool{}
	var items []map[string]types.AttributeValue
	for i := range 60 {
		// Two partition keys of 300 KB, so read-ahead budgets run out.
		pk := fmt.Sprintf("big%d", i%2)
		items = append(items, map[string]types.AttributeValue{"pk": s(pk), "sk": n(fmt.Sprint(i)), "pad": s(pad)})
		want[fmt.Sprintf("%s/%d", pk, i)] = true
	}
	for i := range 45 {
		pk := fmt.Sprintf("small%d", i)
		items = append(items, map[string]types.AttributeValue{"pk": s(pk), "sk": n("1")})
		want[pk+"/1"] = true
	}
	put(t, e, "scanmix", items...)
	for _, limit := range []int32{0, 1, 7, 50} {
		for _, consistent := range []bool{false, true} {
			in := dynamodb.ScanInput{TableName: aws.String("scanmix"), ConsistentRead: aws.Bool(consistent)}
			if limit > 0 {
				in.Limit = aws.Int32(limit)
			}
			got, pages := scanAll(t, e, in, 0, 0)
			seen := map[string]int{}
			for _, it := range got {
				seen[str(t, it["pk"])+"/"+str(t, it["sk"])]++
			}
			for k, c := range seen {
				if c != 1 || !want[k] {
					t.Fatalf("Limit %d consistent %v: %s returned %d times (wanted %v)", limit, consistent, k, c, want[k])
				}
			}
			if len(seen) != len(want) {
				t.Fatalf("Limit %d consistent %v: %d of %d items in %d pages", limit, consistent, len(seen), len(want), pages)
			}
		}
	}
}

// TestReadsWithANodeDown: with one storage node of three stopped (RF 3),
// every read still answers completely, eventually and strongly
// consistent: the scan of a partition moves to another replica, quorum
// reads take the two left.
func TestReadsWithANodeDown(t *testing.T) {
	e := startEndpoint(t, 3, 3, 8)
	ctx := t.Context()
	createTable(t, e, "down", "pk", "S", "sk", "N")
	var items, keys []map[string]types.AttributeValue
	for i := range 60 {
		it := map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i%6)), "sk": n(fmt.Sprint(i))}
		items = append(items, it)
		keys = append(keys, it)
	}
	put(t, e, "down", items...)
	// A paginated Scan during which the node stops: the pages after it
	// read other replicas, and every item comes back once.
	seen := map[string]int{}
	pg := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: aws.String("down"), Limit: aws.Int32(5)})
	for page := 0; pg.HasMorePages(); page++ {
		if page == 3 {
			if err := e.c.StopNode(1); err != nil {
				t.Fatal(err)
			}
		}
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, it := range out.Items {
			seen[str(t, it["pk"])+"/"+str(t, it["sk"])]++
		}
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s returned %d times", k, c)
		}
	}
	if len(seen) != 60 {
		t.Fatalf("%d of 60 items across the node's stop", len(seen))
	}
	for _, consistent := range []bool{false, true} {
		got, _ := scanAll(t, e, dynamodb.ScanInput{TableName: aws.String("down"), ConsistentRead: aws.Bool(consistent), Limit: aws.Int32(7)}, 0, 0)
		if len(got) != 60 {
			t.Fatalf("Scan consistent=%v: %d items, want 60", consistent, len(got))
		}
		q, _ := queryAll(t, e, &dynamodb.QueryInput{TableName: aws.String("down"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("p3")}, ConsistentRead: aws.Bool(consistent), Limit: aws.Int32(4)})
		if len(q) != 10 {
			t.Fatalf("Query consistent=%v: %d items, want 10", consistent, len(q))
		}
		b, err := e.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"down": {Keys: keys, ConsistentRead: aws.Bool(consistent)}}})
		if err != nil || len(b.Responses["down"]) != 60 || len(b.UnprocessedKeys) != 0 {
			t.Fatalf("BatchGetItem consistent=%v: %v, %d items, unprocessed %v", consistent, err, len(b.Responses["down"]), b.UnprocessedKeys)
		}
		g, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("down"), Key: keys[17], ConsistentRead: aws.Bool(consistent)})
		if err != nil || g.Item == nil {
			t.Fatalf("GetItem consistent=%v: %v, %v", consistent, g, err)
		}
	}
}

// TestDescribeTableEstimates: with 16 partitions the sample is every
// partition, so the estimate is the exact count of live items; deleted and
// other tables' items do not count, and the estimate is reused for a while
// (SDK waiters poll DescribeTable).
func TestDescribeTableEstimates(t *testing.T) {
	e := shared
	createTable(t, e, "estimates", "pk", "S", "", "")
	createTable(t, e, "estimates_other", "pk", "S", "", "")
	var items []map[string]types.AttributeValue
	for i := range 300 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%03d", i)), "v": s(strings.Repeat("x", 100))})
	}
	put(t, e, "estimates", items...)
	put(t, e, "estimates_other", items[:50]...)
	deleteDirect(t, e, "estimates", map[string]types.AttributeValue{"pk": s("k000")}, map[string]types.AttributeValue{"pk": s("k001")})
	d, err := e.db.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String("estimates")})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToInt64(d.Table.ItemCount); got != 298 {
		t.Fatalf("ItemCount %d, want 298 (every partition sampled)", got)
	}
	if got := aws.ToInt64(d.Table.TableSizeBytes); got < 298*100 || got > 298*200 {
		t.Fatalf("TableSizeBytes %d, want about 298 items of ~110 bytes", got)
	}
	put(t, e, "estimates", map[string]types.AttributeValue{"pk": s("late")})
	d, err = e.db.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String("estimates")})
	if err != nil || aws.ToInt64(d.Table.ItemCount) != 298 {
		t.Fatalf("second DescribeTable within the estimate's lifetime: %v, %v; want the cached 298", d, err)
	}
}

// TestTTLAppliesToExistingItems: items written before the table had a TTL
// attribute carry no stored expiry, yet once UpdateTimeToLive names the
// attribute, those whose time has passed read as absent, as in DynamoDB.
func TestTTLAppliesToExistingItems(t *testing.T) {
	e := shared
	createTable(t, e, "ttl_later", "pk", "S", "sk", "N")
	past := fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	future := fmt.Sprint(time.Now().Add(time.Hour).Unix())
	put(t, e, "ttl_later",
		map[string]types.AttributeValue{"pk": s("a"), "sk": n("1"), "exp": n(past)},
		map[string]types.AttributeValue{"pk": s("a"), "sk": n("2"), "exp": n(future)},
		map[string]types.AttributeValue{"pk": s("a"), "sk": n("3")})
	count := func() int32 {
		t.Helper()
		out, err := e.db.Query(t.Context(), &dynamodb.QueryInput{TableName: aws.String("ttl_later"), KeyConditionExpression: aws.String("pk = :p"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": s("a")}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Count
	}
	if c := count(); c != 3 {
		t.Fatalf("before TTL: %d items, want 3", c)
	}
	if _, err := e.db.UpdateTimeToLive(t.Context(), &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("ttl_later"),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{Enabled: aws.Bool(true), AttributeName: aws.String("exp")}}); err != nil {
		t.Fatal(err)
	}
	if c := count(); c != 2 {
		t.Fatalf("after TTL on exp: %d items, want 2 (the expired one gone)", c)
	}
	got, err := e.db.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String("ttl_later"), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": s("a"), "sk": n("1")}})
	if err != nil || got.Item != nil {
		t.Fatalf("GetItem of the expired item: %v, %v", got.Item, err)
	}
}
