// Package coord is the router's replication coordinator: leaderless,
// Dynamo-style quorum writes and reads over the replica sets of the current
// placement, with hedged reads and read repair.
//
// A partition's route (cluster.Route, from placement.Document.Routing)
// names a read set and one or two write sets: while a replica moves, a
// write must reach its level in the old set and in the new one, and reads
// switch to the new set only once it is complete. Every storage request
// carries the view's placement epoch; a replica that refuses it as stale
// makes the operation wait for a newer view and run once more by it.
//
//   - A write goes to every live write target of its partition and
//     succeeds once W members of each write set acknowledged it.
//     Stragglers keep going in the background after the caller has its
//     answer. If a write set has fewer than W live members the write is
//     refused before anything is sent. Once every target has answered,
//     the records a target missed are stored as hints on one that
//     acknowledged them (hinted handoff, hints.go); hints never count
//     towards W.
//   - A read asks R members of the read set (the fastest first). If the
//     first does not answer within its hedge delay (its smoothed latency
//     plus four mean deviations), one more replica is asked; failures
//     move on to the next replica at once. With R > 1 the newest version wins and replicas that
//     answered with an older version, or nothing, are repaired in the
//     background.
//
// Versions decide everything: storage nodes apply a record only if it is
// newer, so retries, hedges and repairs are all safe to repeat.
package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/router/internal/cluster"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors; use errors.Is.
var (
	// ErrUnavailable means the consistency level could not be reached.
	ErrUnavailable = errors.New("not enough replicas")
	// ErrNotReady means the cluster has no config or placement yet.
	ErrNotReady = errors.New("cluster not ready")
	// ErrInvalidArgument means a storage node rejected the input itself.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Level is a consistency level.
type Level int

// Consistency levels.
const (
	One Level = iota + 1
	Quorum
	All
)

func (l Level) String() string {
	switch l {
	case One:
		return "ONE"
	case Quorum:
		return "QUORUM"
	case All:
		return "ALL"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Need is the number of replicas out of rf that level requires.
func Need(l Level, rf int) int {
	switch l {
	case One:
		return 1
	case All:
		return rf
	}
	return rf/2 + 1
}

// Metrics are the coordinator's Prometheus metrics.
type Metrics struct {
	ReplicaErrors *prometheus.CounterVec
	Hedges        prometheus.Counter
	ReadRepairs   prometheus.Counter
	// Hints counts the records of hinted handoff, by result: stored on a
	// replica for one that missed them, failed, or no_holder (no replica
	// acknowledged the record).
	Hints *prometheus.CounterVec
	// ItemLocks counts Acquire calls by result: held, contended,
	// unavailable or error; LockSeconds is how long the held ones took.
	ItemLocks   *prometheus.CounterVec
	LockSeconds prometheus.Histogram
}

// NewMetrics creates (and registers, when reg is not nil) the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ReplicaErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_router_replica_errors_total",
			Help: "Calls to storage replicas that failed, by node and gRPC code.",
		}, []string{"node", "code"}),
		Hedges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "veltrix_router_hedged_reads_total",
			Help: "Reads that asked one more replica because the first was slow.",
		}),
		ReadRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "veltrix_router_read_repairs_total",
			Help: "Stale replicas repaired by reads.",
		}),
		Hints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veltrix_router_hints_total",
			Help: "Records a replica missed, sent as hints to one that acknowledged them: stored, failed, or no_holder (no replica acknowledged).",
		}, []string{"result"}),
	}
	m.ItemLocks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "veltrix_router_item_locks_total",
		Help: "Item locks asked for by read-modify-writes, by result: held, contended (another owner held it to the end), unavailable (too few replicas) or error.",
	}, []string{"result"})
	m.LockSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "veltrix_router_item_lock_seconds",
		Help:    "Time to take an item lock, waiting for other owners included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	for _, r := range []string{"stored", "failed", "no_holder"} { // export before the first hint
		m.Hints.WithLabelValues(r)
	}
	for _, r := range []string{"held", "contended", "unavailable", "error"} {
		m.ItemLocks.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.ReplicaErrors, m.Hedges, m.ReadRepairs, m.Hints, m.ItemLocks, m.LockSeconds)
	}
	return m
}

// Options configure a Coordinator.
type Options struct {
	// HedgeMin and HedgeMax clamp the hedge delay. Defaults: 1ms and 50ms.
	HedgeMin, HedgeMax time.Duration
	// Timeout bounds replica calls that outlive the caller's request
	// (straggling writes, repairs) and calls made without a deadline.
	// Default: 5s.
	Timeout time.Duration
	// FailureWait is how long a write that can no longer reach its
	// consistency level waits for the replicas still in flight, so that its
	// error counts those that applied it. Default: 1s.
	FailureWait time.Duration
	// HintedHandoff sends the records a replica missed to one that
	// acknowledged them, to be replayed when it is back (see handoff).
	// Default: false (the router turns it on).
	HintedHandoff bool
	// HintTimeout bounds the StoreHints calls of one write. Default: 2s.
	HintTimeout time.Duration
	// Logger reports repair failures. Default: slog.Default().
	Logger *slog.Logger
	// Metrics receive the counters. Default: unregistered metrics.
	Metrics *Metrics
}

// Coordinator replicates reads and writes over a Cluster.
type Coordinator struct {
	c *cluster.Cluster
	o Options
}

