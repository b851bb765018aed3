package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var _ Control = (*Watcher)(nil)

// EnqueueSync implements Control.
func (w *Watcher) EnqueueSync(ctx context.Context, table, key string) error {
	return w.store.EnqueueSync(ctx, table, key)
}

// PendingSyncs implements Control, over the queues of the tables the watch
// knows.
func (w *Watcher) PendingSyncs(ctx context.Context, limit int) ([]PendingSync, error) {
	if limit <= 0 {
		return nil, nil
	}
	return w.store.pendingSyncs(ctx, slices.Collect(maps.Keys(w.Migrations())), limit)
}

// DoneSync implements Control.
func (w *Watcher) DoneSync(ctx context.Context, p PendingSync) error {
	return w.store.DoneSync(ctx, p)
}

// DropStaleSyncs implements Control.
func (w *Watcher) DropStaleSyncs(ctx context.Context) ([]StaleSyncs, error) {
	return w.store.DropStaleSyncs(ctx)
}

// RecordMismatch implements Control. The mismatch is written to etcd in
// the background (batched, at most maxMismatchBatch per table and write);
// FlushMismatches waits for it.
func (w *Watcher) RecordMismatch(_ context.Context, table string, m *migrationv1.Mismatch) {
	if m.GetTime() == nil || m.GetRouter() == "" {
		m = cloneMismatch(m)
		if m.Time == nil {
			m.Time = timestamppb.New(w.opts.Now())
		}
		if m.Router == "" {
			m.Router = w.opts.RouterID
		}
	}
	w.sample.add(table, m)
}

func cloneMismatch(m *migrationv1.Mismatch) *migrationv1.Mismatch {
	return proto.Clone(m).(*migrationv1.Mismatch)
}

// FlushMismatches writes the recorded mismatches not yet written.
func (w *Watcher) FlushMismatches(ctx context.Context) error { return w.sample.flush(ctx) }

type pendingMismatches struct {
	ms      []*migrationv1.Mismatch
	counted uint64
}

// mismatchWriter batches mismatches per table and writes them from one
// goroutine, so a burst of mismatches costs a few etcd writes and never
// blocks a request.
type mismatchWriter struct {
	w    *Watcher
	kick chan struct{}

	mu      sync.Mutex
	pending map[string]*pendingMismatches
	// writing serialises flushes.
	writing sync.Mutex
}

func newMismatchWriter(w *Watcher) *mismatchWriter {
	return &mismatchWriter{w: w, kick: make(chan struct{}, 1), pending: map[string]*pendingMismatches{}}
}

func (mw *mismatchWriter) add(table string, m *migrationv1.Mismatch) {
	mw.mu.Lock()
	p := mw.pending[table]
	if p == nil {
		p = &pendingMismatches{}
		mw.pending[table] = p
	}
	p.counted++
	p.ms = append(p.ms, m)
	if len(p.ms) > maxMismatchBatch {
		p.ms = p.ms[len(p.ms)-maxMismatchBatch:]
	}
	mw.mu.Unlock()
	select {
	case mw.kick <- struct{}{}:
	default:
	}
}

func (mw *mismatchWriter) run(ctx context.Context) {
	defer mw.w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-mw.kick:
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := mw.flush(fctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			mw.w.logger.Warn("write the mismatch sample; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(mw.w.retry):
			}
			select {
			case mw.kick <- struct{}{}:
			default:
			}
		}
	}
}

// flush writes everything pending; what it could not write stays pending.
func (mw *mismatchWriter) flush(ctx context.Context) error {
	mw.writing.Lock()
	defer mw.writing.Unlock()
	mw.mu.Lock()
	batch := mw.pending
	mw.pending = map[string]*pendingMismatches{}
	mw.mu.Unlock()
	var errs []error
	for table, p := range batch {
		if err := mw.w.store.AddMismatches(ctx, table, p.ms, p.counted); err != nil {
			errs = append(errs, err)
			mw.mu.Lock()
			q := mw.pending[table]
			if q == nil {
				q = &pendingMismatches{}
				mw.pending[table] = q
			}
			q.counted += p.counted
			q.ms = append(p.ms, q.ms...)
			if len(q.ms) > maxMismatchBatch {
				q.ms = q.ms[len(q.ms)-maxMismatchBatch:]
			}
			mw.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// figuresPublisher is the state of publishLoop.
type figuresPublisher struct {
	lease     clientv3.LeaseID
	renewed   time.Time
	published map[string][]byte
}

// publishLoop publishes this router's figures of every migrating table
// every PublishInterval, under a lease, skipping those that did not change.
func (w *Watcher) publishLoop(ctx context.Context) {
	defer w.wg.Done()
	p := &figuresPublisher{published: map[string][]byte{}}
	t := time.NewTicker(w.opts.PublishInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, max(w.opts.PublishInterval, time.Second))
		err := w.publishOnce(pctx, p)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.logger.Warn("publish migration figures", "router", w.opts.RouterID, "err", err)
		}
		select {
		case <-ctx.Done():
			w.pub.Store(p)
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) publishOnce(ctx context.Context, p *figuresPublisher) error {
	cli := w.store.Client
	ttl := w.opts.FiguresTTL
	if p.lease != 0 && time.Since(p.renewed) > ttl/3 {
		if _, err := cli.KeepAliveOnce(ctx, p.lease); err != nil {
			if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return err
			}
			// Expired (etcd was unreachable longer than the TTL): start
			// over with a new lease and publish everything again.
			p.lease, p.published = 0, map[string][]byte{}
		} else {
			p.renewed = time.Now()
		}
	}
	if p.lease == 0 {
		g, err := cli.Grant(ctx, int64(max(ttl/time.Second, 1)))
		if err != nil {
			return err
		}
		p.lease, p.renewed = g.ID, time.Now()
		w.pub.Store(p)
	}
	migs := w.Migrations()
	var errs []error
	for table := range p.published {
		if _, ok := migs[table]; ok {
			continue
		}
		// The migration ended: withdraw its figures.
		if _, err := cli.Delete(ctx, w.store.Keys.Stats(table, w.opts.RouterID)); err != nil {
			errs = append(errs, fmt.Errorf("migration: withdraw figures of %s: %w", table, err))
			continue
		}
		delete(p.published, table)
	}
	for table, f := range w.figures() {
		if _, ok := migs[table]; !ok {
			continue
		}
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if bytes.Equal(p.published[table], b) {
			continue
		}
		if err := w.store.publishFigures(ctx, table, w.opts.RouterID, b, p.lease); err != nil {
			errs = append(errs, err)
			continue
		}
		p.published[table] = b
	}
	return errors.Join(errs...)
}

// revokeFigures withdraws the published figures.
func (w *Watcher) revokeFigures(ctx context.Context) {
	p := w.pub.Load()
	if p == nil || p.lease == 0 {
		return
	}
	if _, err := w.store.Client.Revoke(ctx, p.lease); err != nil {
		w.logger.Warn("withdraw migration figures", "router", w.opts.RouterID, "err", err)
	}
}
