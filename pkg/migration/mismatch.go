package migration

import (
	"context"
	"fmt"
	"strconv"
	"time"

	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// MaxMismatches is how many mismatches of a table the sample keeps; older
// ones are dropped (the total still counts them).
const MaxMismatches = 1000

// maxMismatchBatch bounds one AddMismatches transaction (etcd allows 128
// operations per transaction by default).
const maxMismatchBatch = 100

// AddMismatches adds ms to table's sample (at most maxMismatchBatch at
// once; the newest are kept) and counted to its total (counted ≥ len(ms):
// mismatches a router dropped before writing still count), then trims the
// sample to MaxMismatches, oldest first.
func (s *Store) AddMismatches(ctx context.Context, table string, ms []*migrationv1.Mismatch, counted uint64) error {
	if err := validName("table", table); err != nil {
		return err
	}
	if len(ms) > maxMismatchBatch {
		ms = ms[len(ms)-maxMismatchBatch:]
	}
	counted = max(counted, uint64(len(ms)))
	var puts []clientv3.Op
	for _, m := range ms {
		b, err := jsonOpts.Marshal(m)
		if err != nil {
			return fmt.Errorf("migration: encode mismatch of %s: %w", table, err)
		}
		at := time.Now()
		if m.GetTime() != nil {
			at = m.GetTime().AsTime()
		}
		puts = append(puts, clientv3.OpPut(s.Keys.MismatchesPrefix(table)+newID(at), string(b)))
	}
	totalKey := s.Keys.MismatchTotal(table)
	for attempt := 0; ; attempt++ {
		resp, err := s.Client.Get(ctx, totalKey)
		if err != nil {
			return fmt.Errorf("migration: record mismatches of %s: %w", table, err)
		}
		var total uint64
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if total, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64); err != nil {
				return fmt.Errorf("migration: decode %s: %w", totalKey, err)
			}
		}
		ops := append(puts[:len(puts):len(puts)], clientv3.OpPut(totalKey, strconv.FormatUint(total+counted, 10)))
		txn, err := s.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(totalKey), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("migration: record mismatches of %s: %w", table, err)
		}
		if txn.Succeeded {
			break
		}
		if attempt+1 == transitionAttempts {
			return fmt.Errorf("%w: mismatch counter of %s", ErrConflict, table)
		}
	}
	return s.trimMismatches(ctx, table)
}

func (s *Store) trimMismatches(ctx context.Context, table string) error {
	prefix := s.Keys.MismatchesPrefix(table)
	resp, err := s.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("migration: count mismatches of %s: %w", table, err)
	}
	excess := resp.Count - MaxMismatches
	if excess <= 0 {
		return nil
	}
	old, err := s.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(excess))
	if err != nil {
		return fmt.Errorf("migration: list old mismatches of %s: %w", table, err)
	}
	if len(old.Kvs) == 0 {
		return nil
	}
	// Delete [first, last] in one range: ids sort in time order.
	last := string(old.Kvs[len(old.Kvs)-1].Key) + "\x00"
	if _, err := s.Client.Delete(ctx, string(old.Kvs[0].Key), clientv3.WithRange(last)); err != nil {
		return fmt.Errorf("migration: drop old mismatches of %s: %w", table, err)
	}
	return nil
}

// Mismatches returns up to limit of table's kept mismatches, newest first,
// and the total ever recorded.
func (s *Store) Mismatches(ctx context.Context, table string, limit int) ([]*migrationv1.Mismatch, uint64, error) {
	var out []*migrationv1.Mismatch
	if limit > 0 {
		resp, err := s.Client.Get(ctx, s.Keys.MismatchesPrefix(table), clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
		if err != nil {
			return nil, 0, fmt.Errorf("migration: list mismatches of %s: %w", table, err)
		}
		for _, kv := range resp.Kvs {
			m := &migrationv1.Mismatch{}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, m); err != nil {
				return nil, 0, fmt.Errorf("migration: decode %s: %w", kv.Key, err)
			}
			out = append(out, m)
		}
	}
	resp, err := s.Client.Get(ctx, s.Keys.MismatchTotal(table))
	if err != nil {
		return nil, 0, fmt.Errorf("migration: read mismatch total of %s: %w", table, err)
	}
	var total uint64
	if len(resp.Kvs) > 0 {
		if total, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64); err != nil {
			return nil, 0, fmt.Errorf("migration: decode %s: %w", resp.Kvs[0].Key, err)
		}
	}
	return out, total, nil
}
