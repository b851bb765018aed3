package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// TestRunSmoke runs every workload and the import against each peer for a
// moment: the peers start, load, answer and stop, and the report holds a
// row for each. Redis is skipped when redis-server is not installed,
// except in CI.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters and servers")
	}
	peers := []string{"veltrix-rf1", "storage-direct", "etcd-1", "pebble"}
	redis := true
	if _, err := exec.LookPath(RedisServerBin); err != nil {
		if inCI() {
			t.Fatalf("redis-server is missing in CI: %v (make bench-deps installs it)", err)
		}
		t.Logf("redis-server not installed: the Redis peers are skipped (apt-get install -y redis-server)")
		redis = false
	}
	if redis {
		peers = append(peers, "redis-pipelined")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Peers: peers, Keys: 300, ValueSize: 128, Concurrency: 4, Duration: 150 * time.Millisecond, Warmup: -1,
		Sync: false, Dir: t.TempDir(), ImportItems: 500, ImportItemBytes: 256, Progress: &progress,
		Command: "test", Rounds: 1, Settle: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	rows := map[string]Result{}
	for _, r := range rep.Results {
		if r.Note == "" {
			rows[r.Peer+"/"+r.Workload] = r
		}
		if r.Errors > 0 {
			t.Errorf("%s/%s: %d errors, first: %s", r.Peer, r.Workload, r.Errors, r.FirstError)
		}
	}
	for _, p := range peers {
		for _, w := range Workloads {
			r, ok := rows[p+"/"+w.Name]
			if !ok {
				t.Errorf("no result for %s/%s", p, w.Name)
				continue
			}
			if r.Ops == 0 {
				t.Errorf("%s/%s: no operations", p, w.Name)
			}
			if w.Name == "C" && r.NotFound > 0 {
				t.Errorf("%s/C: %d reads of loaded keys found nothing", p, r.NotFound)
			}
		}
	}
	if len(rep.Imports) != 1 || rep.Imports[0].Peer != "veltrix-rf1" || rep.Imports[0].Items != 500 {
		t.Errorf("imports: %+v", rep.Imports)
	}
	if rep.findNote("veltrix-rf1", "C", HalfPeakNote) == nil {
		t.Error("no half-peak run for veltrix-rf1")
	}
	if redis && rep.RedisBenchmark == nil {
		if _, err := exec.LookPath(RedisBenchmarkBin); err == nil {
			t.Errorf("redis-benchmark did not run: %v", rep.Notes)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

func TestMissingPeerIsSkipped(t *testing.T) {
	old := RedisServerBin
	RedisServerBin = "veltrix-no-such-redis-server"
	defer func() { RedisServerBin = old }()
	rep, err := Run(context.Background(), Options{
		Peers: []string{"redis"}, Workloads: []string{"C"}, Keys: 10, Duration: 100 * time.Millisecond, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Peers) != 1 || rep.Peers[0].Skipped == "" || len(rep.Results) != 0 {
		t.Errorf("peers %+v, results %+v", rep.Peers, rep.Results)
	}
	_, err = Run(context.Background(), Options{
		Peers: []string{"redis"}, Workloads: []string{"C"}, Keys: 10, Duration: 100 * time.Millisecond, Dir: t.TempDir(),
		RequirePeers: true,
	})
	if !errors.Is(err, ErrMissing) {
		t.Errorf("RequirePeers: error %v, want ErrMissing", err)
	}
}

func TestGenerateAndDecodeExport(t *testing.T) {
	e, err := GenerateExport(t.TempDir(), 1001, 1024, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e.ItemBytes != 1024 || len(e.Files) != 3 || e.CompressedBytes == 0 {
		t.Errorf("export: %+v", e)
	}
	res, err := Import(context.Background(), e, nil, ImportOptions{Workers: 2, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != 1001 || res.Bytes != 1001*1024 {
		t.Errorf("decoded %d items, %d bytes", res.Items, res.Bytes)
	}
}

// TestMigratorImportWorkload runs IMPORT-MIGRATOR small: one import job by
// each write path through the real migrator on a one-node cluster.
func TestMigratorImportWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two clusters with a migrator (CI runs it: make test has no -short)")
	}
	rep, err := Run(context.Background(), Options{
		Peers: []string{"veltrix-rf1"}, Workloads: []string{MigratorImportWorkload}, Keys: 10, Duration: 100 * time.Millisecond,
		Dir: t.TempDir(), ImportItems: 500, ImportNodes: []int{1}, NoTargets: true, Settle: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Imports) != 0 || len(rep.MigratorImports) != 2 {
		t.Fatalf("imports %+v, migrator imports %+v; want only the 2 migrator imports", rep.Imports, rep.MigratorImports)
	}
	for i, want := range []string{"batch_write", "ingest"} {
		if r := rep.MigratorImports[i]; r.WritePath != want || r.Items != 500 || r.Nodes != 1 || r.RF != 1 || r.ItemsPerSec <= 0 {
			t.Errorf("row %d: %+v; want %s, 500 items on 1 node", i, r, want)
		}
	}
}
