package dynamodb_test

import (
	"context"
	"errors"
	_ "fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	_ "slices"
	_ "sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
		Retryer:      aws.NopRetryer{},
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

// put writes items straight through the router's coordinator at QUORUM,
// in the stored form the endpoint reads (ddb.EncodeItem under the key
// ddb.KeySchema.Key derives), with ttl as the expiry when non-zero.
func put(t *testing.T, e *endpoint, table string, items ...map[string]types.AttributeValue) {
	t.Helper()
	putTTL(t, e, table, time.Time{}, items...)
}

func putTTL(t *testing.T, e *endpoint, table string, expire time.Time, items ...map[string]types.AttributeValue) {
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
		if _, err := r.Coordinator().Write(t.Context(), recs[:n], coord.Quorum); err != nil {
			t.Fatalf("write %d items: %v", n, err)
		}
		recs = recs[n:]
	}
}

// toItem converts an SDK item to a ddb.Item.
func toItem(t *testing.T, av map[string]types.AttributeValue) ddb.Item {
	t.Helper()
	it := ddb.Item{}
	for k, v := range av {
		it[k] = toValue(t, v)
	}
	return it
}

func toValue(t *testing.T, v types.AttributeValue) ddb.Value {
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
