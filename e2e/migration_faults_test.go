package e2e

// Migration mode under faults, with real binaries (issue #18's acceptance):
// a table migrating from dynalite behind the routers' DynamoDB endpoint,
// driven by the AWS SDK for Go v2 while storage nodes, a router or
// dynalite (SIGKILLed, then restarted on its port and data) go away. Each test ends by comparing every key: dynalite read
// with ConsistentRead, Veltrix read through the endpoint once the table is
// in PHASE_VELTRIX (every read served by Veltrix).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/e2e/peers"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// migTable is the migrating table's name, in Veltrix and upstream.
const migTable = "orders"

// migPropagation bounds the wait for every router to see a phase change
// (the design promises a second; CI machines are slow).
const migPropagation = 10 * time.Second

// rollbackBound bounds the time from a rollback's answer until both
// routers read the cutover cohort from DynamoDB again: the watch's
// propagation (a second, by design) with room for a slow CI machine.
const rollbackBound = 3 * time.Second

// migEnv is a cluster whose table migTable migrates from dynalite.
type migEnv struct {
	c   *framework.Cluster
	eps []string
	// dyn is dynalite's endpoint.
	dyn string
	// up is a client of dynalite itself.
	up *dynamodb.Client
	// ddb[i] is a client of router i's endpoint, without retries.
	ddb []*dynamodb.Client
	// mig[i] is router i's MigrationService.
	mig []migrationv1.MigrationServiceClient
	// store is the migration documents in etcd (to record an import).
	store *migration.Store
}

// startMigEnv starts dynalite, creates migTable there, starts a cluster of
// one storage node (RF 1: stopping it fails every Veltrix write) and
// routers routers, and starts the migration and advances it to MIRROR.
func startMigEnv(t *testing.T, routers int) *migEnv {
	t.Helper()
	return startMigEnvOn(t, routers, peers.StartDynalite(t))
}

// startMigEnvOn is startMigEnv with the dynalite at dyn.
func startMigEnvOn(t *testing.T, routers int, dyn string) *migEnv {
	t.Helper()
	e := newMigEnvOn(t, framework.Options{Nodes: 1, RF: 1, Routers: routers, Partitions: 16}, dyn)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.mig[0].StartMigration(ctx, &migrationv1.StartMigrationRequest{Table: migTable,
		Upstream: &migrationv1.Upstream{Endpoint: dyn, Table: migTable, Region: "us-east-1"}, Reason: "e2e"}); err != nil {
		t.Fatalf("start migration: %v", err)
	}
	e.advance(t, &migrationv1.AdvanceMigrationRequest{To: migrationv1.Phase_PHASE_MIRROR, Reason: "e2e"})
	return e
}

// newMigEnv starts dynalite, creates migTable there and starts the
// cluster o (with the DynamoDB endpoint and upstream credentials); the
// migration is not started.
func newMigEnv(t *testing.T, o framework.Options) *migEnv {
	t.Helper()
	return newMigEnvOn(t, o, peers.StartDynalite(t))
}

