package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDynamoDBWorkloads runs GETITEM and PUTITEM through a Veltrix
// cluster's DynamoDB endpoint and against dynalite for a moment: the
// endpoint starts with the cluster, the table is loaded through it, every
// loaded key is found, and the report compares GetItem with the gRPC Get
// of the same cluster and with dynalite. dynalite is skipped when node or
// the npm package is missing, except in CI.
func TestDynamoDBWorkloads(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a cluster and dynalite (CI runs it: make test has no -short)")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Peers: []string{"veltrix-rf1", "dynalite"}, Workloads: []string{"C", "PUT", "GETITEM", "PUTITEM", PutItemOnlyRMW},
		Keys: 200, ValueSize: 128, Concurrency: 4, Duration: 200 * time.Millisecond, Warmup: -1,
		Dir: t.TempDir(), Progress: &progress, RequirePeers: inCI(), NoTargets: false, Command: "test",
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	dynalite := true
	for _, p := range rep.Peers {
		if p.Name == "dynalite" && p.Skipped != "" {
			t.Logf("dynalite skipped: %s", p.Skipped)
			dynalite = false
		}
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
	want := []string{"veltrix-rf1/C", "veltrix-rf1/PUT", "veltrix-rf1/GETITEM", "veltrix-rf1/PUTITEM", "veltrix-rf1/" + PutItemOnlyRMW}
	if dynalite {
		want = append(want, "dynalite/GETITEM", "dynalite/PUTITEM")
		if _, ok := rows["dynalite/C"]; ok {
			t.Error("dynalite ran the gRPC workload C")
		}
		if _, ok := rows["dynalite/"+PutItemOnlyRMW]; ok {
			t.Error("dynalite ran " + PutItemOnlyRMW)
		}
	}
	for _, k := range want {
		r, ok := rows[k]
		if !ok || r.Ops == 0 {
			t.Errorf("%s: no operations (%+v)", k, r)
		}
		if strings.HasSuffix(k, "GETITEM") && r.NotFound > 0 {
			t.Errorf("%s: %d GetItem of loaded keys found nothing", k, r.NotFound)
		}
	}
	targets := map[string]bool{}
	for _, tg := range rep.Targets {
		targets[tg.Name] = true
	}
	for _, name := range []string{"GetItem ops/s through the DynamoDB endpoint vs gRPC Get, veltrix-rf1 (same cluster)"} {
		if !targets[name] {
			t.Errorf("no target %q in %v", name, rep.Targets)
		}
	}
	if dynalite && !targets["GetItem ops/s, veltrix-rf1 endpoint vs dynalite"] {
		t.Errorf("no GetItem vs dynalite ratio in %v", rep.Targets)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "GetItem (DynamoDB endpoint)") {
		t.Errorf("the table has no GetItem (DynamoDB endpoint) row:\n%s", table.String())
	}
	t.Logf("\n%s", table.String())
}
