// Package jobs runs the migrator's import and verify jobs, keeping their
// specs, state, checkpoints, claims and dead-letter reports in etcd (see
// Store for the key layout).
//
// # Import
//
// A job's data files are its unit of sharing: a migrator claims a file
// (an etcd key under its session lease), reads it, and checkpoints it after
// every committed batch. A reader goroutine per file decodes and maps lines
// into batches that a pool of writers sends to the routers' BatchWrite (or,
// for the INGEST write path, to every replica's Ingest: ingest.go); a
// per-file committer applies finished batches in line order, so a
// checkpoint's line number only ever covers lines whose writes succeeded
// and its counters count exactly those lines. Memory is bounded by the
// batch channel (two batches per writer; for INGEST, whose batches are
// 16 MiB runs, one) and the longest line.
//
// A migrator that stops (or whose lease expires) leaves its files'
// checkpoints behind; whoever claims such a file next re-reads it from the
// start, skips the committed lines and goes on. Lines between the last
// checkpoint and the crash are written twice, which changes nothing:
// every write carries the version of its source (see mapping.FullExportVersion)
// and the storage nodes keep the highest version, equal records being the
// same mutation.
//
// # Verify
//
// A verify job is run by one migrator at a time (claim "verify") from the
// start; it holds its state in memory and writes progress to the job
// document every second. See verify.go.
//
// # Streams and table scans
//
// A stream (CDC) job and a table-scan import are each run by one migrator
// at a time (claims "stream" and "scan"), which checkpoints every shard or
// Scan segment in etcd under a guard on its claim, so a migrator that lost
// the job cannot move them; the next one resumes from them. Their counters
// live in the job document, written every second. See stream.go and
// tablescan.go.
package jobs

