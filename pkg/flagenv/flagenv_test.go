package flagenv

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestApply(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	addr := fs.String("listen-addr", "a", "")
	timeout := fs.Duration("timeout", time.Second, "")
	var eps StringList
	fs.Var(&eps, "etcd-endpoints", "")
	if err := fs.Parse([]string{"--listen-addr=cli"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"VELTRIX_LISTEN_ADDR":    "env",
		"VELTRIX_TIMEOUT":        "5s",
		"VELTRIX_ETCD_ENDPOINTS": "h1:1, h2:2",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := Apply(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if *addr != "cli" {
		t.Errorf("command line lost to env: %q", *addr)
	}
	if *timeout != 5*time.Second {
		t.Errorf("timeout = %v", *timeout)
	}
	if strings.Join(eps, "|") != "h1:1|h2:2" {
		t.Errorf("endpoints = %q", eps)
	}
	env["VELTRIX_TIMEOUT"] = "soon"
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.Duration("timeout", time.Second, "")
	err := Apply(fs2, lookup)
	if err == nil || !strings.Contains(err.Error(), "VELTRIX_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}
