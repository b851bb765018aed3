package server

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

func TestMaxVersionSkewConfig(t *testing.T) {
	parse := func(args []string, env map[string]string) Config {
		t.Helper()
		var c Config
		fs := flag.NewFlagSet("veltrix-router", flag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse(nil, nil); c.MaxVersionSkew != time.Hour {
		t.Errorf("flag default %v, want 1h", c.MaxVersionSkew)
	}
	if c := parse([]string{"--max-version-skew", "5m"}, nil); c.MaxVersionSkew != 5*time.Minute {
		t.Errorf("--max-version-skew 5m gave %v", c.MaxVersionSkew)
	}
	if c := parse(nil, map[string]string{"VELTRIX_MAX_VERSION_SKEW": "2h"}); c.MaxVersionSkew != 2*time.Hour {
		t.Errorf("VELTRIX_MAX_VERSION_SKEW=2h gave %v", c.MaxVersionSkew)
	}
	var c Config
	c.EnsureDefaults()
	if c.MaxVersionSkew != time.Hour {
		t.Errorf("EnsureDefaults: %v, want 1h", c.MaxVersionSkew)
	}
	c.MaxVersionSkew = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--max-version-skew -1s: negative") {
		t.Errorf("Validate: %v", err)
	}
}

func TestHintedHandoffFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		off  bool
	}{
		{nil, nil, false},
		{[]string{"--hinted-handoff=false"}, nil, true},
		{[]string{"--hinted-handoff"}, nil, false},
		{[]string{"--hinted-handoff=true"}, nil, false},
		{nil, map[string]string{"VELTRIX_HINTED_HANDOFF": "false"}, true},
	} {
		var c Config
		fs := flag.NewFlagSet("veltrix-router", flag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		if c.NoHintedHandoff != tc.off {
			t.Errorf("%v %v: NoHintedHandoff %v, want %v", tc.args, tc.env, c.NoHintedHandoff, tc.off)
		}
	}
}

func TestRebalanceFlags(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		deadAfter time.Duration
		maxMoves  int
	}{
		{nil, nil, 15 * time.Minute, 2},
		{[]string{"--dead-after", "0"}, nil, -1, 2}, // never
		{[]string{"--dead-after", "1h", "--max-moves-per-node", "5"}, nil, time.Hour, 5},
		{nil, map[string]string{"VELTRIX_DEAD_AFTER": "30m", "VELTRIX_MAX_MOVES_PER_NODE": "1"}, 30 * time.Minute, 1},
	} {
		var c Config
		fs := flag.NewFlagSet("veltrix-router", flag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		c.EnsureDefaults()
		if c.DeadAfter != tc.deadAfter || c.MaxMovesPerNode != tc.maxMoves {
			t.Errorf("%v %v: dead after %v, max moves %d; want %v, %d", tc.args, tc.env, c.DeadAfter, c.MaxMovesPerNode, tc.deadAfter, tc.maxMoves)
		}
	}
	c := Config{MaxMovesPerNode: -1}
	c.EnsureDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--max-moves-per-node -1") {
		t.Errorf("Validate: %v", err)
	}
}

func TestAuthFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("veltrix-router", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--auth", "--auth-key-file", "/etc/veltrix/auth.key"}); err != nil {
		t.Fatal(err)
	}
	if err := flagenv.Apply(fs, func(k string) (string, bool) {
		if k == "VELTRIX_AUTH_ADMINS" {
			return "admin,ops@example.com", true
		}
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	if !c.Auth.Enabled || c.Auth.KeyFile != "/etc/veltrix/auth.key" || strings.Join(c.Auth.Admins, ";") != "admin;ops@example.com" {
		t.Fatalf("Auth %+v", c.Auth)
	}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Auth.Admins = []string{"bad name"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--auth-admins") {
		t.Fatalf("Validate: %v", err)
	}
}
