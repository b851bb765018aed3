package server

import "github.com/prometheus/client_golang/prometheus"

// metrics turns the job runners' counts into Prometheus series. Counters
// count what this migrator did; a job shared by several migrators is the
// sum over them.
type metrics struct {
	items    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	rejects  *prometheus.CounterVec
	progress *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_items_written_total",
			Help: "Items (puts and deletes) written to Veltrix by import jobs, by job.",
		}, []string{"job"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_bytes_read_total",
			Help: "Uncompressed source bytes read by import jobs, by job.",
		}, []string{"job"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_migrator_rejects_total",
			Help: "Source lines rejected into a job's dead-letter report, by job.",
		}, []string{"job"}),
		progress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veltrix_migrator_job_progress_ratio",
			Help: "Progress of a job this migrator works on, from 0 to 1.",
		}, []string{"job"}),
	}
	reg.MustRegister(m.items, m.bytes, m.rejects, m.progress)
	return m
}

func (m *metrics) ItemsWritten(job string, n int)     { m.items.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) BytesRead(job string, n int64)      { m.bytes.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) Rejects(job string, n int)          { m.rejects.WithLabelValues(job).Add(float64(n)) }
func (m *metrics) Progress(job string, ratio float64) { m.progress.WithLabelValues(job).Set(ratio) }
func (m *metrics) JobDone(job string)                 {}
