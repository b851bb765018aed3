package server

import (
	"context"
	"time"

	"github.com/veltrixdb/veltrix/pkg/migration"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// importRecord is a completed import into a migrating table.
type importRecord struct {
	// Job is the import job's id.
	Job string
	// ExportTime is when the imported export was taken.
	ExportTime time.Time
}

// figureStore is what the service reads besides the migration documents:
// the routers' figures, the completed imports and the mismatch sample.
type figureStore interface {
	Stats(ctx context.Context, table string) (*migrationv1.MigrationStats, error)
	Imports(ctx context.Context, table string) ([]importRecord, error)
	ListMismatches(ctx context.Context, table string, limit int) ([]*migrationv1.Mismatch, uint64, error)
}

// storeFigures reads the figures from migration.Store.
type storeFigures struct{ s *migration.Store }

// Stats are the routers' figures. TODO(M1a): Store.Stats; until then only
// the queue's length is known.
func (f storeFigures) Stats(ctx context.Context, table string) (*migrationv1.MigrationStats, error) {
	n, err := f.s.PendingSyncCount(ctx, table)
	if err != nil {
		return nil, err
	}
	return &migrationv1.MigrationStats{MirrorPending: n}, nil
}

// Imports lists completed imports. TODO(M1a): Store.Imports.
func (f storeFigures) Imports(context.Context, string) ([]importRecord, error) { return nil, nil }

// ListMismatches reads the sample. TODO(M1a): Store.ListMismatches.
func (f storeFigures) ListMismatches(context.Context, string, int) ([]*migrationv1.Mismatch, uint64, error) {
	return nil, 0, nil
}
