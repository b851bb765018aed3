package dynamodb

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
)

// TestConditionalWrites: ConditionExpression and the legacy Expected on
// PutItem, DeleteItem and UpdateItem, with the item returned on failure
// when asked; a failed condition writes nothing.
func TestConditionalWrites(t *testing.T) {
	for _, iso := range []string{topology.IsolationUnsafeRMW, topology.IsolationAlwaysLock} {
		t.Run(iso, func(t *testing.T) {
			e := newEndpoint(t)
			ctx := t.Context()
			newTable(t, e, "items", iso)
			item := map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "v": n("1")}
			create := &awsddb.PutItemInput{TableName: aws.String("items"), Item: item,
				ConditionExpression: aws.String("attribute_not_exists(pk)")}
			if _, err := e.c.PutItem(ctx, create); err != nil {
				t.Fatal(err)
			}
			_, err := e.c.PutItem(ctx, create)
			var ccf *types.ConditionalCheckFailedException
			if !errors.As(err, &ccf) || ccf.Item != nil {
				t.Fatalf("second create: %v (item %v)", err, ccf)
			}
			create.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
			create.Item = map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "v": n("99")}
			_, err = e.c.PutItem(ctx, create)
			if !errors.As(err, &ccf) || ccf.Item["v"].(*types.AttributeValueMemberN).Value != "1" {
				t.Fatalf("create with ALL_OLD on failure: %v", err)
			}
			wantStored(t, e, "items", "a", "1", ddb.Item{"pk": ddb.S("a"), "sk": ddb.S("1"), "v": ddb.MustN("1")})

			// Legacy Expected.
			_, err = e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"), Item: item,
				Expected: map[string]types.ExpectedAttributeValue{"v": {Value: n("2")}}})
			if !errors.As(err, &ccf) {
				t.Fatalf("Expected v = 2: %v", err)
			}
			if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
				Item:     map[string]types.AttributeValue{"pk": s("a"), "sk": s("1"), "v": n("3")},
				Expected: map[string]types.ExpectedAttributeValue{"v": {Value: n("1")}}}); err != nil {
				t.Fatal(err)
			}

			// Conditional delete.
			_, err = e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}, ConditionExpression: aws.String("v > :x"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":x": n("3")}})
			if !errors.As(err, &ccf) {
				t.Fatalf("delete if v > 3: %v", err)
			}
			if _, err := e.c.DeleteItem(ctx, &awsddb.DeleteItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}, ConditionExpression: aws.String("#v = :x"),
				ExpressionAttributeNames:  map[string]string{"#v": "v"},
				ExpressionAttributeValues: map[string]types.AttributeValue{":x": n("3")}}); err != nil {
				t.Fatal(err)
			}
			wantStored(t, e, "items", "a", "1", nil)

			// Conditional update of a missing item.
			_, err = e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"),
				Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("1")}, UpdateExpression: aws.String("SET v = :v"),
				ConditionExpression: aws.String("attribute_exists(pk)"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": n("1")}})
			if !errors.As(err, &ccf) {
				t.Fatalf("update if exists on a missing item: %v", err)
			}
			wantStored(t, e, "items", "a", "1", nil)
		})
	}
}