import (
	"context"
	"iter"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Target is the Veltrix cluster a job writes to and reads from;
// *client.Client implements it.
type Target interface {
	BatchWriteResults(ctx context.Context, muts []client.Mutation, opts ...client.CallOption) ([]client.WriteResult, error)
	BatchGet(ctx context.Context, keys []client.Key, opts ...client.CallOption) ([]client.Result, error)
	Scan(ctx context.Context, table string, segment, totalSegments int) iter.Seq2[client.Item, error]
	DescribeTable(ctx context.Context, name string) (*kvv1.Table, error)
	CreateTable(ctx context.Context, name string, opts ...client.TableOption) (*kvv1.Table, error)
	UpdateTable(ctx context.Context, name string, opts ...client.UpdateOption) (*kvv1.Table, error)
}

// DialRouters returns the two clients of the routers an Env uses: Target,
// with pkg/client's retries, for calls nothing else retries, and Direct,
// without them, for the calls the jobs retry themselves, so that no call
// is retried by both. opts go to both (the migrator's TLS credentials).
// Close both.
func DialRouters(ctx context.Context, endpoints []string, opts ...client.Option) (target, direct *client.Client, err error) {
	target, err = client.New(ctx, endpoints, opts...)
	if err != nil {
		return nil, nil, err
	}
	direct, err = client.New(ctx, endpoints, append(opts, client.WithMaxRetries(0))...)
	if err != nil {
		_ = target.Close()
		return nil, nil, err
	}
	return target, direct, nil
}

// Observer receives counts for metrics; the server turns them into
// Prometheus series.
type Observer interface {
	ItemsWritten(job string, n int)
	BytesRead(job string, n int64)
	Rejects(job string, n int)
	Progress(job string, ratio float64)
	// StreamLag is a stream job's lag (cdc.Stats.Lag) on this migrator;
	// known is false while nothing has been read (the lag is unknown).
	StreamLag(job string, lag time.Duration, known bool)
	// StreamHealth is a stream job's run of failures: how many calls or
	// writes failed since the last success, and for how long.
	StreamHealth(job string, failures uint32, failingFor time.Duration)
	// StreamFailed says this migrator moved a stream job to FAILED;
	// reason is "source_unavailable" (failing for fail_after) or "error".
	StreamFailed(job, reason string)
	// JobDone says this migrator stopped working on job.
	JobDone(job string)
	// IngestFallback says an INGEST import wrote a batch of items through
	// BatchWrite because a write target could not ingest it.
	IngestFallback(job string, items int)
}

type nopObserver struct{}

func (nopObserver) ItemsWritten(string, int)                   {}
func (nopObserver) BytesRead(string, int64)                    {}
func (nopObserver) Rejects(string, int)                        {}
func (nopObserver) Progress(string, float64)                   {}
func (nopObserver) StreamLag(string, time.Duration, bool)      {}
func (nopObserver) StreamHealth(string, uint32, time.Duration) {}
func (nopObserver) StreamFailed(string, string)                {}
func (nopObserver) JobDone(string)                             {}
func (nopObserver) IngestFallback(string, int)                 {}

// Env is what runners need.
type Env struct {
	// Store is the job store.
	Store *Store
	// Target is the cluster, through a client that retries Unavailable
	// (pkg/client's retry interceptor): for calls no job loop retries.
	Target Target
	// Direct is the cluster through a client that makes one attempt per
	// call (client.WithMaxRetries(0)). The calls the jobs retry themselves
	// — every BatchWrite (writeRetry) and a stream's wait for its target
	// table — go through it, so each has one retry policy and each failure
	// is one call and one entry in a stream's health. Default: Target
	// (tests' fakes do not retry).
	Direct Target
	// ID names this migrator in claims and checkpoints.
	ID string
	// Logger receives the runners' logs.
	Logger *slog.Logger
	// Observer receives metrics; nil for none.
	Observer Observer
	// Rates estimates rates and ETAs.
	Rates *Rates
	// MaxStoredRejects caps the rejects stored per job (all are counted).
	// Default 10000.
	MaxStoredRejects int64
	// WriteRetry is how long a failing write to Veltrix is retried before
	// the job fails. Default 2m.
	WriteRetry time.Duration
	// PollInterval is how often a runner refreshes the job's state and
	// progress. Default 1s.
	PollInterval time.Duration
	// Now is the clock deciding expiries. Default time.Now.
	Now func() time.Time
	// AWSConfig loads the SDK configuration stream and table-scan sources
	// reach AWS with. Default: LoadAWSConfig (the default credential
	// chain).
	AWSConfig func(ctx context.Context, o *migratorv1.AwsOptions) (aws.Config, error)
	// Migrations, when set, is the watch of migration mode (pkg/migration):
	// a stream into a table whose migration mirrors writes has the routers
	// re-sync each changed item (Sync) instead of applying its image, and an
	// import that succeeds into a table with a migration is recorded.
	Migrations *migration.Watcher
	// Sync is the routers' MigrationService through a connection that does
	// not retry (the stream retries). Required with Migrations.
	Sync migrationv1.MigrationServiceClient
	// Topology is the cluster's topology in etcd: INGEST imports watch it
	// for the placement and the storage nodes' addresses. nil: INGEST
	// imports fail.
	Topology *topology.Store
	// DialOptions go to the dials of storage nodes (INGEST imports): the
	// migrator's TLS credentials. Default: none (plaintext).
	DialOptions []grpc.DialOption
	// StreamOptions are the base options of stream consumers and
	// table-scan sources (tests shorten their waits). Default: their own
	// defaults.
	StreamOptions cdc.Options

	// crashed makes runs keep their claims when they stop, as a crashed
	// migrator does (tests of lease expiry).
	crashed atomic.Bool
}

// release drops a claim of this migrator (unless it plays crashed).
func (e *Env) release(ctx context.Context, id, name string, lease clientv3.LeaseID) error {
	if e.crashed.Load() {
		return nil
	}
	return e.Store.Release(ctx, id, name, lease)
}

func (e *Env) defaults() {
	if e.Observer == nil {
		e.Observer = nopObserver{}
	}
	if e.Rates == nil {
		e.Rates = NewRates(0)
	}
	if e.Direct == nil {
		e.Direct = e.Target
	}
	if e.MaxStoredRejects == 0 {
		e.MaxStoredRejects = 10000
	}
	if e.WriteRetry == 0 {
		e.WriteRetry = 2 * time.Minute
	}
	if e.PollInterval == 0 {
		e.PollInterval = time.Second
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	if e.AWSConfig == nil {
		e.AWSConfig = LoadAWSConfig
	}
}