// New returns a coordinator over c.
func New(c *cluster.Cluster, o Options) *Coordinator {
	if o.HedgeMin == 0 {
		o.HedgeMin = time.Millisecond
	}
	if o.HedgeMax == 0 {
		o.HedgeMax = 50 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.FailureWait == 0 {
		o.FailureWait = time.Second
	}
	if o.HintTimeout == 0 {
		o.HintTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	return &Coordinator{c: c, o: o}
}

// View returns the routing table the coordinator uses now.
func (co *Coordinator) View() (*cluster.View, error) {
	v := co.c.View()
	if !v.Ready() {
		if v.Partitions == 0 {
			return nil, fmt.Errorf("%w: no cluster config in etcd yet (is a router running the placement controller?)", ErrNotReady)
		}
		return nil, fmt.Errorf("%w: no placement yet (waiting for enough storage nodes to register)", ErrNotReady)
	}
	return v, nil
}

// replicaErr records a failed replica call and returns a short description.
func (co *Coordinator) replicaErr(n *cluster.Node, err error) string {
	code := status.Code(err)
	co.o.Metrics.ReplicaErrors.WithLabelValues(n.ID, code.String()).Inc()
	msg := status.Convert(err).Message()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Sprintf("%s: %s: %s", n.ID, code, msg)
}

// inputErr turns a storage node's InvalidArgument into ErrInvalidArgument:
// the request itself is bad and every replica would say the same.
func inputErr(err error) error {
	if status.Code(err) == codes.InvalidArgument {
		return fmt.Errorf("%w: %s", ErrInvalidArgument, status.Convert(err).Message())
	}
	return nil
}

// detached returns a context for replica calls that must outlive ctx's
// cancellation but not its deadline.
func (co *Coordinator) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d := co.o.Timeout
	if dl, ok := ctx.Deadline(); ok {
		d = max(time.Until(dl), time.Millisecond)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// ctxErr is ctx.Err(), or DeadlineExceeded once ctx's deadline has passed
// though its timer has not fired yet: a replica's own DeadlineExceeded can
// arrive first, and must not make the operation ask the next replica and
// fail as Unavailable.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// candidates returns the registered members of partition p's read set in
// the order to ask them: the faster of two random replicas first (power of
// two choices, so load spreads while slow nodes are avoided), then the
// rest in placement order.
func candidates(rt *cluster.Route) []*cluster.Node {
	reps := rt.ReadNodes
	out := make([]*cluster.Node, 0, len(reps))
	for _, n := range reps {
		if n != nil {
			out = append(out, n)
		}
	}
	if len(out) > 1 {
		i, j := rand.IntN(len(out)), rand.IntN(len(out))
		best := i
		if lj, li := out[j].Latency(), out[i].Latency(); lj < li {
			best = j
		}
		out[0], out[best] = out[best], out[0]
	}
	return out
}

// downReplicas names the nodes among ids (nodes parallel) that are not
// registered.
func downReplicas(ids []string, nodes []*cluster.Node) []string {
	var down []string
	for i, n := range nodes {
		if n == nil {
			down = append(down, ids[i]+": not registered")
		}
	}
	return down
}

// staleError marks an operation that a replica refused because the view it
// was routed by is older than the partition's last routing change; the
// caller waits for a view of at least epoch and retries once.
type staleError struct {
	epoch uint64
	err   error
}

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// staleReason is the ErrorInfo reason storage nodes give when they refuse
// a request made under a placement epoch older than the partition's last
// routing change.
const staleReason = "STALE_PLACEMENT_EPOCH"

// staleEpoch reports whether err is a stale-epoch refusal and the epoch to
// wait for: the largest epoch the node names in its ErrorInfo metadata
// (values of keys containing "epoch"), and at least the one after the
// view's (have).
func staleEpoch(err error, have uint64) (uint64, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return 0, false
	}
	want, stale := have+1, false
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != staleReason {
			continue
		}
		stale = true
		for k, v := range info.GetMetadata() {
			if !strings.Contains(k, "epoch") {
				continue // a partition number is no epoch
			}
			if e, err := strconv.ParseUint(v, 10, 64); err == nil {
				want = max(want, e)
			}
		}
	}
	if !stale && !strings.Contains(st.Message(), "stale placement epoch") {
		return 0, false
	}
	return want, true
}

// markStale wraps err (a failed operation) as a staleError if a replica
// refused it as stale (stale > 0: the epoch to wait for).
func markStale(err error, stale uint64) error {
	if err == nil || stale == 0 {
		return err
	}
	return &staleError{epoch: stale, err: err}
}

// staleWaitMax bounds how long an operation refused as stale waits for the
// router's view to catch up before its one retry.
const staleWaitMax = 2 * time.Second

// retryView returns the view to retry an operation with when err is a
// stale-epoch refusal: the router's view once it reached the epoch the
// replica asked for (waiting at most staleWaitMax). ok is false when the
// operation must not be retried.
func (co *Coordinator) retryView(ctx context.Context, err error) (*cluster.View, bool) {
	var se *staleError
	if !errors.As(err, &se) || ctx.Err() != nil {
		return nil, false
	}
	wctx, cancel := context.WithTimeout(ctx, staleWaitMax)
	defer cancel()
	v, werr := co.c.WaitEpoch(wctx, se.epoch)
	if werr != nil || !v.Ready() {
		co.o.Logger.Debug("stale placement epoch: router view did not catch up", "want", se.epoch, "err", werr)
		return nil, false
	}
	return v, true
}

func unavailable(what string, got, need int, errs []string) error {
	detail := ""
	if len(errs) > 0 {
		detail = ": " + strings.Join(errs, "; ")
	}
	return fmt.Errorf("%w: %s reached %d of %d required replicas%s", ErrUnavailable, what, got, need, detail)
}

func keyString(k *storagev1.Key) string {
	return fmt.Sprintf("key (table %d, partition key %q, sort key %q) in partition %d", k.GetTableId(), trunc(k.GetPartitionKey()), trunc(k.GetSortKey()), k.GetPartition())
}

func trunc(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
