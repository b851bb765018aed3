package dynamodb

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the endpoint's per-operation metrics on the router's
// /metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// Migration mode.
	syncsLost      prometheus.Counter
	syncsDropped   prometheus.Counter
	syncsJoined    prometheus.Counter
	shadowsDropped prometheus.Counter
}

// NewMetrics registers the endpoint's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_dynamodb_requests_total", Help: "DynamoDB endpoint requests by operation.",
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_dynamodb_errors_total", Help: "DynamoDB endpoint errors by operation and error type (__type).",
		}, []string{"operation", "type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "veltrix_dynamodb_request_duration_seconds", Help: "DynamoDB endpoint request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"operation"}),
	}
	m.syncsLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "veltrix_dynamodb_migration_syncs_lost_total",
		Help: "Mirrored writes whose re-sync failed and could not be queued either (logged with the key; repair with verify).",
	})
	m.syncsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "veltrix_dynamodb_migration_syncs_dropped_total",
		Help: "Queued re-syncs dropped unapplied because their table's migration was deleted or is DONE (logged with the table; repair with verify).",
	})
	m.syncsJoined = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "veltrix_dynamodb_migration_syncs_joined_total",
		Help: "Re-syncs served by a round of the same item that started after them on this router, instead of a lock round of their own.",
	})
	m.shadowsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "veltrix_dynamodb_migration_shadow_dropped_total",
		Help: "Shadow comparisons skipped because every comparison worker was busy.",
	})
	reg.MustRegister(m.requests, m.errors, m.latency, m.syncsLost, m.syncsDropped, m.syncsJoined, m.shadowsDropped)
	return m
}

func (m *Metrics) syncLost() {
	if m != nil {
		m.syncsLost.Inc()
	}
}

func (m *Metrics) syncDropped(n int64) {
	if m != nil {
		m.syncsDropped.Add(float64(n))
	}
}

func (m *Metrics) syncJoined() {
	if m != nil {
		m.syncsJoined.Inc()
	}
}

func (m *Metrics) shadowDropped() {
	if m != nil {
		m.shadowsDropped.Inc()
	}
}

// observe records one request. op is the X-Amz-Target operation; unknown
// ones are counted as "unknown" so a client cannot create label values at
// will.
func (m *Metrics) observe(op string, start time.Time, err error) {
	if m == nil {
		return
	}
	if _, ok := knownOps[op]; !ok {
		op = "unknown"
	}
	m.requests.WithLabelValues(op).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		var e *Error
		typ := "InternalServerError"
		if errors.As(err, &e) {
			typ = e.Type
		} else {
			typ = toError(err).Type
		}
		m.errors.WithLabelValues(op, typ).Inc()
	}
}

// knownOps are the operation label values: the ones served and the ones
// refused as unsupported.
var knownOps = func() map[string]struct{} {
	out := map[string]struct{}{}
	for _, set := range []map[string]opFunc{tableOps, readOps, writeOps} {
		for name := range set {
			out[name] = struct{}{}
		}
	}
	for name := range unsupported {
		out[name] = struct{}{}
	}
	return out
}()
