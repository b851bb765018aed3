package dynamodb

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// Migration mode (docs/design.md, "Migration mode: request routing"). A
// table with a migration in PROXY..VELTRIX is served by its phase: this
// file decides where each request goes, upstream.go forwards requests to
// DynamoDB, resync.go brings Veltrix's copy of an item in line with
// DynamoDB, shadow.go compares reads, compare.go compares items.

// MigrationOptions configure migration mode.
type MigrationOptions struct {
	// Control is the migration control plane; nil turns migration mode
	// off (every table is Veltrix's alone).
	Control migration.Control
	// Skew is S, the skew allowance added to re-sync versions: at least
	// twice the largest clock error between routers and DynamoDB.
	// Default: 1s.
	Skew time.Duration
	// Now is the router's clock for re-sync versions. Default: time.Now.
	// Tests skew it.
	Now func() time.Time
	// Credentials sign upstream requests. Default: anonymous (unsigned;
	// dynalite accepts it, AWS does not).
	Credentials aws.CredentialsProvider
	// Region is the region of an upstream whose migration names none
	// (StartMigration stores one; older documents may lack it): the
	// router passes the AWS SDK's default region. Default: Options.Region.
	Region string
	// HTTPClient sends upstream requests. Default: a pooled client.
	HTTPClient *http.Client
	// RouterID names this router in recorded mismatches.
	RouterID string
	// ShadowWorkers bound the concurrent shadow comparisons; a read
	// that finds every worker busy and the queue full is not compared
	// (counted as dropped). Default: 4 workers, queue 256.
	ShadowWorkers int
	ShadowQueue   int
	// ShadowSettle is how long a re-check of a shadow mismatch waits
	// between reading DynamoDB and reading Veltrix: longer than a mirrored
	// write's re-sync takes, so Veltrix then holds what DynamoDB held.
	// Default: 1s.
	ShadowSettle time.Duration
	// ReplayInterval is how often the queued re-syncs are replayed.
	// Default: 500ms.
	ReplayInterval time.Duration
	// SyncFault, when set, is asked before each re-sync and fails it
	// with the error it returns. Fault injection for tests.
	SyncFault func(table string, key ddb.Item) error
}

