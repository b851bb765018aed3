package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// jobLabel names the job id label. Not "job": Prometheus sets its own job
// label (the scrape target's) on every series and would rename ours to
// exported_job.
const jobLabel = "job_id"

// metrics turns the job runners' counts into Prometheus series. Counters
// count what this migrator did; a job shared by several migrators is the
// sum over them.
type metrics struct {
	items    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	rejects  *prometheus.CounterVec
	progress *prometheus.GaugeVec
	lag      *prometheus.GaugeVec
	failures *prometheus.GaugeVec
	failing  *prometheus.GaugeVec
	failed   *prometheus.CounterVec
	fallback *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_items_written_total",
			Help: "Items (puts and deletes) written to Veltrix by import and stream jobs, by job.",
		}, []string{jobLabel}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_bytes_read_total",
			Help: "Uncompressed source bytes read by import jobs, by job.",
		}, []string{jobLabel}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_rejects_total",
			Help: "Source lines and records rejected into a job's dead-letter report, by job.",
		}, []string{jobLabel}),
		progress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migrator_job_progress_ratio",
			Help: "Progress of a job this migrator works on, from 0 to 1.",
		}, []string{jobLabel}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migrator_stream_lag_seconds",
			Help: "Age of the last applied change of the shard furthest behind, per stream (CDC) job this migrator runs; 0 when caught up, absent while nothing has been read (unknown).",
		}, []string{jobLabel}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migrator_stream_consecutive_failures",
			Help: "Failed stream reads and Veltrix writes since the last success, per stream job this migrator runs; 0 when healthy.",
		}, []string{jobLabel}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migrator_stream_failing_seconds",
			Help: "How long a stream job's reads and writes have failed without a success, per stream job this migrator runs; 0 when healthy. The job fails when this reaches its fail_after (default 15m).",
		}, []string{jobLabel}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_stream_jobs_failed_total",
			Help: "Stream jobs this migrator moved to FAILED, by reason: source_unavailable (nothing succeeded for fail_after) or error.",
		}, []string{"reason"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_ingest_fallback_items_total",
			Help: "Items of INGEST imports written through BatchWrite instead, because a write target could not ingest their batch, by job.",
		}, []string{jobLabel}),
	}
	// Both reasons exist from the start, so rate() and increase() see the
	// first failure.
	m.failed.WithLabelValues("source_unavailable")
	m.failed.WithLabelValues("error")
	reg.MustRegister(m.items, m.bytes, m.rejects, m.progress, m.lag, m.failures, m.failing, m.failed, m.fallback)
	return m
}

func (m *metrics) IngestFallback(job string, n int) {
	m.fallback.WithLabelValues(job).Add(float64(n))
}
func (m *metrics) ItemsWritten(job string, n int)     { m.items.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) BytesRead(job string, n int64)      { m.bytes.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) Rejects(job string, n int)          { m.rejects.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) Progress(job string, ratio float64) { m.progress.WithLabelValues(job).Set(ratio) }

// StreamLag sets a stream's lag, or drops it while unknown: an absent
// series, not a 0 that would read as caught up.
func (m *metrics) StreamLag(job string, lag time.Duration, known bool) {
	if !known {
		m.lag.DeleteLabelValues(job)
		return
	}
	m.lag.WithLabelValues(job).Set(lag.Seconds())
}

func (m *metrics) StreamHealth(job string, failures uint32, failingFor time.Duration) {
	m.failures.WithLabelValues(job).Set(float64(failures))
	m.failing.WithLabelValues(job).Set(failingFor.Seconds())
}

func (m *metrics) StreamFailed(_, reason string) { m.failed.WithLabelValues(reason).Inc() }

// JobDone drops the lag and health of a stream this migrator no longer
// reads, so it does not report stale ones.
func (m *metrics) JobDone(job string) {
	m.lag.DeleteLabelValues(job)
	m.failures.DeleteLabelValues(job)
	m.failing.DeleteLabelValues(job)
}
