package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/services/migrator/internal/backoff"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
)

// startMarker is the checkpoint that records a job's first start (for
// LATEST: which shards existed then). Shard ids never begin with "_".
const startMarker = "_start"

// shardInfo is a shard as the shard list describes it.
type shardInfo struct {
	ID string
	// Parents are ParentShardId and, after a Kinesis merge,
	// AdjacentParentShardId.
	Parents []string
	// Closed says the shard has an ending sequence number: it takes no
	// more records.
	Closed bool
}

// posType is the kind of a shard iterator.
type posType uint8

const (
	posTrimHorizon posType = iota
	posLatest
	posAt
	posAfter
	posAtTime
)

// position is where a shard iterator starts.
type position struct {
	typ posType
	seq string
	at  time.Time
}

func (p position) String() string {
	switch p.typ {
	case posTrimHorizon:
		return "TRIM_HORIZON"
	case posLatest:
		return "LATEST"
	case posAt:
		return "AT_SEQUENCE_NUMBER " + p.seq
	case posAfter:
		return "AFTER_SEQUENCE_NUMBER " + p.seq
	case posAtTime:
		return "AT_TIMESTAMP " + p.at.Format(time.RFC3339Nano)
	}
	return "unknown position"
}

// record is a source record decoded, before its version is derived.
type record struct {
	seq    string
	change Change
	ts     Timestamp
	// skip says the record belongs to another table (Options.TableName).
	skip bool
	// bad, when set, says why the record cannot be applied.
	bad  string
	data []byte
}

// page is one GetRecords answer.
type page struct {
	records []record
	// next is the next shard iterator; "" when the shard is closed and
	// read to its end.
	next string
	// caughtUp says the shard has no more records for now.
	caughtUp bool
	// newShards says the answer named child shards (Kinesis), so the shard
	// list should be read again now.
	newShards bool
}

// errClass says what to do about a failed call.
type errClass uint8

const (
	errFatal     errClass = iota // stop Run with it (a cancelled context, a bad spec)
	errRetry                     // report through Options.Observe, retry with backoff
	errThrottled                 // retry with backoff
	errExpired                   // acquire a new iterator
	errTrimmed                   // records lost: stop with ErrTrimmed
)

// source is what differs between DynamoDB Streams and Kinesis.
type source interface {
	// describe names the stream in messages.
	describe() string
	// prepare checks the stream before reading.
	prepare(ctx context.Context) error
	listShards(ctx context.Context) ([]shardInfo, error)
	iterator(ctx context.Context, shard string, pos position) (string, error)
	getRecords(ctx context.Context, shard, iter string, limit int32) (page, error)
	classify(err error) errClass
}

// consumer reads a stream's shards in lineage order and applies their
// records; StreamsConsumer and KinesisConsumer wrap it.
type consumer struct {
	src     source
	cp      checkpoint.Store
	start   StartPosition
	opts    Options
	version versionFunc
	running sync.Mutex // one Run at a time

	mu     sync.Mutex
	stats  Stats
	shards map[string]*shardProgress // the shards being read
	read   bool                      // a GetRecords succeeded in this Run
}

// shardProgress is the lag state of a shard being read.
type shardProgress struct {
	lastApplied time.Time
	caughtUp    bool
	// caughtUpAt is when a read last found the shard caught up; read says
	// a GetRecords of the shard has succeeded.
	caughtUpAt time.Time
	read       bool
}

func newConsumer(src source, cp checkpoint.Store, start StartPosition, opts Options, v versionFunc) (*consumer, error) {
	opts.EnsureDefaults()
	var errs []error
	if cp == nil {
		errs = append(errs, errors.New("cdc: a checkpoint store is required"))
	}
	if err := start.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := opts.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &consumer{src: src, cp: cp, start: start, opts: opts, version: v, shards: make(map[string]*shardProgress)}, nil
}

// Stats returns the consumer's counters and current lag.
func (c *consumer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.ShardsReading = len(c.shards)
	s.LagKnown = c.read && len(c.shards) == 0
	now := c.opts.Now()
	for _, p := range c.shards {
		if !p.read {
			continue // unknown until its first read
		}
		s.LagKnown = true
		if p.caughtUp {
			continue
		}
		// Behind by the last record applied, or at least since the shard
		// was last seen caught up (its reads fail since).
		since := p.lastApplied
		if p.caughtUpAt.After(since) {
			since = p.caughtUpAt
		}
		if since.IsZero() {
			continue
		}
		if lag := now.Sub(since); lag > s.Lag {
			s.Lag = lag
		}
	}
	return s
}

