package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
)

// TestBinBench runs `veltrix bench` as a person runs it, on a tiny
// workload: it starts its own peers, prints the comparison as JSON and as
// a table, and stops everything it started.
func TestBinBench(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	common := []string{
		"bench", "--peers", "veltrix-rf1,storage-direct,etcd-1,pebble", "--workloads", "C,PUT,IMPORT",
		"--keys", "200", "--value-size", "256", "--concurrency", "4", "--duration", "300ms", "--warmup", "-1ns",
		"--import-items", "300", "--dir", t.TempDir(),
	}

	res := runBin(t, 3*time.Minute, "", veltrix, append(common, "--output", "json", "--sync=false")...)
	if res.code != 0 {
		t.Fatalf("veltrix bench exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var rep struct {
		Settings struct {
			Keys int  `json:"keys"`
			Sync bool `json:"sync"`
		} `json:"settings"`
		Peers []struct {
			Name       string `json:"name"`
			Durability string `json:"durability"`
		} `json:"peers"`
		Results []struct {
			Peer      string  `json:"peer"`
			Workload  string  `json:"workload"`
			OpsPerSec float64 `json:"ops_per_s"`
			Errors    int     `json:"errors"`
		} `json:"results"`
		Imports []struct {
			Peer  string `json:"peer"`
			Items int    `json:"items"`
		} `json:"imports"`
		Targets []struct {
			Name string `json:"name"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, res.stdout)
	}
	if rep.Settings.Keys != 200 || rep.Settings.Sync {
		t.Errorf("settings: %+v", rep.Settings)
	}
	if len(rep.Peers) != 4 {
		t.Errorf("peers: %+v", rep.Peers)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Peer+"/"+r.Workload] = true
		if r.OpsPerSec <= 0 || r.Errors != 0 {
			t.Errorf("%s/%s: %.0f ops/s, %d errors", r.Peer, r.Workload, r.OpsPerSec, r.Errors)
		}
	}
	for _, p := range []string{"veltrix-rf1", "storage-direct", "etcd-1", "pebble"} {
		for _, w := range []string{"C", "PUT"} {
			if !seen[p+"/"+w] {
				t.Errorf("no result for %s/%s", p, w)
			}
		}
	}
	if len(rep.Imports) != 1 || rep.Imports[0].Items != 300 {
		t.Errorf("imports: %+v", rep.Imports)
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets")
	}

	res = runBin(t, 3*time.Minute, "", veltrix, append(common, "--peers", "pebble", "--workloads", "C")...)
	if res.code != 0 {
		t.Fatalf("veltrix bench exited %d\nstderr:\n%s", res.code, res.stderr)
	}
	for _, want := range []string{"WORKLOAD", "pebble", "P99.9", "WAL fsync per write (pebble.Sync)"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, res.stdout)
		}
	}
	if res := runBin(t, time.Minute, "", veltrix, "bench", "--peers", "nosuchpeer"); res.code != 2 || !strings.Contains(res.stderr, "nosuchpeer") {
		t.Errorf("unknown peer: exit %d, stderr %q", res.code, res.stderr)
	}
}
