package jobs

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func sortNewestFirst(js []*migratorv1.Job) {
	sort.SliceStable(js, func(a, b int) bool {
		ta, tb := js[a].GetCreateTime().AsTime(), js[b].GetCreateTime().AsTime()
		if !ta.Equal(tb) {
			return ta.After(tb)
		}
		return js[a].GetId() > js[b].GetId()
	})
}

// Processed is the number of source records a job has accounted for:
// written, deleted, skipped, filtered or rejected (for a verify, compared
// instead of written). It is not tracked for a sampling verify.
func Processed(j *migratorv1.Job) (uint64, bool) {
	p := j.GetProgress()
	n := p.GetDeletes() + p.GetSkippedExpired() + p.GetFiltered() + p.GetRejects()
	if j.GetKind() == migratorv1.JobKind_JOB_KIND_VERIFY {
		if f := j.GetVerifySpec().GetSampleFraction(); f > 0 && f < 1 {
			return 0, false
		}
		return n + p.GetItemsCompared(), true
	}
	return n + p.GetItemsWritten(), true
}

// Ratio is a job's progress between 0 and 1: records accounted for over
// the manifests' item count, or else files done over files.
func Ratio(j *migratorv1.Job) float64 {
	p := j.GetProgress()
	done, ok := Processed(j)
	switch {
	case j.GetState() == migratorv1.JobState_JOB_STATE_SUCCEEDED:
		return 1
	case ok && p.GetItemsTotal() > 0:
		return min(1, float64(done)/float64(p.GetItemsTotal()))
	case p.GetFilesTotal() > 0:
		return float64(p.GetFilesDone()) / float64(p.GetFilesTotal())
	}
	return 0
}

// Aggregate returns a copy of job with its live progress: for an import,
// the sum of its file checkpoints (plus the job-level rejects the document
// holds); for a verify, what its runner last wrote. Owners are the
// migrators holding claims.
func (s *Store) Aggregate(ctx context.Context, j *migratorv1.Job) (*migratorv1.Job, error) {
	j = proto.Clone(j).(*migratorv1.Job)
	if j.Progress == nil {
		j.Progress = &migratorv1.Progress{}
	}
	// Table-scan imports and stream jobs keep their progress in the job
	// document (their runner writes it every second).
	if j.GetKind() == migratorv1.JobKind_JOB_KIND_IMPORT && j.GetImportSpec().GetTableScan() == nil {
		cps, err := s.Checkpoints(ctx, j.GetId())
		if err != nil {
			return nil, err
		}
		base, err := s.countPrefix(ctx, s.rejectsPrefix(j.GetId())+ManifestRejectKey(""))
		if err != nil {
			return nil, err
		}
		p := j.Progress
		p.ItemsWritten, p.ItemsSuperseded, p.Deletes, p.SkippedExpired, p.Filtered, p.BytesRead, p.FilesDone = 0, 0, 0, 0, 0, 0, 0
		p.Rejects = uint64(base) // rejects about the manifests
		for _, cp := range cps {
			p.ItemsWritten += uint64(cp.Items - cp.Superseded)
			p.ItemsSuperseded += uint64(cp.Superseded)
			p.Deletes += uint64(cp.Deletes)
			p.SkippedExpired += uint64(cp.SkippedExpired)
			p.Filtered += uint64(cp.Filtered)
			p.Rejects += uint64(cp.Rejects)
			p.BytesRead += uint64(cp.Bytes)
			if cp.Done {
				p.FilesDone++
			}
		}
	}
	if j.GetKind() == migratorv1.JobKind_JOB_KIND_VERIFY && j.GetVerifyReport() != nil {
		ms, err := s.Mismatches(ctx, j.GetId())
		if err != nil {
			return nil, err
		}
		j.VerifyReport.Mismatches = ms
	}
	if !Terminal(j.GetState()) {
		claims, err := s.Claims(ctx, j.GetId())
		if err != nil {
			return nil, err
		}
		j.Owners = j.Owners[:0]
		for _, owner := range claims {
			if !slices.Contains(j.Owners, owner) {
				j.Owners = append(j.Owners, owner)
			}
		}
		slices.Sort(j.Owners)
	} else {
		j.Owners = nil
	}
	return j, nil
}

// Rates estimates each job's recent rate and ETA from a moving window of
// progress samples.
type Rates struct {
	mu      sync.Mutex
	window  time.Duration
	samples map[string][]sample
}

type sample struct {
	t         time.Time
	written   uint64 // items written + deletes
	processed uint64
}

// NewRates returns a rate estimator over window (10s when 0).
func NewRates(window time.Duration) *Rates {
	if window <= 0 {
		window = 10 * time.Second
	}
	return &Rates{window: window, samples: map[string][]sample{}}
}

// Apply records j's progress at now and sets its items_per_second and eta.
func (r *Rates) Apply(j *migratorv1.Job, now time.Time) {
	p := j.GetProgress()
	if p == nil {
		return
	}
	id := j.GetId()
	r.mu.Lock()
	defer r.mu.Unlock()
	if Terminal(j.GetState()) {
		delete(r.samples, id)
		p.ItemsPerSecond, p.Eta = 0, nil
		return
	}
	written := p.GetItemsWritten() + p.GetDeletes()
	if j.GetKind() == migratorv1.JobKind_JOB_KIND_VERIFY {
		written = p.GetItemsCompared()
	}
	processed, tracked := Processed(j)
	ss := r.samples[id]
	if n := len(ss); n == 0 || now.Sub(ss[n-1].t) >= 100*time.Millisecond {
		ss = append(ss, sample{t: now, written: written, processed: processed})
	}
	cut := 0
	for cut < len(ss)-2 && now.Sub(ss[cut].t) > r.window {
		cut++
	}
	ss = ss[cut:]
	r.samples[id] = ss
	first, last := ss[0], ss[len(ss)-1]
	dt := last.t.Sub(first.t).Seconds()
	if dt < 0.5 || last.written < first.written {
		return
	}
	p.ItemsPerSecond = float64(last.written-first.written) / dt
	procRate := float64(last.processed-first.processed) / dt
	if total := p.GetItemsTotal(); tracked && total > 0 && procRate > 0 {
		if done := processed; done < total {
			p.Eta = durationpb.New(time.Duration(float64(total-done) / procRate * float64(time.Second)))
		} else {
			p.Eta = durationpb.New(0)
		}
	}
}

// Forget drops a job's samples.
func (r *Rates) Forget(id string) {
	r.mu.Lock()
	delete(r.samples, id)
	r.mu.Unlock()
}
