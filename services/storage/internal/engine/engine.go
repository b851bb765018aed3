package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// layoutVersion is stored under metaLayoutKey; Open refuses other versions.
const layoutVersion = "1"

var metaLayoutKey = []byte{spaceMeta, 'l', 'a', 'y', 'o', 'u', 't'}

// Options configure an Engine. Zero values take the documented defaults.
type Options struct {
	// FS is the filesystem Pebble uses. Default: vfs.Default; tests use
	// vfs.NewMem().
	FS vfs.FS
	// Dir is the Pebble directory. Required.
	Dir string
	// NoSync acknowledges an Apply once it is in the WAL and the memtable,
	// before the WAL is synced: a crash can lose acknowledged writes. Default:
	// false, so every Apply is on disk before it returns.
	NoSync bool
	// TombstoneGrace is how long a tombstone is kept after it was written
	// locally, and an expired item after its expiry, before they are purged.
	// Default: 24h.
	TombstoneGrace time.Duration
	// PurgeInterval is the time between background purge passes. Negative
	// disables the background purger (Purge still works). Default: 1m.
	PurgeInterval time.Duration
	// PurgeNeedsSync purges a tombstone or expired item only once its purge
	// base is also before its partition's sync point (SetSyncPoint) minus
	// SyncSkew: anti-entropy has then given it to every replica. Set it when
	// anti-entropy runs; without it a replica away longer than
	// TombstoneGrace can resurrect deletes. Default: false.
	PurgeNeedsSync bool
	// SyncSkew allows for clock differences between the replica that set a
	// sync point and this one. Default: 1m.
	SyncSkew time.Duration
	// Cache, when set, serves point reads. Default: nil (no cache).
	Cache Cache
	// CacheMaxItemBytes is the largest stored value (header and bytes) put in
	// Cache. Default: 1 MiB.
	CacheMaxItemBytes int
	// MaxBatchBytes bounds the keys and values of one Apply. Default: 256 MiB.
	MaxBatchBytes int
	// MaxIngestBytes bounds the keys and values of one Ingest run, which
	// the engine holds in memory while it builds the run's SST. Default:
	// 256 MiB.
	MaxIngestBytes int
	// MemTableSize is Pebble's memtable size. Default: 64 MiB, so a value of
	// a few MiB does not force a flush.
	MemTableSize uint64
	// BlockCacheSize is Pebble's block cache size. Default: 64 MiB.
	BlockCacheSize int64
	// ValueSeparationMinSize is the smallest value Pebble stores in a blob
	// file outside its sstables, so large values are not rewritten by every
	// compaction. Negative disables value separation. Default: 64 KiB.
	ValueSeparationMinSize int
	// MaxHintBytes bounds the bytes (keys and values) of the hints the
	// engine holds for other nodes; StoreHints beyond it fails with
	// ErrHintsFull. Default: 256 MiB.
	MaxHintBytes int64
	// Logger receives the engine's and Pebble's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock for expiry and tombstone grace. Default: time.Now.
	Now func() time.Time

	// Knobs for tests and benchmarks.
	maxGroupRequests int // requests per commit group; default 1024
	maxGroupBytes    int // bytes per commit group; default 16 MiB
	// noPipeline commits and syncs each group before building the next,
	// instead of building it while the previous one syncs.
	noPipeline    bool
	streamRefresh int // records between iterator refreshes in StreamPartition
	// ingestMinSSTBytes is the smallest change set an Ingest writes as an
	// SST; a smaller one is committed as a batch. Default: 4 MiB.
	ingestMinSSTBytes int
	// ingestHook, when set, is called at each step of an ingestion
	// (crash tests take a crash clone of the filesystem there).
	ingestHook func(step string)
}

