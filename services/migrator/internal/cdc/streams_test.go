package cdc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
)

// fakeStream is a fake DynamoDB stream and an SDK client talking to it
// over HTTP.
type fakeStream struct {
	fake *streamsfake.Fake
	arn  string
	api  cdc.DynamoDBStreamsAPI
	at   time.Time // the time of the next record put with put
}

func newFakeStream(t *testing.T, viewType string, opts streamsfake.Options) *fakeStream {
	t.Helper()
	f := streamsfake.New(opts)
	ep := streamsfake.Serve(t, f)
	return &fakeStream{
		fake: f,
		arn:  f.CreateStream("sessions", viewType),
		api:  streamsfake.NewClient(ep),
		at:   time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func (s *fakeStream) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// put appends a put (or, with v < 0, a delete) of item id to shard; each
// record is one second after the last, unless sameSecond.
func (s *fakeStream) put(t *testing.T, shard, id string, v int) string {
	t.Helper()
	var rec json.RawMessage
	if v < 0 {
		rec = streamsfake.NewRecord("REMOVE", key(id), nil, s.at, false)
	} else {
		rec = streamsfake.NewRecord("MODIFY", key(id), item(id, v), s.at, false)
	}
	s.at = s.at.Add(time.Second)
	seqs, err := s.fake.Put(s.arn, shard, rec)
	s.must(t, err)
	return seqs[0]
}

func (s *fakeStream) consumer(t *testing.T, start cdc.StartPosition, cp checkpoint.Store, opts cdc.Options) *cdc.StreamsConsumer {
	t.Helper()
	c, err := cdc.NewStreamsConsumer(s.api, s.arn, start, cp, opts)
	s.must(t, err)
	return c
}

// TestStreamsRealRecords feeds the real GetRecords shapes of the shared
// test data through the fake and the SDK.
func TestStreamsRealRecords(t *testing.T) {
	dir := sharedTestdata(t, "streams-getrecords")
	load := func(name string) []json.RawMessage {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var resp struct{ Records []json.RawMessage }
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Records
	}

	t.Run("new and old images", func(t *testing.T) {
		s := newFakeStream(t, "NEW_AND_OLD_IMAGES", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shardId-00000001568013979000-aaaaaaaa", ""))
		_, err := s.fake.Put(s.arn, "shardId-00000001568013979000-aaaaaaaa", load("pastebin-Anu9nCzN-real-GetRecords.json")...)
		s.must(t, err)
		s.must(t, s.fake.CloseShard(s.arn, "shardId-00000001568013979000-aaaaaaaa"))

		var got sink
		c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
		if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
			t.Fatalf("Run: %v", err)
		}
		ch := got.all()
		if len(ch) != 2 {
			t.Fatalf("applied %d changes, want 2", len(ch))
		}
		wantKeys := ddb.Item{"ID": ddb.S("2"), "Title": ddb.S("aaa")}
		if ch[0].Kind != cdc.Put || !ddb.EqualItems(ch[0].Keys, wantKeys) || !ddb.EqualItems(ch[0].NewImage, wantKeys) {
			t.Errorf("INSERT became %+v", ch[0])
		}
		if ch[1].Kind != cdc.Delete || ch[1].NewImage != nil || ch[1].TTLDelete {
			t.Errorf("REMOVE became %+v", ch[1])
		}
		// 1568013979 s, truncated to the second: the version starts at the
		// last microsecond of that second.
		if want := hlc.FromMicros(1568013979_999999, 1); ch[0].Version != want {
			t.Errorf("INSERT version %s, want %s", hlc.String(ch[0].Version), hlc.String(want))
		}
		if ch[1].Version <= ch[0].Version {
			t.Errorf("REMOVE version %s not after INSERT %s", hlc.String(ch[1].Version), hlc.String(ch[0].Version))
		}
		if ch[0].Table != "sessions" || ch[0].EventID != "a14537b9b153d5e7dece6e5587d71b75" {
			t.Errorf("table %q event %q", ch[0].Table, ch[0].EventID)
		}
		if st := c.Stats(); st.Puts != 1 || st.Deletes != 1 || st.ShardsDone != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("keys only stream is refused", func(t *testing.T) {
		s := newFakeStream(t, "KEYS_ONLY", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shardId-1", ""))
		_, err := s.fake.Put(s.arn, "shardId-1", load("awsdocs-GetRecords-response.json")...)
		s.must(t, err)
		c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
		err = start(t, c.Run, (&sink{}).apply).wait(t, 10*time.Second)
		if !errors.Is(err, cdc.ErrViewType) {
			t.Fatalf("Run = %v, want ErrViewType", err)
		}
	})

	t.Run("records without new images are rejected", func(t *testing.T) {
		// The stream claims new images but the records (the AWS docs
		// sample, KEYS_ONLY) have none: Run stops, naming the record...
		s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shardId-1", ""))
		seqs, err := s.fake.Put(s.arn, "shardId-1", load("awsdocs-GetRecords-response.json")...)
		s.must(t, err)
		s.must(t, s.fake.CloseShard(s.arn, "shardId-1"))
		c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
		err = start(t, c.Run, (&sink{}).apply).wait(t, 10*time.Second)
		if !errors.Is(err, cdc.ErrBadRecord) || !strings.Contains(err.Error(), seqs[0]) {
			t.Fatalf("Run = %v, want ErrBadRecord naming %s", err, seqs[0])
		}

		// ...unless a reject function takes them; the REMOVE applies.
		var rejects []cdc.Reject
		opts := fastOptions()
		opts.Reject = func(_ context.Context, r cdc.Reject) error { rejects = append(rejects, r); return nil }
		var got sink
		c = s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), opts)
		if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if len(rejects) != 2 || rejects[0].Seq != seqs[0] || !strings.Contains(rejects[0].Reason, "NewImage") {
			t.Errorf("rejects %+v", rejects)
		}
		if ch := got.all(); len(ch) != 1 || ch[0].Kind != cdc.Delete || ch[0].Seq != seqs[2] {
			t.Errorf("applied %+v", ch)
		}
		if st := c.Stats(); st.Rejected != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestStreamsLineage checks that parents are read to their end before
// their children, and that an item's versions grow across the split.
func TestStreamsLineage(t *testing.T) {
	s := newFakeStream(t, "NEW_AND_OLD_IMAGES", streamsfake.Options{})
	// A → (B, C); B → D. Records of item x move A → B → D.
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	var want []string
	for i := range 5 {
		s.put(t, "shard-A", "x", i)
		s.put(t, "shard-A", fmt.Sprintf("a%d", i), i)
	}
	s.must(t, s.fake.Split(s.arn, "shard-A", "shard-B", "shard-C"))
	for i := 5; i < 10; i++ {
		s.put(t, "shard-B", "x", i)
		s.put(t, "shard-C", fmt.Sprintf("c%d", i), i)
	}
	s.must(t, s.fake.Split(s.arn, "shard-B", "shard-D"))
	s.put(t, "shard-D", "x", 10)
	s.put(t, "shard-D", "x", -1)
	s.must(t, s.fake.CloseShard(s.arn, "shard-C"))
	s.must(t, s.fake.CloseShard(s.arn, "shard-D"))
	for i := range 11 {
		want = append(want, fmt.Sprint(i))
	}
	want = append(want, "deleted")

	var got sink
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
	if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	order := map[string]int{} // shard -> index of its first applied change
	last := map[string]int{}
	var xs []string
	var prev uint64
	for i, ch := range got.all() {
		if _, ok := order[ch.Shard]; !ok {
			order[ch.Shard] = i
		}
		last[ch.Shard] = i
		if keyOf(ch) == "x" {
			xs = append(xs, valueOf(ch))
			if ch.Version <= prev {
				t.Errorf("x: version %s after %s", hlc.String(ch.Version), hlc.String(prev))
			}
			prev = ch.Version
		}
	}
	if !slices.Equal(xs, want) {
		t.Errorf("x applied as %v, want %v", xs, want)
	}
	for _, edge := range [][2]string{{"shard-A", "shard-B"}, {"shard-A", "shard-C"}, {"shard-B", "shard-D"}} {
		if last[edge[0]] >= order[edge[1]] {
			t.Errorf("child %s started (change %d) before parent %s ended (change %d)", edge[1], order[edge[1]], edge[0], last[edge[0]])
		}
	}
	if st := c.Stats(); st.ShardsDone != 4 || st.Records != 22 {
		t.Errorf("stats %+v", st)
	}
}

// TestStreamsStartPositions covers the four start positions.
func TestStreamsStartPositions(t *testing.T) {
	// Each case: shard P (closed, parent) with p0..p2, shard Q (its child,
	// open) with q0..q4 before Run; after Run has started, q5.
	type setup struct {
		s    *fakeStream
		seqP []string
		seqQ []string
	}
	prepare := func(t *testing.T) setup {
		s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shard-P", ""))
		var st setup
		st.s = s
		for i := range 3 {
			st.seqP = append(st.seqP, s.put(t, "shard-P", fmt.Sprintf("p%d", i), i))
		}
		s.must(t, s.fake.Split(s.arn, "shard-P", "shard-Q"))
		for i := range 5 {
			st.seqQ = append(st.seqQ, s.put(t, "shard-Q", fmt.Sprintf("q%d", i), i))
		}
		return st
	}
	for _, tc := range []struct {
		name  string
		start func(setup) cdc.StartPosition
		want  []string
	}{
		{"trim horizon", func(setup) cdc.StartPosition { return cdc.StartPosition{Type: cdc.TrimHorizon} },
			[]string{"p0", "p1", "p2", "q0", "q1", "q2", "q3", "q4", "q5"}},
		{"latest", func(setup) cdc.StartPosition { return cdc.StartPosition{Type: cdc.Latest} },
			[]string{"q5"}},
		{"at sequence number", func(st setup) cdc.StartPosition {
			return cdc.StartPosition{Type: cdc.AtSequence, ShardID: "shard-Q", SequenceNumber: st.seqQ[2]}
		}, []string{"q2", "q3", "q4", "q5"}},
		{"after sequence number", func(st setup) cdc.StartPosition {
			return cdc.StartPosition{Type: cdc.AfterSequence, ShardID: "shard-Q", SequenceNumber: st.seqQ[2]}
		}, []string{"q3", "q4", "q5"}},
		{"at sequence number in the parent", func(st setup) cdc.StartPosition {
			return cdc.StartPosition{Type: cdc.AtSequence, ShardID: "shard-P", SequenceNumber: st.seqP[1]}
		}, []string{"p1", "p2", "q0", "q1", "q2", "q3", "q4", "q5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := prepare(t)
			var got sink
			c := st.s.consumer(t, tc.start(st), checkpoint.NewMemory(), fastOptions())
			r := start(t, c.Run, got.apply)
			// Put q5 once the consumer reads shard-Q (so LATEST has begun).
			eventually(t, 10*time.Second, "the consumer to read shard-Q", func() bool {
				return c.Stats().ShardsReading > 0 && st.s.fake.Calls("GetRecords") > 0
			})
			time.Sleep(20 * time.Millisecond)
			st.s.put(t, "shard-Q", "q5", 5)
			st.s.must(t, st.s.fake.CloseShard(st.s.arn, "shard-Q"))
			if err := r.wait(t, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ch := range got.all() {
				ids = append(ids, keyOf(ch))
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("applied %v, want %v", ids, tc.want)
			}
		})
	}

	t.Run("sequence number of an unknown shard", func(t *testing.T) {
		st := prepare(t)
		c := st.s.consumer(t, cdc.StartPosition{Type: cdc.AtSequence, ShardID: "shard-nope", SequenceNumber: "1"}, checkpoint.NewMemory(), fastOptions())
		if err := start(t, c.Run, (&sink{}).apply).wait(t, 10*time.Second); !errors.Is(err, cdc.ErrInvalidStart) {
			t.Fatalf("Run = %v, want ErrInvalidStart", err)
		}
	})
	t.Run("invalid start positions", func(t *testing.T) {
		s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
		for _, p := range []cdc.StartPosition{
			{Type: cdc.Latest, ShardID: "x"},
			{Type: cdc.AtSequence, ShardID: "x"},
			{Type: cdc.AfterSequence, SequenceNumber: "1"},
			{Type: 9},
		} {
			if _, err := cdc.NewStreamsConsumer(s.api, s.arn, p, checkpoint.NewMemory(), cdc.Options{}); !errors.Is(err, cdc.ErrInvalidStart) {
				t.Errorf("%+v: err %v, want ErrInvalidStart", p, err)
			}
		}
	})
}

// TestStreamsLatestRestart checks that a LATEST job restarted before its
// first record resumes from when it first started, not from the new
// LATEST, and that shards created after the start are read from their
// beginning.
func TestStreamsLatestRestart(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
	s.at = now.Add(-time.Hour)
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	s.put(t, "shard-A", "old", 1) // before the job: skipped
	cp := checkpoint.NewMemory()
	opts := fastOptions()
	opts.Now = func() time.Time { return now }

	var got sink
	c := s.consumer(t, cdc.StartPosition{Type: cdc.Latest}, cp, opts)
	r := start(t, c.Run, got.apply)
	eventually(t, 10*time.Second, "the first GetRecords", func() bool { return s.fake.Calls("GetRecords") > 0 })
	if err := r.stop(t); !isCanceled(err) {
		t.Fatalf("Run = %v", err)
	}
	// Written while the job was down: must be applied after the restart.
	s.at = now.Add(time.Second)
	s.put(t, "shard-A", "while-down", 2)
	s.must(t, s.fake.Split(s.arn, "shard-A", "shard-B"))
	s.put(t, "shard-B", "new-shard", 3)
	s.must(t, s.fake.CloseShard(s.arn, "shard-B"))

	c = s.consumer(t, cdc.StartPosition{Type: cdc.Latest}, cp, opts)
	if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ch := range got.all() {
		ids = append(ids, keyOf(ch))
	}
	if want := []string{"while-down", "new-shard"}; !slices.Equal(ids, want) {
		t.Errorf("applied %v, want %v", ids, want)
	}
}

// TestStreamsEmptyPagesAndFaults: empty pages with records behind them,
// throttling, server errors and expired iterators all end with every
// record applied once.
func TestStreamsEmptyPagesAndFaults(t *testing.T) {
	s := newFakeStream(t, "NEW_AND_OLD_IMAGES", streamsfake.Options{})
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	for i := range 30 {
		s.put(t, "shard-A", fmt.Sprintf("k%02d", i), i)
	}
	s.must(t, s.fake.InjectEmptyPages(s.arn, "shard-A", 5))
	s.fake.InjectError("GetRecords", "LimitExceededException", "LimitExceededException", "InternalServerError")
	s.fake.InjectError("DescribeStream", "", "LimitExceededException") // the first call (prepare) passes
	s.fake.InjectError("GetShardIterator", "InternalServerError")

	var got sink
	opts := fastOptions()
	opts.Limit = 7
	// Every third page, the iterators expire before the next GetRecords.
	got.after = func(batch int) {
		if batch%3 == 0 {
			s.fake.ExpireIterators()
		}
	}
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), opts)
	r := start(t, c.Run, got.apply)
	eventually(t, 10*time.Second, "30 records", func() bool { return got.len() >= 30 })
	s.must(t, s.fake.CloseShard(s.arn, "shard-A"))
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := got.len(); n != 30 {
		t.Errorf("applied %d changes, want 30 (each once)", n)
	}
	for _, b := range got.batches {
		if b > 7 {
			t.Errorf("a batch of %d changes; Limit is 7", b)
		}
	}
	st := c.Stats()
	if st.Throttled < 2 || st.IteratorsRenewed < 1 {
		t.Errorf("stats %+v: want throttling and renewed iterators counted", st)
	}
	if calls := s.fake.Calls("GetRecords"); calls < 5+3+30/7 {
		t.Errorf("%d GetRecords calls: the empty pages were not all served", calls)
	}
}

// TestStreamsPageLimits checks the 1000-record and 1 MB page limits.
func TestStreamsPageLimits(t *testing.T) {
	s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	var recs []json.RawMessage
	for i := range 2500 {
		recs = append(recs, streamsfake.NewRecord("INSERT", key(fmt.Sprint(i)), item(fmt.Sprint(i), i), s.at, false))
	}
	big := strings.Repeat("x", 300<<10) // four make more than 1 MB
	for i := range 8 {
		id := fmt.Sprint("big", i)
		recs = append(recs, streamsfake.NewRecord("INSERT", key(id), ddb.Item{"pk": ddb.S(id), "blob": ddb.S(big)}, s.at, false))
	}
	_, err := s.fake.Put(s.arn, "shard-A", recs...)
	s.must(t, err)
	s.must(t, s.fake.CloseShard(s.arn, "shard-A"))

	var got sink
	opts := fastOptions()
	opts.Limit = 5000 // the consumer asks DynamoDB Streams for at most 1000
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), opts)
	if err := start(t, c.Run, got.apply).wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := got.len(); n != 2508 {
		t.Fatalf("applied %d, want 2508", n)
	}
	// 1000 records, 1000, then 500 small and two of 300 KiB (the third
	// would pass 1 MB), then three and three of 300 KiB.
	if want := []int{1000, 1000, 502, 3, 3}; !slices.Equal(got.batches, want) {
		t.Errorf("batches %v, want %v", got.batches, want)
	}
}

// TestStreamsTTLDeletes checks that deletes made by TTL are recognised.
func TestStreamsTTLDeletes(t *testing.T) {
	s := newFakeStream(t, "NEW_AND_OLD_IMAGES", streamsfake.Options{})
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	_, err := s.fake.Put(s.arn, "shard-A",
		streamsfake.NewRecord("INSERT", key("a"), item("a", 1), s.at, false),
		streamsfake.NewRecord("REMOVE", key("a"), nil, s.at.Add(time.Hour), true),
		streamsfake.NewRecord("INSERT", key("b"), item("b", 1), s.at, false),
		streamsfake.NewRecord("REMOVE", key("b"), nil, s.at.Add(time.Hour), false),
	)
	s.must(t, err)
	s.must(t, s.fake.CloseShard(s.arn, "shard-A"))
	var got sink
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
	if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ch := got.all()
	if len(ch) != 4 || !ch[1].TTLDelete || ch[3].TTLDelete || ch[1].Kind != cdc.Delete {
		t.Errorf("changes %+v", ch)
	}
	if st := c.Stats(); st.TTLDeletes != 1 || st.Deletes != 2 || st.Puts != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestStreamsTrimmed checks that records lost to retention stop the job
// with ErrTrimmed instead of being skipped.
func TestStreamsTrimmed(t *testing.T) {
	// setup applies the first 4 of 10 records, then stops.
	setup := func(t *testing.T) (*fakeStream, *checkpoint.Memory, *sink) {
		s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
		for i := range 10 {
			s.put(t, "shard-A", fmt.Sprint(i), i)
		}
		cp := checkpoint.NewMemory()
		errStop := errors.New("stop")
		got := &sink{fail: func(batch int, _ []cdc.Change) error {
			if batch > 0 {
				return errStop
			}
			return nil
		}}
		opts := fastOptions()
		opts.Limit = 4
		c := s.consumer(t, cdc.StartPosition{}, cp, opts)
		if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); !errors.Is(err, errStop) {
			t.Fatalf("Run = %v", err)
		}
		if got.len() != 4 {
			t.Fatalf("applied %d, want 4", got.len())
		}
		return s, cp, &sink{}
	}

	t.Run("checkpoint past the trim horizon", func(t *testing.T) {
		s, cp, got := setup(t)
		// The job was down for a day: everything up to record 8 expired.
		s.must(t, s.fake.Trim(s.arn, "shard-A", 8))
		c := s.consumer(t, cdc.StartPosition{}, cp, fastOptions())
		err := start(t, c.Run, got.apply).wait(t, 10*time.Second)
		if !errors.Is(err, cdc.ErrTrimmed) || !strings.Contains(err.Error(), "shard-A") {
			t.Fatalf("Run = %v, want ErrTrimmed naming shard-A", err)
		}
		if got.len() != 0 {
			t.Errorf("applied %d records past a gap", got.len())
		}
	})
	t.Run("iterator past the trim horizon", func(t *testing.T) {
		s, cp, got := setup(t)
		// While the consumer applies a page, retention passes the records
		// its next iterator points at.
		got.fail = func(batch int, _ []cdc.Change) error {
			if batch == 0 {
				s.must(t, s.fake.Trim(s.arn, "shard-A", 10))
			}
			return nil
		}
		opts := fastOptions()
		opts.Limit = 2
		c := s.consumer(t, cdc.StartPosition{}, cp, opts)
		if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); !errors.Is(err, cdc.ErrTrimmed) {
			t.Fatalf("Run = %v, want ErrTrimmed", err)
		}
		if got.len() != 2 {
			t.Errorf("applied %d, want 2", got.len())
		}
	})
	t.Run("unfinished shard left the stream", func(t *testing.T) {
		s, cp, got := setup(t)
		s.must(t, s.fake.CloseShard(s.arn, "shard-A"))
		s.must(t, s.fake.CreateShard(s.arn, "shard-B", "shard-A"))
		s.must(t, s.fake.RemoveShard(s.arn, "shard-A"))
		c := s.consumer(t, cdc.StartPosition{}, cp, fastOptions())
		err := start(t, c.Run, got.apply).wait(t, 10*time.Second)
		if !errors.Is(err, cdc.ErrTrimmed) {
			t.Fatalf("Run = %v, want ErrTrimmed", err)
		}
	})
	t.Run("trim horizon start skips nothing it could read", func(t *testing.T) {
		s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
		s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
		for i := range 10 {
			s.put(t, "shard-A", fmt.Sprint(i), i)
		}
		s.must(t, s.fake.Trim(s.arn, "shard-A", 6))
		s.must(t, s.fake.CloseShard(s.arn, "shard-A"))
		var got sink
		c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), fastOptions())
		if err := start(t, c.Run, got.apply).wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if n := got.len(); n != 4 {
			t.Errorf("applied %d, want the 4 untrimmed records", n)
		}
	})
}

