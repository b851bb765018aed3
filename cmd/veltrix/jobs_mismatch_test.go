package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// TestMismatchKeyDisplay: a verify's mismatches show the item's key as
// DynamoDB JSON when the migrator sent it (an N sort key's stored bytes
// are not its number), and the stored bytes otherwise.
func TestMismatchKeyDisplay(t *testing.T) {
	j := &migratorv1.Job{Id: "v1", Kind: migratorv1.JobKind_JOB_KIND_VERIFY, State: migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS,
		VerifyReport: &migratorv1.VerifyReport{Missing: 1, Extra: 1, Mismatches: []*migratorv1.Mismatch{
			{Kind: migratorv1.MismatchKind_MISMATCH_KIND_MISSING, PartitionKey: []byte("a"), SortKey: []byte{0x80, 0x01},
				Key: `{"pk":{"S":"a"},"sk":{"N":"3"}}`, Detail: "in the source, not in Veltrix"},
			{Kind: migratorv1.MismatchKind_MISMATCH_KIND_EXTRA, PartitionKey: []byte("b"), Detail: "in Veltrix, not in the source"},
		}}}
	var out bytes.Buffer
	_ = report(context.Background(), &out, &conn{output: "table"}, nil, j)
	got := out.String()
	for _, want := range []string{
		`MISSING   key={"pk":{"S":"a"},"sk":{"N":"3"}} in the source, not in Veltrix`,
		`EXTRA     pk=b sk=`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// TestReportWritePath: an import's report names the write path the job
// uses, as --write-path spells it.
func TestReportWritePath(t *testing.T) {
	for p, want := range map[migratorv1.WritePath]string{
		migratorv1.WritePath_WRITE_PATH_INGEST:      "write path:        ingest",
		migratorv1.WritePath_WRITE_PATH_BATCH_WRITE: "write path:        batch-write",
		migratorv1.WritePath_WRITE_PATH_UNSPECIFIED: "write path:        auto",
	} {
		j := &migratorv1.Job{Id: "i1", Kind: migratorv1.JobKind_JOB_KIND_IMPORT, State: migratorv1.JobState_JOB_STATE_RUNNING,
			Spec: &migratorv1.Job_ImportSpec{ImportSpec: &migratorv1.ImportSpec{WritePath: p,
				Source: &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: "/x"}}}}}
		var out bytes.Buffer
		_ = report(context.Background(), &out, &conn{output: "table"}, nil, j)
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s: output lacks %q:\n%s", p, want, out.String())
		}
	}
}