// EnsureDefaults fills in the defaults of unset fields.
func (o *Options) EnsureDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.TombstoneGrace == 0 {
		o.TombstoneGrace = 24 * time.Hour
	}
	if o.SyncSkew == 0 {
		o.SyncSkew = time.Minute
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = time.Minute
	}
	if o.CacheMaxItemBytes == 0 {
		o.CacheMaxItemBytes = 1 << 20
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 256 << 20
	}
	if o.MaxIngestBytes == 0 {
		o.MaxIngestBytes = 256 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 64 << 20
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = 64 << 20
	}
	if o.ValueSeparationMinSize == 0 {
		o.ValueSeparationMinSize = 64 << 10
	}
	if o.MaxHintBytes == 0 {
		o.MaxHintBytes = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.maxGroupRequests == 0 {
		o.maxGroupRequests = 1024
	}
	if o.maxGroupBytes == 0 {
		o.maxGroupBytes = 16 << 20
	}
	if o.ingestMinSSTBytes == 0 {
		o.ingestMinSSTBytes = 4 << 20
	}
	if o.streamRefresh == 0 {
		o.streamRefresh = 4096
	}
}

// Validate reports every problem with the options in one error.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("engine: options: "+format, args...))
	}
	if o.Dir == "" {
		bad("Dir is empty")
	}
	if o.TombstoneGrace < 0 {
		bad("TombstoneGrace is negative (%s)", o.TombstoneGrace)
	}
	if o.CacheMaxItemBytes < 0 {
		bad("CacheMaxItemBytes is negative (%d)", o.CacheMaxItemBytes)
	}
	if o.MaxBatchBytes < MaxValueLen+itemKeyOverhead+MaxPartitionKeyLen+MaxSortKeyLen {
		bad("MaxBatchBytes %d cannot hold one maximal record", o.MaxBatchBytes)
	}
	if o.MaxBatchBytes > 1<<30 {
		bad("MaxBatchBytes %d is over 1 GiB", o.MaxBatchBytes)
	}
	if o.MaxIngestBytes < MaxValueLen+itemKeyOverhead+MaxPartitionKeyLen+MaxSortKeyLen {
		bad("MaxIngestBytes %d cannot hold one maximal record", o.MaxIngestBytes)
	}
	if o.MemTableSize < 1<<20 || o.MemTableSize > 1<<30 {
		bad("MemTableSize %d is outside [1 MiB, 1 GiB]", o.MemTableSize)
	}
	if o.MaxHintBytes < 0 {
		bad("MaxHintBytes is negative (%d)", o.MaxHintBytes)
	}
	if o.BlockCacheSize < 0 {
		bad("BlockCacheSize is negative (%d)", o.BlockCacheSize)
	}
	return errors.Join(errs...)
}

// Engine is a storage node's local store. It is safe for concurrent use.
type Engine struct {
	opts Options
	db   *pebble.DB
	log  *slog.Logger

	// closeMu is held for reading by every operation and for writing by
	// Close, so Close waits for operations in flight.
	closeMu   sync.RWMutex
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	reqs          chan *request
	prefetchers   chan struct{} // a slot per Apply reading its keys
	committerDone chan struct{}
	syncq         chan *group
	syncerDone    chan struct{}
	writeErr      atomic.Pointer[error] // set once a commit or sync fails

	// digests is owned by the committer goroutine.
	digests map[uint32]PartitionDigest

	cache      Cache
	cacheEpoch atomic.Uint32
	stripes    [cacheStripes]stripe
	gens       writeGens

	purgeMu   sync.Mutex // one purge pass at a time
	syncMu    sync.Mutex // serialises SetSyncPoint's read-compare-write
	stopPurge chan struct{}
	purgeDone chan struct{}

	st counters

	sstOpts   sstable.WriterOptions // how Ingest writes its SSTs
	ingestSeq atomic.Uint64         // names Ingest's SSTs

	// deciding is the ingestions being decided outside the committer
	// (prepareIngest), which afterCommit marks when it makes one of their
	// keys visible.
	deciding deciding

	hints hintState
}

