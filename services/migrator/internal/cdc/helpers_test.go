package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
)

// sharedTestdata returns ../shared/testdata/dynamodb/<sub> (from the
// repository root), skipping the test when the folder is absent.
func sharedTestdata(t *testing.T, sub string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "..", "..", "shared", "testdata", "dynamodb", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared test data %s is absent (it lives beside the repository, in ../shared): %v", dir, err)
	}
	return dir
}

// sink collects applied changes; it can be made to fail.
type sink struct {
	mu      sync.Mutex
	changes []cdc.Change
	batches []int
	// fail, when set, is called before a batch is taken; an error it
	// returns fails the batch, which is then not collected.
	fail func(batch int, changes []cdc.Change) error
	// after is called after a batch is taken.
	after func(batch int)
	calls int
}

func (s *sink) apply(_ context.Context, changes []cdc.Change) error {
	s.mu.Lock()
	n := s.calls
	s.calls++
	fail, after := s.fail, s.after
	s.mu.Unlock()
	if fail != nil {
		if err := fail(n, changes); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.changes = append(s.changes, changes...)
	s.batches = append(s.batches, len(changes))
	s.mu.Unlock()
	if after != nil {
		after(n)
	}
	return nil
}

func (s *sink) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *sink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.changes)
}

func (s *sink) all() []cdc.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cdc.Change(nil), s.changes...)
}

// bySeq maps each applied sequence number to its change, checking that
// a record applied twice (a replay) had the same version both times.
func (s *sink) bySeq(t *testing.T) map[string]cdc.Change {
	t.Helper()
	out := make(map[string]cdc.Change)
	for _, c := range s.all() {
		if prev, ok := out[c.Seq]; ok && prev.Version != c.Version {
			t.Errorf("record %s applied with versions %d and %d", c.Seq, prev.Version, c.Version)
		}
		out[c.Seq] = c
	}
	return out
}

// runner runs a consumer's Run in the background.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, run func(context.Context, cdc.ApplyFunc) error, apply cdc.ApplyFunc) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, apply) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its error (nil when it ended by itself,
// context.Canceled when stopped).
func (r *runner) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of its context ending")
		return nil
	}
}

// wait returns Run's error once it ends by itself.
func (r *runner) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		close(r.done)
		return err
	case <-time.After(timeout):
		t.Fatalf("Run did not end within %s", timeout)
		return nil
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastOptions are consumer options for tests: tiny waits.
func fastOptions() cdc.Options {
	return cdc.Options{
		PollInterval:      5 * time.Millisecond,
		DiscoveryInterval: 20 * time.Millisecond,
		MinBackoff:        time.Millisecond,
		MaxBackoff:        10 * time.Millisecond,
	}
}

func key(id string) ddb.Item { return ddb.Item{"pk": ddb.S(id)} }

func item(id string, v int) ddb.Item {
	return ddb.Item{"pk": ddb.S(id), "v": ddb.NFromInt64(int64(v))}
}

func keyOf(c cdc.Change) string {
	s, _ := c.Keys["pk"].(ddb.S)
	return string(s)
}

func valueOf(c cdc.Change) string {
	if c.Kind == cdc.Delete {
		return "deleted"
	}
	return fmt.Sprint(c.NewImage["v"])
}

func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }
