package clustertest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// BenchmarkReads measures the read operations end to end through the AWS
// SDK over the shared in-process cluster (3 nodes, RF 3, 16 partitions):
// 1 KB items, 100 per partition key.
func BenchmarkReads(b *testing.B) {
	e := shared
	name := fmt.Sprintf("bench%d", b.N)
	if _, err := e.db.CreateTable(b.Context(), &dynamodb.CreateTableInput{
		TableName: aws.String(name), BillingMode: types.BillingModePayPerRequest,
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeN}},
	}); err != nil {
		b.Fatal(err)
	}
	pad := strings.Repeat("b", 1000)
	var items []map[string]types.AttributeValue
	for i := range 1000 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i/100)), "sk": n(fmt.Sprint(i % 100)), "pad": s(pad)})
	}
	putB(b, e, name, items...)
	for _, consistent := range []bool{false, true} {
		b.Run(fmt.Sprintf("GetItem/consistent=%v", consistent), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := e.db.GetItem(b.Context(), &dynamodb.GetItemInput{TableName: aws.String(name), ConsistentRead: aws.Bool(consistent),
					Key: map[string]types.AttributeValue{"pk": s(fmt.Sprintf("p%d", i%10)), "sk": n(fmt.Sprint(i % 100))}}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Query10/consistent=%v", consistent), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				out, err := e.db.Query(b.Context(), &dynamodb.QueryInput{TableName: aws.String(name), ConsistentRead: aws.Bool(consistent),
					KeyConditionExpression: aws.String("pk = :p AND sk >= :s"), Limit: aws.Int32(10),
					ExpressionAttributeValues: map[string]types.AttributeValue{":p": s(fmt.Sprintf("p%d", i%10)), ":s": n("50")}})
				if err != nil || len(out.Items) != 10 {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("ScanAll1000/consistent=%v", consistent), func(b *testing.B) {
			for b.Loop() {
				out, err := e.db.Scan(b.Context(), &dynamodb.ScanInput{TableName: aws.String(name), ConsistentRead: aws.Bool(consistent)})
				if err != nil || len(out.Items) != 1000 {
					b.Fatal(err)
				}
			}
		})
	}
}
