package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/migration"
	"github.com/veltrixdb/veltrix/pkg/topology"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Goals of the exit criteria (docs/design.md, "Phases and exit criteria").
const (
	// maxMirrorFailurePercent: mirrored writes whose Veltrix side failed.
	maxMirrorFailurePercent = 0.1
	// maxMismatchPercent: shadow comparisons that differed (strictly below).
	maxMismatchPercent = 0.001
	// minCacheHitPercent: the storage nodes' LIRS cache hit ratio
	// (strictly above).
	minCacheHitPercent = 90.0
	// maxCDCLag: the lag of a stream job into the table (strictly below).
	maxCDCLag = 10 * time.Second
)

// Criterion names.
const (
	critMirrorFailures = "mirror_failure_rate"
	critMirrorQueue    = "mirror_queue_empty"
	critImport         = "import_after_mirror"
	critMismatches     = "mismatch_rate"
	critVeltrix5xx     = "veltrix_5xx"
	critCacheHits      = "cache_hit_ratio"
	critCDCLag         = "cdc_lag"
)

// evidence is what the criteria are judged on.
type evidence struct {
	// stats are the routers' figures, with cache_hit_ratio_percent and
	// cdc_lag filled in here.
	stats *migrationv1.MigrationStats
	// cacheReads is the point reads the cache figure rests on (0: no
	// figure), those served since cacheSince.
	cacheReads uint64
	cacheSince time.Time
	// streamJob names a running stream job into the table ("" none); its
	// lag is stats.cdc_lag, nil while unknown.
	streamJob string
	// importJob names the completed import exported after mirror_time
	// that leaving MIRROR relies on ("" none; importNote says why).
	importJob, importNote string
}

// criteria returns the exit criteria of m's current phase judged on ev:
//
//   - MIRROR: mirror failure rate ≤ 0.1 %, no queued re-sync, a completed
//     import exported after mirroring began;
//   - SHADOW, CUTOVER, VELTRIX: mismatch rate < 0.001 % over at least one
//     comparison, mirror failure rate ≤ 0.1 %, no Veltrix 5xx, cache hit
//     ratio > 90 %, and CDC lag < 10 s when a stream job feeds the table;
//     VELTRIX also no queued re-sync (finish drops them);
//   - PROXY and DONE have none.
func criteria(m *migrationv1.Migration, ev evidence) []*migrationv1.Criterion {
	st := ev.stats
	mirrorFailures := &migrationv1.Criterion{
		Name: critMirrorFailures, Goal: fmt.Sprintf("≤ %g %%", maxMirrorFailurePercent),
		Met:   st.GetMirrorFailureRatePercent() <= maxMirrorFailurePercent,
		Value: fmt.Sprintf("%.4g %% (%d of %d writes)", st.GetMirrorFailureRatePercent(), st.GetMirrorFailures(), st.GetWritesMirrored()),
	}
	mirrorQueue := &migrationv1.Criterion{Name: critMirrorQueue, Goal: "0 pending", Met: st.GetMirrorPending() == 0, Value: fmt.Sprintf("%d pending", st.GetMirrorPending())}
	switch m.GetPhase() {
	case migrationv1.Phase_PHASE_MIRROR:
		imp := &migrationv1.Criterion{Name: critImport, Met: ev.importJob != "",
			Goal: "a completed import exported after " + m.GetMirrorTime().AsTime().UTC().Format(time.RFC3339)}
		if imp.Met {
			imp.Value = "import job " + ev.importJob
		} else {
			imp.Value = "none (" + ev.importNote + ")"
		}
		return []*migrationv1.Criterion{mirrorFailures, mirrorQueue, imp}
	case migrationv1.Phase_PHASE_SHADOW, migrationv1.Phase_PHASE_CUTOVER, migrationv1.Phase_PHASE_VELTRIX:
	default:
		return nil
	}
	out := []*migrationv1.Criterion{
		{
			Name: critMismatches, Goal: fmt.Sprintf("< %g %% over ≥ 1 comparison", maxMismatchPercent),
			Met:   st.GetReadsCompared() > 0 && st.GetMismatchRatePercent() < maxMismatchPercent,
			Value: fmt.Sprintf("%.4g %% (%d of %d reads)", st.GetMismatchRatePercent(), st.GetMismatches(), st.GetReadsCompared()),
		},
		mirrorFailures,
		{Name: critVeltrix5xx, Goal: "0", Met: st.GetVeltrix_5Xx() == 0, Value: fmt.Sprint(st.GetVeltrix_5Xx())},
	}
	cache := &migrationv1.Criterion{Name: critCacheHits, Goal: fmt.Sprintf("> %g %%", minCacheHitPercent),
		Met: ev.cacheReads > 0 && st.GetCacheHitRatioPercent() > minCacheHitPercent}
	window := "since " + ev.cacheSince.UTC().Format(time.RFC3339) + ": storage nodes' hit and miss counters now minus then"
	if ev.cacheReads > 0 {
		cache.Value = fmt.Sprintf("%.2f %% (%d point reads %s)", st.GetCacheHitRatioPercent(), ev.cacheReads, window)
	} else {
		cache.Value = "unknown (no point reads " + window + ")"
	}
	out = append(out, cache)
	if m.GetPhase() == migrationv1.Phase_PHASE_VELTRIX {
		// Leaving VELTRIX is finish: DONE never re-syncs, so a queued
		// re-sync would be dropped with its item possibly stale.
		out = append(out, mirrorQueue)
	}
	if ev.streamJob != "" {
		lag := &migrationv1.Criterion{Name: critCDCLag, Goal: fmt.Sprintf("< %s", maxCDCLag), Value: "unknown (job " + ev.streamJob + " has not read yet)"}
		if d := st.GetCdcLag(); d != nil {
			lag.Met = d.AsDuration() < maxCDCLag
			lag.Value = fmt.Sprintf("%s (job %s)", d.AsDuration().Truncate(time.Millisecond), ev.streamJob)
		}
		out = append(out, lag)
	}
	return out
}

