package jobs

import (
	"errors"
	"testing"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestHealth: failures count and keep their first time, progress clears
// them, and a restarted run continues a stored run of failures only while
// its last error is within fail_after.
func TestHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	h := newHealth(clock, nil, time.Minute)
	if s := h.snapshot(); s.GetConsecutiveFailures() != 0 || s.GetFailingSince() != nil || h.failingFor() != 0 {
		t.Fatalf("fresh health %v", s)
	}
	start := now
	h.observe(errors.New("first"))
	now = now.Add(10 * time.Second)
	h.observe(errors.New("second"))
	s := h.snapshot()
	if s.GetConsecutiveFailures() != 2 || s.GetLastError() != "second" || !s.GetFailingSince().AsTime().Equal(start) ||
		!s.GetLastErrorTime().AsTime().Equal(now) || h.failingFor() != 10*time.Second {
		t.Fatalf("after two failures: %v, failing for %s", s, h.failingFor())
	}

	for _, tc := range []struct {
		name    string
		gap     time.Duration // from the stored last error to the new run
		carried bool
	}{
		{"restarted at once", time.Second, true},
		{"restarted within fail_after", 50 * time.Second, true},
		{"restarted after fail_after", 2 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			later := func() time.Time { return now.Add(tc.gap) }
			r := newHealth(later, s, time.Minute)
			got := r.snapshot()
			if tc.carried != (got.GetConsecutiveFailures() == 2 && got.GetFailingSince().AsTime().Equal(start)) {
				t.Fatalf("carried %v: %v", tc.carried, got)
			}
		})
	}

	h.observe(nil)
	if s := h.snapshot(); s.GetConsecutiveFailures() != 0 || s.GetFailingSince() != nil || s.GetLastError() != "" || h.failingFor() != 0 {
		t.Fatalf("after progress: %v", s)
	}
}

func TestFailAfter(t *testing.T) {
	if d := FailAfter(&migratorv1.StreamSpec{}); d != DefaultFailAfter {
		t.Errorf("unset: %s", d)
	}
	if d := FailAfter(&migratorv1.StreamSpec{FailAfter: durationpb.New(time.Minute)}); d != time.Minute {
		t.Errorf("1m: %s", d)
	}
}
