package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxSyncKeys is SyncItems' limit of keys per call.
const maxSyncKeys = 100

// syncsThroughRouter reports whether a stream's changes to table are
// re-synced by the routers (SyncItems) instead of applied: the table's
// migration mirrors writes (PHASE_MIRROR to PHASE_VELTRIX), so the routers
// own its items' versions (docs/design.md, "Migration mode: convergence").
func (e *Env) syncsThroughRouter(table string) bool {
	if e.Migrations == nil {
		return false
	}
	m, ok := e.Migrations.Migration(table)
	return ok && migration.MirrorsWrites(m)
}

// syncChanges asks the routers to re-sync every changed item from DynamoDB,
// in calls of at most maxSyncKeys keys, each retried like a write (until
// it succeeds or the run's health fails the job). A key the router could
// not sync is queued by the router for replay, so it is done as far as the
// stream is concerned. It returns errStopRetry when the table's migration
// stopped mirroring writes before every key was synced: the caller applies
// the page's images then (those of items already re-synced lose to the
// re-synced versions, which are above the routers' clocks).
func (r *streamRun) syncChanges(ctx context.Context, changes []cdc.Change) error {
	e := r.env
	if e.Sync == nil {
		return fail("table %s is in migration mode but this migrator has no MigrationService client to re-sync its items", r.m.Table)
	}
	var d delta
	var rejects []StoredReject
	reject := func(c cdc.Change, reason string) {
		d.rejects++
		rejects = append(rejects, changeReject(c, reason))
	}
	keys := make([]string, 0, len(changes))
	from := make([]cdc.Change, 0, len(changes))
	for _, c := range changes {
		b, err := ddb.MarshalDynamoDBJSON(c.Keys)
		if err != nil {
			reject(c, "Keys: "+err.Error())
			continue
		}
		keys = append(keys, string(b))
		from = append(from, c)
	}
	for lo := 0; lo < len(keys); lo += maxSyncKeys {
		hi := min(lo+maxSyncKeys, len(keys))
		req := &migrationv1.SyncItemsRequest{Table: r.m.Table, Keys: keys[lo:hi]}
		var resp *migrationv1.SyncItemsResponse
		err := e.retryWrite(ctx, r.m.Table, "stream job "+r.id, writePolicy{observe: r.health.observe}, func() error {
			if !e.syncsThroughRouter(r.m.Table) {
				return errStopRetry
			}
			var err error
			resp, err = e.Sync.SyncItems(ctx, req)
			switch status.Code(err) {
			case codes.FailedPrecondition, codes.NotFound:
				// The router saw the migration leave the mirroring phases
				// (or end) before this migrator's watch did: retry until
				// the watch agrees, which stops the retries.
				return fmt.Errorf("re-sync %d items of %s: %w", len(req.Keys), r.m.Table, status.Error(codes.Unavailable, err.Error()))
			}
			return err
		})
		if status.Code(err) == codes.InvalidArgument {
			for _, c := range from[lo:hi] {
				reject(c, "the router refused to re-sync the item: "+status.Convert(err).Message())
			}
			continue
		}
		if err != nil {
			return err
		}
		queued := 0
		for i, c := range from[lo:hi] {
			if i < len(resp.GetErrors()) && resp.GetErrors()[i] != "" {
				queued++
			}
			if c.Kind == cdc.Delete {
				d.deletes++
				if c.TTLDelete {
					d.ttlDeletes++
				}
			} else {
				d.items++
			}
		}
		if queued > 0 {
			e.Logger.Warn("the router could not re-sync some items now and queued them for replay",
				"job", r.id, "table", r.m.Table, "queued", queued, "first_error", firstError(resp.GetErrors()))
		}
	}
	if err := r.sink.put(ctx, rejects); err != nil {
		return err
	}
	r.counts.add(d)
	e.Observer.ItemsWritten(r.id, int(d.items+d.deletes))
	return nil
}

func firstError(errs []string) string {
	for _, e := range errs {
		if e != "" {
			return e
		}
	}
	return ""
}

// finishImport ends an import job's attempt in state. An import that
// succeeds into a table with a migration is first recorded for `veltrix
// migrate advance` (leaving PHASE_MIRROR needs an import whose export
// followed the mirror time); snapshot is the time the imported data is a
// snapshot of (zero for an incremental export). Recording first means a
// SUCCEEDED job always has its record; a record whose job then did not end
// SUCCEEDED (cancelled meanwhile) is removed.
func (e *Env) finishImport(ctx context.Context, id string, attempt uint32, table string, snapshot time.Time,
	state migratorv1.JobState, errMsg string, also func(*migratorv1.Job)) error {
	now := e.Now()
	recorded := false
	if state == migratorv1.JobState_JOB_STATE_SUCCEEDED && e.Migrations != nil {
		s := e.Migrations.Store()
		switch _, err := s.Get(ctx, table); {
		case err == nil:
			if err := s.RecordImport(ctx, table, id, snapshot, now); err != nil {
				return fmt.Errorf("import %s: %w", id, err)
			}
			recorded = true
		case !errors.Is(err, migration.ErrNotFound):
			return fmt.Errorf("import %s: %w", id, err)
		}
	}
	_, err := e.Store.FinishAttempt(ctx, id, attempt, state, errMsg, now, also)
	if err != nil && recorded {
		// Another migrator may have ended the job SUCCEEDED first: its
		// record (this one's twin) stays.
		if j, gerr := e.Store.Get(context.WithoutCancel(ctx), id); gerr == nil && j.GetState() == migratorv1.JobState_JOB_STATE_SUCCEEDED {
			return err
		}
		if derr := e.Migrations.Store().DeleteImport(context.WithoutCancel(ctx), table, id); derr != nil {
			e.Logger.Error("import did not end but its record for the migration stays", "job", id, "table", table, "err", derr)
		}
	}
	return err
}
