package server

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

// parseFlags is the Config the router's flags and environment give.
func parseFlags(t *testing.T, args []string, env map[string]string) (c Config) {
	t.Helper()
	fs := flag.NewFlagSet("veltrix-router", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := flagenv.Apply(fs, lookup); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMigrationSkewConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, time.Second},
		{[]string{"--migration-skew", "2s"}, nil, 2 * time.Second},
		{nil, map[string]string{"VELTRIX_MIGRATION_SKEW": "1500ms"}, 1500 * time.Millisecond},
	} {
		if c := parseFlags(t, tc.args, tc.env); c.MigrationSkew != tc.want {
			t.Errorf("%v %v: %v, want %v", tc.args, tc.env, c.MigrationSkew, tc.want)
		}
	}
	var c Config
	c.EnsureDefaults()
	if c.MigrationSkew != time.Second {
		t.Errorf("EnsureDefaults: %v, want 1s", c.MigrationSkew)
	}
	c.MigrationSkew = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--migration-skew -1s: negative") {
		t.Errorf("Validate: %v", err)
	}
}
