package kvrecord_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/hlc"
	"github.com/veltrixdb/veltrix/pkg/kvrecord"
	"github.com/veltrixdb/veltrix/pkg/placement"
	"github.com/veltrixdb/veltrix/pkg/topology"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestRecord(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := kvrecord.Builder{Clock: hlc.New(hlc.WithPhysicalClock(func() time.Time { return now })), Now: func() time.Time { return now }}
	plain := topology.Table{Name: "t", ID: 7}
	ttl := topology.Table{Name: "t", ID: 7, DefaultTTL: time.Hour}
	key := &kvv1.Key{Table: "t", PartitionKey: []byte("pk"), SortKey: []byte("sk")}
	put := kvv1.Mutation_MUTATION_TYPE_PUT
	del := kvv1.Mutation_MUTATION_TYPE_DELETE
	for _, tc := range []struct {
		name    string
		table   topology.Table
		m       *kvv1.Mutation
		wantExp int64
		wantErr string
	}{
		{name: "put keeps its version", table: plain, m: &kvv1.Mutation{Type: put, Key: key, Value: []byte("v"), Version: 42}},
		{name: "default ttl", table: ttl, m: &kvv1.Mutation{Type: put, Key: key, Value: []byte("v"), Version: 42}, wantExp: now.Add(time.Hour).UnixNano()},
		{name: "own expiry wins", table: ttl, m: &kvv1.Mutation{Type: put, Key: key, Version: 42, ExpireTime: timestamppb.New(now.Add(time.Minute))}, wantExp: now.Add(time.Minute).UnixNano()},
		{name: "delete", table: ttl, m: &kvv1.Mutation{Type: del, Key: key, Version: 42}},
		{name: "delete with value", table: plain, m: &kvv1.Mutation{Type: del, Key: key, Value: []byte("v")}, wantErr: "invalid argument: mutations[0]: a DELETE carries no value or expire_time"},
		{name: "no type", table: plain, m: &kvv1.Mutation{Key: key}, wantErr: "mutations[0].type: must be PUT or DELETE"},
		{name: "empty pk", table: plain, m: &kvv1.Mutation{Type: put, Key: &kvv1.Key{Table: "t"}}, wantErr: "mutations[0].key.partition_key: empty"},
		{name: "too far ahead", table: plain, m: &kvv1.Mutation{Type: put, Key: key, Version: hlc.FromTime(now.Add(2*time.Hour), 0)}, wantErr: "mutations[0].version"},
		{name: "expiry before 1970", table: plain, m: &kvv1.Mutation{Type: put, Key: key, Version: 1, ExpireTime: &timestamppb.Timestamp{Seconds: -5}}, wantErr: "is not after 1970"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := b.Record(tc.table, 64, tc.m, kvrecord.Index("mutations", 0))
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, kvrecord.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := placement.PartitionOf(7, []byte("pk"), 64); rec.GetKey().GetPartition() != p || rec.GetKey().GetTableId() != 7 {
				t.Errorf("key = %v, want partition %d of table 7", rec.GetKey(), p)
			}
			if rec.GetVersion() != tc.m.GetVersion() || rec.GetExpireUnixNanos() != tc.wantExp || rec.GetTombstone() != (tc.m.GetType() == del) {
				t.Errorf("record = %v, want version %d expiry %d", rec, tc.m.GetVersion(), tc.wantExp)
			}
		})
	}
	rec, err := b.Record(plain, 64, &kvv1.Mutation{Type: put, Key: key}, kvrecord.Index("mutations", 0))
	if err != nil || hlc.Time(rec.GetVersion()) != now {
		t.Fatalf("unversioned put: %v, %v; want the clock's version", rec, err)
	}
}
