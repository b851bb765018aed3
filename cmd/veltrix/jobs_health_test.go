package main

import (
	"strings"
	"testing"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestJobHealthDisplay: the HEALTH column and the lag as `jobs list` and
// `jobs watch` print them.
func TestJobHealthDisplay(t *testing.T) {
	now := time.Now()
	running, failed := migratorv1.JobState_JOB_STATE_RUNNING, migratorv1.JobState_JOB_STATE_FAILED
	stream, imp := migratorv1.JobKind_JOB_KIND_STREAM, migratorv1.JobKind_JOB_KIND_IMPORT
	failing := &migratorv1.JobHealth{LastError: "connection refused", ConsecutiveFailures: 12,
		FailingSince: timestamppb.New(now.Add(-3 * time.Minute)), LastErrorTime: timestamppb.New(now)}
	for _, tc := range []struct {
		name       string
		job        *migratorv1.Job
		health     string
		lagPrinted string
	}{
		{"healthy stream, nothing read", &migratorv1.Job{Kind: stream, State: running, Health: &migratorv1.JobHealth{}}, "ok", "lag unknown"},
		{"healthy stream, caught up", &migratorv1.Job{Kind: stream, State: running,
			Progress: &migratorv1.Progress{Lag: durationpb.New(0)}}, "ok", "lag 0s"},
		{"failing stream", &migratorv1.Job{Kind: stream, State: running, Health: failing}, "failing 3m0s (12 errors)", "lag unknown"},
		{"failed stream", &migratorv1.Job{Kind: stream, State: failed, Health: failing, EndTime: timestamppb.New(now.Add(-time.Minute))},
			"failing 2m0s (12 errors)", ""},
		{"one error", &migratorv1.Job{Kind: stream, State: running, Health: &migratorv1.JobHealth{ConsecutiveFailures: 1,
			FailingSince: timestamppb.New(now)}}, "failing 0s (1 error)", "lag unknown"},
		{"import", &migratorv1.Job{Kind: imp, State: running}, "-", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthSummary(tc.job); got != tc.health {
				t.Errorf("health %q, want %q", got, tc.health)
			}
			got := rateETA(tc.job)
			if tc.lagPrinted == "" && strings.Contains(got, "lag") || tc.lagPrinted != "" && !strings.Contains(got, tc.lagPrinted) {
				t.Errorf("rate/ETA/lag %q, want %q", got, tc.lagPrinted)
			}
		})
	}
}

func TestStreamFailAfterFlag(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "stream", "--kind", "dynamodb", "--stream", "arn:x", "--table", "t", "--pk", "id:S", "--fail-after", "-1s")
	if code != 2 || !strings.Contains(errOut, "--fail-after") {
		t.Fatalf("exit %d %q: want 2 naming --fail-after", code, errOut)
	}
}