// failedCriteria names the criteria not met.
func failedCriteria(cs []*migrationv1.Criterion) []string {
	var out []string
	for _, c := range cs {
		if !c.GetMet() {
			out = append(out, c.GetName())
		}
	}
	return out
}

// describeFailed renders the failed criteria for an error message.
func describeFailed(cs []*migrationv1.Criterion) string {
	var parts []string
	for _, c := range cs {
		if !c.GetMet() {
			parts = append(parts, fmt.Sprintf("%s is %s, goal %s", c.GetName(), c.GetValue(), c.GetGoal()))
		}
	}
	return strings.Join(parts, "; ")
}

// evidence gathers the figures m's criteria are judged on: the routers'
// figures (Store.Stats), the storage nodes' cache counters (their
// registrations), the lag of a stream job into the table (the migrator's
// job documents) and the import leaving MIRROR relies on: importJob if
// named, else the newest completed import of the table.
func (m *migrationService) evidence(ctx context.Context, mg *migrationv1.Migration, importJob string) (evidence, error) {
	var ev evidence
	err := m.etcd(ctx, func(ctx context.Context) error {
		st, err := m.store.Stats(ctx, mg.GetTable())
		if err != nil {
			return err
		}
		ev.stats = st
		if ev.streamJob, ev.stats.CdcLag, err = m.streamLag(ctx, mg.GetTable()); err != nil {
			return err
		}
		imports, err := m.store.Imports(ctx, mg.GetTable())
		if err != nil {
			return err
		}
		ev.importJob, ev.importNote = pickImport(imports, importJob, mg)
		return nil
	})
	if err != nil {
		return evidence{}, err
	}
	// The cache figure covers the window of the routers' figures: the last
	// hour or the time in phase, whichever is shorter.
	now := time.Now()
	from := mg.GetPhaseTime().AsTime()
	if h := now.Add(-cacheWindow); from.Before(h) {
		from = h
	}
	snap := m.s.routingSnapshot()
	m.s.cacheSamples.observe(now, snap)
	hits, misses, since := m.s.cacheSamples.windowed(from, snap)
	ev.cacheSince = since
	if ev.cacheReads = hits + misses; ev.cacheReads > 0 {
		ev.stats.CacheHitRatioPercent = 100 * float64(hits) / float64(ev.cacheReads)
	}
	return ev, nil
}

// pickImport returns the import leaving MIRROR relies on (named, or the
// newest), if it was exported after mirroring began, else "" and why not.
func pickImport(imports []migration.ImportRecord, named string, mg *migrationv1.Migration) (string, string) {
	mirror := mg.GetMirrorTime().AsTime()
	since := "after mirroring began at " + mirror.UTC().Format(time.RFC3339)
	var best *migration.ImportRecord
	for i := range imports {
		im := &imports[i]
		if named != "" && im.Job != named {
			continue
		}
		if best == nil || im.ExportTime.After(best.ExportTime) {
			best = im
		}
	}
	switch {
	case best == nil && named != "":
		return "", fmt.Sprintf("no completed import job %s of table %s (the import must be exported %s)", named, mg.GetTable(), since)
	case best == nil:
		return "", fmt.Sprintf("no completed import of table %s exported %s: export the upstream table and import it (veltrix import --table %s ...)", mg.GetTable(), since, mg.GetTable())
	case !best.ExportTime.After(mirror):
		return "", fmt.Sprintf("no completed import of table %s exported %s: import job %s was exported at %s", mg.GetTable(), since, best.Job, best.ExportTime.UTC().Format(time.RFC3339))
	}
	return best.Job, ""
}

// streamLag finds a running stream job into table in the migrator's job
// documents and returns its id and lag (nil while unknown). With several,
// the one furthest behind counts.
func (m *migrationService) streamLag(ctx context.Context, table string) (string, *durationpb.Duration, error) {
	prefix := topology.NewKeys(m.s.cfg.Cluster).JobsPrefix()
	resp, err := m.s.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return "", nil, fmt.Errorf("read migrator jobs: %w", err)
	}
	var (
		job string
		lag *durationpb.Duration
	)
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), prefix)
		if strings.Contains(id, "/") {
			continue // a job's checkpoints, claims, rejects
		}
		doc, err := m.s.etcd.Get(ctx, string(kv.Key))
		if err != nil {
			return "", nil, fmt.Errorf("read migrator job %s: %w", id, err)
		}
		if len(doc.Kvs) == 0 {
			continue
		}
		var j migratorv1.Job
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(doc.Kvs[0].Value, &j); err != nil {
			return "", nil, fmt.Errorf("decode migrator job %s: %w", id, err)
		}
		if j.GetKind() != migratorv1.JobKind_JOB_KIND_STREAM || j.GetState() != migratorv1.JobState_JOB_STATE_RUNNING ||
			j.GetStreamSpec().GetMapping().GetTargetTable() != table {
			continue
		}
		l := j.GetProgress().GetLag()
		switch {
		case job == "":
			job, lag = j.GetId(), l
		case lag != nil && (l == nil || l.AsDuration() > lag.AsDuration()):
			job, lag = j.GetId(), l
		}
	}
	return job, lag, nil
}
