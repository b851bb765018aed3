package cdc_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/streamsfake"
)

// observer records what Options.Observe is told.
type observer struct {
	mu        sync.Mutex
	failures  []string
	successes int
}

func (o *observer) observe(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.failures = append(o.failures, err.Error())
	} else {
		o.successes++
	}
}

func (o *observer) counts() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.failures), o.successes
}

func (o *observer) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.failures) == 0 {
		return ""
	}
	return o.failures[len(o.failures)-1]
}

// TestObserveMissingStream: a stream that does not exist is retried, each
// failure reported with the service's error, until the context ends; the
// lag stays unknown.
func TestObserveMissingStream(t *testing.T) {
	s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
	var o observer
	opts := fastOptions()
	opts.Observe = o.observe
	c, err := cdc.NewStreamsConsumer(s.api, "arn:aws:dynamodb:us-east-1:123456789012:table/nope/stream/x", cdc.StartPosition{}, checkpoint.NewMemory(), opts)
	s.must(t, err)
	var got sink
	r := start(t, c.Run, got.apply)
	eventually(t, 5*time.Second, "failures reported", func() bool { n, _ := o.counts(); return n >= 5 })
	if err := r.stop(t); !isCanceled(err) {
		t.Fatalf("Run = %v, want it to retry until cancelled", err)
	}
	if last := o.last(); !strings.Contains(last, "ResourceNotFoundException") || !strings.Contains(last, "nope") {
		t.Errorf("last failure %q: want the service's error naming the stream", last)
	}
	if _, ok := o.counts(); ok != 0 {
		t.Errorf("%d successes reported for a stream that does not exist", ok)
	}
	if st := c.Stats(); st.LagKnown {
		t.Errorf("stats %+v: lag known without a read", st)
	}
}

// TestObserveRecovery: failing GetRecords are reported one per call, then
// progress is reported and the lag becomes known.
func TestObserveRecovery(t *testing.T) {
	s := newFakeStream(t, "NEW_IMAGE", streamsfake.Options{})
	s.must(t, s.fake.CreateShard(s.arn, "shard-A", ""))
	s.put(t, "shard-A", "a", 1)
	s.fake.InjectError("GetRecords", "InternalServerError", "InternalServerError", "InternalServerError", "AccessDeniedException")
	var o observer
	opts := fastOptions()
	opts.Observe = o.observe
	c := s.consumer(t, cdc.StartPosition{}, checkpoint.NewMemory(), opts)
	var got sink
	r := start(t, c.Run, got.apply)
	eventually(t, 5*time.Second, "the record", func() bool { return got.len() == 1 })
	eventually(t, 5*time.Second, "progress and a known lag", func() bool {
		_, ok := o.counts()
		return ok > 0 && c.Stats().LagKnown
	})
	r.stop(t)
	if n, _ := o.counts(); n != 4 || s.fake.Calls("GetRecords") < 5 {
		t.Errorf("%d failures reported for 4 failed GetRecords (%d calls)", n, s.fake.Calls("GetRecords"))
	}
	if last := o.last(); !strings.Contains(last, "AccessDeniedException") || !strings.Contains(last, "shard-A") {
		t.Errorf("last failure %q: want the service's error naming the shard", last)
	}
}
