// Package scan reads a live DynamoDB table with a parallel Scan, for
// tables that have no point-in-time export: Segments segments (Segment /
// TotalSegments) are scanned at once, the read capacity they consume is
// held to a budget by a token bucket shared by all segments, and each
// segment is checkpointed (its LastEvaluatedKey) after every applied page,
// so a restarted job resumes each segment where it stopped.
//
// # Versions
//
// A live table changes while it is scanned, so a Scan is not a snapshot at
// one instant: an item is read at some moment during the scan and shows
// every write made to it before that moment. Every scanned item carries one
// version, hlc.FromTime(T, 0), where T is when the scan first started
// (saved with the checkpoints, so a resumed scan keeps it). Change data
// capture started before T then converges with the scan whatever the
// order, exactly as with an export at T (see package cdc): a write made
// after T has a stream record whose version is later than T and wins; a
// write made before T is in the scanned item or overwritten by a later
// record. The stream must be read from before T (TRIM_HORIZON, within its
// 24-hour retention), or writes made during the scan are lost.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/backoff"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/ddbattr"
	"golang.org/x/time/rate"
)

// Sentinel errors; use errors.Is.
var (
	// ErrSegmentsChanged reports checkpoints of the same job written with
	// another number of segments: a scan cannot change it midway.
	ErrSegmentsChanged = errors.New("scan: the job's checkpoints were written with another number of segments")
	// ErrTableNotFound reports a table that does not exist.
	ErrTableNotFound = errors.New("scan: table not found")
	// ErrBadItem reports an item DynamoDB returned that is not valid.
	ErrBadItem = errors.New("scan: invalid item")
)

// startMarker is the checkpoint that holds the scan's start time.
const startMarker = "_scan"