// TestUpdateItem: update expressions and AttributeUpdates applied to the
// stored item, ReturnValues, and the refusals DynamoDB gives.
func TestUpdateItem(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "items", topology.IsolationAlwaysLock)
	key := map[string]types.AttributeValue{"pk": s("u"), "sk": s("1")}
	out, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key,
		UpdateExpression:          aws.String("SET a = :a, m = :m ADD c :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":a": s("x"), ":one": n("1"), ":m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{n("1")}}}}},
		ReturnValues:              types.ReturnValueAllNew, ReturnConsumedCapacity: types.ReturnConsumedCapacityIndexes})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Attributes) != 5 || out.ConsumedCapacity == nil || out.ConsumedCapacity.Table == nil {
		t.Fatalf("ALL_NEW %v, capacity %+v", out.Attributes, out.ConsumedCapacity)
	}
	out, err = e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key,
		UpdateExpression:          aws.String("SET m.l = list_append(m.l, :l), c = c + :two REMOVE a"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":l": &types.AttributeValueMemberL{Value: []types.AttributeValue{n("2")}}, ":two": n("2")},
		ReturnValues:              types.ReturnValueUpdatedOld})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := out.Attributes["c"].(*types.AttributeValueMemberN); !ok || c.Value != "1" || out.Attributes["a"] == nil {
		t.Fatalf("UPDATED_OLD: %v", out.Attributes)
	}
	wantStored(t, e, "items", "u", "1", ddb.Item{"pk": ddb.S("u"), "sk": ddb.S("1"), "c": ddb.MustN("3"),
		"m": ddb.M{"l": ddb.L{ddb.MustN("1"), ddb.MustN("2")}}})

	// Legacy AttributeUpdates.
	if _, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key,
		AttributeUpdates: map[string]types.AttributeValueUpdate{"c": {Action: types.AttributeActionAdd, Value: n("10")},
			"m": {Action: types.AttributeActionDelete}}}); err != nil {
		t.Fatal(err)
	}
	wantStored(t, e, "items", "u", "1", ddb.Item{"pk": ddb.S("u"), "sk": ddb.S("1"), "c": ddb.MustN("13")})

	// REMOVE on a missing item leaves it missing.
	if _, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"),
		Key: map[string]types.AttributeValue{"pk": s("none"), "sk": s("1")}, UpdateExpression: aws.String("REMOVE x")}); err != nil {
		t.Fatal(err)
	}
	wantStored(t, e, "items", "none", "1", nil)

	big := make([]byte, topology.DefaultMaxItemBytes)
	for _, tc := range []struct {
		name string
		in   *awsddb.UpdateItemInput
		msg  string
	}{
		{"key attribute", &awsddb.UpdateItemInput{UpdateExpression: aws.String("SET pk = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("b")}}, "Cannot update attribute pk. This attribute is part of the key"},
		{"legacy key attribute", &awsddb.UpdateItemInput{AttributeUpdates: map[string]types.AttributeValueUpdate{"sk": {Value: s("2")}}},
			"Cannot update attribute sk. This attribute is part of the key"},
		{"syntax", &awsddb.UpdateItemInput{UpdateExpression: aws.String("SET = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("b")}}, "Invalid UpdateExpression: Syntax error"},
		{"unused value", &awsddb.UpdateItemInput{UpdateExpression: aws.String("SET a = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("b"), ":w": s("c")}}, "unused"},
		{"undefined value", &awsddb.UpdateItemInput{UpdateExpression: aws.String("SET a = :nope")}, ":nope"},
		{"wrong operand type", &awsddb.UpdateItemInput{UpdateExpression: aws.String("ADD c :s"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":s": s("x")}}, "ADD"},
		{"oversize result", &awsddb.UpdateItemInput{UpdateExpression: aws.String("SET big = :b"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":b": &types.AttributeValueMemberB{Value: big}}}, "Item size has exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.TableName, tc.in.Key = aws.String("items"), key
			_, err := e.c.UpdateItem(ctx, tc.in)
			wantAPIError(t, err, "ValidationException", tc.msg)
		})
	}
	wantStored(t, e, "items", "u", "1", ddb.Item{"pk": ddb.S("u"), "sk": ddb.S("1"), "c": ddb.MustN("13")})
}

// TestTTLAttribute: with a TTL attribute, an item's expiry is stored with
// it, and an item whose time has passed is absent to conditions.
func TestTTLAttribute(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "items", topology.IsolationAlwaysLock)
	if _, err := e.c.UpdateTimeToLive(ctx, &awsddb.UpdateTimeToLiveInput{TableName: aws.String("items"),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{Enabled: aws.Bool(true), AttributeName: aws.String("exp")}}); err != nil {
		t.Fatal(err)
	}
	past := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
		Item: map[string]types.AttributeValue{"pk": s("t"), "sk": s("1"), "exp": n(past)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
		Item:                map[string]types.AttributeValue{"pk": s("t"), "sk": s("1"), "v": n("1")},
		ConditionExpression: aws.String("attribute_not_exists(pk)")}); err != nil {
		t.Fatalf("create over an expired item: %v", err)
	}
	future := time.Now().Add(time.Hour).Unix()
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
		Item: map[string]types.AttributeValue{"pk": s("f"), "sk": s("1"), "exp": n(strconv.FormatInt(future, 10))}}); err != nil {
		t.Fatal(err)
	}
	v, _ := e.b.View()
	tb := v.Snapshot.Tables["items"]
	found := 0
	for _, ms := range e.b.nodes {
		for _, r := range ms.records() {
			if r.GetKey().GetTableId() == tb.ID && string(r.GetKey().GetPartitionKey()) == "f" {
				found++
				if got := r.GetExpireUnixNanos(); got != future*1e9 {
					t.Fatalf("expire_unix_nanos %d, want %d", got, future*1e9)
				}
			}
		}
	}
	if found < 2 {
		t.Fatalf("item f on %d replicas, want a quorum", found)
	}
}

// TestConcurrentIncrements: clients adding to one counter concurrently
// lose no increment when read-modify-writes take the item's lock.
func TestConcurrentIncrements(t *testing.T) {
	for _, iso := range []string{topology.IsolationAlwaysLock, topology.IsolationOnlyRMW} {
		t.Run(iso, func(t *testing.T) {
			e := newEndpoint(t)
			ctx := t.Context()
			newTable(t, e, "counters", iso)
			const clients, each = 6, 20
			var wg sync.WaitGroup
			errs := make(chan error, clients*each)
			for c := range clients {
				wg.Go(func() {
					for range each {
						_, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("counters"),
							Key:                       map[string]types.AttributeValue{"pk": s("c"), "sk": s("1")},
							UpdateExpression:          aws.String("ADD n :one SET writer = :me"),
							ExpressionAttributeValues: map[string]types.AttributeValue{":one": n("1"), ":me": n(fmt.Sprint(c))}})
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			raw := e.stored(t, "counters", map[string]string{"pk": "c", "sk": "1"})
			it, err := ddb.DecodeItem(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := it["n"].(ddb.N).String(); got != strconv.Itoa(clients*each) {
				t.Fatalf("counter %s after %d increments", got, clients*each)
			}
		})
	}
}

// TestSupersededRMWIsRedone: a write from outside the item's lock with a
// newer version that lands between a read-modify-write's read and its
// write makes the write come back superseded; the RMW reads again and
// applies its update to the newer item, so neither write is lost.
func TestSupersededRMWIsRedone(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	newTable(t, e, "items", topology.IsolationAlwaysLock)
	key := map[string]types.AttributeValue{"pk": s("k"), "sk": s("1")}
	if _, err := e.c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String("items"),
		Item: map[string]types.AttributeValue{"pk": s("k"), "sk": s("1"), "n": n("1")}}); err != nil {
		t.Fatal(err)
	}
	tb := e.b.table("items")
	v, _ := e.b.View()
	var once sync.Once
	outside := make(chan error, 1)
	for _, ms := range e.b.nodes {
		ms.mu.Lock()
		ms.afterRead = func() {
			once.Do(func() {
				// A blind write with a version an hour ahead, as from a
				// router whose clock runs fast, through the gRPC API.
				rec := &storagev1.Record{
					Key: &storagev1.Key{Partition: placement.PartitionOf(tb.ID, []byte("k"), v.Partitions), TableId: tb.ID,
						PartitionKey: []byte("k"), SortKey: []byte("1")},
					Version: e.b.clock.Now() + hlc.FromTime(time.Unix(3600, 0), 0),
					Value:   ddb.EncodeItem(ddb.Item{"pk": ddb.S("k"), "sk": ddb.S("1"), "n": ddb.MustN("100"), "outside": ddb.Bool(true)}),
				}
				_, err := e.b.co.Write(ctx, []*storagev1.Record{rec}, coord.All)
				outside <- err
			})
		}
		ms.mu.Unlock()
	}
	// The outside write runs inside the RMW's read (after the replicas
	// looked the item up, before they answer; sync.Once holds the other
	// reads until it is done), so it is on every replica before the RMW
	// writes.
	out, err := e.c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String("items"), Key: key,
		UpdateExpression: aws.String("ADD n :one"), ReturnValues: types.ReturnValueAllNew,
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": n("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-outside; err != nil {
		t.Fatal(err)
	}
	got := out.Attributes["n"].(*types.AttributeValueMemberN).Value
	raw := e.stored(t, "items", map[string]string{"pk": "k", "sk": "1"})
	it, _ := ddb.DecodeItem(raw)
	t.Logf("UpdateItem returned n=%s; stored %v", got, it)
	if it["outside"] == nil {
		t.Fatalf("the outside write was lost: stored %v", it)
	}
	if it["n"].(ddb.N).String() != got {
		t.Fatalf("stored n %v, UpdateItem returned %s", it["n"], got)
	}
}
