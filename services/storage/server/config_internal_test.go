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
			var c Config
			fs := flag.NewFlagSet("storage", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.AddFlags(fs)
			if err := fs.Parse(append([]string{"--data-dir=/d"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			c.EnsureDefaults()
			if c.MaxBackfills != tc.backfills || c.StreamRateMBps != tc.rate {
				t.Fatalf("max backfills %d, stream rate %v; want %d, %v", c.MaxBackfills, c.StreamRateMBps, tc.backfills, tc.rate)
			}
			err := c.Validate()
			if tc.invalidSubst == "" && err != nil || tc.invalidSubst != "" && (err == nil || !strings.Contains(err.Error(), tc.invalidSubst)) {
				t.Fatalf("Validate = %v, want %q", err, tc.invalidSubst)
			}
		})
	}
	fs := flag.NewFlagSet("storage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	new(Config).AddFlags(fs)
	if err := fs.Parse([]string{"--stream-rate=-3"}); err == nil {
		t.Fatal("--stream-rate -3 accepted")
	}
}