// newMigEnvOn is newMigEnv with the dynalite at dyn.
func newMigEnvOn(t *testing.T, o framework.Options, dyn string) *migEnv {
	t.Helper()
	e := &migEnv{dyn: dyn, up: newDDBClient(dyn, 3)}
	createDDBTable(t, e.up, migTable, hashKey("pk", dtypes.ScalarAttributeTypeS))
	waitTableActive(t, e.up, migTable)
	o.RouterArgs = append(o.RouterArgs, "--upstream-access-key-id", "veltrix", "--upstream-secret-access-key", "veltrix")
	e.c, e.eps = startDynamoCluster(t, o)
	for i, r := range e.c.Routers {
		conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		e.mig = append(e.mig, migrationv1.NewMigrationServiceClient(conn))
		e.ddb = append(e.ddb, newDDBClient(e.eps[i], 1))
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{e.c.EtcdEndpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	e.store = migration.NewStore(etcd, e.c.Opts.Cluster)
	return e
}

// advance takes one step through router 0 and waits until every running
// router's watch reports it.
func (e *migEnv) advance(t *testing.T, req *migrationv1.AdvanceMigrationRequest) {
	t.Helper()
	req.Table = migTable
	resp, err := e.mig[0].AdvanceMigration(ctxT(t, 30*time.Second), req)
	if err != nil {
		t.Fatalf("advance %v: %v", req, err)
	}
	e.waitPhase(t, resp.GetMigration().GetPhase(), resp.GetMigration().GetCutoverPercent())
}

// waitPhase waits until every running router's veltrix_migration_phase
// (and cutover percentage) gauge shows the phase.
func (e *migEnv) waitPhase(t *testing.T, p migrationv1.Phase, pct uint32) {
	t.Helper()
	want := []string{fmt.Sprintf("veltrix_migration_phase{table=%q} %d", migTable, int(p))}
	if p == migrationv1.Phase_PHASE_CUTOVER {
		want = append(want, fmt.Sprintf("veltrix_migration_cutover_percent{table=%q} %d", migTable, pct))
	}
	for _, r := range e.c.Routers {
		if !r.Running() {
			continue
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", r.Port("metrics-addr"))
		waitUntil(t, migPropagation, r.Name+" sees "+p.String(), func() bool {
			body := httpGet(url)
			for _, w := range want {
				if !strings.Contains(body, w+"\n") {
					return false
				}
			}
			return true
		})
	}
}

// httpGet is url's body, "" on any error.
func httpGet(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stats is GetMigration's figures, through router i.
func (e *migEnv) stats(t *testing.T, i int) *migrationv1.MigrationStats {
	t.Helper()
	resp, err := e.mig[i].GetMigration(ctxT(t, 10*time.Second), &migrationv1.GetMigrationRequest{Table: migTable})
	if err != nil {
		t.Fatalf("get migration through router %d: %v", i+1, err)
	}
	return resp.GetStats()
}

// waitDrained waits until the re-sync queue is empty (through router i).
func (e *migEnv) waitDrained(t *testing.T, i int) {
	t.Helper()
	waitUntil(t, 30*time.Second, "the re-sync queue drains", func() bool {
		return e.stats(t, i).GetMirrorPending() == 0
	})
}

// toVeltrix records an import exported now (standing in for the snapshot
// import the exit from MIRROR needs; the items were all written in MIRROR,
// so the re-syncs alone carry them) and takes forced steps up to
// PHASE_VELTRIX, from where the table's current phase is.
func (e *migEnv) toVeltrix(t *testing.T, i int) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	m, err := e.store.Get(ctx, migTable)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetPhase() == migrationv1.Phase_PHASE_MIRROR {
		if err := e.store.RecordImport(ctx, migTable, "imp-e2e", time.Now(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		resp, err := e.mig[i].GetMigration(ctx, &migrationv1.GetMigrationRequest{Table: migTable})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMigration().GetPhase() == migrationv1.Phase_PHASE_VELTRIX {
			return
		}
		out, err := e.mig[i].AdvanceMigration(ctx, &migrationv1.AdvanceMigrationRequest{Table: migTable,
			To: resp.GetNext(), Percent: resp.GetNextPercent(), Force: true, Reason: "e2e: compare every item"})
		if err != nil {
			t.Fatalf("advance to %v %d: %v", resp.GetNext(), resp.GetNextPercent(), err)
		}
		e.waitPhase(t, out.GetMigration().GetPhase(), out.GetMigration().GetCutoverPercent())
	}
	t.Fatal("PHASE_VELTRIX not reached in 8 steps")
}

// compareAll checks, key by key, that Veltrix (read through router i's
// endpoint in PHASE_VELTRIX) holds dynalite's item.
func (e *migEnv) compareAll(t *testing.T, i int, keys []string) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	diffs, present := 0, 0
	for _, k := range keys {
		key := map[string]dtypes.AttributeValue{"pk": avS(k)}
		want, err := e.up.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatalf("dynalite get %s: %v", k, err)
		}
		got, err := e.ddb[i].GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: key})
		if err != nil {
			t.Fatalf("veltrix get %s: %v", k, err)
		}
		if want.Item != nil {
			present++
		}
		if g, w := itemText(got.Item), itemText(want.Item); g != w {
			if diffs++; diffs <= 5 {
				t.Errorf("key %s: veltrix %s, dynamodb %s", k, g, w)
			}
		}
	}
	if diffs > 0 {
		t.Fatalf("%d of %d keys differ", diffs, len(keys))
	}
	t.Logf("all %d keys equal (%d items, %d absent on both sides)", len(keys), present, len(keys)-present)
}

// storageBack restarts the storage node, waits until router i's queue
// drained and compares keys in PHASE_VELTRIX.
func (e *migEnv) storageBack(t *testing.T, i int, keys []string) {
	t.Helper()
	e.c.Nodes[0].Restart(t)
	e.c.WaitReady(t)
	e.waitDrained(t, i)
	e.toVeltrix(t, i)
	e.compareAll(t, i, keys)
}

// migKeys are n keys with prefix.
func migKeys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// migWrite is the j-th write of a load to key k: a put, an update (ADD)
// or, one in five, a delete.
func migWrite(ctx context.Context, cli *dynamodb.Client, k string, j int) error {
	key := map[string]dtypes.AttributeValue{"pk": avS(k)}
	var err error
	switch j % 5 {
	case 0, 2:
		_, err = cli.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(migTable), Item: map[string]dtypes.AttributeValue{
			"pk": avS(k), "v": avN(strconv.Itoa(j)), "s": avS("put " + strconv.Itoa(j))}})
	case 1, 3:
		_, err = cli.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(migTable), Key: key,
			UpdateExpression:          aws.String("ADD n :one SET s = :s"),
			ExpressionAttributeValues: map[string]dtypes.AttributeValue{":one": avN("1"), ":s": avS("update " + strconv.Itoa(j))}})
	default:
		_, err = cli.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(migTable), Key: key})
	}
	return err
}

