package clustertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/placement"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/coord"
	ddbep "github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb/migrationtest"
	"github.com/veltrixdb/veltrix/services/router/server"
)

// migCluster is a cluster with two routers and dynalite as the upstream
// DynamoDB.
type migCluster struct {
	c      *localcluster.Cluster
	upURL  string
	up     *dynamodb.Client // straight to dynalite
	logger *slog.Logger
}

var testCreds = credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")

func sdkClient(url string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: testCreds,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 5 }),
	})
}

func startMigCluster(t *testing.T) *migCluster {
	t.Helper()
	upURL := peers.StartDynalite(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir: t.TempDir(), Cluster: "test", Nodes: 3, Routers: 2, RF: 3, Partitions: 16,
		NoSync: true, CacheBytes: 16 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &migCluster{c: c, upURL: upURL, up: sdkClient(upURL), logger: logger}
}

// migEndpoint is one router's endpoint in migration mode.
type migEndpoint struct {
	h  *ddbep.Handler
	db *dynamodb.Client
}

// endpoint serves router i's endpoint with opts (Control set by the
// caller) until the test ends.
func (mc *migCluster) endpoint(t testing.TB, i int, opts ddbep.MigrationOptions, metrics ...*ddbep.Metrics) *migEndpoint {
	t.Helper()
	opts.Credentials = testCreds
	opts.RouterID = fmt.Sprintf("r%d", i+1)
	if opts.ReplayInterval == 0 {
		opts.ReplayInterval = 50 * time.Millisecond
	}
	o := ddbep.Options{Logger: mc.logger, Region: "us-east-1", Migration: opts}
	if len(metrics) > 0 {
		o.Metrics = metrics[0]
	}
	h := ddbep.NewHandler(mc.c.Routers[i], o)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return &migEndpoint{h: h, db: sdkClient(srv.URL)}
}

// createTables creates the Veltrix table (through the router's admin
// path) and the upstream table in dynalite, both keyed by pk (S).
func (mc *migCluster) createTables(t testing.TB, table, upTable string) {
	t.Helper()
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(upTable),
		BillingMode:          types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
	}
	if _, err := mc.up.CreateTable(t.Context(), in); err != nil {
		t.Fatalf("dynalite CreateTable %s: %v", upTable, err)
	}
	w := dynamodb.NewTableExistsWaiter(mc.up, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 20*time.Millisecond, 200*time.Millisecond
	})
	if err := w.Wait(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(upTable)}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	plain := ddbep.NewHandler(mc.c.Routers[0], ddbep.Options{Logger: mc.logger})
	srv := httptest.NewServer(plain)
	defer srv.Close()
	in.TableName = aws.String(table)
	if _, err := sdkClient(srv.URL).CreateTable(t.Context(), in); err != nil {
		t.Fatalf("Veltrix CreateTable %s: %v", table, err)
	}
}

func (mc *migCluster) migration(table, upTable string, p migrationv1.Phase) *migrationv1.Migration {
	return &migrationv1.Migration{Table: table, Phase: p,
		Upstream: &migrationv1.Upstream{Endpoint: mc.upURL, Table: upTable, Region: "us-east-1"}}
}

// storageKey is the stored key of a pk-only item of table.
func storageKey(t *testing.T, r *server.Server, table, pk string) *storagev1.Key {
	t.Helper()
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	tb := v.Snapshot.Tables[table]
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}}
	p, sk, err := ks.Key(ddb.Item{"pk": ddb.S(pk)})
	if err != nil {
		t.Fatal(err)
	}
	return &storagev1.Key{Partition: placement.PartitionOf(tb.ID, p, v.Partitions), TableId: tb.ID, PartitionKey: p, SortKey: sk}
}

// veltrixItem reads an item of table from Veltrix at QUORUM (nil: absent).
func (mc *migCluster) veltrixItem(t *testing.T, table, pk string) ddb.Item {
	t.Helper()
	r := mc.c.Routers[0]
	rec, err := r.Coordinator().Read(t.Context(), storageKey(t, r, table, pk), coord.Quorum)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.GetTombstone() {
		return nil
	}
	it, err := ddb.DecodeItem(rec.GetValue())
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// upstreamItem reads an item from dynalite, strongly consistent.
func (mc *migCluster) upstreamItem(t *testing.T, upTable, pk string) ddb.Item {
	t.Helper()
	out, err := mc.up.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String(upTable), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		return nil
	}
	return toItem(t, out.Item)
}