// shardResult is the end of one shard's reader.
type shardResult struct {
	id  string
	err error
}

// run reads until ctx ends, a shard fails, or every shard of the stream is
// closed and read to its end (the stream was disabled), which returns nil.
func (c *consumer) run(ctx context.Context, apply ApplyFunc) error {
	if apply == nil {
		return errors.New("cdc: Run needs an apply function")
	}
	if !c.running.TryLock() {
		return errors.New("cdc: Run is already running")
	}
	defer c.running.Unlock()
	log := c.opts.Logger.With("stream", c.src.describe())
	c.mu.Lock()
	c.read = false
	c.mu.Unlock()

	if err := c.retry(ctx, "describe", func() error { return c.src.prepare(ctx) }); err != nil {
		return err
	}
	shards, err := c.discover(ctx)
	if err != nil {
		return err
	}
	cps, err := c.cp.List(ctx)
	if err != nil {
		return err
	}
	finished := make(map[string]bool) // read to the end, or skipped by the start position
	pending := make(map[string]bool)  // known, not yet finished: must not vanish
	for id, cp := range cps {
		if strings.HasPrefix(id, "_") {
			continue
		}
		if cp.Done {
			finished[id] = true
		} else {
			pending[id] = true
		}
	}
	fresh, err := c.initStart(ctx, shards, cps, finished)
	if err != nil {
		return err
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan shardResult)
	reading := make(map[string]bool)
	var wg sync.WaitGroup
	// stop cancels the readers and waits for them; their results are
	// drained so none blocks.
	stop := func() {
		cancel()
		go func() { wg.Wait(); close(results) }()
		for range results {
		}
	}
	ticker := time.NewTicker(c.opts.DiscoveryInterval)
	defer ticker.Stop()
	rediscover := make(chan struct{}, 1)

	for {
		byID := make(map[string]shardInfo, len(shards))
		for _, s := range shards {
			byID[s.ID] = s
			if !finished[s.ID] {
				pending[s.ID] = true
			}
		}
		// A shard known to hold unapplied records that has left the shard
		// list was trimmed: its records are lost to us.
		for id := range pending {
			if _, ok := byID[id]; !ok && !finished[id] && !reading[id] {
				stop()
				return fmt.Errorf("%w: shard %s of %s left the stream before it was read to its end", ErrTrimmed, id, c.src.describe())
			}
		}
		allDone := len(shards) > 0
		for _, s := range shards {
			if finished[s.ID] {
				continue
			}
			allDone = false
			if reading[s.ID] || len(reading) >= c.opts.MaxShards || !parentsDone(s, byID, finished) {
				continue
			}
			reading[s.ID] = true
			wg.Add(1)
			s := s
			go func() {
				defer wg.Done()
				err := c.readShard(ctx, s, byID, fresh[s.ID], apply, rediscover)
				results <- shardResult{id: s.ID, err: err}
			}()
		}
		if allDone && len(reading) == 0 {
			log.Info("every shard is closed and applied; the stream has ended")
			return nil
		}

		select {
		case r := <-results:
			delete(reading, r.id)
			if r.err != nil {
				stop()
				if parent.Err() != nil {
					return parent.Err()
				}
				return r.err
			}
			finished[r.id] = true
			delete(pending, r.id)
			c.mu.Lock()
			c.stats.ShardsDone++
			c.mu.Unlock()
			log.Debug("shard read to its end", "shard", r.id)
			// List again: its children may be new.
		case <-rediscover:
		case <-ticker.C:
		case <-ctx.Done():
			stop()
			return parent.Err()
		}
		list, err := c.discover(ctx)
		if err != nil {
			stop()
			return err
		}
		shards = list
	}
}

// parentsDone reports whether s may be read: each parent is read to its
// end, skipped, or gone from the stream (trimmed long ago).
func parentsDone(s shardInfo, byID map[string]shardInfo, finished map[string]bool) bool {
	for _, p := range s.Parents {
		if _, listed := byID[p]; listed && !finished[p] {
			return false
		}
	}
	return true
}

