package dynamodb

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// wantAPIError checks err is the DynamoDB error code with a message
// containing msg.
func wantAPIError(t *testing.T, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s %q, got %v", code, msg, err)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Fatalf("want %s containing %q, got %s: %s", code, msg, ae.ErrorCode(), ae.ErrorMessage())
	}
}

func hashRange(name string) *awsddb.CreateTableInput {
	return &awsddb.CreateTableInput{
		TableName: aws.String(name),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeN},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
}

// TestTables drives the table operations through the AWS SDK for Go v2.
func TestTables(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	ct, err := e.c.CreateTable(ctx, hashRange("orders"))
	if err != nil {
		t.Fatal(err)
	}
	d := ct.TableDescription
	if aws.ToString(d.TableName) != "orders" || d.TableStatus != types.TableStatusActive ||
		aws.ToString(d.TableArn) != "arn:aws:dynamodb:veltrix:000000000000:table/orders" ||
		d.BillingModeSummary.BillingMode != types.BillingModePayPerRequest || d.CreationDateTime.Before(before) ||
		len(d.KeySchema) != 2 || aws.ToString(d.KeySchema[1].AttributeName) != "sk" || d.KeySchema[1].KeyType != types.KeyTypeRange ||
		len(d.AttributeDefinitions) != 2 || d.AttributeDefinitions[1].AttributeType != types.ScalarAttributeTypeN {
		t.Fatalf("CreateTable description: %+v", d)
	}
	if _, err := e.c.CreateTable(ctx, hashRange("orders")); err != nil {
		wantAPIError(t, err, "ResourceInUseException", "orders")
	} else {
		t.Fatal("second CreateTable orders succeeded")
	}

	dt, err := e.c.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String("orders")})
	if err != nil {
		t.Fatal(err)
	}
	if dt.Table.TableStatus != types.TableStatusActive || aws.ToString(dt.Table.TableId) == "" || aws.ToInt64(dt.Table.ItemCount) != 0 {
		t.Fatalf("DescribeTable: %+v", dt.Table)
	}

	// Provisioned tables report their units; a plain key-value table is
	// neither listed nor describable.
	prov := hashRange("orders2")
	prov.BillingMode = types.BillingModeProvisioned
	prov.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(7)}
	pt, err := e.c.CreateTable(ctx, prov)
	if err != nil {
		t.Fatal(err)
	}
	if p := pt.TableDescription.ProvisionedThroughput; aws.ToInt64(p.ReadCapacityUnits) != 5 || aws.ToInt64(p.WriteCapacityUnits) != 7 ||
		pt.TableDescription.BillingModeSummary.BillingMode != types.BillingModeProvisioned {
		t.Fatalf("provisioned: %+v", pt.TableDescription)
	}
	e.b.addTable(topology.Table{Name: "plainkv"})
	_, err = e.c.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String("plainkv")})
	wantAPIError(t, err, "ValidationException", "no DynamoDB key schema")

	for i := range 5 {
		if _, err := e.c.CreateTable(ctx, hashRange(fmt.Sprintf("t%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	var start *string
	pages := 0
	for {
		lt, err := e.c.ListTables(ctx, &awsddb.ListTablesInput{Limit: aws.Int32(3), ExclusiveStartTableName: start})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, lt.TableNames...)
		if lt.LastEvaluatedTableName == nil {
			break
		}
		start = lt.LastEvaluatedTableName
	}
	if want := []string{"orders", "orders2", "t00", "t01", "t02", "t03", "t04"}; !slices.Equal(all, want) || pages != 3 {
		t.Fatalf("ListTables pages %d: %v, want %v", pages, all, want)
	}
	_, err = e.c.ListTables(ctx, &awsddb.ListTablesInput{Limit: aws.Int32(101)})
	wantAPIError(t, err, "ValidationException", "Member must have value between 1 and 100")

	// UpdateTable records billing.
	ut, err := e.c.UpdateTable(ctx, &awsddb.UpdateTableInput{TableName: aws.String("orders"), BillingMode: types.BillingModeProvisioned,
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(3), WriteCapacityUnits: aws.Int64(4)}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt64(ut.TableDescription.ProvisionedThroughput.WriteCapacityUnits) != 4 {
		t.Fatalf("UpdateTable: %+v", ut.TableDescription)
	}
	_, err = e.c.UpdateTable(ctx, &awsddb.UpdateTableInput{TableName: aws.String("orders"),
		GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Delete: &types.DeleteGlobalSecondaryIndexAction{IndexName: aws.String("x")}}}})
	wantAPIError(t, err, "ValidationException", "secondary indexes")
	_, err = e.c.UpdateTable(ctx, &awsddb.UpdateTableInput{TableName: aws.String("orders")})
	wantAPIError(t, err, "ValidationException", "At least one of")

	// TTL.
	ttl := func(enabled bool, attr string) error {
		_, err := e.c.UpdateTimeToLive(ctx, &awsddb.UpdateTimeToLiveInput{TableName: aws.String("orders"),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{Enabled: aws.Bool(enabled), AttributeName: aws.String(attr)}})
		return err
	}
	descTTL := func() (types.TimeToLiveStatus, string) {
		out, err := e.c.DescribeTimeToLive(ctx, &awsddb.DescribeTimeToLiveInput{TableName: aws.String("orders")})
		if err != nil {
			t.Fatal(err)
		}
		return out.TimeToLiveDescription.TimeToLiveStatus, aws.ToString(out.TimeToLiveDescription.AttributeName)
	}
	if st, _ := descTTL(); st != types.TimeToLiveStatusDisabled {
		t.Fatalf("TTL %s before enabling", st)
	}
	wantAPIError(t, ttl(false, "exp"), "ValidationException", "TimeToLive is already disabled")
	if err := ttl(true, "exp"); err != nil {
		t.Fatal(err)
	}
	if st, attr := descTTL(); st != types.TimeToLiveStatusEnabled || attr != "exp" {
		t.Fatalf("TTL %s %q", st, attr)
	}
	if got := e.b.table("orders").TTLAttribute; got != "exp" {
		t.Fatalf("table TTL attribute %q", got)
	}
	wantAPIError(t, ttl(true, "exp2"), "ValidationException", "TimeToLive is already enabled")
	wantAPIError(t, ttl(false, "other"), "ValidationException", "current AttributeName is exp")
	if err := ttl(false, "exp"); err != nil {
		t.Fatal(err)
	}
	if st, _ := descTTL(); st != types.TimeToLiveStatusDisabled {
		t.Fatalf("TTL %s after disabling", st)
	}

	del, err := e.c.DeleteTable(ctx, &awsddb.DeleteTableInput{TableName: aws.String("orders")})
	if err != nil {
		t.Fatal(err)
	}
	if del.TableDescription.TableStatus != types.TableStatusDeleting {
		t.Fatalf("DeleteTable status %s", del.TableDescription.TableStatus)
	}
	_, err = e.c.DescribeTable(ctx, &awsddb.DescribeTableInput{TableName: aws.String("orders")})
	wantAPIError(t, err, "ResourceNotFoundException", "Table: orders not found")
	_, err = e.c.DeleteTable(ctx, &awsddb.DeleteTableInput{TableName: aws.String("orders")})
	wantAPIError(t, err, "ResourceNotFoundException", "orders")
}

// TestCreateTableValidation: bad CreateTable requests are refused with
// DynamoDB's messages and create nothing.
func TestCreateTableValidation(t *testing.T) {
	e := newEndpoint(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		change func(in *awsddb.CreateTableInput)
		msg    string
	}{
		{"undefined key attribute", func(in *awsddb.CreateTableInput) {
			in.AttributeDefinitions = []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("other"), AttributeType: types.ScalarAttributeTypeS}}
		}, "Some index key attributes are not defined in AttributeDefinitions. Keys: [sk], AttributeDefinitions: [other, pk]"},
		{"extra definition", func(in *awsddb.CreateTableInput) {
			in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String("x"), AttributeType: types.ScalarAttributeTypeS})
		}, "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions"},
		{"bad attribute type", func(in *awsddb.CreateTableInput) { in.AttributeDefinitions[0].AttributeType = "BOOL" }, "[B, N, S]"},
		{"range first", func(in *awsddb.CreateTableInput) {
			in.KeySchema[0].KeyType, in.KeySchema[1].KeyType = types.KeyTypeRange, types.KeyTypeHash
		},
			"The first KeySchemaElement is not a HASH key type"},
		{"no key schema", func(in *awsddb.CreateTableInput) { in.KeySchema = nil }, "'keySchema' failed to satisfy constraint"},
		{"gsi", func(in *awsddb.CreateTableInput) {
			in.GlobalSecondaryIndexes = []types.GlobalSecondaryIndex{{IndexName: aws.String("byX"),
				KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}}}
		}, "Veltrix does not support secondary indexes yet: CreateTable with GlobalSecondaryIndexes byX"},
		{"lsi", func(in *awsddb.CreateTableInput) {
			in.LocalSecondaryIndexes = []types.LocalSecondaryIndex{{IndexName: aws.String("byY"),
				KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}}}
		}, "LocalSecondaryIndexes byY"},
		{"stream", func(in *awsddb.CreateTableInput) {
			in.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage}
		}, "Streams"},
		{"tags", func(in *awsddb.CreateTableInput) {
			in.Tags = []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}
		}, "tags"},
		{"throughput with on-demand", func(in *awsddb.CreateTableInput) {
			in.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(1), WriteCapacityUnits: aws.Int64(1)}
		}, "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST"},
		{"provisioned without throughput", func(in *awsddb.CreateTableInput) { in.BillingMode = types.BillingModeProvisioned },
			"ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"},
		{"no billing at all", func(in *awsddb.CreateTableInput) { in.BillingMode = "" }, "No provisioned throughput specified for the table"},
		{"zero units", func(in *awsddb.CreateTableInput) {
			in.BillingMode = types.BillingModeProvisioned
			in.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(0), WriteCapacityUnits: aws.Int64(1)}
		}, "provisionedThroughput.readCapacityUnits"},
		{"bad name", func(in *awsddb.CreateTableInput) { in.TableName = aws.String("a b") }, "'tableName' failed to satisfy constraint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := hashRange("bad")
			tc.change(in)
			_, err := e.c.CreateTable(ctx, in)
			wantAPIError(t, err, "ValidationException", tc.msg)
		})
	}
	if v, _ := e.b.View(); len(v.Snapshot.Tables) != 0 {
		t.Fatalf("tables created: %v", v.Snapshot.Tables)
	}
}
