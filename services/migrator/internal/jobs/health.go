package jobs

import (
	"sync"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// DefaultFailAfter is how long a stream job's source reads and Veltrix
// writes may fail without a single success before the job fails, when
// StreamSpec.fail_after is unset.
const DefaultFailAfter = 15 * time.Minute

// FailAfter is spec's fail_after, or DefaultFailAfter.
func FailAfter(spec *migratorv1.StreamSpec) time.Duration {
	if d := spec.GetFailAfter(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return DefaultFailAfter
}

// health tracks a running job's failures: every failed source call or
// write and every success is observed here (from many goroutines, often
// several times a second); the run copies a snapshot into the job
// document once per poll interval, so etcd is not written per retry.
type health struct {
	now func() time.Time

	mu           sync.Mutex
	lastErr      string
	lastErrTime  time.Time
	failingSince time.Time
	failures     uint32
}

// newHealth starts from the health a previous run stored, when it was
// still failing within failAfter: a run restarted by the manager (or by
// another migrator taking the job over) goes on counting the same run of
// failures instead of resetting the clock that fails the job.
func newHealth(now func() time.Time, stored *migratorv1.JobHealth, failAfter time.Duration) *health {
	h := &health{now: now}
	if stored.GetFailingSince() == nil || stored.GetLastErrorTime() == nil {
		return h
	}
	if now().Sub(stored.GetLastErrorTime().AsTime()) <= failAfter {
		h.lastErr = stored.GetLastError()
		h.lastErrTime = stored.GetLastErrorTime().AsTime()
		h.failingSince = stored.GetFailingSince().AsTime()
		h.failures = stored.GetConsecutiveFailures()
	}
	return h
}

// observe records one attempt's outcome: nil is a success, which clears
// the failures.
func (h *health) observe(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.lastErr, h.lastErrTime, h.failingSince, h.failures = "", time.Time{}, time.Time{}, 0
		return
	}
	now := h.now()
	if h.failures == 0 || h.failingSince.IsZero() {
		h.failingSince = now
	}
	h.failures++
	h.lastErr, h.lastErrTime = err.Error(), now
}

// snapshot returns the health as the API reports it: an empty JobHealth
// when the last attempt succeeded.
func (h *health) snapshot() *migratorv1.JobHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &migratorv1.JobHealth{LastError: h.lastErr, ConsecutiveFailures: h.failures}
	if !h.lastErrTime.IsZero() {
		out.LastErrorTime = timestamp(h.lastErrTime)
	}
	if !h.failingSince.IsZero() {
		out.FailingSince = timestamp(h.failingSince)
	}
	return out
}

// failingFor is how long the current run of failures has lasted; 0 while
// healthy.
func (h *health) failingFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() {
		return 0
	}
	return h.now().Sub(h.failingSince)
}
