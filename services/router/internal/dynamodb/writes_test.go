package dynamodb

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/topology"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isolations are the write isolation modes the write tests run under.
var isolations = []string{topology.IsolationUnsafeRMW, topology.IsolationOnlyRMW, topology.IsolationAlwaysLock}

// newTable creates a pk (S) / sk (S) table through the SDK and sets
// its write isolation as AdminService.UpdateTable would.
func newTable(t *testing.T, e *endpoint, name, isolation string) {
	t.Helper()
	in := hashRange(name)
	in.AttributeDefinitions[1].AttributeType = types.ScalarAttributeTypeS
	if _, err := e.c.CreateTable(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.UpdateTable(t.Context(), name, func(tb *topology.Table) error {
		tb.WriteIsolation = isolation
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

// wantStored checks the replicas hold want (nil: no item) at pk/sk.
func wantStored(t *testing.T, e *endpoint, table, pk, sk string, want ddb.Item) {
	t.Helper()
	raw := e.stored(t, table, map[string]string{"pk": pk, "sk": sk})
	if raw == nil {
		if want != nil {
			t.Fatalf("%s/%s: no item, want %v", pk, sk, want)
		}
		return
	}
	got, err := ddb.DecodeItem(raw)
	if err != nil {
		t.Fatalf("%s/%s: stored value is not the canonical encoding: %v", pk, sk, err)
	}
	if !ddb.EqualItems(got, want) {
		t.Fatalf("%s/%s: stored %v, want %v", pk, sk, got, want)
	}
}

// TestPutDeleteItem: PutItem stores the item in the canonical encoding
// under its key, ReturnValues ALL_OLD returns what it replaced, DeleteItem
// removes it; under every write isolation mode.
func TestPutDeleteItem(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso, func(t *testing.T) {
			e := newEndpoint(t)
			ctx := t.Context()
			newTable(t, e, "items", iso)
			item := map[string]types.AttributeValue{
				"pk": s("a"), "sk": s("1"), "n": n("12.50"), "ok": &types.AttributeValueMemberBOOL{Value: true},
				"tags": &types.AttributeValueMemberSS{Value: []string{"x", "y"}},
				"doc":  &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{n("1"), &types.AttributeValueMemberNULL{Value: true}}}}},
				"bin":  &types.AttributeValueMemberB{Value: []byte{0, 1, 2}},
			}
			out, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"), Item: item,
				ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
			if err != nil {
				t.Fatal(err)
			}
			if out.Attributes != nil || out.ConsumedCapacity == nil || aws.ToFloat64(out.ConsumedCapacity.CapacityUnits) != 1 ||
				aws.ToString(out.ConsumedCapacity.TableName) != "items" {
				t.Fatalf("PutItem output: %+v", out)
			}
			want := ddb.Item{"pk": ddb.S("a"), "sk": ddb.S("1"), "n": ddb.MustN("12.5"), "ok": ddb.Bool(true),
				"tags": ddb.SS{"x", "y"}, "doc": ddb.M{"l": ddb.L{ddb.MustN("1"), ddb.Null{}}}, "bin": ddb.B{0, 1, 2}}
			wantStored(t, e, "items", "a", "1", want)

			out, err = e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
				Item: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "v": n("2")}, ReturnValues: types.ReturnValueAllOld})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Attributes) != len(item) {
				t.Fatalf("ALL_OLD returned %v", out.Attributes)
			}
			if got := out.Attributes["n"].(*types.AttributeValueMemberN).Value; got != "12.5" {
				t.Fatalf("ALL_OLD n = %s", got)
			}
			wantStored(t, e, "items", "a", "1", ddb.Item{"pk": ddb.S("a"), "sk": ddb.S("1"), "v": ddb.MustN("2")})

			del, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}, ReturnValues: types.ReturnValueAllOld})
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := del.Attributes["v"].(*types.AttributeValueMemberN); !ok || v.Value != "2" {
				t.Fatalf("DeleteItem ALL_OLD: %v", del.Attributes)
			}
			wantStored(t, e, "items", "a", "1", nil)
			// Deleting a missing item succeeds and returns nothing.
			del, err = e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}, ReturnValues: types.ReturnValueAllOld})
			if err != nil || del.Attributes != nil {
				t.Fatalf("second DeleteItem: %v %v", del.Attributes, err)
			}
		})
	}
}

// TestUpdateItemWithoutUpdate: UpdateItem with only a Key creates the item
// from its key (DynamoDB's upsert) and ReturnValues ALL_NEW returns it.
func TestUpdateItemWithoutUpdate(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso, func(t *testing.T) {
			e := newEndpoint(t)
			newTable(t, e, "items", iso)
			out, err := e.c.UpdateItem(t.Context(), &awsddb.UpdateItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("k"), "sk": s("1")}, ReturnValues: types.ReturnValueAllNew})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Attributes) != 2 {
				t.Fatalf("ALL_NEW: %v", out.Attributes)
			}
			wantStored(t, e, "items", "k", "1", ddb.Item{"pk": ddb.S("k"), "sk": ddb.S("1")})
		})
	}
}

