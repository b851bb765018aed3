package jobs

import (
	"fmt"
	"strings"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
)

// Why a data file (or its rest) was not read; see Checkpoint.Unread.
const (
	unreadChecksum = "checksum" // MD5 differs from the manifest's
	unreadMissing  = "missing"  // listed in the manifest, absent
	unreadCorrupt  = "corrupt"  // the gzip stream is damaged after Records lines
)

// fileTally is what a run learned about one data file: enough to name
// every way the file fell short of what the manifest promised.
type fileTally struct {
	// Unread says why the file, or its rest, was not read ("" if read to
	// its end).
	Unread string
	// Records is the number of non-blank lines read.
	Records int64
	// LineRejects is the number of lines (or their writes) rejected.
	LineRejects int64
	// AcceptedRejects is how many of LineRejects the user accepted
	// (verify's accept_rejects_job).
	AcceptedRejects int64
}

// fileProblems names the ways data file f fell short. verb is what the
// job does to items ("imported", "compared"); an import skips a file whose
// checksum differs, a verify compares it anyway.
func fileProblems(f export.File, t fileTally, verb string) []*migratorv1.Problem {
	var out []*migratorv1.Problem
	known := func(n int64) uint64 { return uint64(max(n, 0)) }
	switch t.Unread {
	case unreadChecksum:
		d := fmt.Sprintf("MD5 differs from %s: the file's content cannot be trusted", export.FilesName)
		if verb == "imported" {
			d += "; none of its items were imported"
		} else {
			d += "; its items were compared anyway"
		}
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_CHECKSUM_MISMATCH, Source: f.Name,
			Items: known(f.ItemCount), Detail: d})
	case unreadMissing:
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_FILE_MISSING, Source: f.Name,
			Items: known(f.ItemCount), Detail: fmt.Sprintf("listed in %s but absent: its %s items were not %s", export.FilesName, countText(f), verb)})
	case unreadCorrupt:
		rest := "the items after it"
		if f.HasItemCount && f.ItemCount > t.Records {
			rest = fmt.Sprintf("%d items by the manifest", f.ItemCount-t.Records)
		}
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_CORRUPT_FILE, Source: f.Name,
			Items:  known(unreadInFile(f, t)),
			Detail: fmt.Sprintf("gzip stream damaged after %d records: the rest of the file (%s) was not %s", t.Records, rest, verb)})
	}
	if n := t.LineRejects - t.AcceptedRejects; n > 0 {
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES, Source: f.Name,
			Items: uint64(n), Detail: fmt.Sprintf("%d lines rejected and not %s (see the job's rejects)", n, verb)})
	}
	if t.AcceptedRejects > 0 {
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_REJECTED_LINES, Source: f.Name,
			Items: uint64(t.AcceptedRejects), Accepted: true,
			Detail: fmt.Sprintf("%d lines rejected, accepted by the user as rejected by the import too", t.AcceptedRejects)})
	}
	if (t.Unread == "" || t.Unread == unreadChecksum && verb != "imported") && f.HasItemCount && t.Records != f.ItemCount {
		diff := t.Records - f.ItemCount
		out = append(out, &migratorv1.Problem{Kind: migratorv1.ProblemKind_PROBLEM_KIND_ITEM_COUNT_MISMATCH, Source: f.Name,
			Items:  uint64(max(diff, -diff)),
			Detail: fmt.Sprintf("the file has %d records, %s says %d", t.Records, export.FilesName, f.ItemCount)})
	}
	return out
}

// unreadInFile is the number of the manifest's items of f that were never
// read: all of a missing file, the rest of a corrupt one.
func unreadInFile(f export.File, t fileTally) int64 {
	switch t.Unread {
	case unreadMissing:
		return max(f.ItemCount, 0)
	case unreadCorrupt:
		return max(f.ItemCount-t.Records, 0)
	}
	return 0
}

func countText(f export.File) string {
	if f.HasItemCount {
		return fmt.Sprint(f.ItemCount)
	}
	return "an unknown number"
}

// manifestProblems checks the manifest's own counts: the summary's
// itemCount must equal the sum of the files' itemCounts.
func manifestProblems(exp *export.Export) []*migratorv1.Problem {
	if sum := exp.Summary.ItemCount; sum != exp.ItemCount() {
		diff := sum - exp.ItemCount()
		return []*migratorv1.Problem{{Kind: migratorv1.ProblemKind_PROBLEM_KIND_ITEM_COUNT_MISMATCH, Source: export.SummaryName,
			Items:  uint64(max(diff, -diff)),
			Detail: fmt.Sprintf("%s says %d items, the files of %s add up to %d", export.SummaryName, sum, export.FilesName, exp.ItemCount())}}
	}
	return nil
}

// outcome is the terminal state of a job that ran to its end: SUCCEEDED
// only when no problem stands (accepted ones do not count).
func outcome(problems []*migratorv1.Problem) migratorv1.JobState {
	for _, p := range problems {
		if !p.GetAccepted() {
			return migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS
		}
	}
	return migratorv1.JobState_JOB_STATE_SUCCEEDED
}

// problemsText is the job's error line for COMPLETED_WITH_ERRORS: every
// standing problem, by file.
func problemsText(problems []*migratorv1.Problem) string {
	var parts []string
	for _, p := range problems {
		if p.GetAccepted() {
			continue
		}
		parts = append(parts, ProblemLine(p))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%d problems: %s", len(parts), strings.Join(parts, "; "))
}

// ProblemLine renders one problem for a person: "source: kind (N items): detail".
func ProblemLine(p *migratorv1.Problem) string {
	kind := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(p.GetKind().String(), "PROBLEM_KIND_"), "_", " "))
	items := ""
	if p.GetItems() > 0 {
		items = fmt.Sprintf(" (%d items)", p.GetItems())
	}
	return fmt.Sprintf("%s: %s%s: %s", p.GetSource(), kind, items, p.GetDetail())
}
