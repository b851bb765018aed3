package migration

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// windowMinutes is the length of the window the figures cover: the last
// hour in 1-minute buckets (or less: the buckets are cleared when the
// table's phase changes).
const windowMinutes = 60

// Window is the longest span the figures of a migration cover.
const Window = windowMinutes * time.Minute

// Figures are one router's sums over the window for one table, as
// published to etcd and merged by Store.Stats.
type Figures struct {
	// PhaseTime is the phase_time of the migration the figures were
	// counted in; figures of another phase are not merged.
	PhaseTime time.Time `json:"phase_time"`
	// Compared and Mismatches count shadow comparisons.
	Compared   uint64 `json:"compared,omitempty"`
	Mismatches uint64 `json:"mismatches,omitempty"`
	// Mirrored and MirrorFailed count mirrored writes.
	Mirrored     uint64 `json:"mirrored,omitempty"`
	MirrorFailed uint64 `json:"mirror_failed,omitempty"`
	// Veltrix5xx counts server errors of Veltrix-served requests.
	Veltrix5xx uint64 `json:"veltrix_5xx,omitempty"`
	// Latency holds the read latency histograms by side (sparse buckets).
	VeltrixLatency  map[int]uint64 `json:"veltrix_latency,omitempty"`
	DynamoDBLatency map[int]uint64 `json:"dynamodb_latency,omitempty"`
}

type minute struct {
	at                                     int64 // Unix minute; 0: empty
	compared, mismatches, mirrored, failed uint64
	v5xx                                   uint64
	lat                                    [2]Histogram // by Side
}

// tableFigures are one table's 1-minute buckets, a ring by Unix minute.
type tableFigures struct {
	mu        sync.Mutex
	phaseTime time.Time
	minutes   [windowMinutes]minute
}

// bucket returns the bucket of now, cleared if it held an older minute.
// The caller holds mu.
func (t *tableFigures) bucket(now time.Time) *minute {
	at := now.Unix() / 60
	b := &t.minutes[at%windowMinutes]
	if b.at != at {
		*b = minute{at: at}
	}
	return b
}

func (t *tableFigures) sum(now time.Time) Figures {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := Figures{PhaseTime: t.phaseTime}
	cur := now.Unix() / 60
	var lat [2]Histogram
	for i := range t.minutes {
		b := &t.minutes[i]
		if b.at == 0 || b.at <= cur-windowMinutes {
			continue
		}
		f.Compared += b.compared
		f.Mismatches += b.mismatches
		f.Mirrored += b.mirrored
		f.MirrorFailed += b.failed
		f.Veltrix5xx += b.v5xx
		lat[0].Merge(&b.lat[0])
		lat[1].Merge(&b.lat[1])
	}
	f.DynamoDBLatency = lat[SideDynamoDB].sparse()
	f.VeltrixLatency = lat[SideVeltrix].sparse()
	return f
}

// recorder implements Recorder: windowed figures per table and the
// Prometheus metrics.
type recorder struct {
	now func() time.Time

	mu     sync.RWMutex
	tables map[string]*tableFigures

	m *metrics
}

func newRecorder(now func() time.Time, m *metrics) *recorder {
	return &recorder{now: now, tables: map[string]*tableFigures{}, m: m}
}

