package bench

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestMigrationPhases runs MIGRATION-PHASES for a moment: the table walks
// proxy → done through the service, and every measured phase has a
// GetItem and a PutItem row with operations, no errors and every read
// found (in veltrix and done the reads come from Veltrix, so the mirrored
// copy must hold every key).
func TestMigrationPhases(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a cluster and dynalite (CI runs it: make test has no -short)")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{
		Peers: []string{"veltrix-rf1", "dynalite"}, Workloads: []string{MigrationPhasesWorkload}, Keys: 100, ValueSize: 64,
		Concurrency: 2, Duration: 150 * time.Millisecond, Warmup: -1, Rate: 100, Dir: t.TempDir(), Progress: &progress,
		Command: "test", Rounds: 2, RequirePeers: inCI(),
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.MigrationPhases) == 0 {
		t.Skipf("dynalite (Node.js, installed in e2e/peers by make e2e-deps, which make test runs; in CI a missing peer fails Run) is missing: %v", rep.Notes)
	}
	want := []string{"proxy", "mirror", "shadow", "cutover 50%", "veltrix", "done"}
	if len(rep.MigrationPhases) != 2*len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rep.MigrationPhases), 2*len(want), rep.MigrationPhases)
	}
	for i, row := range rep.MigrationPhases {
		op := []string{"GetItem", "PutItem"}[i%2]
		if row.Phase != want[i/2] || row.Operation != op {
			t.Errorf("row %d is %s %s, want %s %s", i, row.Phase, row.Operation, want[i/2], op)
		}
		if row.Ops == 0 || row.Errors > 0 || row.NotFound > 0 || row.Endpoint.P50 <= 0 || row.Direct.P50 <= 0 {
			t.Errorf("%s %s: %d ops, %d errors (%s), %d not found, P50 %v vs %v", row.Phase, row.Operation, row.Ops,
				row.Errors, row.FirstError, row.NotFound, row.Endpoint.P50, row.Direct.P50)
		}
		if row.AddedP50 < row.AddedP50Min || row.AddedP50 > row.AddedP50Max {
			t.Errorf("%s %s: added P50 %v outside its rounds [%v, %v]", row.Phase, row.Operation, row.AddedP50, row.AddedP50Min, row.AddedP50Max)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}
