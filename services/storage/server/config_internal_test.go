package server

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

// TestMoveFlags: --max-backfills and --stream-rate, from the command line
// or the environment; --stream-rate 0 is unlimited, not the default.
func TestMoveFlags(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		env          map[string]string
		backfills    int
		rate         float64
		invalidSubst string
	}{
		{"defaults", nil, nil, 2, 64, ""},
		{"flags", []string{"--max-backfills=5", "--stream-rate=8.5"}, nil, 5, 8.5, ""},
		{"unlimited", []string{"--stream-rate=0"}, nil, 2, -1, ""},
		{"environment", nil, map[string]string{"VELTRIX_MAX_BACKFILLS": "3", "VELTRIX_STREAM_RATE": "0"}, 3, -1, ""},
		{"flag wins over the environment", []string{"--stream-rate=16"}, map[string]string{"VELTRIX_STREAM_RATE": "0"}, 2, 16, ""},
		{"no backfills", []string{"--max-backfills=-1"}, nil, -1, 64, "--max-backfills -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseConfig(t, tc.args, tc.env)
			if c.MaxBackfills != tc.backfills || c.StreamRateMBps != tc.rate {
				t.Fatalf("max backfills %d, stream rate %v; want %d, %v", c.MaxBackfills, c.StreamRateMBps, tc.backfills, tc.rate)
			}
			wantValid(t, &c, tc.invalidSubst)
		})
	}
	fs := flag.NewFlagSet("storage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	new(Config).AddFlags(fs)
	if err := fs.Parse([]string{"--stream-rate=-3"}); err == nil {
		t.Fatal("--stream-rate -3 accepted")
	}
}

// TestMaxIngestBytesFlag: --max-ingest-bytes, from the command line or the
// environment, at least one maximal record.
func TestMaxIngestBytesFlag(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		env          map[string]string
		want         int64
		invalidSubst string
	}{
		{"default", nil, nil, DefaultMaxIngestBytes, ""},
		{"flag", []string{"--max-ingest-bytes=1073741824"}, nil, 1 << 30, ""},
		{"environment", nil, map[string]string{"VELTRIX_MAX_INGEST_BYTES": "134217728"}, 128 << 20, ""},
		{"too small", []string{"--max-ingest-bytes=1048576"}, nil, 1 << 20, "--max-ingest-bytes 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseConfig(t, tc.args, tc.env)
			if c.MaxIngestBytes != tc.want {
				t.Fatalf("MaxIngestBytes = %d, want %d", c.MaxIngestBytes, tc.want)
			}
			wantValid(t, &c, tc.invalidSubst)
		})
	}
}

// parseConfig parses args and env as the binary does, with --data-dir set.
func parseConfig(t *testing.T, args []string, env map[string]string) Config {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("storage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.AddFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir=/d"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	c.EnsureDefaults()
	return c
}

// wantValid fails unless c validates, or fails naming invalidSubst.
func wantValid(t *testing.T, c *Config, invalidSubst string) {
	t.Helper()
	err := c.Validate()
	if invalidSubst == "" && err != nil || invalidSubst != "" && (err == nil || !strings.Contains(err.Error(), invalidSubst)) {
		t.Fatalf("Validate = %v, want %q", err, invalidSubst)
	}
}