// TestStreamsLag checks Stats.Lag: the age of the last applied record
// while a shard is behind, zero once it is caught up.
func TestStreamsLag(t *testing.T) {
	s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	s.put(t, "shard-A", "a", 1) // at 12:00:00
	s.put(t, "shard-A", "b", 2) // at 12:00:01
	now := s.at.Add(90 * time.Second)
	opts := fastOptions()
	opts.Limit = 1
	opts.Now = func() time.Time { return now }
	release := make(chan struct{})
	got := &sink{fail: func(batch int, _ []cdc.Change) error {
		if batch == 1 {
			<-release // the second page is being applied
		}
		return nil
	}}
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), opts)
	r := start(t, c.Run, got.apply)
	eventually(t, 10*time.Second, "the first record", func() bool { return got.len() == 1 })
	eventually(t, 10*time.Second, "the second page", func() bool { return got.callCount() == 2 })
	// Behind: the last applied record is from 12:00:00, 92s before now.
	if lag := c.Stats().Lag; lag != 92*time.Second {
		t.Errorf("lag while behind %s, want 92s", lag)
	}
	close(release)
	eventually(t, 10*time.Second, "caught up", func() bool { return got.len() == 2 && c.Stats().Lag == 0 })
	if st := c.Stats(); !st.LastApplied.Equal(s.at.Add(-time.Second)) {
		t.Errorf("LastApplied %s", st.LastApplied)
	}
	r.stop(t)
}
