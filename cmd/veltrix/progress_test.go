package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/vbauerster/mpb/v8"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

func importAt(state migratorv1.JobState, written, total, read, bytesTotal uint64) *migratorv1.Job {
	return &migratorv1.Job{Id: "imp", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: state, Progress: &migratorv1.Progress{
		ItemsWritten: written, ItemsTotal: total, BytesRead: read, BytesTotal: bytesTotal, Filtered: 0}}
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// TestJobBarCountsAgainstManifest draws an import that reports its totals
// only once running (as the migrator does): the bar must count the items
// against the manifest's total, not complete at "1 / 1".
func TestJobBarCountsAgainstManifest(t *testing.T) {
	var out bytes.Buffer
	running := migratorv1.JobState_JOB_STATE_RUNNING
	b := newJobBar(context.Background(), &out, importAt(migratorv1.JobState_JOB_STATE_PENDING, 0, 0, 0, 0), mpb.WithAutoRefresh(), mpb.WithWidth(160))
	b.update(importAt(running, 1, 25000, 4096, 0))
	b.update(importAt(running, 12000, 25000, 6<<20, 12<<20))
	mid := b.bar.Current()
	if b.bar.Completed() || mid != 12000 {
		t.Fatalf("mid-import the bar is at %d (completed %v); want 12000 of 25000", mid, b.bar.Completed())
	}
	b.finish(importAt(migratorv1.JobState_JOB_STATE_SUCCEEDED, 25000, 25000, 12<<20, 12<<20))
	text := ansi.ReplaceAllString(out.String(), "")
	lines := strings.Split(strings.TrimSpace(text), "\n")
	final := lines[len(lines)-1]
	for _, want := range []string{"import imp ", "25000 / 25000 items", "12.0 MiB / 12.0 MiB", "100%"} {
		if !strings.Contains(final, want) {
			t.Errorf("final frame %q lacks %q", final, want)
		}
	}
	if strings.Contains(text, " / 1 ") || strings.Contains(text, "1 / 1 ") {
		t.Errorf("a frame counted against a total of 1:\n%s", text)
	}
}

func TestProgressText(t *testing.T) {
	cases := []struct {
		j    *migratorv1.Job
		want string
	}{
		{importAt(migratorv1.JobState_JOB_STATE_PENDING, 0, 0, 0, 0), "0 items"},
		{importAt(migratorv1.JobState_JOB_STATE_RUNNING, 10, 100, 2048, 0), "10 / 100 items  2.0 KiB read"},
		{importAt(migratorv1.JobState_JOB_STATE_RUNNING, 10, 100, 512, 1536), "10 / 100 items  512 B / 1.5 KiB"},
		// Filtered, expired, rejected and superseded items count as done.
		{&migratorv1.Job{Progress: &migratorv1.Progress{ItemsWritten: 5, Filtered: 2, SkippedExpired: 1, Rejects: 1, ItemsSuperseded: 1, ItemsTotal: 10}}, "10 / 10 items"},
	}
	for _, tc := range cases {
		if got := progressText(tc.j); got != tc.want {
			t.Errorf("progressText(%v) = %q, want %q", tc.j.GetProgress(), got, tc.want)
		}
	}
}
