package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// pebbleDriver is raw Pebble in this process, opened with the storage
// engine's options (services/storage/internal/engine: 64 MiB memtable and
// block cache, bloom filters, value separation from 64 KiB, newest format):
// the ceiling of what a storage node can do on this machine, with no RPC,
// no versions and no read-compare-write.
type pebbleDriver struct {
	db   *pebble.DB
	sync bool
}

func startPebble(dir string, sync bool) (*pebbleDriver, error) {
	po := &pebble.Options{
		Cache:                       pebble.NewCache(64 << 20),
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      quietLogger{},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].FilterType = pebble.TableFilter
	}
	po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled: true, MinimumSize: 64 << 10, MaxBlobReferenceDepth: 10,
			RewriteMinimumAge: 10 * time.Minute, TargetGarbageRatio: 0.2,
		}
	}
	po.EnsureDefaults()
	db, err := pebble.Open(dir, po)
	po.Cache.Unref()
	if err != nil {
		return nil, err
	}
	return &pebbleDriver{db: db, sync: sync}, nil
}

func (d *pebbleDriver) writeOpts() *pebble.WriteOptions {
	if d.sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

func (d *pebbleDriver) Get(_ context.Context, key []byte) (bool, error) {
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Copy the value out, as a server answering a request must.
	buf := make([]byte, len(v))
	copy(buf, v)
	return true, closer.Close()
}

func (d *pebbleDriver) Put(_ context.Context, key, value []byte) error {
	return d.db.Set(key, value, d.writeOpts())
}

func (d *pebbleDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	found := 0
	for _, k := range keys {
		ok, err := d.Get(ctx, k)
		if err != nil {
			return found, err
		}
		if ok {
			found++
		}
	}
	return found, nil
}

func (d *pebbleDriver) PutBatch(_ context.Context, keys, values [][]byte) error {
	b := d.db.NewBatch()
	for i := range keys {
		_ = b.Set(keys[i], values[i], nil)
	}
	return errors.Join(b.Commit(d.writeOpts()), b.Close())
}

func (d *pebbleDriver) Close() error { return d.db.Close() }

// quietLogger drops Pebble's informational logs; errors still panic or
// reach the caller.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
