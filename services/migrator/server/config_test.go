package server

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:7600" || c.Cluster != "default" || c.RouterEndpoints[0] != "127.0.0.1:7400" ||
		c.MaxConcurrentJobs != 4 || c.SessionTTL != 10*time.Second || c.MaxStoredRejects != 10000 || c.ID == "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	c := Config{Cluster: "Bad Name", ListenAddr: "nope", RouterEndpoints: []string{"no-port"}, MaxConcurrentJobs: -1,
		SessionTTL: time.Millisecond, MaxStoredRejects: -1}
	c.EnsureDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"cluster name", "--listen-addr", "--router-endpoints", "--max-concurrent-jobs", "--session-ttl", "--max-stored-rejects"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: lacks %s", err, want)
		}
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.AddFlags(fs)
	env := map[string]string{"VELTRIX_ROUTER_ENDPOINTS": "10.0.0.1:7400, 10.0.0.2:7400", "VELTRIX_SESSION_TTL": "3s"}
	if err := fs.Parse([]string{"--listen-addr", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := flagenv.Apply(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:1" || len(c.RouterEndpoints) != 2 || c.RouterEndpoints[1] != "10.0.0.2:7400" || c.SessionTTL != 3*time.Second {
		t.Fatalf("%+v", c)
	}
}