func (o *MigrationOptions) ensureDefaults() {
	if o.Skew <= 0 {
		o.Skew = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ShadowSettle <= 0 {
		o.ShadowSettle = time.Second
	}
	if o.ShadowWorkers <= 0 {
		o.ShadowWorkers = 4
	}
	if o.ShadowQueue <= 0 {
		o.ShadowQueue = 256
	}
	if o.ReplayInterval <= 0 {
		o.ReplayInterval = 500 * time.Millisecond
	}
}

// migrator is a Handler's migration mode.
type migrator struct {
	h   *Handler
	o   MigrationOptions
	ctl migration.Control
	up  *upstream

	// syncing holds, by item, the re-syncs running on this router
	// (coalesce in resync.go).
	syncMu  sync.Mutex
	syncing map[string]*itemSyncs
	joined  atomic.Uint64 // re-syncs served by another's round

	shadow chan shadowJob
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func newMigrator(h *Handler) *migrator {
	o := h.o.Migration
	o.ensureDefaults()
	region := o.Region
	if region == "" {
		region = h.o.Region
	}
	up := newUpstream(o.Credentials, o.HTTPClient, region, h.o.RequestTimeout)
	m := &migrator{h: h, o: o, ctl: o.Control, up: up, syncing: map[string]*itemSyncs{},
		shadow: make(chan shadowJob, o.ShadowQueue), stop: make(chan struct{})}
	for range o.ShadowWorkers {
		m.wg.Go(m.shadowWorker)
	}
	m.wg.Go(m.replayLoop)
	return m
}

func (m *migrator) close() {
	m.once.Do(func() {
		close(m.stop)
		m.wg.Wait()
	})
}

// writeOps that a migrating table forwards and re-syncs; readOps are
// routed by phase and cohort. Other operations on a migrating table go to
// DynamoDB (table operations, TransactGetItems), except the ones that
// would write items behind the mirror's back, which are refused after
// PROXY.
var unmirrorableWrites = map[string]bool{
	"TransactWriteItems":    true,
	"ExecuteStatement":      true,
	"BatchExecuteStatement": true,
	"ExecuteTransaction":    true,
}

// migrationLister is implemented by a Control that can list every
// migration (migration.Watcher).
type migrationLister interface {
	Migrations() map[string]*migrationv1.Migration
}

// active returns the table's migration when it is in PROXY..VELTRIX (in
// DONE, and without one, the table is Veltrix's alone).
func (m *migrator) active(table string) (*migrationv1.Migration, bool) {
	mg, ok := m.ctl.Migration(table)
	if !ok || !migration.WritesUpstream(mg) {
		return nil, false
	}
	return mg, true
}

// route serves a request for a migrating table; handled is false when no
// table of the request is migrating (the endpoint serves it as usual). rt
// are the request's tables when the permission check decoded them (else
// nil: route decodes them).
func (m *migrator) route(ctx context.Context, op string, body []byte, rt *requestTables) (resp any, handled bool, err error) {
	if l, ok := m.ctl.(migrationLister); ok && len(l.Migrations()) == 0 {
		return nil, false, nil // no migration at all: skip decoding the body
	}
	if rt == nil {
		if rt, err = parseRequestTables(body); err != nil {
			// Refused rather than served by Veltrix: a body that cannot be
			// told which table it is for must not bypass DynamoDB.
			return nil, true, err
		}
	}
	names := rt.names()
	var mg *migrationv1.Migration
	for _, n := range names {
		if x, ok := m.active(n); ok {
			mg = x
			break
		}
	}
	if mg == nil {
		return nil, false, nil
	}
	if len(names) > 1 {
		return nil, true, validationf("%s names tables %v, and table %s is being migrated (phase %s): during a migration, send a migrating table's requests on their own",
			op, names, mg.GetTable(), mg.GetPhase())
	}
	if migration.Proxies(mg) {
		resp, err := m.up.forward(ctx, mg, op, body)
		return resp, true, err
	}
	switch {
	case writeOps[op] != nil:
		resp, err := m.mirrorWrite(ctx, mg, op, body)
		return resp, true, err
	case readOps[op] != nil:
		resp, err := m.read(ctx, mg, op, body)
		return resp, true, err
	case unmirrorableWrites[op]:
		return nil, true, validationf("%s is not available while table %s is being migrated (phase %s): its writes could not be mirrored to Veltrix; use PutItem, UpdateItem, DeleteItem or BatchWriteItem",
			op, mg.GetTable(), mg.GetPhase())
	}
	// Table operations and the other reads: DynamoDB is still the
	// source of truth.
	resp, err = m.up.forward(ctx, mg, op, body)
	return resp, true, err
}

// mirrorWrite forwards a write to DynamoDB and, once DynamoDB accepted
// it, re-syncs every item it wrote; DynamoDB's answer is the client's in
// every case. A failed re-sync is queued (Control.EnqueueSync) before the
// answer is returned. A write whose outcome is unknown (a 5xx answer, or
// no answer) is re-synced too: a re-sync copies whatever DynamoDB holds.
func (m *migrator) mirrorWrite(ctx context.Context, mg *migrationv1.Migration, op string, body []byte) (any, error) {
	resp, err := m.up.forward(ctx, mg, op, body)
	if err == nil && !resp.ok() && resp.status < 500 {
		return resp, nil // refused by DynamoDB: nothing was written
	}
	// The client's cancelling must not stop the re-sync or the queueing.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.h.o.RequestTimeout)
	defer cancel()
	m.mirror(sctx, mg, op, body)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// mirror re-syncs the items a write wrote, queueing the ones that fail.
func (m *migrator) mirror(ctx context.Context, mg *migrationv1.Migration, op string, body []byte) {
	table := mg.GetTable()
	t, err := m.h.table(table)
	if err != nil {
		m.h.o.Logger.Error("dynamodb: migration: a write DynamoDB accepted cannot be mirrored: the Veltrix table is unusable; run verify and repair",
			"table", table, "op", op, "err", err)
		m.ctl.MirrorWrite(table, true)
		return
	}
	keys, err := writtenKeys(t, op, body)
	if err != nil {
		m.h.o.Logger.Error("dynamodb: migration: a write DynamoDB accepted names keys Veltrix cannot parse; run verify and repair",
			"table", table, "op", op, "err", err)
		m.ctl.MirrorWrite(table, true)
		return
	}
	for i, err := range m.syncKeys(ctx, mg, t, keys) {
		if err != nil {
			m.queue(ctx, table, keys[i], err)
		}
		m.ctl.MirrorWrite(table, err != nil)
	}
}

// queue queues a failed re-sync of key for replay; when even that fails
// the key is logged at error level and counted.
func (m *migrator) queue(ctx context.Context, table string, key ddb.Item, cause error) {
	kj, err := ddb.MarshalDynamoDBJSON(key)
	if err == nil {
		err = m.ctl.EnqueueSync(ctx, table, string(kj))
	}
	if err != nil {
		m.h.o.Metrics.syncLost()
		m.h.o.Logger.Error("dynamodb: migration: a mirrored write could not be re-synced nor queued: Veltrix misses it until the item's next write or CDC record, or a verify and repair",
			"table", table, "key", string(kj), "resync_err", cause, "queue_err", err)
		return
	}
	m.h.o.Logger.Warn("dynamodb: migration: re-sync failed, queued for replay", "table", table, "key", string(kj), "err", cause)
}

// writtenKeys are the keys of the items a write request writes.
func writtenKeys(t *table, op string, body []byte) ([]ddb.Item, error) {
	var items []ddb.Item
	switch op {
	case "PutItem":
		var in putItemInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		items = append(items, in.Item)
	case "DeleteItem", "UpdateItem":
		var in deleteItemInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		items = append(items, in.Key)
	case "BatchWriteItem":
		var in batchWriteInput
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		for _, r := range in.RequestItems[t.Name] {
			switch {
			case r.PutRequest != nil:
				items = append(items, r.PutRequest.Item)
			case r.DeleteRequest != nil:
				items = append(items, r.DeleteRequest.Key)
			}
		}
	}
	keys := make([]ddb.Item, 0, len(items))
	for _, it := range items {
		k, err := t.keyItem(it)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyItem is the key attributes of an item.
func (t *table) keyItem(it ddb.Item) (ddb.Item, error) {
	if _, err := t.storageKey(it, false); err != nil {
		return nil, err
	}
	k := ddb.Item{t.Keys.PartitionKey.Name: it[t.Keys.PartitionKey.Name]}
	if t.Keys.HasSortKey() {
		k[t.Keys.SortKey.Name] = it[t.Keys.SortKey.Name]
	}
	return k, nil
}