// TestWriteValidation: bad writes are refused with DynamoDB's messages and
// write nothing.
func TestWriteValidation(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "items", topology.IsolationUnsafeRMW)
	e.b.addTable(topology.Table{Name: "plainkv"})
	big := strings.Repeat("x", topology.DefaultMaxItemBytes)
	key := map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}
	put := func(item map[string]types.AttributeValue, change func(*awsddb.PutItemInput)) error {
		in := &awsddb.PutItemInput{TableName: aws.String("items"), Item: item}
		if change != nil {
			change(in)
		}
		_, err := e.c.PutItem(ctx, in)
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"missing sort key", func() error { return put(map[string]types.AttributeValue{"pk": s("a")}, nil) },
			"ValidationException", "Missing the key sk in the item"},
		{"key type", func() error { return put(map[string]types.AttributeValue{"pk": n("1"), "sk": s("1")}, nil) },
			"ValidationException", "Type mismatch for key pk expected: S actual: N"},
		{"empty key", func() error { return put(map[string]types.AttributeValue{"pk": s(""), "sk": s("1")}, nil) },
			"ValidationException", "cannot contain an empty string value. Key: pk"},
		{"empty sort key", func() error { return put(map[string]types.AttributeValue{"pk": s("a"), "sk": s("")}, nil) },
			"ValidationException", "cannot contain an empty string value. Key: sk"},
		{"oversize item", func() error {
			return put(map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "big": s(big)}, nil)
		},
			"ValidationException", "Item size has exceeded the maximum allowed size"},
		{"put ALL_NEW", func() error {
			return put(key, func(in *awsddb.PutItemInput) { in.ReturnValues = types.ReturnValueAllNew })
		}, "ValidationException", "ReturnValues can only be ALL_OLD or NONE"},
		{"bad ReturnValues", func() error { return put(key, func(in *awsddb.PutItemInput) { in.ReturnValues = "SOME" }) },
			"ValidationException", "'returnValues' failed to satisfy constraint"},
		{"bad ReturnConsumedCapacity", func() error {
			return put(key, func(in *awsddb.PutItemInput) { in.ReturnConsumedCapacity = "ALL" })
		}, "ValidationException", "'returnConsumedCapacity'"},
		{"values without expression", func() error {
			return put(key, func(in *awsddb.PutItemInput) {
				in.ExpressionAttributeValues = map[string]types.AttributeValue{":v": n("1")}
			})
		}, "ValidationException", "ExpressionAttributeValues can only be specified when using expressions"},
		{"empty values", func() error {
			return put(key, func(in *awsddb.PutItemInput) {
				in.ConditionExpression = aws.String("attribute_not_exists(pk)")
				in.ExpressionAttributeValues = map[string]types.AttributeValue{}
			})
		}, "ValidationException", "ExpressionAttributeValues must not be empty"},
		{"expression and Expected", func() error {
			return put(key, func(in *awsddb.PutItemInput) {
				in.ConditionExpression = aws.String("attribute_not_exists(pk)")
				in.Expected = map[string]types.ExpectedAttributeValue{"pk": {Exists: aws.Bool(false)}}
			})
		}, "ValidationException", "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}"},
		{"unknown table", func() error {
			_, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("nope"), Item: key})
			return err
		}, "ResourceNotFoundException", "nope"},
		{"plain key-value table", func() error {
			_, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("plainkv"), Item: key})
			return err
		}, "ValidationException", "no DynamoDB key schema"},
		{"key with extra attribute", func() error {
			_, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "x": s("y")}})
			return err
		}, "ValidationException", "The provided key element does not match the schema"},
		{"key missing sort key", func() error {
			_, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"), Key: map[string]types.AttributeValue{"pk": s("a")}})
			return err
		}, "ValidationException", "The provided key element does not match the schema"},
		{"update expression and AttributeUpdates", func() error {
			_, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key,
				UpdateExpression: aws.String("SET a = :v"),
				AttributeUpdates: map[string]types.AttributeValueUpdate{"a": {Action: types.AttributeActionPut, Value: n("1")}}})
			return err
		}, "ValidationException", "Non-expression parameters: {AttributeUpdates} Expression parameters: {UpdateExpression}"},
		{"delete UPDATED_NEW", func() error {
			_, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"), Key: key, ReturnValues: types.ReturnValueUpdatedNew})
			return err
		}, "ValidationException", "ReturnValues can only be ALL_OLD or NONE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantAPIError(t, tc.call(), tc.code, tc.msg)
		})
	}
	for _, ms := range e.b.nodes {
		if c := ms.count(e.b.table("items").ID); c != 0 {
			t.Fatalf("a refused write stored %d records", c)
		}
	}
}