// migLoad writes to keys through cli, round j of each key (see migWrite),
// with 4 workers; it returns the keys whose write failed, with the first
// error.
func migLoad(ctx context.Context, cli *dynamodb.Client, keys []string, j int) (failed []string, first error) {
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= len(keys) {
					return
				}
				if err := migWrite(ctx, cli, keys[n], j+n); err != nil {
					mu.Lock()
					failed = append(failed, keys[n])
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed, first
}

// TestBinMigrationStorageDownInMirror: with Veltrix's only storage node
// SIGKILLed in MIRROR, an SDK load through the endpoint gets DynamoDB's
// answers with no error, the failed re-syncs are counted and queued; once
// the node is back the queue drains and every item equals DynamoDB's.
func TestBinMigrationStorageDownInMirror(t *testing.T) {
	binTest(t)
	e := startMigEnv(t, 1)
	ctx := ctxT(t, 2*time.Minute)
	keys := migKeys("k", 200)
	if failed, err := migLoad(ctx, e.ddb[0], keys, 0); err != nil {
		t.Fatalf("%d writes failed with storage up: %v", len(failed), err)
	}
	// Figures are published every second.
	var up *migrationv1.MigrationStats
	waitUntil(t, 10*time.Second, "the mirrored writes counted", func() bool {
		up = e.stats(t, 0)
		return up.GetWritesMirrored() > 0
	})
	if up.GetMirrorFailures() != 0 {
		t.Fatalf("storage up: mirrored %d, failed %d; want none failed", up.GetWritesMirrored(), up.GetMirrorFailures())
	}

	e.c.Nodes[0].Kill(t)
	begin := time.Now()
	if failed, err := migLoad(ctx, e.ddb[0], keys, 1); err != nil {
		t.Fatalf("storage down: %d of %d writes failed, want none (DynamoDB answered): %v", len(failed), len(keys), err)
	}
	t.Logf("storage down: %d writes answered in %s", len(keys), time.Since(begin).Round(time.Millisecond))
	// Figures are published every second.
	var s *migrationv1.MigrationStats
	waitUntil(t, 10*time.Second, "mirror failures counted", func() bool {
		s = e.stats(t, 0)
		return s.GetMirrorFailures() >= uint64(len(keys))
	})
	if s.GetMirrorPending() == 0 {
		t.Fatalf("storage down: mirror_pending 0 after %d failed re-syncs", s.GetMirrorFailures())
	}
	t.Logf("storage down: mirrored %d, failed %d, pending %d", s.GetWritesMirrored(), s.GetMirrorFailures(), s.GetMirrorPending())

	e.storageBack(t, 0, keys)
}

// TestBinMigrationRouterKilledKeepsQueue: re-syncs fail (storage down) so
// router 1's writes are queued in etcd; router 1 is SIGKILLed mid-load;
// with storage back, router 2 replays router 1's entries and every item
// equals DynamoDB's. A write router 1 never answered is retried through
// router 2, as a client does (docs/design.md, "Crashes and what we
// guarantee").
func TestBinMigrationRouterKilledKeepsQueue(t *testing.T) {
	binTest(t)
	e := startMigEnv(t, 2)
	ctx := ctxT(t, 2*time.Minute)
	keys := migKeys("k", 200)
	if failed, err := migLoad(ctx, e.ddb[0], keys, 0); err != nil {
		t.Fatalf("%d writes failed with storage up: %v", len(failed), err)
	}
	e.c.Nodes[0].Kill(t)

	// Router 1 writes until it is killed, once a hundred writes were answered.
	var answered atomic.Int64
	var lost []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j, k := range keys {
			if err := migWrite(ctx, e.ddb[0], k, 100+j); err != nil {
				lost = append(lost, keys[j:]...)
				return
			}
			answered.Add(1)
		}
	}()
	waitFor(t, "100 writes answered by router 1 with storage down", func() bool { return answered.Load() >= 100 })
	e.c.Routers[0].Kill(t)
	<-done
	if len(lost) == 0 {
		t.Fatalf("router 1 answered all %d writes before it was killed: not killed mid-load", len(keys))
	}
	pending := e.stats(t, 1).GetMirrorPending()
	t.Logf("router 1 killed after %d answered writes; %d queued re-syncs; %d keys left to router 2", answered.Load(), pending, len(lost))
	if pending < uint64(min(answered.Load(), 100)) {
		t.Fatalf("mirror_pending %d after %d answered writes with storage down", pending, answered.Load())
	}
	// The write in flight when router 1 died, and the rest, go to router 2.
	for j, k := range lost {
		if err := migWrite(ctx, e.ddb[1], k, 1000+j); err != nil {
			t.Fatalf("router 2, storage down: write %s: %v", k, err)
		}
	}

	e.storageBack(t, 1, keys)
}