// importSnapshot writes items at the export time's version, blind (no
// lock), as the migrator's import does through the router's BatchWrite.
func (mc *migCluster) importSnapshot(t *testing.T, table string, exportTime time.Time, items []ddb.Item) {
	t.Helper()
	r := mc.c.Routers[0]
	var recs []*storagev1.Record
	for _, it := range items {
		recs = append(recs, &storagev1.Record{Key: storageKey(t, r, table, string(it["pk"].(ddb.S))),
			Version: hlc.FromTime(exportTime, 0), Value: ddb.EncodeItem(it)})
	}
	if len(recs) == 0 {
		return
	}
	if _, err := r.Coordinator().Write(t.Context(), recs, coord.Quorum); err != nil {
		t.Fatalf("import: %v", err)
	}
}

// snapshot scans the upstream table (its state at or after exportTime:
// an export's items are its state at export time; a later state at that
// version is, if anything, less favourable to the argument).
func (mc *migCluster) snapshot(t *testing.T, upTable string) []ddb.Item {
	t.Helper()
	out, err := mc.up.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(upTable), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	var items []ddb.Item
	for _, av := range out.Items {
		items = append(items, toItem(t, av))
	}
	return items
}

func ni(v int) types.AttributeValue { return n(strconv.Itoa(v)) }

func keyJSON(pk string) string { return `{"pk":{"S":"` + pk + `"}}` }

// TestMigrationConvergence runs random histories of writes on a few hot
// keys in PHASE_MIRROR through two routers whose clocks are skewed by up
// to ±500 ms from DynamoDB's (dynalite's, the reference), together with
// writes made straight to DynamoDB and delivered (late, sometimes twice)
// through SyncItems as the migrator's stream job does, an import of a
// snapshot taken mid-history written at the export time's version, and
// re-syncs that fail at random and go through the queue. Once the queue
// has drained, Veltrix must equal DynamoDB item for item.
func TestMigrationConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and dynalite; CI runs it without -short")
	}
	mc := startMigCluster(t)
	const seeds = 6
	queued := 0 // re-syncs that went through the queue, over all seeds
	defer func() {
		if queued == 0 && !t.Failed() {
			t.Error("no re-sync went through the queue: the injected failures did not exercise it")
		}
	}()
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			table, upTable := fmt.Sprintf("conv%d", seed), fmt.Sprintf("up_conv%d", seed)
			mc.createTables(t, table, upTable)
			ctl := migrationtest.New()
			ctl.Set(mc.migration(table, upTable, migrationv1.Phase_PHASE_MIRROR))
			rng := rand.New(rand.NewPCG(seed, 18))
			var faultMu sync.Mutex
			faultOn := true
			fault := func(string, ddb.Item) error {
				faultMu.Lock()
				defer faultMu.Unlock()
				if faultOn && rand.IntN(5) == 0 {
					return errors.New("injected re-sync failure")
				}
				return nil
			}
			var eps []*migEndpoint
			for i := range 2 {
				off := time.Duration(rng.Int64N(int64(time.Second))) - 500*time.Millisecond
				t.Logf("router %d clock offset %v", i+1, off)
				eps = append(eps, mc.endpoint(t, i, ddbep.MigrationOptions{Control: ctl, Skew: time.Second,
					Now: func() time.Time { return time.Now().Add(off) }, SyncFault: fault}))
			}
			keys := []string{"k0", "k1", "k2", "k3"}
			runHistory(t, mc, eps, table, upTable, keys, seed)
			faultMu.Lock()
			faultOn = false
			faultMu.Unlock()
			waitDrained(t, ctl)
			_, _, mirrored, failed, enqueued, _ := ctl.Snapshot()
			t.Logf("mirrored %d item writes, %d re-syncs failed, %d queued", mirrored, failed, enqueued)
			queued += enqueued
			checkConverged(t, mc, table, upTable, keys)
		})
	}
}

