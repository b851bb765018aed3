package server

import (
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestCriteria judges each phase's exit criteria on figures at and around
// their goals.
func TestCriteria(t *testing.T) {
	mirrorTime := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	good := func() *migrationv1.MigrationStats {
		return &migrationv1.MigrationStats{ReadsCompared: 200000, Mismatches: 1, MismatchRatePercent: 0.0005,
			WritesMirrored: 1000, MirrorFailures: 1, MirrorFailureRatePercent: 0.1, CacheHitRatioPercent: 95}
	}
	goodEv := func() evidence { return evidence{stats: good(), cacheReads: 100, importJob: "imp1"} }
	with := func(f func(*evidence)) evidence { ev := goodEv(); f(&ev); return ev }
	for _, tc := range []struct {
		name   string
		phase  migrationv1.Phase
		ev     evidence
		names  string // the criteria, in order
		failed string // the ones not met
		value  string // in some criterion's value
	}{
		{"proxy has none", migrationv1.Phase_PHASE_PROXY, goodEv(), "", "", ""},
		{"done has none", migrationv1.Phase_PHASE_DONE, goodEv(), "", "", ""},
		{"mirror met", migrationv1.Phase_PHASE_MIRROR, goodEv(), "mirror_failure_rate,mirror_queue_empty,import_after_mirror", "", "import job imp1"},
		{"mirror failures above 0.1 %", migrationv1.Phase_PHASE_MIRROR, with(func(e *evidence) { e.stats.MirrorFailureRatePercent = 0.11 }),
			"mirror_failure_rate,mirror_queue_empty,import_after_mirror", "mirror_failure_rate", "0.11 %"},
		{"mirror queue not empty", migrationv1.Phase_PHASE_MIRROR, with(func(e *evidence) { e.stats.MirrorPending = 3 }),
			"mirror_failure_rate,mirror_queue_empty,import_after_mirror", "mirror_queue_empty", "3 pending"},
		{"mirror without import", migrationv1.Phase_PHASE_MIRROR, with(func(e *evidence) { e.importJob, e.importNote = "", "no completed import" }),
			"mirror_failure_rate,mirror_queue_empty,import_after_mirror", "import_after_mirror", "none (no completed import)"},
		{"shadow met", migrationv1.Phase_PHASE_SHADOW, goodEv(), "mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "", "95.00 %"},
		{"shadow without comparisons", migrationv1.Phase_PHASE_SHADOW, with(func(e *evidence) {
			e.stats.ReadsCompared, e.stats.Mismatches, e.stats.MismatchRatePercent = 0, 0, 0
		}), "mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "mismatch_rate", "of 0 reads"},
		{"shadow mismatches at 0.001 %", migrationv1.Phase_PHASE_SHADOW, with(func(e *evidence) { e.stats.MismatchRatePercent = 0.001 }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "mismatch_rate", ""},
		{"cutover with a 5xx", migrationv1.Phase_PHASE_CUTOVER, with(func(e *evidence) { e.stats.Veltrix_5Xx = 1 }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "veltrix_5xx", ""},
		{"cutover cache at 90 %", migrationv1.Phase_PHASE_CUTOVER, with(func(e *evidence) { e.stats.CacheHitRatioPercent = 90 }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "cache_hit_ratio", "90.00 %"},
		{"cutover cache unknown", migrationv1.Phase_PHASE_CUTOVER, with(func(e *evidence) { e.cacheReads, e.stats.CacheHitRatioPercent = 0, 0 }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio", "cache_hit_ratio", "unknown (no point reads since "},
		{"veltrix with a stream caught up", migrationv1.Phase_PHASE_VELTRIX, with(func(e *evidence) { e.streamJob, e.stats.CdcLag = "s1", durationpb.New(2*time.Second) }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio,mirror_queue_empty,cdc_lag", "", "2s (job s1)"},
		{"veltrix with a stream 10 s behind", migrationv1.Phase_PHASE_VELTRIX, with(func(e *evidence) { e.streamJob, e.stats.CdcLag = "s1", durationpb.New(10*time.Second) }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio,mirror_queue_empty,cdc_lag", "cdc_lag", "10s (job s1)"},
		{"veltrix with re-syncs queued (finish would drop them)", migrationv1.Phase_PHASE_VELTRIX, with(func(e *evidence) { e.stats.MirrorPending = 2 }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio,mirror_queue_empty", "mirror_queue_empty", "2 pending"},
		{"shadow with a stream of unknown lag", migrationv1.Phase_PHASE_SHADOW, with(func(e *evidence) { e.streamJob = "s1" }),
			"mismatch_rate,mirror_failure_rate,veltrix_5xx,cache_hit_ratio,cdc_lag", "cdc_lag", "unknown (job s1 has not read yet)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &migrationv1.Migration{Table: "t", Phase: tc.phase, CutoverPercent: 25, MirrorTime: timestamppb.New(mirrorTime)}
			cs := criteria(m, tc.ev)
			var names, values []string
			for _, c := range cs {
				names = append(names, c.GetName())
				values = append(values, c.GetValue())
				if c.GetGoal() == "" || c.GetValue() == "" {
					t.Errorf("criterion %s: value %q goal %q", c.GetName(), c.GetValue(), c.GetGoal())
				}
			}
			if got := strings.Join(names, ","); got != tc.names {
				t.Errorf("criteria %q, want %q", got, tc.names)
			}
			if got := strings.Join(failedCriteria(cs), ","); got != tc.failed {
				t.Errorf("failed %q, want %q (%v)", got, tc.failed, values)
			}
			if tc.value != "" && !strings.Contains(strings.Join(values, "|"), tc.value) {
				t.Errorf("values %q lack %q", values, tc.value)
			}
		})
	}
}

// TestNextStep walks the phases in order.
func TestNextStep(t *testing.T) {
	p, pct := migrationv1.Phase_PHASE_PROXY, uint32(0)
	var got []string
	for range 10 {
		p, pct = nextStep(p, pct)
		if p == migrationv1.Phase_PHASE_UNSPECIFIED {
			break
		}
		got = append(got, phaseName(p, pct))
	}
	if want := "MIRROR,SHADOW,CUTOVER 5%,CUTOVER 25%,CUTOVER 50%,CUTOVER 100%,VELTRIX,DONE"; strings.Join(got, ",") != want {
		t.Fatalf("steps %q, want %q", strings.Join(got, ","), want)
	}
}

// TestAdvanceTarget: bad percentages and phases are InvalidArgument naming
// them; DONE is FinishMigration's.
func TestAdvanceTarget(t *testing.T) {
	for _, tc := range []struct {
		to      migrationv1.Phase
		percent uint32
		code    codes.Code
		want    string
	}{
		{migrationv1.Phase_PHASE_UNSPECIFIED, 0, codes.OK, ""},
		{migrationv1.Phase_PHASE_UNSPECIFIED, 25, codes.OK, ""},
		{migrationv1.Phase_PHASE_CUTOVER, 100, codes.OK, ""},
		{migrationv1.Phase_PHASE_UNSPECIFIED, 150, codes.InvalidArgument, "percent 150: want 0 to 100"},
		{migrationv1.Phase_PHASE_CUTOVER, 30, codes.InvalidArgument, "percent 30: not a cutover step"},
		{migrationv1.Phase_PHASE_SHADOW, 5, codes.InvalidArgument, "only with to PHASE_CUTOVER"},
		{migrationv1.Phase(42), 0, codes.InvalidArgument, "to: unknown phase 42"},
		{migrationv1.Phase_PHASE_DONE, 0, codes.FailedPrecondition, "use FinishMigration"},
	} {
		_, _, err := advanceTarget(&migrationv1.AdvanceMigrationRequest{Table: "t", To: tc.to, Percent: tc.percent})
		st := migrationStatus(err)
		if code := statusCode(st); code != tc.code || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("to %s percent %d: %v, want %s %q", tc.to, tc.percent, err, tc.code, tc.want)
		}
	}
}

// TestPickImport: the named or newest import counts only if exported after
// mirroring began.
func TestPickImport(t *testing.T) {
	mirror := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	m := &migrationv1.Migration{Table: "t", MirrorTime: timestamppb.New(mirror)}
	imports := []migration.ImportRecord{{Job: "old", ExportTime: mirror.Add(-time.Hour)}, {Job: "new", ExportTime: mirror.Add(time.Minute)}}
	for _, tc := range []struct {
		imports []migration.ImportRecord
		named   string
		job     string
		note    string
	}{
		{nil, "", "", "no completed import of table t exported after mirroring began at 2026-12-07T10:00:00Z"},
		{imports, "", "new", ""},
		{imports, "old", "", "import job old was exported at 2026-12-07T09:00:00Z"},
		{imports, "nope", "", "no completed import job nope"},
		{imports[:1], "", "", "import job old was exported at"},
		{[]migration.ImportRecord{{Job: "same", ExportTime: mirror}}, "", "", "import job same"},
	} {
		job, note := pickImport(tc.imports, tc.named, m)
		if job != tc.job || !strings.Contains(note, tc.note) || (tc.job == "") == (note == "") {
			t.Errorf("imports %v named %q: job %q note %q, want %q and %q", tc.imports, tc.named, job, note, tc.job, tc.note)
		}
	}
}

func statusCode(err error) codes.Code { return status.Code(err) }