// TestForbidRMW: a forbid_rmw table takes blind writes and refuses
// read-modify-writes, naming the setting.
func TestForbidRMW(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "items", topology.IsolationForbidRMW)
	key := map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"), Item: key}); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"), Item: key, ReturnValues: types.ReturnValueAllOld})
	wantAPIError(t, err, "ValidationException", "forbid_rmw")
	_, err = e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key})
	wantAPIError(t, err, "ValidationException", "forbid_rmw")
	if _, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"), Key: key}); err != nil {
		t.Fatal(err)
	}
}

// TestBatchWriteItem: puts and deletes over two tables in one call,
// DynamoDB's limits, and UnprocessedItems/errors when replicas fail.
func TestBatchWriteItem(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso, func(t *testing.T) {
			e := newEndpoint(t)
			ctx := t.Context()
			newTable(t, e, "tab_a", iso)
			newTable(t, e, "tab_b", iso)
			if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("tab_b"),
				Item: map[string]types.AttributeValue{"pk": s("gone"), "sk": s("1")}}); err != nil {
				t.Fatal(err)
			}
			put := func(pk string) types.WriteRequest {
				return types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s(pk), "sk": s("1"), "v": n("7")}}}
			}
			out, err := e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
				"tab_a": {put("x"), put("y"), put("z")},
				"tab_b": {put("w"), {DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{"pk": s("gone"), "sk": s("1")}}}},
			}, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.UnprocessedItems) != 0 || len(out.ConsumedCapacity) != 2 {
				t.Fatalf("BatchWriteItem output: %+v", out)
			}
			for _, pk := range []string{"x", "y", "z"} {
				wantStored(t, e, "tab_a", pk, "1", ddb.Item{"pk": ddb.S(pk), "sk": ddb.S("1"), "v": ddb.MustN("7")})
			}
			wantStored(t, e, "tab_b", "w", "1", ddb.Item{"pk": ddb.S("w"), "sk": ddb.S("1"), "v": ddb.MustN("7")})
			wantStored(t, e, "tab_b", "gone", "1", nil)

			var many []types.WriteRequest
			for i := range 26 {
				many = append(many, put(fmt.Sprint(i)))
			}
			_, err = e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"tab_a": many}})
			wantAPIError(t, err, "ValidationException", "Too many items requested for the BatchWriteItem call")
			_, err = e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
				"tab_a": {put("dup"), {DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{"pk": s("dup"), "sk": s("1")}}}}}})
			wantAPIError(t, err, "ValidationException", "Provided list of item keys contains duplicates")
			_, err = e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
				"tab_a": {put("ok")}, "tab_b": {{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s("nosk")}}}}}})
			wantAPIError(t, err, "ValidationException", "Missing the key sk")
			wantStored(t, e, "tab_a", "ok", "1", nil) // nothing of a refused batch is written
			_, err = e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"nope": {put("q")}}})
			wantAPIError(t, err, "ResourceNotFoundException", "nope")

			// Two of three replicas down: no write reaches QUORUM, and a
			// batch that wrote nothing is an error the SDK retries.
			down := status.Error(codes.Unavailable, "node down")
			e.b.nodes[0].setFail(down)
			e.b.nodes[1].setFail(down)
			_, err = e.c.BatchWriteItem(ctx, &awsddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"tab_a": {put("q")}}})
			wantAPIError(t, err, "ServiceUnavailable", "")
		})
	}
}

// TestLargeItemLimit: a table whose max_item_bytes is raised takes items
// past DynamoDB's 400 KB and refuses what exceeds its own limit; the
// request body limit grows with the largest table limit.
func TestLargeItemLimit(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "big", topology.IsolationAlwaysLock)
	if got := e.h.maxBody(); got != maxRequestBytes {
		t.Fatalf("body limit %d with default tables", got)
	}
	if _, err := e.b.UpdateTable(ctx, "big", func(tb *topology.Table) error {
		tb.MaxItemBytes = 1 << 20
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 600<<10)
	item := map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "blob": &types.AttributeValueMemberB{Value: blob}}
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("big"), Item: item}); err != nil {
		t.Fatal(err)
	}
	raw := e.stored(t, "big", map[string]string{"pk": "a", "sk": "1"})
	if len(raw) < len(blob) {
		t.Fatalf("stored %d bytes", len(raw))
	}
	item["blob"] = &types.AttributeValueMemberB{Value: make([]byte, 1<<20)}
	_, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("big"), Item: item})
	wantAPIError(t, err, "ValidationException", "table big allows 1048576")

	if _, err := e.b.UpdateTable(ctx, "big", func(tb *topology.Table) error {
		tb.MaxItemBytes = topology.MaxItemBytesLimit
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := e.h.maxBody(); got < topology.MaxItemBytesLimit*4/3 {
		t.Fatalf("body limit %d with a 64 MiB item limit", got)
	}
}
