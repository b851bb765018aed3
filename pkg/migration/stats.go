package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Stats merges the figures every router published for table's current
// phase into one MigrationStats, with the number of queued re-syncs.
// cache_hit_ratio_percent and cdc_lag are not the control plane's to know:
// they are left unset for the caller. ErrNotFound when the table has no
// migration.
func (s *Store) Stats(ctx context.Context, table string) (*migrationv1.MigrationStats, error) {
	return s.stats(ctx, table, time.Now())
}

func (s *Store) stats(ctx context.Context, table string, now time.Time) (*migrationv1.MigrationStats, error) {
	m, err := s.Get(ctx, table)
	if err != nil {
		return nil, err
	}
	resp, err := s.Client.Get(ctx, s.Keys.StatsPrefix(table), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("migration: read figures of %s: %w", table, err)
	}
	phaseTime := m.GetPhaseTime().AsTime()
	var sum Figures
	var lat [2]Histogram
	var routers uint32
	for _, kv := range resp.Kvs {
		var f Figures
		if err := json.Unmarshal(kv.Value, &f); err != nil {
			return nil, fmt.Errorf("migration: decode %s: %w", kv.Key, err)
		}
		// A router that has not seen the phase change yet still reports
		// the previous phase: those figures are not this phase's.
		if !f.PhaseTime.Equal(phaseTime) {
			continue
		}
		routers++
		sum.Compared += f.Compared
		sum.Mismatches += f.Mismatches
		sum.Mirrored += f.Mirrored
		sum.MirrorFailed += f.MirrorFailed
		sum.Veltrix5xx += f.Veltrix5xx
		lat[SideDynamoDB].addSparse(f.DynamoDBLatency)
		lat[SideVeltrix].addSparse(f.VeltrixLatency)
	}
	pending, err := s.PendingSyncCount(ctx, table)
	if err != nil {
		return nil, err
	}
	window := min(Window, max(now.Sub(phaseTime), 0))
	return &migrationv1.MigrationStats{
		Window:                   durationpb.New(window),
		ReadsCompared:            sum.Compared,
		Mismatches:               sum.Mismatches,
		MismatchRatePercent:      percent(sum.Mismatches, sum.Compared),
		VeltrixReadP99:           durationpb.New(lat[SideVeltrix].Quantile(0.99)),
		DynamodbReadP99:          durationpb.New(lat[SideDynamoDB].Quantile(0.99)),
		Veltrix_5Xx:              sum.Veltrix5xx,
		WritesMirrored:           sum.Mirrored,
		MirrorFailures:           sum.MirrorFailed,
		MirrorFailureRatePercent: percent(sum.MirrorFailed, sum.Mirrored),
		MirrorPending:            pending,
		Routers:                  routers,
	}, nil
}

func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// publishFigures writes router's figures for table under lease.
func (s *Store) publishFigures(ctx context.Context, table, router string, b []byte, lease clientv3.LeaseID) error {
	if _, err := s.Client.Put(ctx, s.Keys.Stats(table, router), string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("migration: publish figures of %s: %w", table, err)
	}
	return nil
}