// DynamoDBAPI is the part of the DynamoDB API the source calls;
// *dynamodb.Client implements it.
type DynamoDBAPI interface {
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ DynamoDBAPI = (*dynamodb.Client)(nil)

// Options configures a Source. The zero value is valid.
type Options struct {
	// Segments is the number of parallel Scan segments (TotalSegments).
	// Default: 4. At most 1,000,000 (DynamoDB's limit).
	Segments int
	// ReadCapacityPerSecond caps the read capacity units consumed per
	// second, summed over the segments (a token bucket holding at most one
	// second of budget). A page's cost is known only after it is read, so
	// a page can overdraw the bucket; the next calls then wait until it is
	// paid back, and the average holds. Default: 0, no cap.
	ReadCapacityPerSecond float64
	// PageLimit is Scan's Limit, the most items per page. Default: 0,
	// DynamoDB's own limit of 1 MB per page.
	PageLimit int32
	// ConsistentRead makes every Scan strongly consistent (twice the read
	// capacity). Default: false.
	ConsistentRead bool
	// Logger receives the source's logs. Default: discarded.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the backoff after throttling and
	// failed calls. Default: 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetries is how many calls in a row may fail with an error other
	// than throttling before Run gives up. Default: 10.
	MaxRetries int
	// Now is the clock of the start time. Default: time.Now.
	Now func() time.Time
}

// EnsureDefaults fills in zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Segments == 0 {
		o.Segments = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every invalid field at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Segments < 1 || o.Segments > 1_000_000 {
		errs = append(errs, fmt.Errorf("Segments %d is outside [1, 1000000]", o.Segments))
	}
	if o.ReadCapacityPerSecond < 0 {
		errs = append(errs, fmt.Errorf("ReadCapacityPerSecond %g is negative", o.ReadCapacityPerSecond))
	}
	if o.PageLimit < 0 {
		errs = append(errs, fmt.Errorf("PageLimit %d is negative", o.PageLimit))
	}
	if o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		errs = append(errs, fmt.Errorf("backoff [%s, %s] is not a range of non-negative durations", o.MinBackoff, o.MaxBackoff))
	}
	if o.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries %d is negative", o.MaxRetries))
	}
	if len(errs) > 0 {
		return fmt.Errorf("scan: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Page is one Scan page of one segment.
type Page struct {
	// Segment is the page's segment.
	Segment int
	// Items are the page's items.
	Items []ddb.Item
	// Version is the version every item of this scan is written with:
	// hlc.FromTime(the scan's first start, 0).
	Version uint64
}

// ApplyFunc applies one page. It must return nil only once every item is
// durably applied; the segment is checkpointed after it returns nil.
// Pages of different segments are applied concurrently; pages of one
// segment never overlap. A page may be applied again after a restart.
type ApplyFunc func(ctx context.Context, p Page) error

// Stats are the source's counters since it was created.
type Stats struct {
	// Items and Pages count what was applied.
	Items, Pages uint64
	// ConsumedCapacity is the read capacity units the scan consumed.
	ConsumedCapacity float64
	// SegmentsDone counts finished segments, including those finished
	// before a restart.
	SegmentsDone int
	// Throttled counts throttled Scan calls.
	Throttled uint64
}

// Source scans one table.
type Source struct {
	client DynamoDBAPI
	table  string
	cp     checkpoint.Store
	opts   Options
	budget *budget

	mu    sync.Mutex
	stats Stats
}

// New returns a source scanning table, checkpointing into cp.
func New(client DynamoDBAPI, table string, cp checkpoint.Store, opts Options) (*Source, error) {
	opts.EnsureDefaults()
	var errs []error
	if client == nil || table == "" {
		errs = append(errs, errors.New("scan: New needs a client and a table name"))
	}
	if cp == nil {
		errs = append(errs, errors.New("scan: a checkpoint store is required"))
	}
	if err := opts.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Source{client: client, table: table, cp: cp, opts: opts}
	if opts.ReadCapacityPerSecond > 0 {
		s.budget = newBudget(opts.ReadCapacityPerSecond)
	}
	return s, nil
}

// SegmentName is the checkpoint name of segment i of total.
func SegmentName(i, total int) string { return fmt.Sprintf("segment-%06d-of-%06d", i, total) }

// Stats returns the source's counters. Safe to call while Run runs.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run scans every segment that is not finished, in parallel, and returns
// nil when all are, or the first error: the other segments apply the page
// they are reading and stop, their checkpoints keeping what they applied.
// Calling Run again resumes.
func (s *Source) Run(ctx context.Context, apply ApplyFunc) error {
	if apply == nil {
		return errors.New("scan: Run needs an apply function")
	}
	cps, err := s.cp.List(ctx)
	if err != nil {
		return err
	}
	total := s.opts.Segments
	for name := range cps {
		if rest, ok := strings.CutPrefix(name, "segment-"); ok {
			if _, of, ok := strings.Cut(rest, "-of-"); ok {
				if n, err := strconv.Atoi(of); err == nil && n != total {
					return fmt.Errorf("%w: %s, now %d", ErrSegmentsChanged, name, total)
				}
			}
		}
	}
	start, ok := cps[startMarker]
	if !ok {
		start = checkpoint.Checkpoint{Done: true, Since: s.opts.Now().UTC()}
		start.UpdateTime = start.Since
		if err := s.cp.Save(ctx, startMarker, start); err != nil {
			return err
		}
	}
	version := hlc.FromTime(start.Since, 0)

	// When a segment fails, the others stop at their next page instead of
	// abandoning calls in flight: a cancelled Scan still costs its read
	// capacity, and what it read can still be applied and checkpointed.
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		stop     = make(chan struct{})
	)
	for i := range total {
		cp := cps[SegmentName(i, total)]
		if cp.Done {
			s.mu.Lock()
			s.stats.SegmentsDone++
			s.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.segment(ctx, stop, i, cp, version, apply); err != nil {
				once.Do(func() { firstErr = err; close(stop) })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// errStopped ends a segment because another one failed.
var errStopped = errors.New("scan: stopped")

// segment scans segment i from its checkpoint to its end.
func (s *Source) segment(ctx context.Context, stop <-chan struct{}, i int, cp checkpoint.Checkpoint, version uint64, apply ApplyFunc) error {
	name := SegmentName(i, s.opts.Segments)
	in := &dynamodb.ScanInput{
		TableName:              aws.String(s.table),
		ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
		ConsistentRead:         aws.Bool(s.opts.ConsistentRead),
	}
	if s.opts.Segments > 1 {
		in.Segment, in.TotalSegments = aws.Int32(int32(i)), aws.Int32(int32(s.opts.Segments))
	}
	if s.opts.PageLimit > 0 {
		in.Limit = aws.Int32(s.opts.PageLimit)
	}
	if cp.Position != "" {
		key, err := decodeKey(cp.Position)
		if err != nil {
			return fmt.Errorf("scan: checkpoint %s of table %s: %w", name, s.table, err)
		}
		in.ExclusiveStartKey = key
	}
	for {
		select {
		case <-stop:
			return errStopped
		default:
		}
		out, err := s.scan(ctx, in, i)
		if err != nil {
			return err
		}
		items := make([]ddb.Item, 0, len(out.Items))
		for _, raw := range out.Items {
			it, err := ddbattr.Item(raw)
			if err != nil {
				return fmt.Errorf("%w: table %s segment %d: %v", ErrBadItem, s.table, i, err)
			}
			items = append(items, it)
		}
		if len(items) > 0 {
			if err := apply(ctx, Page{Segment: i, Items: items, Version: version}); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("scan: apply %d items of table %s segment %d: %w", len(items), s.table, i, err)
			}
		}
		cp.Records += uint64(len(items))
		cp.UpdateTime = s.opts.Now().UTC()
		if len(out.LastEvaluatedKey) == 0 {
			cp.Done, cp.Position = true, ""
		} else {
			pos, err := encodeKey(out.LastEvaluatedKey)
			if err != nil {
				return fmt.Errorf("scan: LastEvaluatedKey of table %s segment %d: %w", s.table, i, err)
			}
			cp.Position = pos
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
		if err := s.cp.Save(ctx, name, cp); err != nil {
			return err
		}
		s.mu.Lock()
		s.stats.Items += uint64(len(items))
		s.stats.Pages++
		if cp.Done {
			s.stats.SegmentsDone++
		}
		s.mu.Unlock()
		if cp.Done {
			return nil
		}
	}
}

// scan makes one Scan call within the budget, retrying throttling and
// transient failures.
func (s *Source) scan(ctx context.Context, in *dynamodb.ScanInput, segment int) (*dynamodb.ScanOutput, error) {
	failures := 0
	for attempt := 0; ; attempt++ {
		if s.budget != nil {
			if err := s.budget.wait(ctx); err != nil {
				return nil, err
			}
		}
		out, err := s.client.Scan(ctx, in)
		if err == nil {
			var units float64
			if cc := out.ConsumedCapacity; cc != nil && cc.CapacityUnits != nil {
				units = *cc.CapacityUnits
			}
			if s.budget != nil {
				s.budget.spend(units)
			}
			s.mu.Lock()
			s.stats.ConsumedCapacity += units
			s.mu.Unlock()
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var (
			pte      *types.ProvisionedThroughputExceededException
			rle      *types.RequestLimitExceeded
			notFound *types.ResourceNotFoundException
			internal *types.InternalServerError
			apiErr   smithy.APIError
		)
		switch {
		case errors.As(err, &pte), errors.As(err, &rle), errors.As(err, &apiErr) && apiErr.ErrorCode() == "ThrottlingException":
			s.mu.Lock()
			s.stats.Throttled++
			s.mu.Unlock()
		case errors.As(err, &notFound):
			return nil, fmt.Errorf("%w: %s: %v", ErrTableNotFound, s.table, err)
		case errors.As(err, &internal), !errors.As(err, &apiErr), apiErr.ErrorFault() == smithy.FaultServer:
			failures++
			if failures > s.opts.MaxRetries {
				return nil, fmt.Errorf("scan: Scan of table %s segment %d failed %d times in a row: %w", s.table, segment, failures, err)
			}
			s.opts.Logger.Warn("Scan failed; retrying", "table", s.table, "segment", segment, "err", err)
		default:
			return nil, fmt.Errorf("scan: Scan of table %s segment %d: %w", s.table, segment, err)
		}
		if err := backoff.Sleep(ctx, backoff.Exponential(attempt, s.opts.MinBackoff, s.opts.MaxBackoff)); err != nil {
			return nil, err
		}
	}
}

// budget holds the consumed read capacity to a rate with x/time/rate, as
// the import's writes are held (jobs.newLimiter). Its tokens are
// thousandths of a capacity unit (a call can consume half a unit); the
// bucket holds one second's worth and starts full. A call waits for a
// positive balance; what it consumed is taken out after it, overdrawing
// the bucket when a page costs more than the balance, so the next calls
// wait until that is paid back.
type budget struct {
	lim   *rate.Limiter
	burst int
}

// budgetScale is the tokens of one read capacity unit.
const budgetScale = 1000

func newBudget(unitsPerSecond float64) *budget {
	burst := max(1, int(unitsPerSecond*budgetScale))
	return &budget{lim: rate.NewLimiter(rate.Limit(unitsPerSecond*budgetScale), burst), burst: burst}
}

// wait blocks until the bucket holds a positive balance, taking one token.
func (b *budget) wait(ctx context.Context) error {
	r := b.lim.Reserve()
	if err := backoff.Sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

// spend takes out units (less the token wait took), in reservations of at
// most the burst, which x/time/rate grants at any debt.
func (b *budget) spend(units float64) {
	n := int(math.Ceil(units*budgetScale)) - 1
	now := time.Now()
	for n > 0 {
		k := min(n, b.burst)
		b.lim.ReserveN(now, k)
		n -= k
	}
}

// encodeKey serializes a LastEvaluatedKey as DynamoDB JSON.
func encodeKey(key map[string]types.AttributeValue) (string, error) {
	it, err := ddbattr.Item(key)
	if err != nil {
		return "", err
	}
	b, err := ddb.MarshalDynamoDBJSON(it)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeKey reads a key written by encodeKey.
func decodeKey(s string) (map[string]types.AttributeValue, error) {
	it, err := ddb.UnmarshalDynamoDBJSON([]byte(s))
	if err != nil {
		return nil, err
	}
	return ddbattr.FromItem(it), nil
}