func (r *recorder) table(name string) *tableFigures {
	r.mu.RLock()
	t := r.tables[name]
	r.mu.RUnlock()
	if t != nil {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t = r.tables[name]; t == nil {
		t = &tableFigures{}
		r.tables[name] = t
	}
	return t
}

func (r *recorder) add(table string, fn func(b *minute)) {
	t := r.table(table)
	now := r.now()
	t.mu.Lock()
	fn(t.bucket(now))
	t.mu.Unlock()
}

// setMigrations clears the figures of every table whose phase changed and
// drops those of tables without a migration.
func (r *recorder) setMigrations(migs map[string]*migrationv1.Migration) {
	r.mu.Lock()
	for name := range r.tables {
		if _, ok := migs[name]; !ok {
			delete(r.tables, name)
		}
	}
	r.mu.Unlock()
	for name, m := range migs {
		t := r.table(name)
		pt := m.GetPhaseTime().AsTime()
		t.mu.Lock()
		if !t.phaseTime.Equal(pt) {
			t.phaseTime = pt
			t.minutes = [windowMinutes]minute{}
		}
		t.mu.Unlock()
	}
	r.m.setMigrations(migs)
}

// figures returns every table's sums now.
func (r *recorder) figures() map[string]Figures {
	r.mu.RLock()
	tables := make(map[string]*tableFigures, len(r.tables))
	for k, v := range r.tables {
		tables[k] = v
	}
	r.mu.RUnlock()
	now := r.now()
	out := make(map[string]Figures, len(tables))
	for name, t := range tables {
		out[name] = t.sum(now)
	}
	return out
}

func (r *recorder) ShadowCompared(table string, mismatch bool) {
	r.add(table, func(b *minute) {
		b.compared++
		if mismatch {
			b.mismatches++
		}
	})
	r.m.shadowCompared(table, mismatch)
}

func (r *recorder) ReadLatency(table string, side Side, d time.Duration) {
	if side != SideDynamoDB && side != SideVeltrix {
		return
	}
	r.add(table, func(b *minute) { b.lat[side].Observe(d) })
	r.m.readLatency(table, side, d)
}

func (r *recorder) MirrorWrite(table string, failed bool) {
	r.add(table, func(b *minute) {
		b.mirrored++
		if failed {
			b.failed++
		}
	})
	r.m.mirrorWrite(table, failed)
}

func (r *recorder) VeltrixServerError(table string) {
	r.add(table, func(b *minute) { b.v5xx++ })
	r.m.serverError(table)
}

// metrics are the Prometheus side of the recorder; nil when no registerer
// was given (every method is then a no-op).
type metrics struct {
	compared   *prometheus.CounterVec
	mismatches *prometheus.CounterVec
	mirror     *prometheus.CounterVec
	v5xx       *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	phase      *prometheus.GaugeVec
	percent    *prometheus.GaugeVec

	mu    sync.Mutex
	known map[string]bool
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migration_reads_compared_total",
			Help: "Shadow reads compared between DynamoDB and Veltrix, by table.",
		}, []string{"table"}),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migration_mismatches_total",
			Help: "Shadow reads whose DynamoDB and Veltrix answers differed, by table.",
		}, []string{"table"}),
		mirror: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migration_mirror_writes_total",
			Help: "Writes acknowledged by DynamoDB and brought into Veltrix, by table and result (ok, or failed: queued for replay).",
		}, []string{"table", "result"}),
		v5xx: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migration_veltrix_server_errors_total",
			Help: "Server errors (5xx) of requests of a migrating table served by Veltrix, by table.",
		}, []string{"table"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veltrix_migration_read_duration_seconds",
			Help:    "Read latency of a migrating table, by table and side (dynamodb, veltrix).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"table", "side"}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migration_phase",
			Help: "Phase of a migrating table as this process sees it (1 proxy, 2 mirror, 3 shadow, 4 cutover, 5 veltrix, 6 done).",
		}, []string{"table"}),
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migration_cutover_percent",
			Help: "Percentage of a migrating table's partition keys whose reads Veltrix serves in the cutover phase.",
		}, []string{"table"}),
		known: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.compared, m.mismatches, m.mirror, m.v5xx, m.latency, m.phase, m.percent} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("migration: register metrics: %w", err)
		}
	}
	return m, nil
}

func sideLabel(s Side) string {
	if s == SideVeltrix {
		return "veltrix"
	}
	return "dynamodb"
}

func (m *metrics) shadowCompared(table string, mismatch bool) {
	if m == nil {
		return
	}
	m.compared.WithLabelValues(table).Inc()
	if mismatch {
		m.mismatches.WithLabelValues(table).Inc()
	}
}

func (m *metrics) readLatency(table string, side Side, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(table, sideLabel(side)).Observe(d.Seconds())
	}
}

func (m *metrics) mirrorWrite(table string, failed bool) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "failed"
	}
	m.mirror.WithLabelValues(table, result).Inc()
}

func (m *metrics) serverError(table string) {
	if m != nil {
		m.v5xx.WithLabelValues(table).Inc()
	}
}

// setMigrations sets the phase gauges and removes those of tables whose
// migration is gone.
func (m *metrics) setMigrations(migs map[string]*migrationv1.Migration) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.known {
		if _, ok := migs[name]; !ok {
			m.phase.DeleteLabelValues(name)
			m.percent.DeleteLabelValues(name)
			delete(m.known, name)
		}
	}
	for name, mig := range migs {
		m.phase.WithLabelValues(name).Set(float64(mig.GetPhase()))
		m.percent.WithLabelValues(name).Set(float64(mig.GetCutoverPercent()))
		m.known[name] = true
	}
}
