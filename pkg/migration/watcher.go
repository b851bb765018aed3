package migration

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatcherOptions configures Watch.
type WatcherOptions struct {
	// Logger reports lost watches and failed writes. Default slog.Default().
	Logger *slog.Logger
	// RetryInterval is the wait between attempts after a failed etcd call
	// of a background loop (reload, publish, mismatch sample). Default 1s.
	RetryInterval time.Duration
	// RouterID, when set, is the id under which the watcher publishes this
	// process's figures (a router). Empty: figures are kept but not
	// published (the migrator only watches).
	RouterID string
	// PublishInterval is how often the figures are published. Default 1s.
	PublishInterval time.Duration
	// FiguresTTL is the TTL of the lease the published figures are bound
	// to: a router that stops counts no more after it. Default 10s.
	FiguresTTL time.Duration
	// Registerer, when set, receives the Prometheus metrics
	// (veltrix_migration_*).
	Registerer prometheus.Registerer
	// Now is the clock of the figures. Default time.Now.
	Now func() time.Time
}

func (o *WatcherOptions) ensureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.PublishInterval <= 0 {
		o.PublishInterval = time.Second
	}
	if o.FiguresTTL <= 0 {
		o.FiguresTTL = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Watcher keeps every table's migration in memory, current from an etcd
// watch, so request paths never read etcd for it; when etcd is unreachable
// the last state stays in use. It is the etcd-backed Control: it also
// queues re-syncs, writes the mismatch sample in the background and keeps
// and publishes this process's figures.
type Watcher struct {
	*recorder
	store  *Store
	logger *slog.Logger
	retry  time.Duration
	opts   WatcherOptions
	sample *mismatchWriter
	pub    atomic.Pointer[figuresPublisher]

	migs    atomic.Pointer[map[string]*migrationv1.Migration]
	mu      sync.Mutex
	changes []chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Watch loads every migration and keeps them current until Close.
func (s *Store) Watch(ctx context.Context, o WatcherOptions) (*Watcher, error) {
	o.ensureDefaults()
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		recorder: newRecorder(o.Now, m),
		store:    s, logger: o.Logger, retry: o.RetryInterval, opts: o,
	}
	w.sample = newMismatchWriter(w)
	migs, rev, err := w.load(ctx)
	if err != nil {
		return nil, err
	}
	w.publish(migs)
	bg, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go w.watchLoop(bg, rev)
	go w.sample.run(bg)
	if o.RouterID != "" {
		w.wg.Add(1)
		go w.publishLoop(bg)
	}
	return w, nil
}

// Migration returns table's migration as last seen, if it has one. The
// result is shared: never modify it.
func (w *Watcher) Migration(table string) (*migrationv1.Migration, bool) {
	m, ok := (*w.migs.Load())[table]
	return m, ok
}

// Migrations returns every migration as last seen, by table. Never modify
// the map or its values.
func (w *Watcher) Migrations() map[string]*migrationv1.Migration { return *w.migs.Load() }

// Changes returns a channel that receives (coalesced) after every change.
func (w *Watcher) Changes() <-chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.changes = append(w.changes, ch)
	w.mu.Unlock()
	return ch
}

// Close stops watching, writes the mismatches not yet written and
// withdraws the published figures.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*w.retry)
	defer cancel()
	if err := w.sample.flush(ctx); err != nil {
		w.logger.Warn("write the mismatch sample on close", "err", err)
	}
	w.revokeFigures(ctx)
}

func (w *Watcher) load(ctx context.Context) (map[string]*migrationv1.Migration, int64, error) {
	resp, err := w.store.Client.Get(ctx, w.store.Keys.TablesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("migration: load migrations: %w", err)
	}
	migs := make(map[string]*migrationv1.Migration, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.apply(migs, kv, false)
	}
	return migs, resp.Header.Revision, nil
}

func (w *Watcher) apply(migs map[string]*migrationv1.Migration, kv *mvccpb.KeyValue, deleted bool) {
	table := strings.TrimPrefix(string(kv.Key), w.store.Keys.TablesPrefix())
	if deleted {
		delete(migs, table)
		return
	}
	m, err := decodeMigration(kv)
	if err != nil {
		w.logger.Error("ignoring undecodable migration", "table", table, "err", err)
		return
	}
	migs[table] = m
}

func (w *Watcher) publish(migs map[string]*migrationv1.Migration) {
	w.migs.Store(&migs)
	w.setMigrations(migs)
	w.mu.Lock()
	for _, ch := range w.changes {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
}

func (w *Watcher) watchLoop(ctx context.Context, rev int64) {
	defer w.wg.Done()
	for ctx.Err() == nil {
		wch := w.store.Client.Watch(clientv3.WithRequireLeader(ctx), w.store.Keys.TablesPrefix(),
			clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				w.logger.Warn("migration watch interrupted", "err", err)
				break
			}
			if len(resp.Events) == 0 {
				continue
			}
			next := maps.Clone(*w.migs.Load())
			for _, ev := range resp.Events {
				w.apply(next, ev.Kv, ev.Type == clientv3.EventTypeDelete)
			}
			rev = resp.Header.Revision
			w.publish(next)
		}
		// The watch ended (compaction, lost leader): reload everything and
		// watch again from the reloaded revision.
		for ctx.Err() == nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			migs, r, err := w.load(lctx)
			cancel()
			if err == nil {
				rev = r
				w.publish(migs)
				break
			}
			w.logger.Warn("reload migrations", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(w.retry):
			}
		}
	}
}

// Store is the store the watcher reads.
func (w *Watcher) Store() *Store { return w.store }