// initStart applies the start position on a job's first run. It returns
// the shards this run must read from LATEST. For a LATEST start it saves,
// before anything is read, a checkpoint for every shard listed now (Since
// for open shards, Done for closed ones) and then the start marker, so a
// restart knows which shards were there at the start: it resumes those
// AT_TIMESTAMP Since and reads shards created later from TRIM_HORIZON.
// For a sequence start it marks the named shard's ancestors finished.
func (c *consumer) initStart(ctx context.Context, shards []shardInfo, cps map[string]checkpoint.Checkpoint, finished map[string]bool) (map[string]bool, error) {
	fresh := make(map[string]bool)
	switch c.start.Type {
	case Latest:
		if _, ok := cps[startMarker]; ok {
			return fresh, nil
		}
		now := c.opts.Now().UTC()
		for _, s := range shards {
			if _, ok := cps[s.ID]; ok {
				continue // saved by a first run that stopped before the marker
			}
			cp := checkpoint.Checkpoint{Since: now, UpdateTime: now}
			if s.Closed {
				cp = checkpoint.Checkpoint{Done: true, UpdateTime: now}
				finished[s.ID] = true
			} else {
				fresh[s.ID] = true
			}
			if err := c.cp.Save(ctx, s.ID, cp); err != nil {
				return nil, err
			}
		}
		if err := c.cp.Save(ctx, startMarker, checkpoint.Checkpoint{Done: true, Since: now, UpdateTime: now}); err != nil {
			return nil, err
		}
	case AtSequence, AfterSequence:
		byID := make(map[string]shardInfo, len(shards))
		for _, s := range shards {
			byID[s.ID] = s
		}
		if _, ok := byID[c.start.ShardID]; !ok {
			if _, started := cps[c.start.ShardID]; !started {
				return nil, fmt.Errorf("%w: shard %s is not in %s", ErrInvalidStart, c.start.ShardID, c.src.describe())
			}
		}
		// Skip the ancestors: the start shard's records come after theirs.
		var walk func(id string)
		walk = func(id string) {
			for _, p := range byID[id].Parents {
				if !finished[p] {
					finished[p] = true
					walk(p)
				}
			}
		}
		walk(c.start.ShardID)
	}
	return fresh, nil
}