// runHistory runs 4 workers of 30 random operations each, and an import
// of a snapshot taken after the first writes.
func runHistory(t *testing.T, mc *migCluster, eps []*migEndpoint, table, upTable string, keys []string, seed uint64) {
	ctx := t.Context()
	var wg sync.WaitGroup
	var cdc sync.WaitGroup
	half := make(chan struct{})
	var once sync.Once
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range 30 {
				if i == 10 {
					once.Do(func() { close(half) })
				}
				ep := eps[rng.IntN(len(eps))]
				k := keys[rng.IntN(len(keys))]
				key := map[string]types.AttributeValue{"pk": s(k)}
				val := rng.IntN(1000)
				var err error
				switch op := rng.IntN(9); op {
				case 0, 1:
					_, err = ep.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
						Item: map[string]types.AttributeValue{"pk": s(k), "v": ni(val), "w": s(fmt.Sprintf("w%d-%d", w, i))}})
				case 2:
					_, err = ep.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: key,
						UpdateExpression:          aws.String("SET v = :v ADD c :one"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":v": ni(val), ":one": ni(1)}})
				case 3:
					_, err = ep.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table),
						Item:                      map[string]types.AttributeValue{"pk": s(k), "v": ni(val), "cond": s("yes")},
						ConditionExpression:       aws.String("attribute_not_exists(pk) OR v < :v"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":v": ni(val)}})
				case 4:
					_, err = ep.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key})
				case 5:
					_, err = ep.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: key,
						UpdateExpression: aws.String("SET s = :s"), ConditionExpression: aws.String("attribute_exists(pk)"),
						ExpressionAttributeValues: map[string]types.AttributeValue{":s": s(fmt.Sprint(val))}})
				case 6:
					k2 := keys[(slicesIndex(keys, k)+1)%len(keys)]
					_, err = ep.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: {
						{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s(k), "v": ni(val), "b": s("batch")}}},
						{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{"pk": s(k2)}}},
					}}})
				default:
					// A write made straight to DynamoDB, which reaches
					// Veltrix through its CDC record: SyncItems, late
					// and sometimes twice.
					if op == 7 {
						_, err = mc.up.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(upTable),
							Item: map[string]types.AttributeValue{"pk": s(k), "v": ni(val), "direct": s("yes")}})
					} else {
						_, err = mc.up.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(upTable), Key: key})
					}
					deliveries := 1 + rng.IntN(2)
					delay := time.Duration(rng.IntN(50)) * time.Millisecond
					cdcEP := eps[rng.IntN(len(eps))]
					cdc.Go(func() {
						for range deliveries {
							time.Sleep(delay)
							for _, err := range cdcEP.h.SyncItems(context.WithoutCancel(ctx), table, []string{keyJSON(k)}) {
								if err != nil && !errors.Is(err, ddbep.ErrSync) {
									t.Errorf("SyncItems: %v", err)
								}
							}
						}
					})
				}
				var ccf *types.ConditionalCheckFailedException
				if err != nil && !errors.As(err, &ccf) {
					t.Errorf("worker %d op %d: %v", w, i, err)
				}
			}
		})
	}
	// The import: a snapshot taken once the history is under way, written
	// at its export time while the history goes on.
	wg.Go(func() {
		<-half
		exportTime := time.Now() // dynalite's clock is the reference
		items := mc.snapshot(t, upTable)
		time.Sleep(30 * time.Millisecond)
		mc.importSnapshot(t, table, exportTime, items)
	})
	wg.Wait()
	cdc.Wait()
}

