package localcluster

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TestDynamoDBEndpoint drives the routers' DynamoDB endpoints through the
// AWS SDK for Go v2 against a real cluster: embedded etcd, three Pebble
// storage nodes (RF 3), two routers, the item lock on the storage nodes.
func TestDynamoDBEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a cluster (CI runs it: make test has no -short)")
	}
	c, err := Start(t.Context(), Options{Dir: t.TempDir(), Nodes: 3, Routers: 2, Partitions: 64, NoSync: true,
		DynamoDBAddr: "127.0.0.1:0", DynamoDBAllRouters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var dbs []*dynamodb.Client
	for i := range 2 {
		addr := c.RouterDynamoDBAddr(i)
		if addr == "" {
			t.Fatalf("router %d: no DynamoDB address", i+1)
		}
		dbs = append(dbs, dynamodb.New(dynamodb.Options{
			Region: "us-east-1", BaseEndpoint: aws.String("http://" + addr),
			Credentials: credentials.NewStaticCredentialsProvider("veltrix", "veltrix", ""),
		}))
	}
	if c.DynamoDBAddr() != c.RouterDynamoDBAddr(0) {
		t.Fatalf("DynamoDBAddr %s, router 1's %s", c.DynamoDBAddr(), c.RouterDynamoDBAddr(0))
	}
	db := dbs[0]
	ctx := t.Context()
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("counters"),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	// CreateTable answers once the router that served it routes the table;
	// the other router sees it through its etcd watch. Wait as a DynamoDB
	// client waits for a new table.
	for _, d := range dbs {
		if err := dynamodb.NewTableExistsWaiter(d, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond }).
			Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("counters")}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	lt, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil || len(lt.TableNames) != 1 || lt.TableNames[0] != "counters" {
		t.Fatalf("ListTables: %v %v", lt, err)
	}

	// Concurrent increments through both routers under the default write
	// isolation lose none.
	const clients, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for i := range clients {
		db := dbs[i%2]
		wg.Go(func() {
			for range each {
				if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("counters"),
					Key:                       map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "c"}},
					UpdateExpression:          aws.String("ADD n :one"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}}}); err != nil {
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
	out, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("counters"),
		Key:              map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "c"}},
		UpdateExpression: aws.String("SET touched = :t"), ReturnValues: types.ReturnValueAllOld,
		ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberBOOL{Value: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Attributes["n"].(*types.AttributeValueMemberN).Value; got != strconv.Itoa(clients*each) {
		t.Fatalf("counter %s after %d increments", got, clients*each)
	}

	// Conditional create, batch writes, a conditional delete.
	put := &dynamodb.PutItemInput{TableName: aws.String("counters"),
		Item:                map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "c"}},
		ConditionExpression: aws.String("attribute_not_exists(id)")}
	var ccf *types.ConditionalCheckFailedException
	if _, err := db.PutItem(ctx, put); !errors.As(err, &ccf) {
		t.Fatalf("create over an existing item: %v", err)
	}
	var reqs []types.WriteRequest
	for i := range 25 {
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
			"id": &types.AttributeValueMemberS{Value: fmt.Sprint("b", i)}}}})
	}
	bw, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"counters": reqs}})
	if err != nil || len(bw.UnprocessedItems) != 0 {
		t.Fatalf("BatchWriteItem: %v %v", bw, err)
	}
	if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("counters"),
		Key:                 map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "b3"}},
		ConditionExpression: aws.String("attribute_exists(id)")}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("counters"),
		Key:                 map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "b3"}},
		ConditionExpression: aws.String("attribute_exists(id)")}); !errors.As(err, &ccf) {
		t.Fatalf("conditional delete of a deleted item: %v", err)
	}

	if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("counters")}); err != nil {
		t.Fatal(err)
	}
	var rnf *types.ResourceNotFoundException
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("counters")}); !errors.As(err, &rnf) {
		t.Fatalf("DescribeTable after DeleteTable: %v", err)
	}
}
