package e2e

import (
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// waitFor polls cond until it holds or 30s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sortStrings(s []string)                          { sort.Strings(s) }
func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
func timestampOf(t time.Time) *timestamppb.Timestamp  { return timestamppb.New(t) }