// Open opens or creates the engine in opts.Dir.
func Open(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		opts:          opts,
		log:           opts.Logger,
		cache:         opts.Cache,
		reqs:          make(chan *request, 1024),
		prefetchers:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
		committerDone: make(chan struct{}),
		// As deep as reqs: a committer blocked on a full sync queue would
		// leave the requests behind it for the sync after the next one.
		syncq:      make(chan *group, 1024),
		syncerDone: make(chan struct{}),
		stopPurge:  make(chan struct{}),
		purgeDone:  make(chan struct{}),
	}
	po := e.pebbleOptions()
	db, err := pebble.Open(opts.Dir, po)
	po.Cache.Unref() // Pebble holds its own reference
	if err != nil {
		return nil, fmt.Errorf("engine: open pebble in %s: %w", opts.Dir, err)
	}
	e.db = db
	e.sstOpts = po.MakeWriterOptions(0, db.TableFormat())
	if err := e.removeIngestTemp(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := e.checkLayout(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if e.digests, err = e.loadDigests(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := e.loadHints(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	go e.commitLoop()
	if !opts.noPipeline && !opts.NoSync {
		go e.syncLoop()
	} else {
		close(e.syncerDone)
	}
	if opts.PurgeInterval > 0 {
		go e.purgeLoop()
	} else {
		close(e.purgeDone)
	}
	e.log.Info("storage engine open", "dir", opts.Dir, "sync", !opts.NoSync,
		"tombstone_grace", opts.TombstoneGrace, "partitions", len(e.digests))
	return e, nil
}

func (e *Engine) pebbleOptions() *pebble.Options {
	o := e.opts
	po := &pebble.Options{
		FS:                          o.FS,
		Cache:                       pebble.NewCache(o.BlockCacheSize),
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{e.log},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].FilterType = pebble.TableFilter
	}
	if o.ValueSeparationMinSize > 0 {
		minSize := o.ValueSeparationMinSize
		po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{
				Enabled:               true,
				MinimumSize:           minSize,
				MaxBlobReferenceDepth: 10,
				RewriteMinimumAge:     10 * time.Minute,
				TargetGarbageRatio:    0.2,
			}
		}
	}
	po.EnsureDefaults()
	return po
}

func (e *Engine) checkLayout() error {
	v, closer, err := e.db.Get(metaLayoutKey)
	if errors.Is(err, pebble.ErrNotFound) {
		if err := e.db.Set(metaLayoutKey, []byte(layoutVersion), pebble.Sync); err != nil {
			return fmt.Errorf("engine: write layout version: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: read layout version: %w", err)
	}
	defer closer.Close()
	if string(v) != layoutVersion {
		return fmt.Errorf("%w: %s holds key layout %q, this build reads %q", ErrCorrupt, e.opts.Dir, v, layoutVersion)
	}
	return nil
}

func (e *Engine) loadDigests() (map[uint32]PartitionDigest, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{spaceDigest}, UpperBound: []byte{spaceDigest + 1}})
	if err != nil {
		return nil, err
	}
	m := make(map[uint32]PartitionDigest)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		d, err := decodeDigest(v)
		if err != nil || len(k) != 5 {
			return nil, errors.Join(fmt.Errorf("engine: digest key %x: %w", k, err), it.Close())
		}
		m[uint32(k[1])<<24|uint32(k[2])<<16|uint32(k[3])<<8|uint32(k[4])] = d
	}
	return m, it.Close()
}

// Close stops the background purger, waits for calls in flight, commits
// queued writes and closes Pebble. Calls after Close return ErrClosed.
func (e *Engine) Close() error {
	first := false
	e.closeOnce.Do(func() {
		first = true
		e.closed.Store(true)
		close(e.stopPurge)
		<-e.purgeDone
		e.closeMu.Lock() // wait for calls in flight
		close(e.reqs)
		<-e.committerDone
		<-e.syncerDone
		e.closeErr = e.db.Close()
		e.closeMu.Unlock()
		e.log.Info("storage engine closed", "dir", e.opts.Dir)
	})
	if !first {
		return ErrClosed
	}
	return e.closeErr
}

