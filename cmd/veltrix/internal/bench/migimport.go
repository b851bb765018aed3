package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/localcluster"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// MigratorImportWorkload names, in --workloads, the bulk import through
// the real migrator, by write path (BATCH_WRITE, INGEST) and number of
// storage nodes (Options.ImportNodes).
const MigratorImportWorkload = "IMPORT-MIGRATOR"

// MigratorImportRow is one import job measured end to end.
type MigratorImportRow struct {
	WritePath string  `json:"write_path"`
	Nodes     int     `json:"nodes"`
	RF        int     `json:"rf"`
	Items     int64   `json:"items"`
	ItemBytes int     `json:"item_bytes"`
	Seconds   Seconds `json:"seconds"`
	// ItemsPerSec is items over the job's wall time.
	ItemsPerSec float64 `json:"items_per_s"`
	// CPUSeconds is the bench process's CPU time during the job: the
	// migrator, the storage nodes, the router and etcd all run in it.
	CPUSeconds float64 `json:"cpu_seconds"`
	// ItemsPerCPUSec is items per CPU-second of the whole system.
	ItemsPerCPUSec float64 `json:"items_per_cpu_s"`
	// VsClaim is ItemsPerCPUSec over the 42,000 items per CPU-second target.
	VsClaim float64 `json:"vs_42k_per_cpu_s"`
}

// writeManifests makes the generated export one the migrator reads:
// manifest-summary.json (export time, item count, billedSizeBytes the
// items' encoded size) and manifest-files.json (the files' item counts).
func (e *Export) writeManifests() error {
	var files strings.Builder
	n := len(e.Files)
	for f, path := range e.Files {
		count := e.Items / n
		if f < e.Items%n {
			count++
		}
		b, err := json.Marshal(map[string]any{"itemCount": count, "dataFileS3Key": "data/" + filepath.Base(path)})
		if err != nil {
			return err
		}
		files.Write(b)
		files.WriteByte('\n')
	}
	sum, err := json.Marshal(map[string]any{
		"version": "2020-06-30", "exportTime": exportTime.Format(time.RFC3339Nano), "itemCount": e.Items,
		"outputFormat": "DYNAMODB_JSON", "billedSizeBytes": e.Items * e.ItemBytes,
	})
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(filepath.Join(e.Dir, "manifest-files.json"), []byte(files.String()), 0o644),
		os.WriteFile(filepath.Join(e.Dir, "manifest-summary.json"), sum, 0o644))
}

// runMigratorImports imports the export with the migrator into a fresh
// cluster of n storage nodes (RF min(n, 3)) for each n of ImportNodes, by
// BATCH_WRITE then INGEST, side by side.
func (o *Options) runMigratorImports(ctx context.Context, rep *Report, root string, export *Export) error {
	for _, n := range o.ImportNodes {
		for _, path := range []migratorv1.WritePath{migratorv1.WritePath_WRITE_PATH_BATCH_WRITE, migratorv1.WritePath_WRITE_PATH_INGEST} {
			row, err := o.migratorImport(ctx, root, export, n, path)
			if err != nil {
				return err
			}
			rep.MigratorImports = append(rep.MigratorImports, row)
		}
	}
	return nil
}

func (o *Options) migratorImport(ctx context.Context, root string, export *Export, nodes int, path migratorv1.WritePath) (MigratorImportRow, error) {
	name := strings.ToLower(strings.TrimPrefix(path.String(), "WRITE_PATH_"))
	row := MigratorImportRow{WritePath: name, Nodes: nodes, RF: min(nodes, 3), ItemBytes: export.ItemBytes}
	dir, err := mkdirTemp(root, fmt.Sprintf("migrator-%s-%d", name, nodes))
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	o.progress("migrator import by %s: starting %d storage nodes, RF %d", name, nodes, row.RF)
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir: dir, Cluster: "bench", Nodes: nodes, RF: row.RF, NoSync: !o.Sync, Migrator: true, Logger: o.Logger,
	})
	if err != nil {
		return row, fmt.Errorf("bench: start a cluster of %d nodes for the migrator: %w", nodes, err)
	}
	defer c.Close()
	cc, err := grpcx.Dial(c.Migrator.Addr())
	if err != nil {
		return row, err
	}
	defer cc.Close()
	mc := migratorv1.NewMigratorServiceClient(cc)
	spec := &migratorv1.ImportSpec{
		Source: &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: export.Dir}},
		Mapping: &migratorv1.Mapping{TargetTable: "import", CreateTable: true,
			PartitionKey: &migratorv1.KeyAttribute{Name: exportKeyAttr, Type: migratorv1.KeyType_KEY_TYPE_S}},
		WritePath: path,
	}
	label := fmt.Sprintf("migrator-%s-%dn", name, nodes)
	if o.BeforeWorkload != nil {
		o.BeforeWorkload(label, MigratorImportWorkload)
	}
	cpu0, start := selfCPU(), time.Now()
	resp, err := mc.StartImport(ctx, &migratorv1.StartImportRequest{Spec: spec})
	if err != nil {
		return row, fmt.Errorf("bench: start the import: %w", err)
	}
	job, err := waitJob(ctx, mc, resp.GetJob().GetId())
	elapsed, cpu := time.Since(start), selfCPU()-cpu0
	if o.AfterWorkload != nil {
		o.AfterWorkload(label, MigratorImportWorkload)
	}
	if err != nil {
		return row, err
	}
	if job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || job.GetProgress().GetItemsWritten() != uint64(export.Items) {
		return row, fmt.Errorf("bench: migrator import by %s: %s %q, %d items of %d", name, job.GetState(), job.GetError(), job.GetProgress().GetItemsWritten(), export.Items)
	}
	if got := job.GetImportSpec().GetWritePath(); got != path {
		return row, fmt.Errorf("bench: migrator import asked for %s ran by %s", path, got)
	}
	row.Items = int64(export.Items)
	row.Seconds = Seconds(elapsed)
	row.ItemsPerSec = perSec(uint64(export.Items), elapsed)
	row.CPUSeconds = cpu.Seconds()
	if cpu > 0 {
		row.ItemsPerCPUSec = float64(export.Items) / cpu.Seconds()
	}
	row.VsClaim = row.ItemsPerCPUSec / ClaimItemsPerVCPU
	o.progress("migrator import by %s on %d nodes: %s items/s, %s items per CPU-second", name, nodes, fmtRate(row.ItemsPerSec), fmtRate(row.ItemsPerCPUSec))
	return row, nil
}

// waitJob polls a job until it ends (bounded by ctx and 30 minutes).
func waitJob(ctx context.Context, mc migratorv1.MigratorServiceClient, id string) (*migratorv1.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := mc.GetJob(ctx, &migratorv1.GetJobRequest{Id: id})
		if err != nil {
			return nil, fmt.Errorf("bench: follow import %s: %w", id, err)
		}
		switch r.GetJob().GetState() {
		case migratorv1.JobState_JOB_STATE_PENDING, migratorv1.JobState_JOB_STATE_RUNNING:
		default:
			return r.GetJob(), nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("bench: import %s did not end: %w", id, ctx.Err())
		}
	}
}