func slicesIndex(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

// waitDrained waits (bounded) until every queued re-sync was replayed.
func waitDrained(t *testing.T, ctl *migrationtest.Control) {
	t.Helper()
	for range 600 {
		if ctl.Pending() == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d queued re-syncs still pending after 30s", ctl.Pending())
}

// checkConverged compares every key on both sides with the endpoint's
// comparator.
func checkConverged(t *testing.T, mc *migCluster, table, upTable string, keys []string) {
	t.Helper()
	for _, k := range keys {
		d, v := mc.upstreamItem(t, upTable, k), mc.veltrixItem(t, table, k)
		if diffs := ddbep.CompareItems(d, v); diffs != nil {
			t.Errorf("key %s: Veltrix differs from DynamoDB: %v (DynamoDB %v, Veltrix %v)", k, diffs, d, v)
		}
	}
}

// TestMigrationSkewAllowance is the case the skew allowance exists for,
// made deterministic with a fixed router clock 400 ms behind DynamoDB's:
// an item is exported at T, then changed through the endpoint (re-synced
// at the router's clock, T - 400 ms + S), then the import writes the
// exported, older item at T. With S = 0 the import overwrites the newer
// item and Veltrix diverges for good; with S = 1 s the re-sync's version
// is above T and the import loses. (S = 1 µs stands for no allowance:
// a zero Skew option means the default.)
func TestMigrationSkewAllowance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and dynalite; CI runs it without -short")
	}
	mc := startMigCluster(t)
	for _, tc := range []struct {
		skew     time.Duration
		diverges bool
	}{{time.Microsecond, true}, {time.Second, false}} { // (Skew 0 means the default)
		t.Run(fmt.Sprintf("S=%v", tc.skew), func(t *testing.T) {
			table := fmt.Sprintf("skew%d", tc.skew/time.Microsecond)
			upTable := "up_" + table
			mc.createTables(t, table, upTable)
			ctl := migrationtest.New()
			ctl.Set(mc.migration(table, upTable, migrationv1.Phase_PHASE_MIRROR))
			if _, err := mc.up.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(upTable),
				Item: map[string]types.AttributeValue{"pk": s("k"), "v": ni(1)}}); err != nil {
				t.Fatal(err)
			}
			exportTime := time.Now()
			items := mc.snapshot(t, upTable)
			ep := mc.endpoint(t, 0, ddbep.MigrationOptions{Control: ctl, Skew: tc.skew,
				Now: func() time.Time { return exportTime.Add(-400 * time.Millisecond) }})
			if _, err := ep.db.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(table),
				Item: map[string]types.AttributeValue{"pk": s("k"), "v": ni(2)}}); err != nil {
				t.Fatal(err)
			}
			_, _, mirrored, failed, _, _ := ctl.Snapshot()
			if mirrored != 1 || failed != 0 {
				t.Fatalf("mirrored %d writes, %d failed; want 1, 0", mirrored, failed)
			}
			mc.importSnapshot(t, table, exportTime, items)
			d, v := mc.upstreamItem(t, upTable, "k"), mc.veltrixItem(t, table, "k")
			diffs := ddbep.CompareItems(d, v)
			if (diffs != nil) != tc.diverges {
				t.Fatalf("S=%v: differences %v (DynamoDB %v, Veltrix %v), want diverged=%v", tc.skew, diffs, d, v, tc.diverges)
			}
		})
	}
}

// putVeltrix writes an item straight into Veltrix (a divergence the
// endpoint must notice or serve, by phase), at a version above the
// re-syncs' (now + S).
func (mc *migCluster) putVeltrix(t *testing.T, table string, it ddb.Item) {
	t.Helper()
	r := mc.c.Routers[0]
	rec := &storagev1.Record{Key: storageKey(t, r, table, string(it["pk"].(ddb.S))), Version: hlc.FromTime(time.Now().Add(5*time.Second), 0), Value: ddb.EncodeItem(it)}
	if _, err := r.Coordinator().Write(t.Context(), []*storagev1.Record{rec}, coord.Quorum); err != nil {
		t.Fatal(err)
	}
}

// cohortKey returns a key whose partition key is (in) or is not in the
// cutover cohort of percent.
func cohortKey(t *testing.T, percent uint32, in bool) string {
	t.Helper()
	ks := ddb.KeySchema{PartitionKey: ddb.KeyAttribute{Name: "pk", Type: ddb.TypeS}}
	for i := range 1000 {
		k := fmt.Sprintf("c%d", i)
		pk, _, err := ks.Key(ddb.Item{"pk": ddb.S(k)})
		if err != nil {
			t.Fatal(err)
		}
		if (migration.Cohort(pk) < percent) == in {
			return k
		}
	}
	t.Fatal("no key found")
	return ""
}

