package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ImportRecord is a completed import into a migrating table: leaving
// PHASE_MIRROR needs one whose export was taken after the mirror time.
type ImportRecord struct {
	// Job is the import job's id.
	Job string `json:"job"`
	// ExportTime is when the imported export was taken (its items' version).
	ExportTime time.Time `json:"export_time"`
	// FinishTime is when the job succeeded.
	FinishTime time.Time `json:"finish_time"`
}

// RecordImport records that import job succeeded into table. Recording a
// job again replaces its record.
func (s *Store) RecordImport(ctx context.Context, table, job string, exportTime, finishTime time.Time) error {
	if err := validName("table", table); err != nil {
		return err
	}
	if err := validName("job", job); err != nil {
		return err
	}
	b, err := json.Marshal(ImportRecord{Job: job, ExportTime: exportTime.UTC(), FinishTime: finishTime.UTC()})
	if err != nil {
		return err
	}
	if _, err := s.Client.Put(ctx, s.Keys.Import(table, job), string(b)); err != nil {
		return fmt.Errorf("migration: record import %s into %s: %w", job, table, err)
	}
	return nil
}

// Imports lists table's import records, newest finish first.
func (s *Store) Imports(ctx context.Context, table string) ([]ImportRecord, error) {
	resp, err := s.Client.Get(ctx, s.Keys.ImportsPrefix(table), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("migration: list imports into %s: %w", table, err)
	}
	out := make([]ImportRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r ImportRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("migration: decode %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ImportRecord) int { return b.FinishTime.Compare(a.FinishTime) })
	return out, nil
}

// DeleteImport removes the record of import job into table, if any.
func (s *Store) DeleteImport(ctx context.Context, table, job string) error {
	if _, err := s.Client.Delete(ctx, s.Keys.Import(table, job)); err != nil {
		return fmt.Errorf("migration: remove the record of import %s into %s: %w", job, table, err)
	}
	return nil
}