// TestBinMigrationUpstreamDownInMirror: dynalite, started by the test, is
// SIGKILLed by its PID in MIRROR while an SDK load of puts runs through the
// endpoint. Every write from then on fails with ServiceUnavailable (503,
// which the SDK retries as it would a DynamoDB it cannot reach); no write
// was acknowledged that dynalite does not hold once restarted on the same
// port and LevelDB directory (--path); writes of new keys refused while it
// was down exist on neither side; and after the queue drains every item
// equals DynamoDB's.
func TestBinMigrationUpstreamDownInMirror(t *testing.T) {
	binTest(t)
	dyn := peers.StartDynaliteProcess(t)
	e := startMigEnvOn(t, 1, dyn.Endpoint())
	ctx := ctxT(t, 2*time.Minute)
	before := migKeys("a", 50)
	if failed, err := migLoad(ctx, e.ddb[0], before, 0); err != nil {
		t.Fatalf("%d writes failed with dynalite up: %v", len(failed), err)
	}

	// Load: 4 workers, each putting its own keys in turn, so a key's puts
	// are sequential. v is the write's sequence number; per key, the last
	// acknowledged v and any v attempted after it (failed: its outcome is
	// unknown) are kept.
	type keyState struct {
		acked   int   // last acknowledged v, -1 none
		unknown []int // failed puts after it
	}
	keys := migKeys("k", 40)
	states := make([]keyState, len(keys))
	for i := range states {
		states[i].acked = -1
	}
	var (
		mu       sync.Mutex
		acks     atomic.Int64
		seq      atomic.Int64
		down     atomic.Bool // dynalite has been killed and not restarted
		badErrs  []string
		downErrs atomic.Int64
	)
	retryable := retry.IsErrorRetryables(retry.DefaultRetryables)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := w + 4*(n%(len(keys)/4))
				v := int(seq.Add(1))
				_, err := e.ddb[0].PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(migTable), Item: map[string]dtypes.AttributeValue{
					"pk": avS(keys[i]), "v": avN(strconv.Itoa(v))}})
				wasDown := down.Load()
				mu.Lock()
				if err == nil {
					states[i] = keyState{acked: v}
					acks.Add(1)
				} else {
					states[i].unknown = append(states[i].unknown, v)
					switch {
					case errCode(err) != "ServiceUnavailable" || retryable.IsErrorRetryable(err) != aws.TrueTernary:
						badErrs = append(badErrs, fmt.Sprintf("put %s: %s (%v), want a retryable ServiceUnavailable", keys[i], errCode(err), err))
					case wasDown:
						downErrs.Add(1)
					}
				}
				mu.Unlock()
			}
		})
	}
	waitFor(t, "100 puts acknowledged with dynalite up", func() bool { return acks.Load() >= 100 })
	pid := dyn.PID()
	dyn.Kill(t)
	down.Store(true)
	killedAt := acks.Load()
	waitFor(t, "puts failing with dynalite down", func() bool { return downErrs.Load() >= 20 })
	// A write of a new key while dynalite is down, and a read.
	during := migKeys("b", 10)
	for j, k := range during {
		wantErr(t, "write "+k+" with dynalite down", migWrite(ctx, e.ddb[0], k, j*5), "ServiceUnavailable")
	}
	_, err := e.ddb[0].GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: map[string]dtypes.AttributeValue{"pk": avS(before[0])}})
	wantErr(t, "read with dynalite down", err, "ServiceUnavailable")
	if n := acks.Load(); n > killedAt+4 {
		t.Errorf("%d puts acknowledged after dynalite (pid %d) was killed (at most the 4 in flight may have been answered first)", n-killedAt, pid)
	}

	dyn.Restart(t)
	down.Store(false)
	restarted := acks.Load()
	waitFor(t, "puts acknowledged again with dynalite back", func() bool { return acks.Load() >= restarted+50 })
	close(stop)
	wg.Wait()
	mu.Lock()
	for _, b := range badErrs[:min(len(badErrs), 5)] {
		t.Error(b)
	}
	mu.Unlock()
	t.Logf("dynalite pid %d killed after %d acknowledged puts, restarted as pid %d; %d puts failed while it was down; %d acknowledged in all",
		pid, killedAt, dyn.PID(), downErrs.Load(), acks.Load())

	// Every acknowledged put is in dynalite: each key holds its last
	// acknowledged v, or one of the failed puts after it.
	for i, k := range keys {
		out, err := e.up.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: map[string]dtypes.AttributeValue{"pk": avS(k)}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatalf("dynalite get %s: %v", k, err)
		}
		got := -1
		if n, ok := out.Item["v"].(*dtypes.AttributeValueMemberN); ok {
			got, _ = strconv.Atoi(n.Value)
		}
		st := states[i]
		if got != st.acked && !slices.Contains(st.unknown, got) {
			t.Errorf("key %s: dynalite holds v=%d; the last acknowledged put was v=%d (then failed: %v): an acknowledged write was lost", k, got, st.acked, st.unknown)
		}
	}

	e.waitDrained(t, 0)
	e.toVeltrix(t, 0)
	all := append(append(append([]string{}, before...), during...), keys...)
	e.compareAll(t, 0, all)
	// Nothing of the failed writes of new keys reached either side.
	for _, k := range during {
		out, err := e.ddb[0].GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: map[string]dtypes.AttributeValue{"pk": avS(k)}})
		if err != nil || out.Item != nil {
			t.Errorf("key %s written while dynalite was down: veltrix holds %s (err %v), want nothing", k, itemText(out.Item), err)
		}
	}
}

