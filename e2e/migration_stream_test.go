package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestBinMigrationStreamJobResyncs: a DynamoDB Streams job of the real
// migrator (against streamsfake over HTTP) feeding a table in MIRROR calls
// the router's SyncItems for each record instead of applying its image.
// The items are written to dynalite directly (a writer that bypasses the
// endpoint, or a write whose router died before re-syncing), and every
// record carries a stale image (an older value, a removal of an item that
// exists, an image of an item since deleted): Veltrix ends with dynalite's
// items, which only a re-sync reading DynamoDB can give it.
func TestBinMigrationStreamJobResyncs(t *testing.T) {
	binTest(t)
	awsTestEnv(t)
	framework.Build(t).Require(t, framework.Migrator)
	e := newMigEnv(t, framework.Options{Nodes: 1, RF: 1, Routers: 1, Partitions: 16, Migrator: true})
	ctx := ctxT(t, 2*time.Minute)
	if _, err := e.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: migTable,
		Upstream: &migrationv1.Upstream{Endpoint: e.dyn, Table: migTable, Region: "us-east-1"}, Reason: "e2e"}); err != nil {
		t.Fatalf("start migration: %v", err)
	}
	e.advance(t, &migrationv1.AdvanceMigrationRequest{To: migrationv1.Phase_PHASE_MIRROR, Reason: "e2e"})

	sf := streamsfake.New(streamsfake.Options{})
	endpoint := streamsfake.Serve(t, sf)
	arn := sf.CreateStream(migTable, "NEW_AND_OLD_IMAGES")
	if err := sf.CreateShard(arn, "shardId-00000001", ""); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(e.c.MigratorAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	migrator := migratorv1.NewMigratorServiceClient(conn)
	sr, err := migrator.StartStream(ctx, &migratorv1.StartStreamRequest{Spec: &migratorv1.StreamSpec{
		Kind: migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS, Stream: arn, Aws: &migratorv1.AwsOptions{Endpoint: endpoint},
		Mapping: &migratorv1.Mapping{TargetTable: migTable, PartitionKey: &migratorv1.KeyAttribute{Name: "pk", Type: migratorv1.KeyType_KEY_TYPE_S}}}})
	if err != nil {
		t.Fatalf("start stream: %v", err)
	}
	id := sr.GetJob().GetId()
	t.Cleanup(func() { _, _ = migrator.CancelJob(ctxT(t, 10*time.Second), &migratorv1.CancelJobRequest{Id: id}) })

	// dynalite gets the truth; the stream gets stale records.
	keys := migKeys("s", 30)
	at := time.Now()
	var records int
	record := func(event, k string, image ddb.Item) {
		t.Helper()
		if _, err := sf.Put(arn, "shardId-00000001", streamsfake.NewRecord(event, ddb.Item{"pk": ddb.S(k)}, image, at, false)); err != nil {
			t.Fatal(err)
		}
		records++
	}
	for i, k := range keys {
		if _, err := e.up.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(migTable), Item: map[string]dtypes.AttributeValue{
			"pk": avS(k), "v": avN("2"), "s": avS("dynamodb " + strconv.Itoa(i))}}); err != nil {
			t.Fatal(err)
		}
		stale := ddb.Item{"pk": ddb.S(k), "v": ddb.NFromInt64(1), "s": ddb.S("stale image")}
		switch {
		case i < 5: // deleted since the record: Veltrix must not hold it
			if _, err := e.up.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(migTable),
				Key: map[string]dtypes.AttributeValue{"pk": avS(k)}}); err != nil {
				t.Fatal(err)
			}
			record("MODIFY", k, stale)
		case i < 10: // a removal the item was written again after
			record("REMOVE", k, nil)
		default:
			record("INSERT", k, stale)
		}
	}
	waitUntil(t, 30*time.Second, fmt.Sprintf("the stream job to re-sync %d records", records), func() bool {
		j, err := migrator.GetJob(ctx, &migratorv1.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if s := j.GetJob().GetState(); s != migratorv1.JobState_JOB_STATE_RUNNING {
			t.Fatalf("stream job %s: %s %q", id, s, j.GetJob().GetError())
		}
		p := j.GetJob().GetProgress()
		return p.GetItemsWritten()+p.GetDeletes() >= uint64(records)
	})
	st, err := e.mig[0].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: migTable})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetStats().GetMirrorPending() != 0 {
		t.Errorf("%d re-syncs queued, want none (Veltrix is up)", st.GetStats().GetMirrorPending())
	}
	e.toVeltrix(t, 0)
	e.compareAll(t, 0, keys)
	// The job is the table's CDC: status judges its lag.
	if st, err = e.mig[0].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: migTable}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range st.GetCriteria() {
		found = found || c.GetName() == "cdc_lag" && strings.Contains(c.GetValue(), id)
	}
	if !found {
		t.Errorf("status criteria %v: no cdc_lag of stream job %s", st.GetCriteria(), id)
	}
}