// discover lists the shards, retrying failed calls.
func (c *consumer) discover(ctx context.Context) ([]shardInfo, error) {
	var shards []shardInfo
	err := c.retry(ctx, "list shards", func() error {
		var err error
		shards, err = c.src.listShards(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(shards, func(a, b shardInfo) int { return strings.Compare(a.ID, b.ID) })
	return shards, nil
}

// classify says what to do about a failed call: our own sentinels (a bad
// view type or start position) stop Run, everything else is the source's
// to classify.
func (c *consumer) classify(err error) errClass {
	switch {
	case stopsRun(err):
		return errFatal
	case errors.Is(err, ErrTrimmed):
		return errTrimmed
	case errors.Is(err, ErrStreamNotFound):
		return errRetry
	}
	return c.src.classify(err)
}

// stopsRun reports a cancelled context or one of our own errors that no
// retry can fix (a bad view type or start position, an undecodable record
// without a Reject function); Run returns them as they are.
func stopsRun(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrViewType) || errors.Is(err, ErrInvalidStart) || errors.Is(err, ErrBadRecord)
}

// observe reports a failure, or progress (nil), to Options.Observe.
func (c *consumer) observe(err error) {
	if c.opts.Observe != nil {
		c.opts.Observe(err)
	}
}

// retry runs call until it succeeds or ctx ends, retrying with backoff
// every failure but a fatal one. This is the only retry of stream calls:
// the SDK clients the jobs build make one attempt per call, so each
// failure is reported once.
func (c *consumer) retry(ctx context.Context, what string, call func() error) error {
	for attempt := 0; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := c.failed(what, err); err != nil {
			return err
		}
		if err := backoff.Sleep(ctx, c.backoff(attempt)); err != nil {
			return err
		}
	}
}

// failed handles a call's failure before its retry: it counts throttling,
// reports a retried failure, or returns the error that stops Run.
func (c *consumer) failed(what string, err error) error {
	switch c.classify(err) {
	case errThrottled:
		c.mu.Lock()
		c.stats.Throttled++
		c.mu.Unlock()
		return nil
	case errRetry:
		if !errors.Is(err, ErrStreamNotFound) { // that one names the stream already
			err = fmt.Errorf("cdc: %s of %s: %w", what, c.src.describe(), err)
		}
		c.opts.Logger.Warn("cdc call failed; retrying", "err", err)
		c.observe(err)
		return nil
	case errTrimmed:
		if errors.Is(err, ErrTrimmed) {
			return err
		}
		return fmt.Errorf("%w: %s of %s: %v", ErrTrimmed, what, c.src.describe(), err)
	case errExpired:
		return fmt.Errorf("cdc: %s of %s: unexpected expired iterator: %w", what, c.src.describe(), err)
	}
	if stopsRun(err) {
		return err
	}
	return fmt.Errorf("cdc: %s of %s: %w", what, c.src.describe(), err)
}

// backoff is the wait before retry attempt+1: exponential from
// MinBackoff, capped at MaxBackoff, with jitter.
func (c *consumer) backoff(attempt int) time.Duration {
	return backoff.Exponential(attempt, c.opts.MinBackoff, c.opts.MaxBackoff)
}

// readShard reads one shard from its checkpoint (or start position) to its
// end, applying and checkpointing page by page. It returns nil when the
// shard is closed and every record is applied.
func (c *consumer) readShard(ctx context.Context, s shardInfo, byID map[string]shardInfo, fresh bool, apply ApplyFunc, rediscover chan<- struct{}) error {
	cp, ok, err := c.cp.Load(ctx, s.ID)
	if err != nil {
		return err
	}
	if ok && cp.Done {
		return nil
	}
	if !ok || cp.Position == "" {
		// Nothing applied yet: continue the parents' clocks, so that an
		// item's records in this shard order after its records in them.
		for _, p := range s.Parents {
			pcp, pok, err := c.cp.Load(ctx, p)
			if err != nil {
				return err
			}
			if pok && pcp.Clock > cp.Clock {
				cp.Clock = pcp.Clock
			}
		}
	}
	pos := c.initialPosition(s.ID, cp, ok, fresh)
	// resume is where a renewed iterator starts when nothing was read yet:
	// LATEST becomes AT_TIMESTAMP of the moment this run first asked.
	resume := pos
	if pos.typ == posLatest {
		resume = position{typ: posAtTime, at: cp.Since}
	}

	c.mu.Lock()
	prog := &shardProgress{}
	c.shards[s.ID] = prog
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.shards, s.ID)
		c.mu.Unlock()
	}()
	log := c.opts.Logger.With("stream", c.src.describe(), "shard", s.ID)
	log.Debug("reading shard", "from", pos.String())

	iter, err := c.acquire(ctx, s.ID, pos)
	if err != nil {
		return err
	}
	for attempt := 0; ; {
		pg, err := c.src.getRecords(ctx, s.ID, iter, c.opts.Limit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if c.classify(err) == errExpired {
				// The iterator aged out (the reader was slow or stopped);
				// take a new one where the last applied record left off.
				c.mu.Lock()
				c.stats.IteratorsRenewed++
				c.mu.Unlock()
				at := resume
				if cp.Position != "" {
					at = position{typ: posAfter, seq: cp.Position}
				}
				log.Info("shard iterator expired; acquiring a new one", "from", at.String())
				if iter, err = c.acquire(ctx, s.ID, at); err != nil {
					return err
				}
				continue
			}
			if c.classify(err) == errTrimmed {
				return fmt.Errorf("%w: shard %s of %s after sequence number %q: %v", ErrTrimmed, s.ID, c.src.describe(), cp.Position, err)
			}
			if err := c.failed("GetRecords of shard "+s.ID, err); err != nil {
				return err
			}
			c.mu.Lock()
			prog.caughtUp = false // its lag grows while reads fail
			c.mu.Unlock()
			if err := backoff.Sleep(ctx, c.backoff(attempt)); err != nil {
				return err
			}
			attempt++
			continue
		}
		attempt = 0
		if pg.newShards {
			select {
			case rediscover <- struct{}{}:
			default:
			}
		}

		if len(pg.records) > 0 {
			next, err := c.applyPage(ctx, s.ID, cp, pg.records, apply, prog)
			if err != nil {
				return err
			}
			cp = next
		}
		// Progress: the page is applied, or there was nothing to apply.
		c.observe(nil)
		if pg.next == "" {
			cp.Done, cp.Since, cp.UpdateTime = true, time.Time{}, c.opts.Now().UTC()
			if err := c.cp.Save(ctx, s.ID, cp); err != nil {
				return err
			}
			return nil
		}
		iter = pg.next
		c.mu.Lock()
		prog.caughtUp = pg.caughtUp
		if pg.caughtUp {
			prog.caughtUpAt = c.opts.Now()
		}
		prog.read = true
		c.read = true
		c.mu.Unlock()
		if len(pg.records) == 0 || pg.caughtUp {
			if err := backoff.Sleep(ctx, c.opts.PollInterval); err != nil {
				return err
			}
		}
	}
}

