package clustertest

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	ddbep "github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
)

// TestMigrationWalk walks a table through every phase with the real
// control plane (the routers' own endpoints, each routing by its etcd
// watcher, and the phase written through migration.Store) while a load
// generator writes and reads through both routers with the AWS SDK. The
// client must see no unexpected error, and once the queue has drained in
// VELTRIX, Veltrix must equal DynamoDB item for item.
func TestMigrationWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and dynalite; CI runs it without -short")
	}
	// The routers' upstream credentials come from the SDK's default
	// chain: the environment.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	upURL := peers.StartDynalite(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: t.TempDir(), Cluster: "test", Nodes: 3, Routers: 2, RF: 3, Partitions: 16,
		NoSync: true, CacheBytes: 16 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
		DynamoDBAddr: "127.0.0.1:0", DynamoDBAllRouters: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	mc := &migCluster{c: c, upURL: upURL, up: sdkClient(upURL), logger: logger}
	const table, upTable = "walk", "up_walk"
	mc.createTables(t, table, upTable)
	dbs := []*dynamodb.Client{sdkClient("http://" + c.RouterDynamoDBAddr(0)), sdkClient("http://" + c.RouterDynamoDBAddr(1))}

	ctx := t.Context()
	store := migration.NewStore(c.EtcdCli, "test")
	mg := mc.migration(table, upTable, migrationv1.Phase_PHASE_UNSPECIFIED)
	migration.Apply(mg, migration.Change{To: migrationv1.Phase_PHASE_PROXY, Who: "test", Reason: "walk"})
	if _, err := store.Create(ctx, mg); err != nil {
		t.Fatal(err)
	}
	move := func(p migrationv1.Phase, pct uint32) {
		t.Helper()
		if _, err := store.Transition(ctx, table, func(m *migrationv1.Migration) error {
			migration.Apply(m, migration.Change{To: p, Percent: pct, Who: "test", Reason: "walk"})
			return nil
		}); err != nil {
			t.Fatalf("to %s %d: %v", p, pct, err)
		}
		t.Logf("phase %s %d", p, pct)
	}

	// The load: writes and reads of 20 keys through both routers.
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("w%02d", i)
	}
	var pause sync.RWMutex
	stop := make(chan struct{})
	var ops, unexpected atomic.Int64
	var load sync.WaitGroup
	for w := range 4 {
		load.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pause.RLock()
				db := dbs[rng.IntN(len(dbs))]
				k := keys[rng.IntN(len(keys))]
				key := map[string]types.AttributeValue{"pk": s(k)}
				var err error
				switch rng.IntN(5) {
				case 0:
					_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
						Item: map[string]types.AttributeValue{"pk": s(k), "v": s(fmt.Sprintf("%d-%d", w, i))}})
				case 1:
					_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: key,
						UpdateExpression: aws.String("ADD n :one"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": n("1")}})
				case 2:
					_, err = db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key})
				case 3:
					_, err = db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("pk = :k"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":k": s(k)}})
				default:
					_, err = db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key,
						ConditionExpression: aws.String("n > :ten"), ExpressionAttributeValues: map[string]types.AttributeValue{":ten": n("10")}})
				}
				pause.RUnlock()
				ops.Add(1)
				var ccf *types.ConditionalCheckFailedException
				if err != nil && !errors.As(err, &ccf) && ctx.Err() == nil {
					unexpected.Add(1)
					t.Errorf("load: %v", err)
				}
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		load.Wait()
	}
	defer stopLoad()

	time.Sleep(300 * time.Millisecond) // PROXY under load
	// Into MIRROR with the load paused until both routers mirror: a write
	// a router still in PROXY made after the snapshot would be in no
	// path into Veltrix (in production the import's export is taken
	// after mirror_time, and CDC covers the rest).
	pause.Lock()
	move(migrationv1.Phase_PHASE_MIRROR, 0)
	for i, db := range dbs {
		probe := fmt.Sprintf("probe%d", i)
		mirrored := false
		for range 100 {
			if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
				Item: map[string]types.AttributeValue{"pk": s(probe)}}); err != nil {
				t.Fatal(err)
			}
			if mc.veltrixItem(t, table, probe) != nil {
				mirrored = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !mirrored {
			t.Fatalf("router %d did not start mirroring within 5s", i+1)
		}
	}
	pause.Unlock()

	// The import of a snapshot exported now, while the load goes on.
	exportTime := time.Now()
	mc.importSnapshot(t, table, exportTime, mc.snapshot(t, upTable))

	for _, step := range []struct {
		p   migrationv1.Phase
		pct uint32
	}{
		{migrationv1.Phase_PHASE_SHADOW, 0},
		{migrationv1.Phase_PHASE_CUTOVER, 5}, {migrationv1.Phase_PHASE_CUTOVER, 25},
		{migrationv1.Phase_PHASE_CUTOVER, 50}, {migrationv1.Phase_PHASE_CUTOVER, 100},
		{migrationv1.Phase_PHASE_VELTRIX, 0},
	} {
		move(step.p, step.pct)
		time.Sleep(400 * time.Millisecond)
	}
	stopLoad()
	for i := range 600 {
		n, err := store.PendingSyncCount(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if i == 599 {
			t.Fatalf("%d re-syncs still queued after 30s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range append(keys, "probe0", "probe1") {
		d, v := mc.upstreamItem(t, upTable, k), mc.veltrixItem(t, table, k)
		if diffs := ddbep.CompareItems(d, v); diffs != nil {
			t.Errorf("key %s: Veltrix differs from DynamoDB: %v", k, diffs)
		}
	}
	_, total, err := store.Mismatches(ctx, table, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d operations, %d unexpected errors, %d shadow mismatches recorded", ops.Load(), unexpected.Load(), total)

	// DONE: DynamoDB is no longer written.
	move(migrationv1.Phase_PHASE_DONE, 0)
	for i := range 100 {
		k := fmt.Sprintf("done%d", i)
		if _, err := dbs[0].PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
			Item: map[string]types.AttributeValue{"pk": s(k)}}); err != nil {
			t.Fatal(err)
		}
		if mc.upstreamItem(t, upTable, k) == nil {
			if mc.veltrixItem(t, table, k) == nil {
				t.Fatalf("DONE: %s is in neither store", k)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("writes still reach DynamoDB 5s after DONE")
}