func getV(t *testing.T, db *dynamodb.Client, table, pk string) string {
	t.Helper()
	out, err := db.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": s(pk)}})
	if err != nil {
		t.Fatalf("GetItem %s: %v", pk, err)
	}
	if out.Item == nil {
		return "<absent>"
	}
	return out.Item["v"].(*types.AttributeValueMemberS).Value
}

// TestMigrationPhases walks one table through the phases and checks where
// each kind of request goes, with an upstream table of another name.
func TestMigrationPhases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and dynalite; CI runs it without -short")
	}
	mc := startMigCluster(t)
	const table, upTable = "app", "up_app"
	mc.createTables(t, table, upTable)
	ctl := migrationtest.New()
	ctl.Set(mc.migration(table, upTable, migrationv1.Phase_PHASE_PROXY))
	var failSync sync.Map // key -> true: its re-sync fails
	ep := mc.endpoint(t, 0, ddbep.MigrationOptions{Control: ctl, ReplayInterval: time.Hour,
		SyncFault: func(_ string, k ddb.Item) error {
			if _, ok := failSync.Load(string(k["pk"].(ddb.S))); ok {
				return errors.New("injected")
			}
			return nil
		}})
	ctx := t.Context()
	put := func(pk, v string) error {
		_, err := ep.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": s(pk), "v": s(v)}})
		return err
	}

	t.Run("proxy", func(t *testing.T) {
		if err := put("a", "1"); err != nil {
			t.Fatal(err)
		}
		if got := mc.upstreamItem(t, upTable, "a"); got == nil {
			t.Fatal("the write did not reach DynamoDB")
		}
		if got := mc.veltrixItem(t, table, "a"); got != nil {
			t.Fatalf("PROXY wrote %v to Veltrix", got)
		}
		if v := getV(t, ep.db, table, "a"); v != "1" {
			t.Fatalf("GetItem: %s", v)
		}
		// DynamoDB's errors come back unchanged.
		_, err := ep.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": s("a")},
			ConditionExpression: aws.String("attribute_not_exists(pk)")})
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Fatalf("conditional put: %v, want ConditionalCheckFailedException", err)
		}
		// Table names are rewritten both ways.
		d, err := ep.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil || aws.ToString(d.Table.TableName) != table {
			t.Fatalf("DescribeTable: %v, %v", d, err)
		}
		bg, err := ep.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			table: {Keys: []map[string]types.AttributeValue{{"pk": s("a")}}}}, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
		if err != nil || len(bg.Responses[table]) != 1 {
			t.Fatalf("BatchGetItem: %v, %v", bg, err)
		}
	})

	ctl.SetPhase(table, migrationv1.Phase_PHASE_MIRROR, 0)
	t.Run("mirror", func(t *testing.T) {
		if err := put("a", "2"); err != nil {
			t.Fatal(err)
		}
		if diffs := ddbep.CompareItems(mc.upstreamItem(t, upTable, "a"), mc.veltrixItem(t, table, "a")); diffs != nil {
			t.Fatalf("after a mirrored put: %v", diffs)
		}
		// UpdateItem executes on DynamoDB; the client gets its answer.
		up, err := ep.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": s("a")},
			UpdateExpression: aws.String("ADD c :one"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": n("1")},
			ReturnValues: types.ReturnValueAllNew})
		if err != nil || up.Attributes["c"] == nil {
			t.Fatalf("UpdateItem: %v, %v", up, err)
		}
		if diffs := ddbep.CompareItems(mc.upstreamItem(t, upTable, "a"), mc.veltrixItem(t, table, "a")); diffs != nil {
			t.Fatalf("after a mirrored update: %v", diffs)
		}
		// A write DynamoDB refuses writes nothing to Veltrix.
		before := mc.veltrixItem(t, table, "a")
		_, err = ep.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": s("a"), "v": s("no")},
			ConditionExpression: aws.String("attribute_not_exists(pk)")})
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Fatalf("conditional put: %v", err)
		}
		if diffs := ddbep.CompareItems(before, mc.veltrixItem(t, table, "a")); diffs != nil {
			t.Fatalf("a refused write changed Veltrix: %v", diffs)
		}
		// A failed re-sync is queued; the client still gets DynamoDB's answer.
		failSync.Store("q", true)
		if err := put("q", "1"); err != nil {
			t.Fatalf("put with a failing re-sync: %v", err)
		}
		if ctl.Pending() != 1 || mc.veltrixItem(t, table, "q") != nil {
			t.Fatalf("pending %d, Veltrix %v; want 1 queued and nothing written", ctl.Pending(), mc.veltrixItem(t, table, "q"))
		}
		failSync.Delete("q")
		// When queueing fails too (the router's etcd unreachable, or the
		// router dying before it queued), the client still has DynamoDB's
		// answer and the item waits for its next trigger: here its CDC
		// record, through SyncItems.
		failSync.Store("lost", true)
		ctl.FailQueue(true)
		if err := put("lost", "1"); err != nil {
			t.Fatalf("put with a failing re-sync and queue: %v", err)
		}
		if ctl.Pending() != 1 || mc.veltrixItem(t, table, "lost") != nil {
			t.Fatalf("pending %d, Veltrix %v; want nothing more queued or written", ctl.Pending(), mc.veltrixItem(t, table, "lost"))
		}
		failSync.Delete("lost")
		ctl.FailQueue(false)
		if errs := ep.h.SyncItems(ctx, table, []string{keyJSON("lost")}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if diffs := ddbep.CompareItems(mc.upstreamItem(t, upTable, "lost"), mc.veltrixItem(t, table, "lost")); diffs != nil {
			t.Fatalf("after the CDC re-sync: %v", diffs)
		}
		// The Veltrix copy differs now; reads still come from DynamoDB.
		mc.putVeltrix(t, table, ddb.Item{"pk": ddb.S("a"), "v": ddb.S("veltrix")})
		if v := getV(t, ep.db, table, "a"); v != "2" {
			t.Fatalf("MIRROR GetItem: %s, want DynamoDB's 2", v)
		}
		// Transactions would write behind the mirror's back.
		_, err = ep.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(table), Item: map[string]types.AttributeValue{"pk": s("t")}}}}})
		if err == nil {
			t.Fatal("TransactWriteItems was accepted in MIRROR")
		}
	})

	ctl.SetPhase(table, migrationv1.Phase_PHASE_SHADOW, 0)
	t.Run("shadow", func(t *testing.T) {
		if v := getV(t, ep.db, table, "a"); v != "2" {
			t.Fatalf("SHADOW GetItem: %s, want DynamoDB's 2", v)
		}
		var mm []*migrationv1.Mismatch
		for range 200 {
			if _, _, _, _, _, mm = ctl.Snapshot(); len(mm) > 0 {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if len(mm) != 1 || mm[0].GetOperation() != "GetItem" || len(mm[0].GetDifferences()) == 0 {
			t.Fatalf("mismatches %v, want one for GetItem", mm)
		}
		t.Logf("recorded: %v", mm[0])
		// Bring it back in line (as a CDC record would), and the next
		// comparison is clean.
		if errs := ep.h.SyncItems(ctx, table, []string{keyJSON("a")}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		compared, _, _, _, _, _ := ctl.Snapshot()
		if v := getV(t, ep.db, table, "a"); v != "2" {
			t.Fatal(v)
		}
		for range 200 {
			if c, _, _, _, _, _ := ctl.Snapshot(); c > compared {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if c, mis, _, _, _, mm := ctl.Snapshot(); c <= compared || mis != 1 || len(mm) != 1 {
			t.Fatalf("compared %d (before %d), mismatched %d; want one more clean comparison", c, compared, mis)
		}
		// A Query is compared item by item: an item only Veltrix has is
		// a mismatch too.
		mc.putVeltrix(t, table, ddb.Item{"pk": ddb.S("ghost"), "v": ddb.S("veltrix only")})
		if _, err := ep.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("pk = :k"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":k": s("ghost")}}); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if _, _, _, _, _, mm = ctl.Snapshot(); len(mm) > 1 {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if len(mm) != 2 || mm[1].GetOperation() != "Query" || mm[1].GetDynamodbItem() != "" || mm[1].GetVeltrixItem() == "" {
			t.Fatalf("mismatches %v, want a second one for Query with only Veltrix's item", mm)
		}
		// BatchGetItem: each key asked for is compared.
		if err := put("bg", "dynamodb"); err != nil {
			t.Fatal(err)
		}
		mc.putVeltrix(t, table, ddb.Item{"pk": ddb.S("bg"), "v": ddb.S("veltrix-bg")})
		if _, err := ep.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			table: {Keys: []map[string]types.AttributeValue{{"pk": s("bg")}, {"pk": s("a")}}}}}); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if _, _, _, _, _, mm = ctl.Snapshot(); len(mm) > 2 {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if len(mm) != 3 || mm[2].GetOperation() != "BatchGetItem" || mm[2].GetKey() != keyJSON("bg") {
			t.Fatalf("mismatches %v, want a third one for BatchGetItem of bg", mm)
		}
	})

	ctl.SetPhase(table, migrationv1.Phase_PHASE_CUTOVER, 50)
	t.Run("cutover", func(t *testing.T) {
		in, out := cohortKey(t, 50, true), cohortKey(t, 50, false)
		for _, k := range []string{in, out} {
			if err := put(k, "dynamodb"); err != nil {
				t.Fatal(err)
			}
			mc.putVeltrix(t, table, ddb.Item{"pk": ddb.S(k), "v": ddb.S("veltrix")})
		}
		if v := getV(t, ep.db, table, in); v != "veltrix" {
			t.Errorf("key %s in the cohort: served %q, want Veltrix's", in, v)
		}
		if v := getV(t, ep.db, table, out); v != "dynamodb" {
			t.Errorf("key %s outside the cohort: served %q, want DynamoDB's", out, v)
		}
		for _, k := range []string{in, out} {
			q, err := ep.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("pk = :k"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":k": s(k)}})
			if err != nil || len(q.Items) != 1 {
				t.Fatalf("Query %s: %v %v", k, q, err)
			}
			want := map[bool]string{true: "veltrix", false: "dynamodb"}[k == in]
			if got := q.Items[0]["v"].(*types.AttributeValueMemberS).Value; got != want {
				t.Errorf("Query %s: %q, want %q", k, got, want)
			}
		}
	})

	ctl.SetPhase(table, migrationv1.Phase_PHASE_VELTRIX, 0)
	t.Run("veltrix", func(t *testing.T) {
		if v := getV(t, ep.db, table, cohortKey(t, 50, false)); v != "veltrix" {
			t.Errorf("VELTRIX GetItem: %q, want Veltrix's", v)
		}
		sc, err := ep.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		veltrix := 0
		for _, it := range sc.Items {
			if v, ok := it["v"].(*types.AttributeValueMemberS); ok && v.Value == "veltrix" {
				veltrix++
			}
		}
		if veltrix != 2 {
			t.Errorf("VELTRIX Scan saw %d of Veltrix's own items, want 2 (it is served by Veltrix)", veltrix)
		}
		// Writes are still mirrored.
		if err := put("z", "1"); err != nil {
			t.Fatal(err)
		}
		if mc.upstreamItem(t, upTable, "z") == nil || mc.veltrixItem(t, table, "z") == nil {
			t.Fatal("VELTRIX write not mirrored")
		}
	})

	ctl.SetPhase(table, migrationv1.Phase_PHASE_DONE, 0)
	t.Run("done", func(t *testing.T) {
		if err := put("d", "1"); err != nil {
			t.Fatal(err)
		}
		if mc.upstreamItem(t, upTable, "d") != nil {
			t.Fatal("DONE wrote to DynamoDB")
		}
		if mc.veltrixItem(t, table, "d") == nil {
			t.Fatal("DONE write missing from Veltrix")
		}
	})
}
