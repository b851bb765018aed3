package main

import (
	"strings"
	"testing"
)

func TestJobsRetryUsage(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "jobs", "retry")
	if code != 2 || !strings.Contains(stderr, "wrong number of arguments") {
		t.Fatalf("jobs retry without an id: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(t, nil, "jobs")
	if code != 2 || !strings.Contains(stderr, "retry") {
		t.Fatalf("jobs: exit %d, %q; want retry among the subcommands", code, stderr)
	}
	// Port 1 refuses connections: the retry is attempted and explained.
	code, _, stderr = runCLI(t, nil, "jobs", "retry", "j1", "--migrator", "127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "retry job") {
		t.Fatalf("jobs retry against nothing: exit %d, %q", code, stderr)
	}
}