// enter admits a call unless the engine is closed; the caller must call
// e.closeMu.RUnlock when done.
func (e *Engine) enter() error {
	if e.closed.Load() {
		return ErrClosed
	}
	e.closeMu.RLock()
	if e.closed.Load() {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (e *Engine) nowNanos() int64 { return e.opts.Now().UnixNano() }

// Stats are counters since Open, for the service to export.
type Stats struct {
	Gets             uint64 // keys read by Get and GetBatch
	GetsFound        uint64 // of which found (including tombstones)
	CacheHits        uint64
	CacheMisses      uint64
	BytesRead        uint64 // value bytes returned by Get, GetBatch, Scan, StreamPartition
	Applies          uint64 // Apply calls that succeeded
	Applied          uint64 // records applied
	Superseded       uint64 // records superseded
	BytesWritten     uint64 // value bytes of applied records
	Ingests          uint64 // Ingest runs that succeeded
	Ingested         uint64 // records Ingest applied
	IngestSuperseded uint64 // records Ingest did not apply: an equal or newer one was stored or in the run
	IngestedBytes    uint64 // value bytes of the records Ingest applied
	IngestRedone     uint64 // Ingest runs decided again: a key of theirs was written, or a partition dropped, while they were decided outside the committer
	CommitGroups     uint64 // Pebble batches committed by the committer
	CommitRequests   uint64 // requests in those batches; CommitRequests/CommitGroups is the group size
	CommitRereads    uint64 // keys the committer read again: a write became visible after Apply read them
	Scans            uint64
	ScanRecords      uint64
	StreamRecords    uint64
	PurgePasses      uint64
	PurgedTombs      uint64 // tombstones purged
	PurgedExpired    uint64 // expired items purged
	// Pebble is Pebble's own metrics; nil once the engine is closed.
	Pebble *pebble.Metrics
}

type counters struct {
	gets, getsFound, cacheHits, cacheMisses, bytesRead       atomic.Uint64
	applies, applied, superseded, bytesWritten               atomic.Uint64
	ingests, ingested, ingestSuperseded, ingestedBytes       atomic.Uint64
	ingestRedone                                             atomic.Uint64
	groups, groupRequests, scans, scanRecords, streamRecords atomic.Uint64
	rereads, purgePasses, purgedTombs, purgedExpired         atomic.Uint64
}

// Stats returns the engine's counters and Pebble's metrics.
func (e *Engine) Stats() Stats {
	s := Stats{
		Gets: e.st.gets.Load(), GetsFound: e.st.getsFound.Load(),
		CacheHits: e.st.cacheHits.Load(), CacheMisses: e.st.cacheMisses.Load(),
		BytesRead: e.st.bytesRead.Load(),
		Applies:   e.st.applies.Load(), Applied: e.st.applied.Load(), Superseded: e.st.superseded.Load(),
		BytesWritten: e.st.bytesWritten.Load(),
		Ingests:      e.st.ingests.Load(), Ingested: e.st.ingested.Load(),
		IngestSuperseded: e.st.ingestSuperseded.Load(), IngestedBytes: e.st.ingestedBytes.Load(), IngestRedone: e.st.ingestRedone.Load(),
		CommitGroups: e.st.groups.Load(), CommitRequests: e.st.groupRequests.Load(), CommitRereads: e.st.rereads.Load(),
		Scans: e.st.scans.Load(), ScanRecords: e.st.scanRecords.Load(), StreamRecords: e.st.streamRecords.Load(),
		PurgePasses: e.st.purgePasses.Load(), PurgedTombs: e.st.purgedTombs.Load(), PurgedExpired: e.st.purgedExpired.Load(),
	}
	s.Pebble = e.PebbleMetrics()
	return s
}

// PebbleMetrics returns Pebble's metrics, or nil once the engine is closed.
func (e *Engine) PebbleMetrics() *pebble.Metrics {
	if e.enter() != nil {
		return nil
	}
	defer e.closeMu.RUnlock()
	return e.db.Metrics()
}

// pebbleLogger sends Pebble's logs to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called on invariant violations; Pebble expects it not to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
