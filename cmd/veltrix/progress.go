package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// processed is the number of source items a job has accounted for:
// written, superseded, deleted, skipped, filtered or rejected (compared,
// for a verify). It is what reaches the manifest's item count when the job
// is done, whatever the filter or the rejects.
func processed(j *migratorv1.Job) uint64 {
	p := j.GetProgress()
	return p.GetItemsWritten() + p.GetItemsSuperseded() + p.GetItemsCompared() + p.GetDeletes() +
		p.GetSkippedExpired() + p.GetFiltered() + p.GetRejects()
}

// fmtBytes prints a byte count in binary units.
func fmtBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progressText is a job's counts for a person: items against the
// manifest's total, bytes read against the expected bytes, when known.
func progressText(j *migratorv1.Job) string {
	p := j.GetProgress()
	var b strings.Builder
	if total := p.GetItemsTotal(); total > 0 {
		fmt.Fprintf(&b, "%d / %d items", processed(j), total)
	} else {
		fmt.Fprintf(&b, "%d items", processed(j))
	}
	if read, total := p.GetBytesRead(), p.GetBytesTotal(); total > 0 {
		fmt.Fprintf(&b, "  %s / %s", fmtBytes(read), fmtBytes(total))
	} else if read > 0 {
		fmt.Fprintf(&b, "  %s read", fmtBytes(read))
	}
	return b.String()
}

// jobBar draws a job's progress bar on a terminal. The bar is created with
// an unknown total (0) and given the manifest's item count once the job
// reports it: an mpb bar created with a positive total ignores later
// totals and completes when its count reaches the first one, which drew
// "0 / 1" then "1 / 1 100%" for a whole import.
type jobBar struct {
	p   *mpb.Progress
	bar *mpb.Bar

	mu   sync.Mutex
	last *migratorv1.Job
}

func newJobBar(ctx context.Context, w io.Writer, job *migratorv1.Job, opts ...mpb.ContainerOption) *jobBar {
	b := &jobBar{last: job}
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200 * time.Millisecond)}, opts...)
	b.p = mpb.NewWithContext(ctx, opts...)
	job0 := b.job
	b.bar = b.p.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(
			decor.Any(func(decor.Statistics) string { j := job0(); return shortKind(j.Kind) + " " + j.Id + " " }),
			decor.Any(func(decor.Statistics) string { return progressText(job0()) + " " }),
		),
		mpb.AppendDecorators(
			decor.Any(func(s decor.Statistics) string {
				if s.Total <= 0 {
					return ""
				}
				return fmt.Sprintf(" %3d%%", min(100, s.Current*100/s.Total))
			}),
			decor.Any(func(decor.Statistics) string { return rateETA(job0()) }),
		),
	)
	b.update(job)
	return b
}

func (b *jobBar) job() *migratorv1.Job {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// update shows j.
func (b *jobBar) update(j *migratorv1.Job) {
	b.mu.Lock()
	b.last = j
	b.mu.Unlock()
	done, total := int64(processed(j)), int64(j.GetProgress().GetItemsTotal())
	if total > 0 {
		b.bar.SetTotal(max(total, done), false)
	}
	b.bar.SetCurrent(done)
}

// finish draws the job's last state: a full bar when it succeeded, the bar
// where it stopped otherwise; and waits for the drawing to end.
func (b *jobBar) finish(j *migratorv1.Job) {
	if j != nil {
		b.update(j)
	}
	if j != nil && j.State == migratorv1.JobState_JOB_STATE_SUCCEEDED {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(false)
	}
	b.p.Wait()
}
