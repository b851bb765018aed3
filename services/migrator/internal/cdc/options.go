package cdc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Options configures a consumer. The zero value is valid: EnsureDefaults
// fills in every default.
type Options struct {
	// Logger receives the consumer's logs. Default: discarded.
	Logger *slog.Logger
	// PollInterval is the wait after a page with no records before the
	// next GetRecords of that shard. Default: 1s (both services allow five
	// GetRecords per shard per second).
	PollInterval time.Duration
	// DiscoveryInterval is how often the shard list is read again to find
	// new shards (splits, merges, DynamoDB's shard rollover). Default: 30s.
	DiscoveryInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff (with
	// jitter) after throttling and failed calls. Default: 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Observe, when set, is told of every failed call to the stream's API
	// that Run retries (a network error, a server error, a stream not
	// found, access denied), and of progress with a nil error: a
	// GetRecords page applied, or one that found nothing to apply. Other
	// successful calls (listing shards, iterators) are not progress: a
	// stream that lists but cannot be applied is failing. Throttling and
	// expired iterators are neither.
	// Run retries failed calls until its context ends: the caller decides
	// how long a source may fail (jobs cancel the run after
	// StreamSpec.fail_after) and sees the failures here. It is called from
	// the shard readers' goroutines and must be quick. Default: nil.
	Observe func(err error)
	// MaxShards is how many shards are read (and applied) at once.
	// Default: 32.
	MaxShards int
	// Limit is the most records asked of one GetRecords. Default: 1000,
	// the DynamoDB Streams maximum (Kinesis allows 10000).
	Limit int32
	// SkewAllowance moves every derived version later by this much. Set it
	// to the largest amount by which a stream's ApproximateCreationDateTime
	// may trail the clock of the export the snapshot came from: a write
	// made after the export then still wins against the snapshot. The
	// price: a write made up to SkewAllowance before the export also wins
	// over the snapshot's copy of the item, which is harmless while the
	// stream is read from before the export (it holds every later write
	// too). Default: 0.
	SkewAllowance time.Duration
	// Reject takes records that cannot be applied. Default: nil, and such
	// a record stops Run with ErrBadRecord.
	Reject RejectFunc
	// TableName, for Kinesis, keeps only the records of this source table
	// (one Kinesis stream can carry several tables); records of other
	// tables are skipped and counted. Default: "", every table.
	TableName string
	// Now is the clock used for lag and the LATEST start time. Default:
	// time.Now.
	Now func() time.Time
}

// EnsureDefaults fills in zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	if o.DiscoveryInterval == 0 {
		o.DiscoveryInterval = 30 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxShards == 0 {
		o.MaxShards = 32
	}
	if o.Limit == 0 {
		o.Limit = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every invalid field at once.
func (o *Options) Validate() error {
	var errs []error
	if o.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("PollInterval %s is negative", o.PollInterval))
	}
	if o.DiscoveryInterval < 0 {
		errs = append(errs, fmt.Errorf("DiscoveryInterval %s is negative", o.DiscoveryInterval))
	}
	if o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		errs = append(errs, fmt.Errorf("backoff [%s, %s] is not a range of non-negative durations", o.MinBackoff, o.MaxBackoff))
	}
	if o.MaxShards < 0 {
		errs = append(errs, fmt.Errorf("MaxShards %d is negative", o.MaxShards))
	}
	if o.Limit < 0 || o.Limit > 10000 {
		errs = append(errs, fmt.Errorf("Limit %d is outside [1, 10000]", o.Limit))
	}
	if o.SkewAllowance < 0 || o.SkewAllowance > time.Hour {
		errs = append(errs, fmt.Errorf("SkewAllowance %s is outside [0, 1h]", o.SkewAllowance))
	}
	if len(errs) > 0 {
		return fmt.Errorf("cdc: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Stats are a consumer's counters since it was created.
type Stats struct {
	// Records counts records applied (Puts + Deletes).
	Records uint64
	// Puts and Deletes split Records; TTLDeletes counts the Deletes made
	// by DynamoDB's TTL process.
	Puts, Deletes, TTLDeletes uint64
	// Skipped counts records of other tables (Options.TableName).
	Skipped uint64
	// Rejected counts records given to Options.Reject.
	Rejected uint64
	// ShardsReading is how many shards are being read now; ShardsDone how
	// many this consumer read to their end.
	ShardsReading, ShardsDone int
	// LastApplied is the ApproximateCreationDateTime of the newest record
	// applied.
	LastApplied time.Time
	// Lag is the age of the last applied record of the shard furthest
	// behind; a shard whose last read found no more records is caught up
	// and counts as 0. A shard whose reads fail after it was caught up
	// lags by the time since it was last seen caught up. The job's
	// Progress.lag and the metric veltrix_migrator_stream_lag_seconds
	// report it.
	Lag time.Duration
	// LagKnown says Lag means something: GetRecords has succeeded for
	// every shard being read. While nothing has been read (the stream is
	// unreachable, not found, or has no shard yet) the lag is unknown, not
	// 0.
	LagKnown bool
	// Throttled counts throttled calls; IteratorsRenewed counts shard
	// iterators acquired again after they expired.
	Throttled, IteratorsRenewed uint64
}
