package clustertest

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/localcluster"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	ddbep "github.com/veltrixdb/veltrix/services/router/internal/dynamodb"
	"github.com/veltrixdb/veltrix/services/router/internal/dynamodb/migrationtest"
)

// BenchmarkMirroredPutItem measures a mirrored PutItem (MIRROR phase)
// through the endpoint against dynalite, as the bench's MIGRATION-PHASES
// runs it: open loop at 200 ops/s, 1 KB items, Zipfian keys over 2000
// (s = 1.01, so hot keys are written concurrently), 3 nodes RF 3 with WAL
// fsync. It reports the P50 and P99 from each call's intended start,
// dynalite's own for the same writes sent straight to it afterwards, and
// the share of writes whose re-sync joined another's (joined/op).
//
//	go test -run '^$' -bench BenchmarkMirroredPutItem -benchtime 600x ./internal/dynamodb/clustertest/
func BenchmarkMirroredPutItem(b *testing.B) {
	upURL := peers.StartDynalite(b)
	logger := slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := localcluster.Start(b.Context(), localcluster.Options{
		Dir: b.TempDir(), Cluster: "bench", Nodes: 3, Routers: 1, RF: 3, Partitions: 16,
		CacheBytes: 16 << 20, ReadyTimeout: 30 * time.Second, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	mc := &migCluster{c: c, upURL: upURL, up: sdkClient(upURL), logger: logger}
	const table, upTable = "app", "up_app"
	mc.createTables(b, table, upTable)
	ctl := migrationtest.New()
	ctl.Set(mc.migration(table, upTable, migrationv1.Phase_PHASE_MIRROR))
	reg := prometheus.NewRegistry()
	ep := mc.endpoint(b, 0, ddbep.MigrationOptions{Control: ctl}, ddbep.NewMetrics(reg))
	ctx := b.Context()
	pad := strings.Repeat("x", 1000)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.01, 1, 1999)
	items := make([]map[string]types.AttributeValue, b.N)
	for i := range items {
		items[i] = map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%d", zipf.Uint64())), "v": s(fmt.Sprint(i)), "pad": s(pad)}
	}
	run := func(db *dynamodb.Client, name string) []time.Duration {
		lat := make([]time.Duration, len(items))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		start := time.Now()
		for i, it := range items {
			at := start.Add(time.Duration(i) * 5 * time.Millisecond)
			time.Sleep(time.Until(at))
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: it}); err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(at)
			})
		}
		wg.Wait()
		slices.Sort(lat)
		return lat
	}
	b.ResetTimer()
	lat := run(ep.db, table)
	b.StopTimer()
	direct := run(mc.up, upTable)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(direct[len(direct)/2]), "direct-p50-ms")
	b.ReportMetric(ms(direct[len(direct)*99/100]), "direct-p99-ms")
	// The share of mirrored writes served by another write's re-sync of
	// the same item instead of a lock round of their own.
	b.ReportMetric(counter(b, reg, "veltrix_dynamodb_migration_syncs_joined_total")/float64(b.N), "joined/op")
}

// counter is the value of the counter name in reg.
func counter(b *testing.B, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	b.Fatalf("no metric %s", name)
	return 0
}
