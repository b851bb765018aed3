package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector turns the engine's Stats into Prometheus metrics at scrape time,
// so the request path pays nothing for them.
type collector struct {
	s     *Server
	descs map[string]*prometheus.Desc
}

type statMetric struct {
	name, help string
	counter    bool
}

var storageMetrics = []statMetric{
	{"veltrix_storage_reads_total", "Keys read by Read and BatchRead.", true},
	{"veltrix_storage_reads_found_total", "Keys read that were found (tombstones included).", true},
	{"veltrix_storage_cache_hits_total", "Point reads served by the LIRS cache.", true},
	{"veltrix_storage_cache_misses_total", "Point reads that missed the LIRS cache.", true},
	{"veltrix_storage_read_bytes_total", "Value bytes returned by reads, scans and streams.", true},
	{"veltrix_storage_applies_total", "Apply batches committed.", true},
	{"veltrix_storage_applied_records_total", "Records applied (newer than the stored version).", true},
	{"veltrix_storage_superseded_records_total", "Records not applied because a newer or equal version was stored.", true},
	{"veltrix_storage_written_bytes_total", "Value bytes of applied records.", true},
	{"veltrix_storage_ingests_total", "Ingest runs (bulk import) applied.", true},
	{"veltrix_storage_ingested_records_total", "Records Ingest applied (newer than the stored version).", true},
	{"veltrix_storage_ingest_superseded_records_total", "Records Ingest did not apply because a newer or equal version was stored or in the run.", true},
	{"veltrix_storage_ingested_bytes_total", "Value bytes of the records Ingest applied.", true},
	{"veltrix_storage_ingests_redone_total", "Ingest runs decided again because a key of theirs was written, or a partition dropped, while they were decided outside the write path's committer.", true},
	{"veltrix_storage_commit_groups_total", "Group commits (Pebble batches) written.", true},
	{"veltrix_storage_commit_requests_total", "Apply requests in those group commits.", true},
	{"veltrix_storage_scans_total", "Scan requests served.", true},
	{"veltrix_storage_purged_tombstones_total", "Tombstones purged after the grace period.", true},
	{"veltrix_storage_purged_expired_total", "Expired items purged.", true},
	{"veltrix_storage_cache_bytes", "Bytes held by the LIRS cache.", false},
	{"veltrix_storage_pebble_disk_usage_bytes", "Disk space used by Pebble.", false},
	{"veltrix_storage_pebble_read_amplification", "Pebble's read amplification (sublevels).", false},
	{"veltrix_storage_pebble_memtable_bytes", "Bytes in Pebble's memtables.", false},
	{"veltrix_storage_pebble_compactions_total", "Compactions Pebble ran.", true},
	{"veltrix_storage_pebble_wal_bytes_written_total", "Bytes written to Pebble's WAL.", true},
	{"veltrix_storage_pebble_block_cache_hits_total", "Pebble block cache hits.", true},
	{"veltrix_storage_pebble_block_cache_misses_total", "Pebble block cache misses.", true},
	{"veltrix_storage_hints_pending", "Hints held here for other nodes, not yet replayed.", false},
	{"veltrix_storage_hints_bytes", "Bytes of the hints held here for other nodes.", false},
	{"veltrix_storage_locks_granted_total", "Item locks granted (LockKey), at once or after a wait.", true},
	{"veltrix_storage_lock_waits_total", "LockKey requests that found the lock held and queued for it.", true},
	{"veltrix_storage_locks_contended_total", "LockKey requests refused after waiting their whole wait (ABORTED, LOCK_CONTENDED).", true},
	{"veltrix_storage_locks_expired_total", "Item lock leases that ran out before their holder released them.", true},
	{"veltrix_storage_lock_grace_refusals_total", "LockKey requests refused in the grace period after a restart (UNAVAILABLE, LOCK_GRACE).", true},
	{"veltrix_storage_locks_held", "Item locks held now.", false},
	{"veltrix_storage_lock_waiters", "LockKey requests waiting for a held lock now.", false},
	{"veltrix_storage_topology_stale", "1 when etcd stopped answering and the node uses its last topology snapshot.", false},
}