// TestBinMigrationRollbackUnderLoad: in CUTOVER 50 on two routers, items
// of the cutover cohort changed in dynalite behind Veltrix's back are read
// from Veltrix (the old value); after `rollback` to SHADOW, under a write
// load on both routers, both routers read them from DynamoDB within a
// bounded time; after a re-sync of those keys (what their CDC records
// trigger) and a walk to VELTRIX, every item equals DynamoDB's.
func TestBinMigrationRollbackUnderLoad(t *testing.T) {
	binTest(t)
	e := startMigEnv(t, 2)
	ctx := ctxT(t, 2*time.Minute)
	probes := migKeys("p", 40)
	loadKeys := migKeys("k", 100)
	for _, keys := range [][]string{probes, loadKeys} {
		if failed, err := migLoad(ctx, e.ddb[0], keys, 0); err != nil {
			t.Fatalf("%d writes failed: %v", len(failed), err)
		}
	}
	e.waitDrained(t, 0)
	if err := e.store.RecordImport(ctx, migTable, "imp-e2e", time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	e.advance(t, &migrationv1.AdvanceMigrationRequest{To: migrationv1.Phase_PHASE_SHADOW, Force: true, Reason: "e2e"})
	for _, pct := range []uint32{5, 25, 50} {
		e.advance(t, &migrationv1.AdvanceMigrationRequest{Percent: pct, Force: true, Reason: "e2e"})
	}

	// Change every probe in dynalite only; those still read with the old
	// value through both routers are Veltrix's: the cohort.
	getS := func(cli *dynamodb.Client, k string) string {
		out, err := cli.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(migTable), Key: map[string]dtypes.AttributeValue{"pk": avS(k)}})
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if s, ok := out.Item["s"].(*dtypes.AttributeValueMemberS); ok {
			return s.Value
		}
		return ""
	}
	for _, k := range probes {
		if _, err := e.up.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(migTable), Item: map[string]dtypes.AttributeValue{
			"pk": avS(k), "s": avS("behind")}}); err != nil {
			t.Fatal(err)
		}
	}
	var cohort []string
	for _, k := range probes {
		a, b := getS(e.ddb[0], k), getS(e.ddb[1], k)
		if (a == "behind") != (b == "behind") {
			t.Fatalf("key %s: router 1 reads %q, router 2 %q: the routers disagree on the cohort", k, a, b)
		}
		if a != "behind" {
			cohort = append(cohort, k)
		}
	}
	if len(cohort) == 0 || len(cohort) == len(probes) {
		t.Fatalf("cutover 50: %d of %d probes read from Veltrix, want some but not all", len(cohort), len(probes))
	}
	t.Logf("cutover 50: %d of %d probes in the cohort", len(cohort), len(probes))

	// Load on both routers across the rollback.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loadErrs atomic.Int64
	for i := range e.ddb {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := migWrite(ctx, e.ddb[i], loadKeys[(j*7+i)%len(loadKeys)], j); err != nil {
					loadErrs.Add(1)
				}
			}
		})
	}
	if _, err := e.mig[1].RollbackMigration(ctx, &migrationv1.RollbackMigrationRequest{Table: migTable, Reason: "e2e: p99"}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	begin := time.Now()
	for i, cli := range e.ddb {
		waitUntil(t, rollbackBound-time.Since(begin), fmt.Sprintf("router %d reads the cohort from DynamoDB", i+1), func() bool {
			for _, k := range cohort {
				if getS(cli, k) != "behind" {
					return false
				}
			}
			return true
		})
		t.Logf("router %d reads the cohort from DynamoDB %s after the rollback", i+1, time.Since(begin).Round(time.Millisecond))
	}
	time.Sleep(200 * time.Millisecond) // a little more load in SHADOW
	close(stop)
	wg.Wait()
	if n := loadErrs.Load(); n > 0 {
		t.Fatalf("%d writes of the load failed across the rollback", n)
	}

	// The probes' CDC records would re-sync them: do what the stream job does.
	var js []string
	for _, k := range probes {
		js = append(js, fmt.Sprintf(`{"pk":{"S":%q}}`, k))
	}
	resp, err := e.mig[0].SyncItems(ctx, &migrationv1.SyncItemsRequest{Table: migTable, Keys: js})
	if err != nil {
		t.Fatalf("sync items: %v", err)
	}
	for i, msg := range resp.GetErrors() {
		if msg != "" {
			t.Fatalf("sync %s: %s", probes[i], msg)
		}
	}
	e.waitDrained(t, 0)
	e.toVeltrix(t, 0)
	e.compareAll(t, 0, append(probes, loadKeys...))
}