// initialPosition is where a shard's reading starts in this run.
func (c *consumer) initialPosition(id string, cp checkpoint.Checkpoint, ok, fresh bool) position {
	switch {
	case ok && cp.Position != "":
		return position{typ: posAfter, seq: cp.Position}
	case ok && !cp.Since.IsZero():
		if fresh {
			return position{typ: posLatest}
		}
		return position{typ: posAtTime, at: cp.Since}
	case id == c.start.ShardID && c.start.Type == AtSequence:
		return position{typ: posAt, seq: c.start.SequenceNumber}
	case id == c.start.ShardID && c.start.Type == AfterSequence:
		return position{typ: posAfter, seq: c.start.SequenceNumber}
	}
	return position{typ: posTrimHorizon}
}

// acquire gets a shard iterator at pos.
func (c *consumer) acquire(ctx context.Context, shard string, pos position) (string, error) {
	var iter string
	err := c.retry(ctx, "GetShardIterator("+pos.String()+") of shard "+shard, func() error {
		var err error
		iter, err = c.src.iterator(ctx, shard, pos)
		return err
	})
	if err == nil && iter == "" {
		err = fmt.Errorf("cdc: GetShardIterator(%s) of shard %s of %s returned no iterator", pos, shard, c.src.describe())
	}
	return iter, err
}

// applyPage derives the versions of a page's records, applies them, and
// checkpoints the shard. It returns the new checkpoint.
func (c *consumer) applyPage(ctx context.Context, shard string, cp checkpoint.Checkpoint, recs []record, apply ApplyFunc, prog *shardProgress) (checkpoint.Checkpoint, error) {
	changes := make([]Change, 0, len(recs))
	clock := cp.Clock
	var skipped, rejected, puts, deletes, ttl uint64
	var newest time.Time
	for _, r := range recs {
		switch {
		case r.bad != "":
			if c.opts.Reject == nil {
				return cp, fmt.Errorf("%w: shard %s sequence number %s of %s: %s", ErrBadRecord, shard, r.seq, c.src.describe(), r.bad)
			}
			data := r.data
			if len(data) > 1024 {
				data = data[:1024]
			}
			if err := c.opts.Reject(ctx, Reject{Shard: shard, Seq: r.seq, Reason: r.bad, Data: data}); err != nil {
				return cp, err
			}
			rejected++
		case r.skip:
			skipped++
		default:
			clock = c.version(clock, r.ts, c.opts.SkewAllowance)
			ch := r.change
			ch.Version = clock
			ch.Shard, ch.Seq = shard, r.seq
			changes = append(changes, ch)
			if ch.Kind == Put {
				puts++
			} else {
				deletes++
				if ch.TTLDelete {
					ttl++
				}
			}
			if ch.ApproximateTime.After(newest) {
				newest = ch.ApproximateTime
			}
		}
	}
	if len(changes) > 0 {
		if err := apply(ctx, changes); err != nil {
			if ctx.Err() != nil {
				return cp, ctx.Err()
			}
			return cp, fmt.Errorf("cdc: apply %d changes of shard %s (sequence numbers %s to %s): %w",
				len(changes), shard, changes[0].Seq, changes[len(changes)-1].Seq, err)
		}
	}
	next := cp
	next.Position = recs[len(recs)-1].seq
	next.Clock = clock
	next.Since = time.Time{}
	next.Records += puts + deletes
	next.UpdateTime = c.opts.Now().UTC()
	if err := c.cp.Save(ctx, shard, next); err != nil {
		return cp, err
	}
	c.mu.Lock()
	c.stats.Records += puts + deletes
	c.stats.Puts += puts
	c.stats.Deletes += deletes
	c.stats.TTLDeletes += ttl
	c.stats.Skipped += skipped
	c.stats.Rejected += rejected
	if newest.After(c.stats.LastApplied) {
		c.stats.LastApplied = newest
	}
	if !newest.IsZero() {
		prog.lastApplied = newest
	}
	c.mu.Unlock()
	return next, nil
}