func newCollector(s *Server) *collector {
	c := &collector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, m := range storageMetrics {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, nil, nil)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	eng := c.s.eng
	if eng == nil {
		return
	}
	st := eng.Stats()
	vals := map[string]float64{
		"veltrix_storage_reads_total":                     float64(st.Gets),
		"veltrix_storage_reads_found_total":               float64(st.GetsFound),
		"veltrix_storage_cache_hits_total":                float64(st.CacheHits),
		"veltrix_storage_cache_misses_total":              float64(st.CacheMisses),
		"veltrix_storage_read_bytes_total":                float64(st.BytesRead),
		"veltrix_storage_applies_total":                   float64(st.Applies),
		"veltrix_storage_applied_records_total":           float64(st.Applied),
		"veltrix_storage_superseded_records_total":        float64(st.Superseded),
		"veltrix_storage_written_bytes_total":             float64(st.BytesWritten),
		"veltrix_storage_ingests_total":                   float64(st.Ingests),
		"veltrix_storage_ingested_records_total":          float64(st.Ingested),
		"veltrix_storage_ingest_superseded_records_total": float64(st.IngestSuperseded),
		"veltrix_storage_ingested_bytes_total":            float64(st.IngestedBytes),
		"veltrix_storage_ingests_redone_total":            float64(st.IngestRedone),
		"veltrix_storage_commit_groups_total":             float64(st.CommitGroups),
		"veltrix_storage_commit_requests_total":           float64(st.CommitRequests),
		"veltrix_storage_scans_total":                     float64(st.Scans),
		"veltrix_storage_purged_tombstones_total":         float64(st.PurgedTombs),
		"veltrix_storage_purged_expired_total":            float64(st.PurgedExpired),
		"veltrix_storage_cache_bytes":                     float64(c.s.cacheBytes()),
	}
	ht := eng.HintTotals()
	vals["veltrix_storage_hints_pending"] = float64(ht.Pending)
	vals["veltrix_storage_hints_bytes"] = float64(ht.Bytes)
	if lt := c.s.locks; lt != nil {
		ls := lt.Stats()
		vals["veltrix_storage_locks_granted_total"] = float64(ls.Granted)
		vals["veltrix_storage_lock_waits_total"] = float64(ls.Waits)
		vals["veltrix_storage_locks_contended_total"] = float64(ls.Contended)
		vals["veltrix_storage_locks_expired_total"] = float64(ls.Expired)
		vals["veltrix_storage_lock_grace_refusals_total"] = float64(ls.Grace)
		vals["veltrix_storage_locks_held"] = float64(ls.Held)
		vals["veltrix_storage_lock_waiters"] = float64(ls.Waiting)
	}
	if c.s.watcher != nil && c.s.watcher.Stale() {
		vals["veltrix_storage_topology_stale"] = 1
	} else {
		vals["veltrix_storage_topology_stale"] = 0
	}
	if m := st.Pebble; m != nil {
		vals["veltrix_storage_pebble_disk_usage_bytes"] = float64(m.DiskSpaceUsage())
		vals["veltrix_storage_pebble_read_amplification"] = float64(m.ReadAmp())
		vals["veltrix_storage_pebble_memtable_bytes"] = float64(m.MemTable.Size)
		vals["veltrix_storage_pebble_compactions_total"] = float64(m.Compact.Count)
		vals["veltrix_storage_pebble_wal_bytes_written_total"] = float64(m.WAL.BytesWritten)
		vals["veltrix_storage_pebble_block_cache_hits_total"] = float64(m.BlockCache.Hits)
		vals["veltrix_storage_pebble_block_cache_misses_total"] = float64(m.BlockCache.Misses)
	}
	for _, m := range storageMetrics {
		v, ok := vals[m.name]
		if !ok {
			continue
		}
		t := prometheus.GaugeValue
		if m.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[m.name], t, v)
	}
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// moveMetrics count the node's part in moving replicas: backfills as a
// destination, drops as a former replica, and requests fenced off by an
// old placement epoch.
type moveMetrics struct {
	backfillBytes, backfillRecords, drops, staleEpoch prometheus.Counter
	backfills                                         prometheus.Gauge
}

func newMoveMetrics(reg prometheus.Registerer) *moveMetrics {
	m := &moveMetrics{
		backfillBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_backfill_bytes_total",
			Help: "Bytes of records streamed from other replicas and applied by this node's backfills."}),
		backfillRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_backfill_records_total",
			Help: "Records streamed from other replicas and applied (or superseded) by this node's backfills."}),
		backfills: prometheus.NewGauge(prometheus.GaugeOpts{Name: "veltrix_storage_backfills_in_flight",
			Help: "Partitions this node is backfilling now (at most --max-backfills)."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_partition_drops_total",
			Help: "Partitions whose data this node dropped after a move took them elsewhere."}),
		staleEpoch: prometheus.NewCounter(prometheus.CounterOpts{Name: "veltrix_storage_stale_epoch_rejections_total",
			Help: "Requests refused because they were routed under a placement epoch older than their partition's last routing change."}),
	}
	reg.MustRegister(m.backfillBytes, m.backfillRecords, m.backfills, m.drops, m.staleEpoch)
	return m
}
